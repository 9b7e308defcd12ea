//! The cluster's addons: the delivery guides' Helm charts, installed offline
//! from the bundle's chart archives by the `addons` role, in the order that
//! works (`CATALOGUE`'s). The inventory's `addons:` names the ones wanted;
//! each takes the guides' chart version, namespace and values unless the
//! inventory overrides them:
//!
//! ```yaml
//! addons:
//!   kube-prometheus-stack: {}            # 75.15.1, grafana off
//!   gpu-operator:
//!     version: v25.3.0                   # Kantaloupe's
//!     values: { driver: { enabled: true } }
//!   hami: {}
//!   kubernetes-dashboard: { enabled: false }
//! ```
//!
//! Calico is not here: the `calico` role applies its manifest before any
//! chart, as the install guide does.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::bundle::Kind;
use crate::error::Diagnostic;
use crate::inventory::Inventory;

/// One addon as the inventory gives it; every field optional.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddonSpec {
    /// `false` leaves it out (and leaves an installed release alone).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The chart's version; the bundle must hold it.
    pub version: Option<String>,
    pub namespace: Option<String>,
    /// Laid over the guides' values, key by key (a mapping).
    pub values: Option<Json>,
}

fn yes() -> bool {
    true
}

/// An addon gantry knows: its chart, where it goes, and the guides' choices.
pub struct Addon {
    /// The name the inventory uses, which is also the chart's.
    pub name: &'static str,
    /// The Helm release's name.
    pub release: &'static str,
    pub namespace: &'static str,
    /// The guides' chart version.
    pub version: &'static str,
    /// Namespace labels the addon needs before its pods can start.
    pub namespace_labels: &'static [(&'static str, &'static str)],
    /// Why it is there and what the defaults are, for `--help` and the README.
    pub about: &'static str,
    /// Where `bundle fetch` gets the chart archive, `{v}` the version.
    pub source: &'static str,
}

/// The addons, in install order: the Prometheus stack brings the
/// ServiceMonitor CRD the GPU Operator's and HAMi's monitors need, and
/// HAMi's device plugin runs on the `gpu=on` nodes the `node-labels` role
/// labelled before.
pub const CATALOGUE: &[Addon] = &[
    Addon {
        name: "kube-prometheus-stack",
        release: "prometheus",
        namespace: "monitoring",
        version: "75.15.1",
        namespace_labels: &[],
        about: "monitoring (Kantaloupe's recipe): grafana.enabled=false",
        source: "https://github.com/prometheus-community/helm-charts/releases/download/kube-prometheus-stack-{v}/kube-prometheus-stack-{v}.tgz",
    },
    Addon {
        name: "gpu-operator",
        release: "gpu-operator",
        namespace: "gpu-operator",
        version: "v25.10.1",
        namespace_labels: &[("pod-security.kubernetes.io/enforce", "privileged")],
        about: "NVIDIA GPU Operator (install guide's version): devicePlugin off (HAMi's runs), dcgmExporter.serviceMonitor on, driver and toolkit off (the driver is preinstalled, the toolkit is gantry's)",
        source: "https://helm.ngc.nvidia.com/nvidia/charts/gpu-operator-{v}.tgz",
    },
    Addon {
        name: "hami",
        release: "hami",
        namespace: "hami-system",
        version: "2.6.1",
        namespace_labels: &[],
        about: "HAMi GPU sharing: device plugin on gpu=on nodes, scheduler image tag = the cluster's Kubernetes version, ServiceMonitors on",
        source: "https://github.com/Project-HAMi/HAMi/releases/download/v{v}/hami-{v}.tgz",
    },
    Addon {
        name: "kubernetes-dashboard",
        release: "kubernetes-dashboard",
        namespace: "kubernetes-dashboard",
        version: "7.14.0",
        namespace_labels: &[],
        about: "the web UI (install guide's version), chart defaults",
        source: "https://github.com/kubernetes/dashboard/releases/download/kubernetes-dashboard-{v}/kubernetes-dashboard-{v}.tgz",
    },
];

/// The guides' values for an addon (before the inventory's).
fn default_values(name: &str, kubernetes: &str) -> Json {
    match name {
        "kube-prometheus-stack" => json!({"grafana": {"enabled": false}}),
        "gpu-operator" => json!({
            "devicePlugin": {"enabled": false},
            "dcgmExporter": {"serviceMonitor": {"enabled": true}},
            "driver": {"enabled": false},
            "toolkit": {"enabled": false},
        }),
        "hami" => json!({
            "scheduler": {"kubeScheduler": {"imageTag": kubernetes}, "serviceMonitor": {"enabled": true}},
            "devicePlugin": {"serviceMonitor": {"enabled": true}},
        }),
        _ => json!({}),
    }
}

/// `over` laid over `base`: mappings merge key by key, anything else
/// replaces (Helm's own rule for values files).
pub fn overlay(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => overlay(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The chart archives the inventory's addons need, for `bundle list` and
/// `bundle fetch`: (name, version, file in the bundle, source URL).
pub fn charts(inv: &Inventory) -> Vec<(String, String, String, String)> {
    wanted(inv)
        .into_iter()
        .map(|w| {
            let name = w.addon.name.to_string();
            let file = format!("charts/{name}-{}.tgz", w.version);
            let url = w.addon.source.replace("{v}", &w.version);
            (name, w.version, file, url)
        })
        .collect()
}

/// An addon the inventory enables, resolved.
struct Wanted<'a> {
    addon: &'a Addon,
    version: String,
    namespace: String,
    values: Json,
}

fn wanted(inv: &Inventory) -> Vec<Wanted<'static>> {
    let kubernetes = inv
        .cluster
        .kubernetes_version
        .clone()
        .unwrap_or_else(|| crate::versions::DEFAULT_KUBERNETES.into());
    CATALOGUE
        .iter()
        .filter_map(|a| {
            let spec = inv.addons.get(a.name)?;
            if !spec.enabled {
                return None;
            }
            let mut values = default_values(a.name, &kubernetes);
            if let Some(v) = spec.values.as_ref().filter(|v| v.is_object()) {
                overlay(&mut values, v);
            }
            Some(Wanted {
                addon: a,
                version: spec.version.clone().unwrap_or_else(|| a.version.into()),
                namespace: spec.namespace.clone().unwrap_or_else(|| a.namespace.into()),
                values,
            })
        })
        .collect()
}

