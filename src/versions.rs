//! The versions a cluster is built from: the delivery guide's where it names
//! one (Kubernetes v1.34.3, containerd 1.6.32, Helm v3.14.4, Calico v3.27.0),
//! gantry's choice where it does not (runc, crictl, the CNI plugins), and
//! the images kubeadm of that Kubernetes version pulls. The bundle's list
//! (`bundle::wanted`) and the roles (`kubernetes.*` in templates) read them
//! here, so the pause image containerd is told to use is the one the
//! bundle carries.

use crate::inventory::Inventory;

/// The component versions a cluster is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Versions {
    pub kubernetes: String,
    pub containerd: String,
    pub runc: String,
    pub crictl: String,
    pub cni_plugins: String,
    pub calico: String,
    pub helm: String,
    /// The images kubeadm of that Kubernetes version pulls
    /// (`kubeadm config images list`).
    pub pause: String,
    pub etcd: String,
    pub coredns: String,
}

/// The Kubernetes versions whose image set gantry knows: (version prefix,
/// pause, etcd, coredns), from `kubeadm config images list`.
const KUBEADM_IMAGES: &[(&str, &str, &str, &str)] = &[("v1.34.", "3.10.1", "3.6.4-0", "v1.12.1")];

/// The guide's Kubernetes version, used when the inventory names none.
pub const DEFAULT_KUBERNETES: &str = "v1.34.3";

impl Versions {
    /// The versions for this inventory: its `cluster.kubernetes_version`,
    /// the guide's for the rest. `None` when gantry does not know the image
    /// set of that Kubernetes version.
    pub fn for_inventory(inv: &Inventory) -> Option<Self> {
        let k8s = inv
            .cluster
            .kubernetes_version
            .clone()
            .unwrap_or_else(|| DEFAULT_KUBERNETES.into());
        if !supports(&k8s) {
            return None;
        }
        let &(_, pause, etcd, coredns) = KUBEADM_IMAGES
            .iter()
            .find(|(prefix, ..)| k8s.starts_with(prefix))?;
        Some(Versions {
            kubernetes: k8s,
            containerd: "1.6.32".into(),
            runc: "v1.1.12".into(),
            crictl: "v1.34.0".into(),
            cni_plugins: "v1.5.1".into(),
            calico: "v3.27.0".into(),
            helm: "v3.14.4".into(),
            pause: pause.into(),
            etcd: etcd.into(),
            coredns: coredns.into(),
        })
    }
}

/// Whether gantry knows the image set of this Kubernetes version (`v1.34.3`).
pub fn supports(version: &str) -> bool {
    KUBEADM_IMAGES.iter().any(|(prefix, ..)| {
        version
            .strip_prefix(prefix)
            .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The Kubernetes versions gantry can list a bundle for, for messages.
pub fn known_kubernetes() -> String {
    KUBEADM_IMAGES
        .iter()
        .map(|(p, ..)| format!("{p}x"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Versions {
    /// The image references kubeadm pulls, as containerd names them.
    pub fn pause_image(&self) -> String {
        format!("registry.k8s.io/pause:{}", self.pause)
    }

    /// What templates see as `kubernetes`.
    pub fn template_view(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.kubernetes,
            "containerd_version": self.containerd,
            "calico_version": self.calico,
            "images": {
                "pause": self.pause_image(),
                "etcd": format!("registry.k8s.io/etcd:{}", self.etcd),
                "coredns": format!("registry.k8s.io/coredns/coredns:{}", self.coredns),
            },
        })
    }
}
