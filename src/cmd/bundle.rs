//! `gantry bundle verify DIR`: the bundle against its manifest, offline.

use std::path::Path;

use crate::bundle::{self, MANIFEST};
use crate::error::{Error, Result};
use crate::loader;

pub fn verify(dir: &Path) -> Result<i32> {
    let m = check(dir)?;
    let bytes: u64 = m.artifacts.iter().map(|a| a.size).sum();
    crate::outln!(
        "ok: {} artifacts, {} bytes, every size and sha256 as {} says",
        m.artifacts.len(),
        bytes,
        dir.join(MANIFEST).display()
    );
    Ok(0)
}

/// The bundle checked against its manifest; every problem as bad input.
pub(super) fn check(dir: &Path) -> Result<bundle::Manifest> {
    let (m, pos) = loader::load_manifest(&dir.join(MANIFEST))?;
    let problems = bundle::verify(dir, &m, &pos);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    Ok(m)
}
