//! The playbooks and roles gantry ships, compiled into the binary, so an
//! installed gantry works from any directory. They are unpacked once per
//! build into a folder of the user's own (`~/.cache/gantry/builtin-HASH`,
//! named by their content) and searched after the operator's: a
//! `playbooks/` or `roles/` folder beside the inventory, or in the working
//! directory, or `--roles-dir`, overrides them by name.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

static PLAYBOOKS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/playbooks");
static ROLES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/roles");

/// Every built-in file: (path under the unpacked folder, content).
fn files() -> Vec<(PathBuf, &'static [u8])> {
    let mut out = Vec::new();
    fn walk(top: &str, d: &'static Dir<'static>, out: &mut Vec<(PathBuf, &'static [u8])>) {
        for f in d.files() {
            out.push((Path::new(top).join(f.path()), f.contents()));
        }
        for sub in d.dirs() {
            walk(top, sub, out);
        }
    }
    walk("playbooks", &PLAYBOOKS, &mut out);
    walk("roles", &ROLES, &mut out);
    out.sort();
    out
}

/// The folder holding `playbooks/` and `roles/` as built in, unpacked on
/// first use.
pub fn dir() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(unpack)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

fn unpack() -> Result<PathBuf, String> {
    let files = files();
    let mut h = Sha256::new();
    for (p, c) in &files {
        h.update(p.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
    let name = format!("builtin-{}", &hex::encode(h.finalize())[..16]);
    let cache = private_cache()?;
    let done = cache.join(&name);
    if done.is_dir() {
        return Ok(done);
    }
    // Written whole beside, then renamed into place: a reader sees all of
    // it or none. Another gantry may win the rename; its copy is the same.
    let tmp = cache.join(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let io = |p: &Path, e: std::io::Error| {
        format!("unpacking the built-in roles to {}: {e}", p.display())
    };
    for (p, c) in &files {
        let to = tmp.join(p);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&to, c).map_err(|e| io(&to, e))?;
    }
    match std::fs::rename(&tmp, &done) {
        Ok(()) => Ok(done),
        Err(_) if done.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(done)
        }
        Err(e) => Err(io(&done, e)),
    }
}

/// `$XDG_CACHE_HOME/gantry` or `~/.cache/gantry`, made 0700 and checked to
/// be the user's alone: roles run as root on every host, so no other local
/// user may be able to plant one there.
fn private_cache() -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set: nowhere to unpack the built-in roles")?;
    let dir = base.join("gantry");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let me = crate::remote::credentials::current_uid()?;
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a directory of your own that others cannot write (it holds the roles gantry runs as root)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The built-in roles: (name, what it does: the comment at the top of its
/// tasks.yaml).
pub fn roles() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ROLES
        .dirs()
        .map(|d| {
            let name = d.path().to_string_lossy().into_owned();
            let about = d
                .get_file(d.path().join("tasks.yaml"))
                .and_then(|f| f.contents_utf8())
                .map(|t| {
                    t.lines()
                        .take_while(|l| l.starts_with('#'))
                        .map(|l| l.trim_start_matches('#').trim())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            (name, about)
        })
        .collect();
    out.sort();
    out
}

/// The built-in playbooks' names (`-p NAME`).
pub fn playbooks() -> Vec<String> {
    let mut out: Vec<String> = PLAYBOOKS
        .files()
        .filter_map(|f| Some(f.path().file_stem()?.to_string_lossy().into_owned()))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_says_what_it_does() {
        let roles = roles();
        assert!(roles.iter().any(|(n, _)| n == "kubeadm"));
        for (name, about) in roles {
            assert!(
                !about.is_empty(),
                "roles/{name}/tasks.yaml starts with no comment"
            );
        }
    }
}
