//! `kubeadm`: a node brought into the cluster by `kubeadm init` (the first
//! control plane) or `kubeadm join`, from a config file already on the host,
//! so the bootstrap token and the certificate key never reach a command line.
//!
//! A node counts as done only when its files and the cluster agree: the
//! kubeconfig kubeadm wrote, the kubelet's config, on a control plane the
//! etcd manifest, and the Node object, read from the API with the node's own
//! kubeconfig. Then nothing runs, so a second apply invokes no kubeadm.
//! A node that has none of its files is brought in. A half-done node (some
//! files and not others, or files the cluster does not know) is reset and
//! joined again. A first control plane whose cluster answers but holds no
//! Node for it is refused, not reset: resetting it would wipe the cluster's
//! etcd. And when the API cannot be read the node is left alone and the
//! task fails: an outage is no reason to reset anything.

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes, cluster};
use crate::remote::script::{command, quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// `kubeadm init`: the first control plane.
    Init,
    /// `kubeadm join` as a control plane (`controlPlane` in the config).
    JoinControlPlane,
    /// `kubeadm join` as a worker.
    JoinWorker,
    /// `kubeadm reset`, then what it leaves: etcd's data, the CNI config
    /// and gantry's kubeadm configs (they hold the secrets).
    Reset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubeadm {
    pub step: Step,
    /// The kubeadm config file on the host (0600: it holds the secrets);
    /// not for `reset`.
    #[serde(default)]
    pub config: Option<String>,
    /// The node's name in the cluster.
    pub node: String,
    /// `init` only: the cluster's API endpoint (`host:port`). When the node
    /// holds nothing of Kubernetes but a cluster answers there, init is
    /// refused: it would start a second cluster beside the running one (the
    /// first control plane was reset, the others still run it).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Joins: the first control plane's reading of the cluster's Nodes
    /// (`kube_object` with kind Node: `node/NAME` lines). When it lists
    /// any, the node is judged by it and asks the API nothing itself: one
    /// kubectl call on the first control plane stands for one per host.
    /// Empty (no cluster there, or that host is not in the run): the node
    /// asks with its own kubeconfig.
    #[serde(default)]
    pub nodes: Option<String>,
}

const K8S: &str = "/etc/kubernetes";
/// What `reset` removes besides what kubeadm reset does.
const LEFT_BY_KUBEADM_RESET: &str = "/var/lib/etcd /etc/cni/net.d /etc/kubernetes/gantry";

impl Kubeadm {
    fn control_plane(&self) -> bool {
        matches!(self.step, Step::Init | Step::JoinControlPlane)
    }

    fn config(&self) -> Result<&str, String> {
        self.config
            .as_deref()
            .ok_or_else(|| "kubeadm: init and join need `config`".to_string())
    }

    /// The Nodes the first control plane read, when it read any.
    fn listed(&self) -> Option<Vec<&str>> {
        let names: Vec<&str> = self
            .nodes
            .as_deref()?
            .lines()
            .filter_map(|l| l.trim().strip_prefix("node/"))
            .collect();
        (!names.is_empty()).then_some(names)
    }

    /// The kubeconfig the node's state is read with.
    fn kubeconfig(&self) -> String {
        if self.control_plane() {
            format!("{K8S}/admin.conf")
        } else {
            format!("{K8S}/kubelet.conf")
        }
    }

    /// The files a node of this kind has once kubeadm is done with it.
    fn files(&self) -> Vec<String> {
        if self.step == Step::Reset {
            return [
                "/etc/kubernetes/kubelet.conf",
                "/etc/kubernetes/bootstrap-kubelet.conf",
                "/etc/kubernetes/admin.conf",
                "/etc/kubernetes/manifests",
                "/etc/kubernetes/pki",
                "/var/lib/kubelet/config.yaml",
                "/var/lib/etcd",
                "/etc/cni/net.d",
                "/etc/kubernetes/gantry",
            ]
            .map(String::from)
            .to_vec();
        }
        let mut f = vec![
            format!("{K8S}/kubelet.conf"),
            "/var/lib/kubelet/config.yaml".to_string(),
        ];
        if self.control_plane() {
            f.push(format!("{K8S}/admin.conf"));
            f.push(format!("{K8S}/manifests/etcd.yaml"));
        }
        f
    }

    fn run_line(&self) -> Result<String, String> {
        match self.step {
            Step::Reset => Ok(format!("kubeadm reset -f >&2 && rm -rf {LEFT_BY_KUBEADM_RESET}")),
            Step::Init => command(&[
                "kubeadm",
                "init",
                "--config",
                self.config()?,
                "--upload-certs",
                "--skip-token-print",
                "--skip-certificate-key-print",
            ]),
            _ => command(&["kubeadm", "join", "--config", self.config()?]),
        }
    }
}

/// What the probe found.
#[derive(Debug, PartialEq)]
enum Node {
    InCluster,
    NotInCluster,
    /// No kubeconfig to ask with.
    NoKubeconfig,
    /// The API could not tell: its words.
    Unknown(String),
}

/// What the state probe read: the files the node has, those it lacks,
/// and (init on a node without a kubeconfig) whether a cluster answers at
/// the endpoint.
struct State {
    has: Vec<String>,
    lacks: Vec<String>,
    endpoint_answers: bool,
}

fn parse(out: &str, files: &[String]) -> State {
    let (mut has, mut lacks) = (Vec::new(), Vec::new());
    let mut endpoint_answers = false;
    for line in out.lines() {
        if let Some(said) = line.strip_prefix("endpoint ") {
            endpoint_answers = said.contains("(Unauthorized)") || said.trim() == "ok";
        } else if let Some(f) = line.strip_prefix("has ") {
            has.push(f.to_string());
        } else if let Some(f) = line.strip_prefix("lacks ") {
            lacks.push(f.to_string());
        }
    }
    // Only the files asked about, in their order.
    has.retain(|f| files.contains(f));
    lacks.retain(|f| files.contains(f));
    State {
        has,
        lacks,
        endpoint_answers,
    }
}

/// The Node `name`, as the node probe read it: the cluster probe's answer
/// on a control plane, `kubectl get node NAME -o name` on a worker.
fn node(out: &str, name: &str, control_plane: bool) -> Node {
    if control_plane {
        return match cluster::read(out) {
            cluster::Read::NoKubeconfig => Node::NoKubeconfig,
            cluster::Read::Failed(why) => Node::Unknown(why),
            cluster::Read::View(v) if v.nodes.contains_key(name) => Node::InCluster,
            cluster::Read::View(_) => Node::NotInCluster,
        };
    }
    if out.trim() == "no-cluster" {
        return Node::NoKubeconfig;
    }
    match cluster::said(out) {
        (Some(0), said) if said == format!("node/{name}") => Node::InCluster,
        (Some(_), said) if said.contains("(NotFound)") => Node::NotInCluster,
        (_, said) => Node::Unknown(said),
    }
}

impl Module for Kubeadm {
    const NAME: &'static str = "kubeadm";
    const DOC: Doc = Doc {
        summary: "a node brought into the cluster by `kubeadm init` or `kubeadm join --config` (secrets stay in the 0600 config file); nothing runs when the node's files and the API agree, a half-joined node is reset and joined again",
        params: &[
            ("step", "init (the first control plane), join-control-plane, join-worker, or reset (kubeadm reset, then etcd's data, the CNI config and gantry's kubeadm configs removed)"),
            ("config", "the kubeadm config file on the host, written 0600 before (init and join)"),
            ("node", "the node's name in the cluster"),
            ("endpoint", "init only: the cluster's API endpoint (host:port); init is refused when the node holds nothing of Kubernetes but a cluster answers there (a reset first control plane)"),
            ("nodes", "joins: the cluster's Nodes as the first control plane read them (`kube_object` kind Node's stdout); when it lists any, the node is judged by it and asks the API nothing itself"),
        ],
        example: "- name: join the cluster\n  kubeadm:\n    step: join-worker\n    config: /etc/kubernetes/gantry/kubeadm-join.yaml\n    node: worker1\n",
    };

    fn validate(&self) -> Result<(), String> {
        match (&self.config, self.step) {
            (None, Step::Reset) => {}
            (Some(_), Step::Reset) => return Err("kubeadm: reset takes no `config`".into()),
            (None, _) => return Err("kubeadm: init and join need `config`".into()),
            (Some(c), _) if !c.starts_with('/') => {
                return Err(format!(
                    "kubeadm: config {c:?} must be an absolute path on the host"
                ));
            }
            _ => {}
        }
        if self.nodes.is_some() && !matches!(self.step, Step::JoinControlPlane | Step::JoinWorker) {
            return Err("kubeadm: `nodes` is for joins only".into());
        }
        match (&self.endpoint, self.step) {
            (Some(_), s) if s != Step::Init => {
                return Err("kubeadm: `endpoint` is for init only".into());
            }
            (Some(ep), _) if ep.is_empty() || ep.contains(['/', ' ', '\n']) => {
                return Err(format!("kubeadm: endpoint {ep:?} is not host:port"));
            }
            _ => {}
        }
        let ok = !self.node.is_empty()
            && self.node.len() <= 253
            && self
                .node
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return Err(format!(
                "kubeadm: node {:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.')",
                self.node
            ));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        let mut script = String::new();
        for f in self.files() {
            let q = quote(&f)?;
            // kubeadm reset empties directories and leaves them: an empty
            // one is nothing left to reset.
            let test = if self.step == Step::Reset {
                format!("[ -n \"$(ls -A {q} 2>/dev/null)\" ]")
            } else {
                format!("[ -e {q} ]")
            };
            script.push_str(&format!(
                "if {test}; then echo has {q}; else echo lacks {q}; fi\n"
            ));
        }
        if self.step == Step::Reset {
            return Ok(Probes::new().script("state", format!("{script}true")));
        }
        let kc = quote(&self.kubeconfig())?;
        // Whether an API server answers at the endpoint: with a token no
        // cluster knows (kubectl with no credentials at all prompts for a
        // user name), so one answers 401 Unauthorized, where a load
        // balancer with no API server behind it gives no HTTP answer at all.
        // Asked up to three times: behind a round-robin load balancer, an
        // API server that has just stopped (not yet marked down) answers
        // EOF, and one such answer must not pass for "no cluster".
        if let (Step::Init, Some(ep)) = (self.step, &self.endpoint) {
            let livez = command(&[
                "kubectl",
                "--kubeconfig=/dev/null",
                &format!("--server=https://{ep}"),
                "--insecure-skip-tls-verify=true",
                "--token=gantry-endpoint-probe",
                "--request-timeout=5s",
                "get",
                "--raw",
                "/livez",
            ])?;
            script.push_str(&format!(
                "if [ ! -e {kc} ]; then for k in 1 2 3; do v=$({livez} </dev/null 2>&1 | head -n 1); case $v in ok|*'(Unauthorized)'*) break;; esac; done; echo \"endpoint $v\"; fi\n"
            ));
        }
        script.push_str("true");
        // The Node, from the API: a control plane asks with the admin
        // kubeconfig through the cluster probe every API question of a
        // round trip shares (`cluster`); a worker asks for its own Node
        // with the kubelet's, which may read no more.
        let probes = Probes::new().script("state", script);
        if self.listed().is_some() {
            return Ok(probes);
        }
        let node = if self.control_plane() {
            cluster::probe(&self.kubeconfig())?
        } else {
            let get = command(&[
                "kubectl",
                "--kubeconfig",
                &self.kubeconfig(),
                "--request-timeout=10s",
                "get",
                "node",
                &self.node,
                "-o",
                "name",
            ])?;
            format!("if [ -e {kc} ]; then {get} 2>&1; echo kubectl-rc $?; else echo no-cluster; fi")
        };
        Ok(probes.query("node", node))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let files = self.files();
        let State {
            has,
            lacks,
            endpoint_answers,
        } = parse(&a.script("state")?.out, &files);
        let name = &self.node;
        let line = self.run_line()?;
        let run = |reason: String, script: String, show: String| {
            Decision::Change(Change::new(reason, Action::script(script, show)))
        };
        if self.step == Step::Reset {
            if has.is_empty() {
                return Ok(Decision::unchanged(format!("no Kubernetes on {name}")));
            }
            return Ok(run(
                format!("{name} has {}", has.join(", ")),
                line.clone(),
                line,
            ));
        }
        let node = match self.listed() {
            Some(names) if names.contains(&name.as_str()) => Node::InCluster,
            Some(_) => Node::NotInCluster,
            None => node(&a.script("node")?.out, name, self.control_plane()),
        };
        if let Node::Unknown(why) = &node {
            return Err(format!(
                "cannot tell whether {name} is in the cluster, so it is left as it is: {why}"
            ));
        }
        if lacks.is_empty() && node == Node::InCluster {
            return Ok(Decision::unchanged(format!(
                "{name} is in the cluster and its files agree"
            )));
        }
        if has.is_empty() && self.step == Step::Init && endpoint_answers {
            let ep = self.endpoint.as_deref().unwrap_or_default();
            return Err(format!(
                "{name} holds nothing of Kubernetes, but a cluster answers at {ep}: kubeadm init would start a second cluster beside it. \
                 To bring {name} back into that cluster, list one of its running control planes first in the inventory ({name} then joins it); \
                 to start over, `gantry reset` every node"
            ));
        }
        if has.is_empty() {
            let what = match self.step {
                Step::Init => "the cluster is not initialized",
                _ => "not in the cluster",
            };
            return Ok(run(format!("{name}: {what}"), line.clone(), line));
        }
        // Half done.
        let mut why = Vec::new();
        if !lacks.is_empty() {
            why.push(format!("lacks {}", lacks.join(", ")));
        }
        if node == Node::NotInCluster {
            why.push("the API has no Node for it".to_string());
        }
        let why = format!("{name} is half-joined ({})", why.join("; "));
        if self.step == Step::Init && node == Node::NotInCluster {
            return Err(format!(
                "{why}, but its cluster answers: resetting the first control plane would wipe the cluster's etcd. Run `gantry reset --limit {name}` if that is what you want"
            ));
        }
        // kubeadm reset leaves etcd's data and the CNI config; a node joined
        // again must start without either.
        let reset = "kubeadm reset -f >&2 && rm -rf /var/lib/etcd /etc/cni/net.d";
        Ok(run(
            format!("{why}: reset and joined again"),
            format!("{reset} && {line}"),
            format!("{reset} && {line}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::ProbeOut;
    use crate::modules::testing::{change, decide, executable, module, out, refused, unchanged};

    fn worker() -> Kubeadm {
        module(json!({"step": "join-worker", "config": "/etc/kubernetes/gantry/kubeadm-join.yaml", "node": "worker1"}))
    }

    fn script(d: &Decision) -> String {
        match &change(d.clone()).actions()[0] {
            Action::Run { script, .. } => script.clone(),
            a => panic!("{a:?}"),
        }
    }

    /// No kubeconfig on the host: the node probe's answer.
    fn none() -> ProbeOut {
        out(0, "no-cluster\n")
    }

    /// The cluster probe's answer (a control plane's) with these Nodes.
    fn nodes(names: &[&str]) -> ProbeOut {
        let lines: String = names.iter().map(|n| format!("Node\t{n}\t{{}}\n")).collect();
        out(0, &format!("{lines}Secret\tkubeadm-certs\t\n\nkubectl-rc 0\n"))
    }

    #[test]
    fn joins_a_new_node_and_leaves_a_joined_one() {
        let m = worker();
        let fresh = "lacks /etc/kubernetes/kubelet.conf\nlacks /var/lib/kubelet/config.yaml\n";
        let d = decide(&m, vec![out(0, fresh), none()]).unwrap();
        assert_eq!(
            script(&d),
            "kubeadm join --config /etc/kubernetes/gantry/kubeadm-join.yaml"
        );
        assert_eq!(change(d).reason, "worker1: not in the cluster");
        let done = "has /etc/kubernetes/kubelet.conf\nhas /var/lib/kubelet/config.yaml\n";
        assert_eq!(
            unchanged(decide(&m, vec![out(0, done), out(0, "node/worker1\nkubectl-rc 0\n")]).unwrap()),
            "worker1 is in the cluster and its files agree"
        );
        // A worker asks for its own Node with the kubelet's kubeconfig.
        let p = m.probes().unwrap();
        let asked = p.list().nth(1).unwrap().script().unwrap();
        assert!(asked.contains("kubectl --kubeconfig /etc/kubernetes/kubelet.conf '--request-timeout=10s' get node worker1 -o name"), "{asked}");
    }

    /// A control plane reads its Node from the cluster probe, the same
    /// script every API question of the round trip shares.
    #[test]
    fn a_control_plane_reads_its_node_from_the_cluster_probe() {
        let m: Kubeadm = module(json!({"step": "join-control-plane", "config": "/etc/kubernetes/gantry/kubeadm-join.yaml", "node": "master2"}));
        let p = m.probes().unwrap();
        assert_eq!(
            p.list().nth(1).unwrap().script().unwrap(),
            cluster::probe("/etc/kubernetes/admin.conf").unwrap()
        );
        let done: String = m.files().iter().map(|f| format!("has {f}\n")).collect();
        assert_eq!(
            unchanged(decide(&m, vec![out(0, &done), nodes(&["master1", "master2"])]).unwrap()),
            "master2 is in the cluster and its files agree"
        );
        let d = decide(&m, vec![out(0, &done), nodes(&["master1", "master22"])]).unwrap();
        assert!(change(d).reason.contains("the API has no Node for it"));
    }

    /// Given the first control plane's reading of the Nodes, a joining node
    /// is judged by it and asks the API nothing; given none (no cluster
    /// there), it asks itself.
    #[test]
    fn a_joining_node_is_judged_by_the_first_control_planes_reading() {
        let with = |nodes: &str| -> Kubeadm {
            module(json!({"step": "join-worker", "config": "/etc/kubernetes/gantry/kubeadm-join.yaml", "node": "worker1", "nodes": nodes}))
        };
        let done = "has /etc/kubernetes/kubelet.conf\nhas /var/lib/kubelet/config.yaml\n";
        let m = with("node/master1\nnode/worker1");
        assert_eq!(m.probes().unwrap().len(), 1);
        assert_eq!(
            unchanged(decide(&m, vec![out(0, done)]).unwrap()),
            "worker1 is in the cluster and its files agree"
        );
        let m = with("node/master1\nnode/worker10");
        let d = decide(&m, vec![out(0, done)]).unwrap();
        assert!(change(d).reason.contains("the API has no Node for it"));
        let m = with("");
        assert_eq!(m.probes().unwrap().len(), 2);
        unchanged(decide(&m, vec![out(0, done), out(0, "node/worker1\nkubectl-rc 0\n")]).unwrap());
        assert!(refused::<Kubeadm>(json!({"step": "init", "config": "/k.yaml", "node": "m", "nodes": "node/m"})).contains("for joins only"));
    }

    #[test]
    fn resets_a_half_joined_node_and_never_acts_blind() {
        let m = worker();
        // Files, but the cluster has no Node: reset, then join.
        let files = "has /etc/kubernetes/kubelet.conf\nhas /var/lib/kubelet/config.yaml\n";
        let half = "Error from server (NotFound): nodes \"worker1\" not found\nkubectl-rc 1\n";
        let d = decide(&m, vec![out(0, files), out(0, half)]).unwrap();
        assert!(
            script(&d).starts_with("kubeadm reset -f >&2 && rm -rf /var/lib/etcd /etc/cni/net.d && kubeadm join"),
            "{}",
            script(&d)
        );
        // Some files and not others.
        let d = decide(&m, vec![out(0, "lacks /etc/kubernetes/kubelet.conf\nhas /var/lib/kubelet/config.yaml\n"), out(0, "node/worker1\nkubectl-rc 0\n")]).unwrap();
        assert!(change(d).reason.contains("lacks /etc/kubernetes/kubelet.conf"));
        // The API cannot be read: nothing is reset.
        let down = "The connection to the server 10.0.0.10:6553 was refused - did you specify the right host or port?\nkubectl-rc 1\n";
        let e = decide(&m, vec![out(0, files), out(0, down)]).unwrap_err();
        assert!(e.contains("cannot tell whether worker1 is in the cluster"), "{e}");
    }

    #[test]
    fn init_keeps_secrets_off_the_command_line_and_never_resets_a_live_cluster() {
        let m: Kubeadm = module(json!({"step": "init", "config": "/etc/kubernetes/gantry/kubeadm-init.yaml", "node": "master1"}));
        let fresh = "lacks /etc/kubernetes/kubelet.conf\nlacks /var/lib/kubelet/config.yaml\nlacks /etc/kubernetes/admin.conf\nlacks /etc/kubernetes/manifests/etcd.yaml\n";
        assert_eq!(
            script(&decide(&m, vec![out(0, fresh), none()]).unwrap()),
            "kubeadm init --config /etc/kubernetes/gantry/kubeadm-init.yaml --upload-certs --skip-token-print --skip-certificate-key-print"
        );
        let orphan = "has /etc/kubernetes/kubelet.conf\nhas /var/lib/kubelet/config.yaml\nhas /etc/kubernetes/admin.conf\nhas /etc/kubernetes/manifests/etcd.yaml\n";
        let e = decide(&m, vec![out(0, orphan), nodes(&["master2"])]).unwrap_err();
        assert!(e.contains("would wipe the cluster's etcd"), "{e}");
        assert!(refused::<Kubeadm>(json!({"step": "init", "config": "kubeadm.yaml", "node": "m"})).contains("absolute path"));
        assert!(refused::<Kubeadm>(json!({"step": "init", "config": "/k.yaml", "node": "Master_1"})).contains("node name"));
        assert!(refused::<Kubeadm>(json!({"step": "upgrade", "config": "/k.yaml", "node": "m"})).contains("unknown variant"));
        assert!(refused::<Kubeadm>(json!({"step": "join-worker", "node": "m"})).contains("need `config`"));
        assert!(refused::<Kubeadm>(json!({"step": "join-worker", "config": "/k.yaml", "node": "m", "endpoint": "10.0.0.10:6553"})).contains("for init only"));
    }

    #[test]
    fn init_refuses_to_start_a_second_cluster_where_one_answers() {
        let m: Kubeadm = module(json!({"step": "init", "config": "/etc/kubernetes/gantry/kubeadm-init.yaml", "node": "master1", "endpoint": "10.0.0.10:6553"}));
        let probes = m.probes().unwrap();
        let script = probes.list().next().unwrap().script().unwrap();
        assert!(
            script.contains("if [ ! -e /etc/kubernetes/admin.conf ]; then for k in 1 2 3; do v=$(kubectl '--kubeconfig=/dev/null' '--server=https://10.0.0.10:6553' '--insecure-skip-tls-verify=true' '--token=gantry-endpoint-probe' '--request-timeout=5s' get --raw /livez </dev/null 2>&1 | head -n 1); case $v in ok|*'(Unauthorized)'*) break;; esac; done; echo \"endpoint $v\"; fi"),
            "{script}"
        );
        let fresh = "lacks /etc/kubernetes/kubelet.conf\nlacks /var/lib/kubelet/config.yaml\nlacks /etc/kubernetes/admin.conf\nlacks /etc/kubernetes/manifests/etcd.yaml\n";
        // The load balancer answers TCP with no API server behind it: init.
        let lb = "endpoint Unable to connect to the server: EOF\n";
        let d = decide(&m, vec![out(0, &format!("{fresh}{lb}")), none()]).unwrap();
        assert_eq!(change(d).reason, "master1: the cluster is not initialized");
        // The other control planes still run the cluster: refused.
        let api = "endpoint error: You must be logged in to the server (Unauthorized)\n";
        let e = decide(&m, vec![out(0, &format!("{fresh}{api}")), none()]).unwrap_err();
        assert!(e.contains("a cluster answers at 10.0.0.10:6553: kubeadm init would start a second cluster"), "{e}");
    }

    /// The endpoint asked by the real script under sh, with a kubectl that
    /// answers EOF at first (a load balancer that sent it to an API server
    /// just stopped) and then as an API server does: one EOF does not pass
    /// for "no cluster"; three do, and nothing answers a fourth time.
    #[test]
    fn init_asks_the_endpoint_again_after_an_eof() {
        let m: Kubeadm = module(json!({"step": "init", "config": "/etc/kubernetes/gantry/kubeadm-init.yaml", "node": "master1", "endpoint": "10.0.0.10:6553"}));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        // Run as the engine runs a round trip, this node's files under d.
        let probes: Vec<crate::modules::Probe> = m.probes().unwrap().list().cloned().collect();
        let script = crate::exec::probe_script(&probes, "M").unwrap().replace("/etc/kubernetes/", &format!("{d}/"));
        let endpoint = |eofs: usize| {
            let calls = format!("{d}/calls");
            let _ = std::fs::remove_file(&calls);
            executable(
                &dir.path().join("kubectl"),
                &format!("echo x >> {calls}\nif [ $(wc -l < {calls}) -le {eofs} ]; then echo 'Unable to connect to the server: EOF'; exit 1; fi\necho ok"),
            );
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::remote::script::own_call(&script).unwrap())
                .env("PATH", format!("{d}:/usr/bin:/bin"))
                .output()
                .unwrap();
            let said = String::from_utf8(o.stdout).unwrap();
            let answers = crate::exec::read_answers(&probes, &said, "M").unwrap_or_else(|| panic!("{said:?}"));
            let line = answers[0].out.lines().find(|l| l.starts_with("endpoint ")).unwrap_or_default().to_string();
            (line, std::fs::read_to_string(&calls).unwrap_or_default().lines().count())
        };
        assert_eq!(endpoint(0), ("endpoint ok".to_string(), 1));
        assert_eq!(endpoint(2), ("endpoint ok".to_string(), 3));
        assert_eq!(endpoint(5), ("endpoint Unable to connect to the server: EOF".to_string(), 3));
    }

    #[test]
    fn reset_runs_only_where_kubernetes_is() {
        let m: Kubeadm = module(json!({"step": "reset", "node": "worker1"}));
        let clean: String = m.files().iter().map(|f| format!("lacks {f}\n")).collect();
        assert_eq!(unchanged(decide(&m, vec![out(0, &clean)]).unwrap()), "no Kubernetes on worker1");
        let d = decide(&m, vec![out(0, &clean.replace("lacks /etc/cni/net.d", "has /etc/cni/net.d"))]).unwrap();
        assert_eq!(
            script(&d),
            "kubeadm reset -f >&2 && rm -rf /var/lib/etcd /etc/cni/net.d /etc/kubernetes/gantry"
        );
        assert!(refused::<Kubeadm>(json!({"step": "reset", "config": "/k.yaml", "node": "m"})).contains("takes no `config`"));
    }
}
