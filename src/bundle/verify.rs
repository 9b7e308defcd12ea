//! `gantry bundle verify DIR`: every listed file present, a plain file of
//! the listed size and sha256; nothing in the directory that the manifest
//! does not list. Every problem at once, each at the manifest line of its
//! artifact.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::manifest::{MANIFEST, Manifest};
use crate::error::{Diagnostic, Severity};
use crate::loader::Positions;

/// Check `dir` against its manifest. Files are hashed on all cores, each
/// streamed (memory does not grow with the bundle).
pub fn verify(dir: &Path, m: &Manifest, pos: &Positions) -> Vec<Diagnostic> {
    let problems: Mutex<Vec<(usize, Diagnostic)>> = Mutex::new(Vec::new());
    let err = |i: usize, field: String, message: String| {
        problems.lock().unwrap().push((
            i,
            Diagnostic {
                severity: Severity::Error,
                location: pos.locate(&field),
                field,
                message,
            },
        ))
    };
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(a) = m.artifacts.get(i) else { break };
                    let at = |f: &str| format!("artifacts[{i}].{f}");
                    if super::manifest::inside(&a.file).is_err() {
                        continue; // reported by Manifest::check
                    }
                    let path = dir.join(&a.file);
                    match std::fs::symlink_metadata(&path) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            err(i, at("file"), format!("{} is missing from the bundle", a.file));
                            continue;
                        }
                        Err(e) => {
                            err(i, at("file"), format!("{}: {e}", a.file));
                            continue;
                        }
                        Ok(md) if !md.file_type().is_file() => {
                            err(i, at("file"), format!("{} is not a plain file (a link, a directory or a device); the bundle holds plain files", a.file));
                            continue;
                        }
                        Ok(md) if md.len() != a.size => {
                            err(i, at("size"), format!("{} is {} bytes; the manifest says {}", a.file, md.len(), a.size));
                            continue;
                        }
                        Ok(_) => {}
                    }
                    match super::sha256_file(&path) {
                        Err(e) => err(i, at("file"), format!("{}: {e}", a.file)),
                        Ok((sha, _)) if sha != a.sha256 => err(
                            i,
                            at("sha256"),
                            format!("{} has sha256 {sha}; the manifest says {}", a.file, a.sha256),
                        ),
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    let mut problems = problems.into_inner().unwrap();
    problems.sort_by_key(|(i, _)| *i);
    let mut out: Vec<Diagnostic> = problems.into_iter().map(|(_, d)| d).collect();
    let listed: BTreeSet<PathBuf> = m.artifacts.iter().map(|a| PathBuf::from(&a.file)).collect();
    let mut found = Vec::new();
    walk(dir, Path::new(""), &mut found, &mut out);
    for f in found {
        if f != Path::new(MANIFEST) && !listed.contains(&f) {
            out.push(Diagnostic {
                severity: Severity::Error,
                location: None,
                field: String::new(),
                message: format!(
                    "{} is in the bundle but not in its manifest",
                    dir.join(&f).display()
                ),
            });
        }
    }
    out
}

/// Every file below `dir`, relative to the bundle's top, sorted.
fn walk(top: &Path, rel: &Path, found: &mut Vec<PathBuf>, out: &mut Vec<Diagnostic>) {
    let here = top.join(rel);
    let mut entries = match std::fs::read_dir(&here) {
        Ok(e) => e.filter_map(|e| e.ok()).collect::<Vec<_>>(),
        Err(e) => {
            out.push(Diagnostic {
                severity: Severity::Error,
                location: None,
                field: String::new(),
                message: format!("{}: {e}", here.display()),
            });
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(top, &r, found, out),
            _ => found.push(r),
        }
    }
}
