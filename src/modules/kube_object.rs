//! `kube_object`: whether an object is in the cluster, read from a control
//! plane and never changed. `register` keeps `stdout`: `kind/name` (as
//! `kubectl get -o name` prints it) when the object is there, empty when it
//! is not or there is no cluster yet; without a `name`, every object of the
//! kind, a line each (the first control plane reads the Nodes once for
//! every joining host's kubeadm task). Its answer comes from the cluster
//! probe every API question of a round trip shares (`cluster`): a Node, or
//! a DaemonSet or Secret in kube-system. So a rerun's "is Calico there" is
//! read ahead with the rest, in the same one kubectl call.

use serde::Deserialize;

use super::{Answers, Decision, Doc, Module, Probes, cluster};


#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Kind {
    Node,
    /// In kube-system.
    DaemonSet,
    /// In kube-system.
    Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeObject {
    pub kind: Kind,
    /// Unset: every object of the kind.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "super::admin_kubeconfig")]
    pub kubeconfig: String,
}


impl Module for KubeObject {
    const NAME: &'static str = "kube_object";
    const DOC: Doc = Doc {
        summary: "reads whether an object is in the cluster (a Node, or a DaemonSet or Secret in kube-system) and registers `kind/name` as stdout when it is, empty when not (without `name`: every object of the kind, a line each); read by the one kubectl call a round trip's API questions share; changes nothing, and plan reads it too",
        params: &[
            ("kind", "Node, DaemonSet or Secret (the last two in kube-system)"),
            ("name", "the object's name; unset, every object of the kind is listed, a `kind/name` line each"),
            ("kubeconfig", "default /etc/kubernetes/admin.conf"),
        ],
        example: "- name: Calico in the cluster\n  kube_object:\n    kind: DaemonSet\n    name: calico-node\n  register: calico_daemonset\n",
    };

    fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.name
            && !crate::inventory::is_rfc1123_label_seq(name)
        {
            return Err(format!(
                "kube_object: name {name:?} is not an object name (lowercase letters, digits, '-' and '.')"
            ));
        }
        if !self.kubeconfig.starts_with('/') {
            return Err(format!(
                "kube_object: kubeconfig {:?} must be an absolute path on the host",
                self.kubeconfig
            ));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().query("cluster", cluster::probe(&self.kubeconfig)?))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let kind = format!("{:?}", self.kind).to_lowercase();
        let asked = match &self.name {
            Some(name) => format!("{kind}/{name}"),
            None => format!("the cluster's {kind}s"),
        };
        let v = match cluster::read(&a.script("cluster")?.out) {
            cluster::Read::NoKubeconfig => {
                return Ok(Decision::Read {
                    reason: format!("no cluster yet ({} is not there)", self.kubeconfig),
                    output: String::new(),
                });
            }
            cluster::Read::Failed(why) => {
                return Err(format!("cannot read {asked} from the cluster: {why}"));
            }
            cluster::Read::View(v) => v,
        };
        let names: Vec<&String> = match self.kind {
            Kind::Node => v.nodes.keys().collect(),
            Kind::DaemonSet => v.daemonsets.iter().collect(),
            Kind::Secret => v.secrets.iter().collect(),
        };
        let listed: Vec<String> = names
            .into_iter()
            .filter(|n| self.name.as_ref().is_none_or(|want| want == *n))
            .map(|n| format!("{kind}/{n}"))
            .collect();
        let reason = match (&self.name, listed.len()) {
            (Some(_), 0) => format!("{asked} is not in the cluster"),
            (Some(_), _) => format!("{asked} is in the cluster"),
            (None, n) => format!("{n} {kind}s in the cluster"),
        };
        Ok(Decision::Read {
            reason,
            output: listed.join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{decide, module, out, refused};

    fn read(d: Decision) -> (String, String) {
        match d {
            Decision::Read { reason, output } => (reason, output),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn reads_the_object_from_the_cluster_probe_and_changes_nothing() {
        let m: KubeObject = module(json!({"kind": "DaemonSet", "name": "calico-node"}));
        assert_eq!(
            m.probes().unwrap().list().next().unwrap().script().unwrap(),
            cluster::probe(crate::modules::ADMIN_KUBECONFIG).unwrap()
        );
        let there = "Node\tmaster1\t{}\nSecret\tcalico-node\t\nDaemonSet\tcalico-node\t{}\n\nkubectl-rc 0\n";
        assert_eq!(
            read(decide(&m, vec![out(0, there)]).unwrap()),
            ("daemonset/calico-node is in the cluster".into(), "daemonset/calico-node".into())
        );
        // A Secret of that name is not the DaemonSet.
        let secret = there.replace("DaemonSet\tcalico-node\t{}\n", "");
        assert_eq!(read(decide(&m, vec![out(0, &secret)]).unwrap()).1, "");
        assert_eq!(read(decide(&m, vec![out(0, "no-cluster\n")]).unwrap()).1, "");
        let e = decide(&m, vec![out(0, "Unable to connect to the server: EOF\n\nkubectl-rc 1\n")]).unwrap_err();
        assert_eq!(e, "cannot read daemonset/calico-node from the cluster: Unable to connect to the server: EOF");
        // No name: every object of the kind.
        let nodes: KubeObject = module(json!({"kind": "Node"}));
        let two = "Node\tmaster1\t{}\nNode\tworker1\t{}\nSecret\tkubeadm-certs\t\n\nkubectl-rc 0\n";
        assert_eq!(
            read(decide(&nodes, vec![out(0, two)]).unwrap()),
            ("2 nodes in the cluster".into(), "node/master1\nnode/worker1".into())
        );
        assert_eq!(read(decide(&nodes, vec![out(0, "no-cluster\n")]).unwrap()).1, "");
    }

    #[test]
    fn refuses_other_kinds_and_names() {
        assert!(refused::<KubeObject>(json!({"kind": "Pod", "name": "x"})).contains("unknown variant"));
        assert!(refused::<KubeObject>(json!({"kind": "Node", "name": "Master_1"})).contains("not an object name"));
        assert!(refused::<KubeObject>(json!({"kind": "Node", "name": "m", "kubeconfig": "admin.conf"})).contains("absolute path"));
    }
}
