//! Secrets the roles need (keepalived's VRRP password, later join tokens):
//! given in the inventory's `secrets:`, or generated once and kept beside the
//! inventory in `.gantry/secrets.json`, mode 0600, written atomically. Values
//! are redacted from every output by the reporter.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{Error, Result};

pub fn store_path(inventory: &Path) -> PathBuf {
    inventory
        .parent()
        .unwrap_or(Path::new("."))
        .join(".gantry")
        .join("secrets.json")
}

/// `bytes` random bytes from the kernel's CSPRNG, as hex: names and markers
/// that nothing can guess or collide with (temp files, frame nonces, run ids).
pub fn random_hex(bytes: usize) -> std::result::Result<String, String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness from the kernel: {e}"))?;
    Ok(hex::encode(b))
}

/// `len` characters from [A-Za-z0-9], from the kernel's CSPRNG. VRRP's PASS
/// authentication keeps 8 characters, so roles ask for what fits.
fn generate(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::new();
    let mut b = [0u8; 1];
    while out.len() < len {
        getrandom::fill(&mut b)
            .map_err(|e| Error::Other(format!("no randomness from the kernel: {e}")))?;
        // Reject the top of the byte range so every character is equally likely.
        if (b[0] as usize) < 256 - 256 % ALPHABET.len() {
            out.push(ALPHABET[b[0] as usize % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

/// Write `content` to `path` atomically: a 0600 temp file of a random name
/// in the same directory (removed if anything fails), fsync, rename, then
/// fsync the directory so the rename itself survives a power loss.
fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        random_hex(6).map_err(Error::Other)?
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The key of the journal's input hashes (`plan::inputs`), kept 0600 beside
/// the inventory: a hash over a task's values (a generated password among
/// them) that anyone holding the journal could search offline is keyed, so
/// the journal gives nothing away without this file.
pub fn journal_key(inventory: &Path) -> Result<Vec<u8>> {
    let path = inventory
        .parent()
        .unwrap_or(Path::new("."))
        .join(".gantry")
        .join("journal.key");
    match std::fs::read_to_string(&path) {
        Ok(k) => hex::decode(k.trim())
            .map_err(|e| Error::Other(format!("{}: not a key: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = random_hex(32).map_err(Error::Other)?;
            write_private(&path, k.as_bytes())?;
            Ok(hex::decode(k).expect("hex from random_hex"))
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Every secret in `names`: from `given` (the inventory), else from the
/// store, else generated and stored.
pub fn resolve(
    inventory: &Path,
    given: &serde_json::Map<String, Json>,
    names: &BTreeSet<String>,
) -> Result<serde_json::Map<String, Json>> {
    let path = store_path(inventory);
    let mut stored: serde_json::Map<String, Json> = match std::fs::read(&path) {
        Ok(b) => {
            // A store others can read (copied in, an old umask) is
            // tightened to the owner alone.
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(&path)
                && m.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::io(&path, e))?;
            }
            serde_json::from_slice(&b)
                .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut out = given.clone();
    let mut dirty = false;
    for n in names {
        if out.contains_key(n) {
            continue;
        }
        if !stored.contains_key(n) {
            stored.insert(n.clone(), Json::String(generate(8)?));
            dirty = true;
        }
        out.insert(n.clone(), stored[n].clone());
    }
    if dirty {
        write_private(
            &path,
            serde_json::to_string_pretty(&stored).unwrap().as_bytes(),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_stored_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.yaml");
        let names: BTreeSet<String> = ["vrrp".to_string()].into();
        let a = resolve(&inv, &Default::default(), &names).unwrap();
        let v = a["vrrp"].as_str().unwrap().to_string();
        assert_eq!(v.len(), 8);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()));
        let meta = std::fs::metadata(store_path(&inv)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = resolve(&inv, &Default::default(), &names).unwrap();
        assert_eq!(b["vrrp"], a["vrrp"]);
        let given: serde_json::Map<String, Json> =
            serde_json::from_str(r#"{"vrrp": "fromInv1"}"#).unwrap();
        assert_eq!(resolve(&inv, &given, &names).unwrap()["vrrp"], "fromInv1");
        // No temp file is left beside it; a store others could read is
        // tightened when it is next read.
        assert_eq!(
            std::fs::read_dir(dir.path().join(".gantry"))
                .unwrap()
                .count(),
            1
        );
        std::fs::set_permissions(store_path(&inv), std::fs::Permissions::from_mode(0o644)).unwrap();
        resolve(&inv, &Default::default(), &names).unwrap();
        let meta = std::fs::metadata(store_path(&inv)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_journal_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.yaml");
        let a = journal_key(&inv).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(journal_key(&inv).unwrap(), a);
        let meta = std::fs::metadata(dir.path().join(".gantry/journal.key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