/// The bundle's chart archive of that name and version.
fn chart<'a>(inv: &'a Inventory, name: &str, version: &str) -> Option<&'a crate::bundle::Artifact> {
    inv.bundle
        .as_ref()?
        .manifest
        .artifacts
        .iter()
        .find(|a| a.kind == Kind::Chart && a.name == name && a.version == version)
}

/// What the inventory's `addons:` must also be: each name one gantry knows,
/// its values a mapping, its namespace a DNS label, and its chart in the
/// bundle. Each problem at its field.
pub fn check(inv: &Inventory) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let known: Vec<&str> = CATALOGUE.iter().map(|a| a.name).collect();
    for (name, spec) in &inv.addons {
        let at = |f: &str| format!("addons.{name}{f}");
        if !known.contains(&name.as_str()) {
            out.push(Diagnostic::error(
                at(""),
                format!(
                    "unknown addon `{name}`, expected one of `{}`",
                    known.join("`, `")
                ),
            ));
            continue;
        }
        if let Some(v) = &spec.values
            && !v.is_object()
        {
            out.push(Diagnostic::error(
                at(".values"),
                format!(
                    "expected a mapping of Helm values (laid over the guides'), not {}",
                    kind_of(v)
                ),
            ));
        }
        if let Some(ns) = &spec.namespace
            && !crate::inventory::is_dns_label(ns, 63)
        {
            out.push(Diagnostic::error(
                at(".namespace"),
                format!("{ns:?} is not a namespace name (a DNS label: lowercase letters, digits and '-')"),
            ));
        }
        if let Some(v) = &spec.version
            && (v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b)))
        {
            out.push(Diagnostic::error(
                at(".version"),
                format!("{v:?} is not a chart version"),
            ));
        }
    }
    for w in wanted(inv) {
        let field = if inv.addons[w.addon.name].version.is_some() {
            format!("addons.{}.version", w.addon.name)
        } else {
            format!("addons.{}", w.addon.name)
        };
        match &inv.bundle {
            None => out.push(Diagnostic::error(
                field,
                "addons are installed from the bundle's chart archives: name the bundle (`bundle: DIR`)".to_string(),
            )),
            Some(b) if chart(inv, w.addon.name, &w.version).is_none() => {
                let held: Vec<&str> = b
                    .manifest
                    .artifacts
                    .iter()
                    .filter(|a| a.kind == Kind::Chart && a.name == w.addon.name)
                    .map(|a| a.version.as_str())
                    .collect();
                let has = if held.is_empty() {
                    "none".to_string()
                } else {
                    held.join(", ")
                };
                out.push(Diagnostic::error(
                    field,
                    format!(
                        "the bundle ({}) holds no chart {} {} (its versions: {has})",
                        b.dir.display(),
                        w.addon.name,
                        w.version
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    out
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// What templates see as `addons`: the enabled ones in install order, each
/// with `name`, `release`, `namespace`, `namespace_labels`, `version`,
/// `values` (the guides' with the inventory's laid over) and `chart`
/// (`path` on the controller, `file` (its name), `sha256`), or no `chart`
/// when the bundle does not hold it (validate has said so).
pub fn template_view(inv: &Inventory) -> Json {
    let list: Vec<Json> = wanted(inv)
        .into_iter()
        .map(|w| {
            let chart = chart(inv, w.addon.name, &w.version).map(|a| {
                let dir = &inv
                    .bundle
                    .as_ref()
                    .expect("a chart comes from a bundle")
                    .dir;
                json!({
                    "path": dir.join(&a.file).display().to_string(),
                    "file": a.file.rsplit('/').next().unwrap_or(&a.file),
                    "sha256": a.sha256,
                })
            });
            let labels: BTreeMap<&str, &str> = w.addon.namespace_labels.iter().copied().collect();
            json!({
                "name": w.addon.name,
                "release": w.addon.release,
                "namespace": w.namespace,
                "namespace_labels": labels,
                "version": w.version,
                "values": w.values,
                "chart": chart,
            })
        })
        .collect();
    Json::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_merges_mappings_and_replaces_the_rest() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": true});
        overlay(
            &mut base,
            &json!({"a": {"c": [3], "e": null}, "d": {"x": 1}}),
        );
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [3], "e": null}, "d": {"x": 1}})
        );
    }

    #[test]
    fn hami_schedules_with_the_clusters_kubernetes_version() {
        let v = default_values("hami", "v1.34.3");
        assert_eq!(v["scheduler"]["kubeScheduler"]["imageTag"], "v1.34.3");
        let v = default_values("gpu-operator", "v1.34.3");
        assert_eq!(v["devicePlugin"]["enabled"], false);
        assert_eq!(v["dcgmExporter"]["serviceMonitor"]["enabled"], true);
    }
}
