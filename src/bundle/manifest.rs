//! The bundle's manifest: every artifact with what it is, where it came
//! from, and the size and sha256 it must have. One file, `manifest.yaml`:
//!
//! ```yaml
//! artifacts:
//!   - name: containerd
//!     kind: binary
//!     version: 1.7.27
//!     arch: amd64
//!     os: linux
//!     file: bin/containerd-1.7.27-linux-amd64.tar.gz
//!     size: 39012345
//!     sha256: 0d5e3c8a...
//!     source: https://github.com/containerd/containerd/releases/download/v1.7.27/containerd-1.7.27-linux-amd64.tar.gz
//! ```

use std::collections::HashMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::error::Diagnostic;

/// The manifest's name at the top of a bundle directory.
pub const MANIFEST: &str = "manifest.yaml";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A static binary or a tarball of them (containerd, runc, kubeadm).
    Binary,
    /// An OS package (.deb, .rpm).
    Package,
    /// A container image archive (`docker save`, `ctr export`).
    Image,
    /// A Helm chart (.tgz).
    Chart,
    /// A Kubernetes manifest (YAML).
    Manifest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    pub kind: Kind,
    pub version: String,
    /// `amd64`, `arm64`, or `all` for what runs anywhere.
    pub arch: String,
    /// `linux` for binaries and images; the OS family (`debian`, `rhel`)
    /// for packages.
    pub os: String,
    /// The path inside the bundle directory, with `/` between parts.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Where it was fetched from (a URL), for the record.
    #[serde(default)]
    pub source: String,
}

impl Manifest {
    /// What a loaded manifest must also be: each file a plain relative path
    /// inside the bundle, named once; each hash a sha256. Every problem,
    /// with the field it is at (`artifacts[2].file`).
    pub fn check(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            out.extend(check_file(i, &a.file, &mut seen));
            let mut err =
                |field: String, message: String| out.push(Diagnostic::error(field, message));
            let at = |f: &str| format!("artifacts[{i}].{f}");
            if let Err(e) = super::check_sha256(&a.sha256) {
                err(at("sha256"), e);
            }
            for (f, v) in [
                ("name", &a.name),
                ("version", &a.version),
                ("arch", &a.arch),
                ("os", &a.os),
            ] {
                if v.trim().is_empty() {
                    err(at(f), "must not be empty".into());
                }
            }
        }
        out
    }
}

/// `artifacts[i].file`, the manifest's or a fetch list's: a path inside
/// the bundle, named by no earlier artifact (`seen` holds those).
pub fn check_file<'a>(
    i: usize,
    file: &'a str,
    seen: &mut HashMap<&'a str, usize>,
) -> Vec<Diagnostic> {
    let field = format!("artifacts[{i}].file");
    let mut out = Vec::new();
    if let Err(e) = inside(file) {
        out.push(Diagnostic::error(field.clone(), e));
    }
    if let Some(j) = seen.insert(file, i) {
        out.push(Diagnostic::error(
            field,
            format!("{file} is listed twice (also artifacts[{j}])"),
        ));
    }
    out
}

impl Kind {
    /// The kind as the manifest writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Binary => "binary",
            Kind::Package => "package",
            Kind::Image => "image",
            Kind::Chart => "chart",
            Kind::Manifest => "manifest",
        }
    }
}

/// A path that stays inside the bundle: relative, no `..`, no `.`, no empty
/// part, no backslash, and not the manifest itself.
pub fn inside(file: &str) -> Result<(), String> {
    let p = Path::new(file);
    let plain = !file.is_empty()
        && !file.contains('\\')
        && !file
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "{file:?} must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)"
        ));
    }
    if file == MANIFEST {
        return Err(format!("{MANIFEST} is the manifest itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(file: &str, sha: &str) -> Artifact {
        Artifact {
            name: "x".into(),
            kind: Kind::Binary,
            version: "1".into(),
            arch: "amd64".into(),
            os: "linux".into(),
            file: file.into(),
            size: 1,
            sha256: sha.into(),
            source: String::new(),
        }
    }

    #[test]
    fn files_must_stay_inside_and_be_named_once() {
        let good = "a".repeat(64);
        let m = Manifest {
            artifacts: vec![
                art("bin/x", &good),
                art("bin/x", &good),
                art("../etc/passwd", &good),
                art("/etc/passwd", &good),
                art("a//b", &good),
                art("./a", &good),
                art(MANIFEST, &good),
                art("ok", "abc"),
            ],
        };
        let d: Vec<String> = m
            .check()
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        assert_eq!(
            d,
            [
                "artifacts[1].file: bin/x is listed twice (also artifacts[0])",
                "artifacts[2].file: \"../etc/passwd\" must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)",
                "artifacts[3].file: \"/etc/passwd\" must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)",
                "artifacts[4].file: \"a//b\" must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)",
                "artifacts[5].file: \"./a\" must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)",
                "artifacts[6].file: manifest.yaml is the manifest itself",
                "artifacts[7].sha256: \"abc\" is not a sha256 (64 lowercase hex digits)",
            ]
        );
    }
}
