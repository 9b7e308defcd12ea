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

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde_json::{Value as Json, json};

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

/// What templates see as `bundle`, for hosts of these architectures:
/// - `dir`;
/// - `files[FILE]`: each artifact's `path` on the controller, `sha256`,
///   `size`, `name`, `version`, `kind`, `arch` and `os`;
/// - `images[ARCH]`: the image archives for that architecture (and `all`),
///   each with `file`, `path`, `name` (the file's own name), `sha256` and
///   `ref` (`name:version`), for the containerd role's loop;
/// - `binaries[ARCH][NAME]`: the binaries for that architecture (and `all`)
///   by name, each with `path`, `sha256`, `version` and `file`.
pub fn template_view(dir: &Path, m: &Manifest, arches: &BTreeSet<&str>) -> Json {
    let path = |a: &Artifact| dir.join(&a.file).display().to_string();
    let files: serde_json::Map<String, Json> = m
        .artifacts
        .iter()
        .map(|a| {
            let v = json!({
                "path": path(a),
                "sha256": a.sha256,
                "size": a.size,
                "name": a.name,
                "version": a.version,
                "kind": a.kind,
                "arch": a.arch,
                "os": a.os,
            });
            (a.file.clone(), v)
        })
        .collect();
    // Manifests (Calico's) by name: they serve every architecture.
    let manifests: serde_json::Map<String, Json> = m
        .artifacts
        .iter()
        .filter(|a| a.kind == Kind::Manifest)
        .map(|a| {
            let v =
                json!({"path": path(a), "sha256": a.sha256, "version": a.version, "file": a.file});
            (a.name.clone(), v)
        })
        .collect();
    let mut images: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
    let mut binaries: BTreeMap<&str, serde_json::Map<String, Json>> = BTreeMap::new();
    for &arch in arches {
        let (imgs, bins) = (
            images.entry(arch).or_default(),
            binaries.entry(arch).or_default(),
        );
        for a in m
            .artifacts
            .iter()
            .filter(|a| a.arch == arch || a.arch == "all")
        {
            match a.kind {
                Kind::Image => imgs.push(json!({
                    "file": a.file,
                    "path": path(a),
                    "name": a.file.rsplit('/').next().unwrap_or(&a.file),
                    "sha256": a.sha256,
                    "ref": format!("{}:{}", a.name, a.version),
                })),
                Kind::Binary => {
                    let v = json!({
                        "path": path(a),
                        "sha256": a.sha256,
                        "version": a.version,
                        "file": a.file,
                    });
                    bins.insert(a.name.clone(), v);
                }
                _ => {}
            }
        }
    }
    json!({
        "dir": dir.display().to_string(),
        "files": files,
        "images": images,
        "binaries": binaries,
        "manifests": manifests,
    })
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

    /// Each architecture sees its own images and binaries and those for
    /// `all`, and nothing of another architecture's.
    #[test]
    fn template_view_sorts_images_and_binaries_by_architecture() {
        let art = |name: &str, kind: Kind, arch: &str, file: &str| Artifact {
            name: name.into(),
            kind,
            version: "1".into(),
            arch: arch.into(),
            os: "linux".into(),
            file: file.into(),
            size: 1,
            sha256: "a".repeat(64),
            source: String::new(),
        };
        let m = Manifest {
            artifacts: vec![
                art(
                    "registry.k8s.io/pause",
                    Kind::Image,
                    "amd64",
                    "images/amd64/pause.tar",
                ),
                art(
                    "registry.k8s.io/pause",
                    Kind::Image,
                    "arm64",
                    "images/arm64/pause.tar",
                ),
                art("kubeadm", Kind::Binary, "amd64", "bin/amd64/kubeadm"),
                art("tool", Kind::Binary, "all", "bin/tool"),
                art("calico", Kind::Manifest, "all", "manifests/calico.yaml"),
            ],
        };
        let v = template_view(Path::new("/b"), &m, &["amd64"].into());
        let refs: Vec<&str> = v["images"]["amd64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap())
            .collect();
        assert_eq!(refs, ["/b/images/amd64/pause.tar"]);
        assert_eq!(v["images"]["amd64"][0]["ref"], "registry.k8s.io/pause:1");
        assert_eq!(v["images"]["amd64"][0]["name"], "pause.tar");
        let bins: Vec<&String> = v["binaries"]["amd64"].as_object().unwrap().keys().collect();
        assert_eq!(bins, ["kubeadm", "tool"]);
        assert!(v["images"]["arm64"].is_null());
        assert_eq!(v["files"].as_object().unwrap().len(), 5);
        assert_eq!(v["files"]["bin/tool"]["path"], "/b/bin/tool");
    }

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
