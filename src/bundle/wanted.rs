//! What a cluster needs in its bundle, derived from the inventory rather than
//! curated by hand (KubeKey #1954, #2433: a manifest that missed `pause:3.8`
//! broke offline installs). `gantry bundle list` prints it, `gantry bundle
//! fetch` downloads it, and `gantry bundle verify --inventory` reports what
//! the bundle lacks of it.
//!
//! The versions come from `versions`. gantry carries no table of
//! checksums: an artifact's sha256 is pinned in the list, or taken from the
//! checksum file its project publishes beside it (`sha256_url`), and from
//! then on pinned in the bundle's manifest.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{Kind, Manifest};
use crate::error::Diagnostic;
use crate::inventory::Inventory;
use crate::versions::Versions;

/// One artifact the cluster needs: what it is, where it comes from, and
/// how its sha256 is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wanted {
    pub name: String,
    pub kind: Kind,
    pub version: String,
    pub arch: String,
    pub os: String,
    /// The path inside the bundle directory.
    pub file: String,
    /// An `http(s)://` URL that `bundle fetch` downloads, or a
    /// `docker://` image reference that it cannot (save those with
    /// `docker save` or `skopeo copy` and list them in the manifest).
    pub source: String,
    /// The pinned sha256, when known before the download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A checksum file the project publishes beside the artifact
    /// (`HASH` or `HASH  NAME` lines), read when no sha256 is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_url: Option<String>,
    /// Why the cluster needs it: the hosts or the role that use it.
    #[serde(rename = "for", default, skip_serializing_if = "String::is_empty")]
    pub for_: String,
}

/// The list `bundle list --yaml` prints and `bundle fetch --list` reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WantedList {
    pub artifacts: Vec<Wanted>,
}

impl WantedList {
    /// What a loaded list must also be: each file inside the bundle and
    /// named once (as in the manifest), each pinned hash a sha256, each
    /// source named.
    pub fn check(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for (i, w) in self.artifacts.iter().enumerate() {
            out.extend(super::manifest::check_file(i, &w.file, &mut seen));
            let at = |f: &str| format!("artifacts[{i}].{f}");
            if let Some(s) = &w.sha256
                && let Err(e) = super::check_sha256(s)
            {
                out.push(Diagnostic::error(at("sha256"), e));
            }
            if w.source.trim().is_empty() {
                out.push(Diagnostic::error(at("source"), "must not be empty"));
            }
        }
        out
    }
}

/// Everything the inventory's cluster needs, per architecture present.
/// `None` when its Kubernetes version is one gantry does not know.
pub fn for_inventory(inv: &Inventory) -> Option<WantedList> {
    let v = Versions::for_inventory(inv)?;
    let arches: BTreeSet<&str> = inv.hosts.iter().map(|h| h.arch.as_str()).collect();
    let mut out = Vec::new();
    for arch in arches {
        let hosts: Vec<&str> = inv
            .hosts
            .iter()
            .filter(|h| h.arch.as_str() == arch)
            .map(|h| h.name.as_str())
            .collect();
        let every = format!("{arch} hosts: {}", hosts.join(", "));
        out.extend(binaries(&v, arch, &every));
        out.extend(images(&v, arch, &every));
    }
    out.push(Wanted {
        name: "calico".into(),
        kind: Kind::Manifest,
        version: v.calico.clone(),
        arch: "all".into(),
        os: "linux".into(),
        file: format!("manifests/calico-{}.yaml", v.calico),
        source: format!(
            "https://raw.githubusercontent.com/projectcalico/calico/{}/manifests/calico.yaml",
            v.calico
        ),
        sha256: None,
        sha256_url: None,
        for_: "the CNI, applied once from the first control plane".into(),
    });
    for (name, version, file, source) in crate::addons::charts(inv) {
        out.push(Wanted {
            name: name.clone(),
            kind: Kind::Chart,
            version,
            arch: "all".into(),
            os: "linux".into(),
            file,
            source,
            sha256: None,
            sha256_url: None,
            for_: format!("the addon {name}, installed from the first control plane"),
        });
    }
    Some(WantedList { artifacts: out })
}

