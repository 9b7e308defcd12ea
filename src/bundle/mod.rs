//! The offline bundle: a directory of artifacts (binaries, OS packages,
//! image archives, charts, manifests) and the one manifest that lists each
//! with its size and sha256. `verify` checks a directory against its
//! manifest before any host is touched; the `upload` module carries an
//! artifact to a host, streamed and checked there by the same hash.
//!
//! The manifest (`manifest.yaml` at the bundle's top) is read by `loader`.

pub mod fetch;
pub mod manifest;
pub mod verify;
pub mod wanted;

pub use manifest::{Artifact, Kind, MANIFEST, Manifest};
pub use verify::verify;

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A file's sha256 (lowercase hex) and size, read in 1 MiB pieces: memory
/// stays flat whatever the file's size.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hex::encode(h.finalize()), n))
}

/// A sha256 as the manifest and the `upload` module take it: 64 lowercase
/// hex digits.
pub fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("{s:?} is not a sha256 (64 lowercase hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_file_matches_the_known_digest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                3
            )
        );
        assert!(
            check_sha256("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .is_ok()
        );
        assert!(
            check_sha256("BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .is_err()
        );
        assert!(check_sha256("ba78").is_err());
    }
}
