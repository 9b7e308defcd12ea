//! What a control plane's API says, read by one kubectl call per round
//! trip: every Node with its labels, and kube-system's Secrets and
//! DaemonSets by name. Every module that asks the API about the cluster
//! asks this same script (kubeadm: is the node registered; kubeadm_cluster:
//! the bootstrap token and the uploaded certificates; node_label: the
//! nodes' labels; kube_object: the CNI's DaemonSet), so the engine reads it
//! once for all of them: a rerun of the cluster playbook starts kubectl once
//! on the first control plane, not once per question (its start alone
//! costs about 45 ms of CPU, more than the request).
//!
//! It is a query (`Probe::Query`): the engine runs it beside the round
//! trip's other probes, so the API's answer costs the first control
//! plane's read-ahead no more than its slowest other probe. Only names and
//! labels are printed: a Secret's data never leaves the API server's answer
//! to kubectl.

use std::collections::{BTreeMap, BTreeSet};

use crate::remote::script::{command, quote};

/// kubectl's output: a line per object, `KIND<tab>NAME<tab>LABELS-JSON`.
const TEMPLATE: &str =
    r#"{range .items[*]}{.kind}{"\t"}{.metadata.name}{"\t"}{.metadata.labels}{"\n"}{end}"#;

/// The probe script, the same text for every asker with this kubeconfig.
/// Without the kubeconfig it says `no-cluster`; otherwise kubectl's output
/// (or its error), then `kubectl-rc` and its exit code. kubectl runs with
/// `GOGC=400`: a call this short spent a fifth of its CPU collecting
/// garbage (50 ms against 40 ms in the lab, on the first control plane's
/// critical path of every rerun), and its heap may grow to 5x what is live
/// instead of 2x.
pub fn probe(kubeconfig: &str) -> Result<String, String> {
    let get = command(&[
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "--request-timeout=10s",
        "-n",
        "kube-system",
        "get",
        "nodes,secrets,daemonsets",
        "-o",
        &format!("jsonpath={TEMPLATE}"),
    ])?;
    Ok(format!(
        "if [ -e {} ]; then GOGC=400 {get} 2>&1; rc=$?; echo; echo \"kubectl-rc $rc\"; else echo no-cluster; fi",
        quote(kubeconfig)?
    ))
}

/// The cluster as the probe read it.
#[derive(Debug, Default, PartialEq)]
pub struct View {
    /// Every Node, with its labels.
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// kube-system's Secrets, by name.
    pub secrets: BTreeSet<String>,
    /// kube-system's DaemonSets, by name.
    pub daemonsets: BTreeSet<String>,
}

/// What the probe's answer says.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// No kubeconfig on the host: no cluster to ask (yet).
    NoKubeconfig,
    /// kubectl failed: its words.
    Failed(String),
    View(View),
}

/// A kubectl probe's answer: kubectl's exit code (the `kubectl-rc` line,
/// None where there is none) and what it printed, that line left out.
pub fn said(out: &str) -> (Option<i32>, String) {
    let rc = out
        .lines()
        .find_map(|l| l.strip_prefix("kubectl-rc "))
        .and_then(|r| r.trim().parse::<i32>().ok());
    let said = out
        .lines()
        .filter(|l| !l.starts_with("kubectl-rc "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    (rc, said)
}

pub fn read(out: &str) -> Read {
    if out.trim() == "no-cluster" {
        return Read::NoKubeconfig;
    }
    let (rc, said) = said(out);
    if rc != Some(0) {
        return Read::Failed(said);
    }
    let mut v = View::default();
    for line in out.lines() {
        let mut f = line.splitn(3, '\t');
        let (Some(kind), Some(name)) = (f.next(), f.next()) else {
            continue;
        };
        let name = name.to_string();
        match kind {
            "Node" => {
                let labels = f
                    .next()
                    .filter(|l| !l.is_empty())
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or_default();
                v.nodes.insert(name, labels);
            }
            "Secret" => {
                v.secrets.insert(name);
            }
            "DaemonSet" => {
                v.daemonsets.insert(name);
            }
            _ => {}
        }
    }
    Read::View(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as the real kubectl v1.37 printed this template in the lab
    /// (objects without labels end with an empty field), for three nodes,
    /// kube-system's Secrets and Calico.
    const SAID: &str = "Node\tmaster1\t{\"kubernetes.io/hostname\":\"master1\",\"node-role.kubernetes.io/control-plane\":\"\"}\n\
        Node\tgpu1\t{\"gpu\":\"on\",\"node-role.kubernetes.io/worker\":\"\"}\n\
        Node\tbare\t\n\
        Secret\tbootstrap-token-abcdef\t\n\
        Secret\tkubeadm-certs\t\n\
        DaemonSet\tcalico-node\t{\"k8s-app\":\"calico-node\"}\n\
        \nkubectl-rc 0\n";

    #[test]
    fn reads_nodes_labels_secrets_and_daemonsets() {
        let Read::View(v) = read(SAID) else {
            panic!("{:?}", read(SAID))
        };
        assert_eq!(
            v.nodes.keys().collect::<Vec<_>>(),
            ["bare", "gpu1", "master1"]
        );
        assert_eq!(v.nodes["gpu1"]["gpu"], "on");
        assert!(v.nodes["bare"].is_empty());
        assert!(
            v.secrets.contains("kubeadm-certs") && v.secrets.contains("bootstrap-token-abcdef")
        );
        assert_eq!(v.daemonsets.iter().collect::<Vec<_>>(), ["calico-node"]);
        assert_eq!(read("no-cluster\n"), Read::NoKubeconfig);
        assert_eq!(
            read("The connection to the server 10.0.0.1:6553 was refused - did you specify the right host or port?\n\nkubectl-rc 1\n"),
            Read::Failed("The connection to the server 10.0.0.1:6553 was refused - did you specify the right host or port?".into())
        );
        // Part of the answer and an error (one kind forbidden): no guess.
        assert!(matches!(
            read("Node\tmaster1\t{}\nError from server (Forbidden): secrets is forbidden\n\nkubectl-rc 1\n"),
            Read::Failed(w) if w.contains("Forbidden")
        ));
    }

    /// The script is the same for every asker, so the engine reads it once;
    /// without the kubeconfig it says so at once, run by a real sh.
    #[test]
    fn one_script_and_no_cluster_without_a_kubeconfig() {
        let s = probe("/nonexistent/admin.conf").unwrap();
        assert_eq!(s, probe("/nonexistent/admin.conf").unwrap());
        assert!(s.contains("get 'nodes,secrets,daemonsets'"), "{s}");
        let o = std::process::Command::new("sh")
            .args(["-c", &s])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(o.stdout).unwrap(), "no-cluster\n");
    }
}
