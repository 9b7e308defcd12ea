//! `node_label`: labels on a Node object, set through the API (`kubectl
//! label --overwrite`) only when one is missing or has another value; run on
//! a control plane with the admin kubeconfig. Labels not named are left
//! alone. The kubelet cannot set `node-role.kubernetes.io/*` on its own Node
//! (the NodeRestriction admission plugin refuses it), so role labels come
//! this way.
//!
//! Every call of a run reads all nodes' labels from the cluster probe
//! (`cluster`), one kubectl call per round trip for all of them and for
//! every other API question.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes, cluster};
use crate::remote::script::command;


#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLabel {
    /// The Node's name (the host's name, as kubeadm registers it).
    pub node: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default = "super::admin_kubeconfig")]
    pub kubeconfig: String,
}


impl Module for NodeLabel {
    const NAME: &'static str = "node_label";
    const DOC: Doc = Doc {
        summary: "labels on a Node, set through the API (`kubectl label --overwrite`) when one is missing or differs; labels not named are left alone; all nodes' labels are read by one kubectl call per round trip",
        params: &[
            ("node", "the Node's name"),
            ("labels", "a mapping of label to value (\"\" for a role label)"),
            ("kubeconfig", "default /etc/kubernetes/admin.conf"),
        ],
        example: "- name: GPU nodes are labelled for HAMi\n  node_label:\n    node: gpu1\n    labels: { gpu: \"on\" }\n",
    };

    fn validate(&self) -> Result<(), String> {
        if !crate::inventory::is_rfc1123_label_seq(&self.node) {
            return Err(format!("node_label: node {:?} is not a node name", self.node));
        }
        if !self.kubeconfig.starts_with('/') {
            return Err(format!(
                "node_label: kubeconfig {:?} must be an absolute path on the host",
                self.kubeconfig
            ));
        }
        for (k, v) in &self.labels {
            crate::inventory::check_label(k, v).map_err(|e| format!("node_label: {e}"))?;
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().query("nodes", cluster::probe(&self.kubeconfig)?))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let node = &self.node;
        let wanted = || {
            self.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let read = cluster::read(&a.script("nodes")?.out);
        let have: Option<BTreeMap<String, String>> = match read {
            cluster::Read::NoKubeconfig => None,
            cluster::Read::Failed(why) => {
                return Err(format!("cannot read the nodes' labels: {why}"));
            }
            cluster::Read::View(ref v) => v.nodes.get(node).cloned(),
        };
        let missing: Vec<(&String, &String)> = match &have {
            Some(h) => self
                .labels
                .iter()
                .filter(|(k, v)| h.get(*k) != Some(*v))
                .collect(),
            None => self.labels.iter().collect(),
        };
        if missing.is_empty() {
            return Ok(Decision::unchanged(format!("{node} has {}", wanted())));
        }
        let pairs: Vec<String> = missing.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut argv = vec![
            "kubectl",
            "--kubeconfig",
            &self.kubeconfig,
            "label",
            "node",
            node,
            "--overwrite",
        ];
        argv.extend(pairs.iter().map(String::as_str));
        let label = command(&argv)?;
        let wait = command(&["kubectl", "--kubeconfig", &self.kubeconfig, "get", "node", node])?;
        let reason = match &have {
            None if read == cluster::Read::NoKubeconfig => format!("no cluster yet: {node} gets {} once it joins", pairs.join(", ")),
            None => format!("{node} has not registered yet: it gets {} once it has", pairs.join(", ")),
            Some(h) => {
                let was: Vec<String> = missing
                    .iter()
                    .map(|(k, v)| match h.get(*k) {
                        Some(old) => format!("{k}: {old:?} -> {v:?}"),
                        None => format!("{k}={v} (new)"),
                    })
                    .collect();
                format!("{node}: {}", was.join(", "))
            }
        };
        // A node that joined a moment ago may not have registered yet: the
        // kubelet creates its Node object after kubeadm returns.
        let script = format!(
            "i=0; until {wait} >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 60 ] || break; sleep 1; done\n{label}"
        );
        Ok(Decision::Change(Change::new(reason, Action::script(script, label))))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, unchanged};

    #[test]
    fn labels_only_what_is_missing_or_differs() {
        let m: NodeLabel = module(json!({"node": "gpu1", "labels": {"gpu": "on", "node-role.kubernetes.io/worker": ""}}));
        let listed = "Node\tmaster1\t{\"kubernetes.io/hostname\":\"master1\"}\nNode\tgpu1\t{\"gpu\":\"on\",\"node-role.kubernetes.io/worker\":\"\"}\nSecret\tgpu1\t\n\nkubectl-rc 0\n";
        assert_eq!(
            unchanged(decide(&m, vec![out(0, listed)]).unwrap()),
            "gpu1 has gpu=on, node-role.kubernetes.io/worker="
        );
        let off = listed.replace("\"gpu\":\"on\"", "\"gpu\":\"off\"");
        let c = change(decide(&m, vec![out(0, &off)]).unwrap());
        assert_eq!(c.reason, "gpu1: gpu: \"off\" -> \"on\"");
        let Action::Run { script, show, .. } = &c.actions()[0] else { panic!() };
        assert_eq!(show, "kubectl --kubeconfig /etc/kubernetes/admin.conf label node gpu1 --overwrite 'gpu=on'");
        assert!(script.contains("until kubectl --kubeconfig /etc/kubernetes/admin.conf get node gpu1"), "{script}");
        // Not registered yet, no cluster yet: labelled once there.
        let c = change(decide(&m, vec![out(0, "Node\tmaster1\t{}\n\nkubectl-rc 0\n")]).unwrap());
        assert!(c.reason.starts_with("gpu1 has not registered yet"), "{}", c.reason);
        let c = change(decide(&m, vec![out(0, "no-cluster\n")]).unwrap());
        assert!(c.reason.starts_with("no cluster yet"), "{}", c.reason);
        // kubectl's failure is the task's.
        let e = decide(&m, vec![out(0, "error: the server doesn't have a resource type \"nodes\"\n\nkubectl-rc 1\n")]).unwrap_err();
        assert!(e.contains("doesn't have a resource type"), "{e}");
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        for labels in [json!({"gpu": "o n"}), json!({"-bad": "x"}), json!({"a/b/c": "x"})] {
            let e = crate::modules::testing::refused::<NodeLabel>(json!({"node": "gpu1", "labels": labels.clone()}));
            assert!(e.contains("is not a label"), "{labels}: {e}");
        }
    }
}