fn binaries(v: &Versions, arch: &str, every: &str) -> Vec<Wanted> {
    let bin = |name: &str, version: &str, file: String, source: String, sums: String| Wanted {
        name: name.into(),
        kind: Kind::Binary,
        version: version.into(),
        arch: arch.into(),
        os: "linux".into(),
        file,
        source,
        sha256: None,
        sha256_url: Some(sums),
        for_: every.into(),
    };
    let k8s = &v.kubernetes;
    let mut out: Vec<Wanted> = ["kubeadm", "kubelet", "kubectl"]
        .iter()
        .map(|b| {
            let url = format!("https://dl.k8s.io/release/{k8s}/bin/linux/{arch}/{b}");
            bin(
                b,
                k8s,
                format!("bin/{arch}/{b}-{k8s}"),
                url.clone(),
                format!("{url}.sha256"),
            )
        })
        .collect();
    let c = &v.containerd;
    let tgz = format!("containerd-{c}-linux-{arch}.tar.gz");
    let url = format!("https://github.com/containerd/containerd/releases/download/v{c}/{tgz}");
    out.push(bin(
        "containerd",
        c,
        format!("bin/{arch}/{tgz}"),
        url.clone(),
        format!("{url}.sha256sum"),
    ));
    let r = &v.runc;
    let base = format!("https://github.com/opencontainers/runc/releases/download/{r}");
    out.push(bin(
        "runc",
        r,
        format!("bin/{arch}/runc-{r}"),
        format!("{base}/runc.{arch}"),
        format!("{base}/runc.sha256sum"),
    ));
    let cr = &v.crictl;
    let tgz = format!("crictl-{cr}-linux-{arch}.tar.gz");
    let url = format!("https://github.com/kubernetes-sigs/cri-tools/releases/download/{cr}/{tgz}");
    out.push(bin(
        "crictl",
        cr,
        format!("bin/{arch}/{tgz}"),
        url.clone(),
        format!("{url}.sha256"),
    ));
    let cni = &v.cni_plugins;
    let tgz = format!("cni-plugins-linux-{arch}-{cni}.tgz");
    let url =
        format!("https://github.com/containernetworking/plugins/releases/download/{cni}/{tgz}");
    out.push(bin(
        "cni-plugins",
        cni,
        format!("bin/{arch}/{tgz}"),
        url.clone(),
        format!("{url}.sha256"),
    ));
    let h = &v.helm;
    let tgz = format!("helm-{h}-linux-{arch}.tar.gz");
    let url = format!("https://get.helm.sh/{tgz}");
    out.push(bin(
        "helm",
        h,
        format!("bin/{arch}/{tgz}"),
        url.clone(),
        format!("{url}.sha256sum"),
    ));
    out
}

fn images(v: &Versions, arch: &str, every: &str) -> Vec<Wanted> {
    let k8s = v.kubernetes.as_str();
    let calico = v.calico.as_str();
    let refs: Vec<(&str, &str, &str)> = vec![
        ("registry.k8s.io", "kube-apiserver", k8s),
        ("registry.k8s.io", "kube-controller-manager", k8s),
        ("registry.k8s.io", "kube-scheduler", k8s),
        ("registry.k8s.io", "kube-proxy", k8s),
        ("registry.k8s.io", "pause", &v.pause),
        ("registry.k8s.io", "etcd", &v.etcd),
        ("registry.k8s.io/coredns", "coredns", &v.coredns),
        ("docker.io/calico", "cni", calico),
        ("docker.io/calico", "node", calico),
        ("docker.io/calico", "kube-controllers", calico),
    ];
    refs.into_iter()
        .map(|(repo, name, tag)| Wanted {
            name: format!("{repo}/{name}"),
            kind: Kind::Image,
            version: tag.into(),
            arch: arch.into(),
            os: "linux".into(),
            file: format!(
                "images/{arch}/{}_{tag}.tar",
                format!("{repo}/{name}").replace('/', "_")
            ),
            source: format!("docker://{repo}/{name}:{tag}"),
            sha256: None,
            sha256_url: None,
            for_: every.into(),
        })
        .collect()
}

/// What the inventory needs that the bundle's manifest does not hold (by
/// kind, name, version and architecture), one error each at `bundle`.
pub fn lacks(wanted: &WantedList, have: &Manifest) -> Vec<Diagnostic> {
    wanted
        .artifacts
        .iter()
        .filter(|w| {
            !have.artifacts.iter().any(|a| {
                a.kind == w.kind && a.name == w.name && a.version == w.version && a.arch == w.arch
            })
        })
        .map(|w| {
            Diagnostic::error(
                "bundle",
                format!(
                    "the bundle lacks {} {} {} ({}), which the inventory needs for {}",
                    w.kind.as_str(),
                    w.name,
                    w.version,
                    w.arch,
                    w.for_
                ),
            )
        })
        .collect()
}
