//! `gantry bundle verify|list|fetch`: the offline bundle, made and checked
//! on the controller. Nothing here talks to a host.

use std::path::Path;

use crate::bundle::fetch::{self, Outcome};
use crate::bundle::wanted::{self, WantedList};
use crate::bundle::{self, MANIFEST, Manifest};
use crate::error::{Diagnostic, Error, Result};
use crate::loader;

pub fn verify(dir: &Path, inventory: Option<&Path>) -> Result<i32> {
    let need = inventory.map(needs).transpose()?;
    // Both kinds of problem in one run: the bundle's own, and what it lacks
    // of the inventory's needs.
    let (m, mut problems) = read_and_verify(dir)?;
    if let (Some(need), Some(inv)) = (&need, inventory) {
        problems.extend(wanted::lacks(need, &m).into_iter().map(|d| located(d, inv)));
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let bytes: u64 = m.artifacts.iter().map(|a| a.size).sum();
    crate::outln!(
        "ok: {} artifacts, {} bytes, every size and sha256 as {} says{}",
        m.artifacts.len(),
        bytes,
        dir.join(MANIFEST).display(),
        if inventory.is_some() {
            "; nothing the inventory needs is missing"
        } else {
            ""
        }
    );
    Ok(0)
}

/// A need of the inventory as a whole, named by the inventory's file.
fn located(mut d: Diagnostic, inv: &Path) -> Diagnostic {
    d.field = inv.display().to_string();
    d
}

/// The manifest, read once, and the bundle's problems against it.
fn read_and_verify(dir: &Path) -> Result<(Manifest, Vec<Diagnostic>)> {
    let (m, pos) = loader::load_manifest(&dir.join(MANIFEST))?;
    let problems = bundle::verify(dir, &m, &pos);
    Ok((m, problems))
}

/// The bundle checked against its manifest; every problem as bad input.
pub(super) fn check(dir: &Path) -> Result<Manifest> {
    let (m, problems) = read_and_verify(dir)?;
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    Ok(m)
}

/// What the inventory's cluster needs in its bundle.
fn needs(inventory: &Path) -> Result<WantedList> {
    let (inv, warnings) = loader::load_inventory_for_bundle(inventory)?;
    for w in warnings {
        eprintln!("{w}");
    }
    // The inventory's check refuses a version gantry does not know.
    Ok(wanted::for_inventory(&inv).expect("a checked inventory has a known Kubernetes version"))
}

pub fn list(inventory: &Path, yaml: bool) -> Result<i32> {
    let need = needs(inventory)?;
    if yaml {
        crate::out!("{}", loader::to_yaml(&need));
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = need
        .artifacts
        .iter()
        .map(|w| {
            [
                w.kind.as_str().to_string(),
                w.name.clone(),
                w.version.clone(),
                w.arch.clone(),
                w.file.clone(),
                match (&w.sha256, &w.sha256_url, w.source.starts_with("docker://")) {
                    (Some(_), ..) => "pinned".into(),
                    (None, Some(_), _) => "published checksum".into(),
                    (None, None, true) => "docker save".into(),
                    (None, None, false) => "unpinned".into(),
                },
            ]
        })
        .collect();
    let head = ["KIND", "NAME", "VERSION", "ARCH", "FILE", "SHA256 FROM"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s
    };
    crate::outln!("{}", line(head));
    for r in &rows {
        crate::outln!("{}", line(r.each_ref().map(String::as_str)));
    }
    crate::outln!(
        "{} artifacts; `gantry bundle fetch DIR -i {}` downloads them",
        rows.len(),
        inventory.display()
    );
    Ok(0)
}

pub fn fetch(
    dir: &Path,
    inventory: &Path,
    list: Option<&Path>,
    jobs: usize,
    trust_first_fetch: bool,
) -> Result<i32> {
    let need = match list {
        Some(l) => loader::load_wanted(l)?,
        None => needs(inventory)?,
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // An existing manifest must load, so that what it lists is kept.
    let manifest_path = dir.join(MANIFEST);
    let mut manifest = if manifest_path.exists() {
        loader::load_manifest(&manifest_path)?.0
    } else {
        Manifest::default()
    };
    let opts = fetch::Options {
        dir: dir.to_path_buf(),
        jobs,
        trust_first_fetch,
        attempts: 5,
        read_timeout: std::time::Duration::from_secs(60),
    };
    let outcomes = fetch::fetch(&need.artifacts, &opts);
    let (mut present, mut fetched, mut bytes, mut missing) = (0, 0, 0u64, 0);
    for (w, o) in need.artifacts.iter().zip(outcomes) {
        let got = match o {
            Outcome::Present(a) => {
                present += 1;
                a
            }
            Outcome::Fetched {
                artifact,
                bytes: n,
                resumed_at,
                trusted,
            } => {
                fetched += 1;
                bytes += n;
                let mut how = format!("{n} bytes");
                if resumed_at > 0 {
                    how.push_str(&format!(", resumed at byte {resumed_at}"));
                }
                if trusted {
                    how.push_str(&format!(
                        "; nothing pinned its sha256: {} recorded as it arrived",
                        artifact.sha256
                    ));
                }
                crate::outln!("fetched {} ({how})", w.file);
                artifact
            }
            Outcome::NotHttp(why) => {
                missing += 1;
                crate::outln!("not fetched {}: {why}", w.file);
                continue;
            }
            Outcome::Failed(why) => {
                missing += 1;
                crate::outln!("FAILED {}: {why}", w.file);
                continue;
            }
        };
        match manifest.artifacts.iter_mut().find(|a| a.file == got.file) {
            Some(a) => *a = got,
            None => manifest.artifacts.push(got),
        }
    }
    loader::write_manifest(&manifest_path, &manifest)?;
    crate::outln!(
        "{} artifacts: {fetched} fetched ({bytes} bytes), {present} already there, {missing} missing; {} lists {}",
        need.artifacts.len(),
        manifest_path.display(),
        manifest.artifacts.len()
    );
    Ok(if missing > 0 { 1 } else { 0 })
}
