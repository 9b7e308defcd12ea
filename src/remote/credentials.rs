//! Passwords for sudo (`become_password`) and for SSH's own authentication
//! (`ssh.password`): read once per run from where the inventory says (an
//! environment variable, or a file only its owner can read) or from the
//! prompt (`--ask-become-pass`, `--ask-pass`), and kept in memory only. A
//! password is sent on a channel's stdin (sudo) or in the SSH protocol's
//! own message, never in a command line, a log, the journal or a plan;
//! `Password` prints as `(hidden)`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::inventory::SecretSource;

/// A password in memory, wiped when the last holder drops it.
#[derive(Clone)]
pub struct Password(Arc<zeroize::Zeroizing<String>>);

impl Password {
    pub fn new(text: String) -> Self {
        Password(Arc::new(zeroize::Zeroizing::new(text)))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// Which password a source is for, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Become,
    Ssh,
}

impl Purpose {
    fn field(self) -> &'static str {
        match self {
            Purpose::Become => "ssh.become_password",
            Purpose::Ssh => "ssh.password",
        }
    }
}

/// What the operator typed at the prompt, for every host of the run.
static PROMPTED: OnceLock<Mutex<HashMap<&'static str, Password>>> = OnceLock::new();
/// What each source gave, read once per run.
static READ: OnceLock<Mutex<HashMap<SecretSource, Result<Password, String>>>> = OnceLock::new();

/// Ask for a password on the terminal, once, before any host is reached.
/// It serves every host of the run and wins over the inventory's sources.
pub fn prompt(purpose: Purpose) -> Result<(), String> {
    let label = match purpose {
        Purpose::Become => "BECOME password (sudo): ",
        Purpose::Ssh => "SSH password: ",
    };
    let text = rpassword::prompt_password(label)
        .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
    PROMPTED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(purpose.field(), Password::new(text));
    Ok(())
}

/// The password for `purpose`: the prompt's, else the source's, else none.
pub fn get(purpose: Purpose, source: Option<&SecretSource>) -> Result<Option<Password>, String> {
    if let Some(p) = PROMPTED.get().and_then(|m| {
        m.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(purpose.field())
            .cloned()
    }) {
        return Ok(Some(p));
    }
    let Some(source) = source else {
        return Ok(None);
    };
    let mut read = READ
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    read.entry(source.clone())
        .or_insert_with(|| read_source(source))
        .clone()
        .map(Some)
        .map_err(|e| format!("{}: {e}", purpose.field()))
}

fn read_source(source: &SecretSource) -> Result<Password, String> {
    match source {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Password::new(v)),
            Ok(_) => Err(format!("the environment variable {name} is empty")),
            Err(_) => Err(format!("the environment variable {name} is not set")),
        },
        SecretSource::File(path) => read_file(path),
    }
}

/// The uid gantry runs as (the owner of its own /proc entry), for files
/// that must be the user's own.
pub fn current_uid() -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("/proc/self: {e}"))
}

/// The first line of a file that only the user running gantry can read.
fn read_file(path: &Path) -> Result<Password, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    let me = crate::remote::credentials::current_uid()?;
    if meta.uid() != me {
        return Err(format!(
            "{shown} belongs to uid {}, not to the user running gantry (uid {me}); a password file must be the user's own",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} is mode {mode:o}: others can read it; run `chmod 600 {shown}`"
        ));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?,
    );
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(Password::new(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_password_file_must_be_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_file(&f).unwrap_err();
        assert!(
            e.contains("is mode 640: others can read it; run `chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&f).unwrap().expose(), "s3cret");
        std::fs::write(&f, "").unwrap();
        assert!(read_file(&f).unwrap_err().ends_with("is empty"));
    }

    #[test]
    fn a_missing_variable_names_the_field_and_a_password_never_prints() {
        let src = SecretSource::Env("GANTRY_TEST_SURELY_UNSET_VARIABLE".into());
        let e = get(Purpose::Become, Some(&src)).unwrap_err();
        assert_eq!(
            e,
            "ssh.become_password: the environment variable GANTRY_TEST_SURELY_UNSET_VARIABLE is not set"
        );
        assert_eq!(get(Purpose::Ssh, None).unwrap().map(|p| p.0.len()), None);
        assert_eq!(format!("{:?}", Password::new("hunter2".into())), "(hidden)");
    }
}
