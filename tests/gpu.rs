//! A GPU cluster with the guides' addons: `gantry apply -p cluster` takes
//! bare lab hosts (one control plane, a CPU worker, two GPU workers) to a
//! cluster whose GPU nodes run NVIDIA's runtime as containerd's default and
//! carry `gpu=on`, with kube-prometheus-stack, the GPU Operator, HAMi and
//! the dashboard installed from the bundle's chart archives in that order.
//!
//! What is real: sshd, systemd, containerd 1.6.20 (its `config dump` is the
//! judge of the runtime), etcd, kubectl v1.37.1 (labels are read with it),
//! the image imports, the chart archives (gzip tars with a Chart.yaml).
//! What stands in (lab/standin/): helm (it keeps releases as Helm 3 does,
//! in Secrets of the release's namespace, and `--wait` waits for the
//! chart's images on the nodes it targets, read from the Nodes' status),
//! kubeadm, the kubelet, the API server, nvidia-smi and
//! nvidia-container-runtime. The charts are the lab's: small valid charts
//! under the real names and versions (lab/bundle.sh), whose templates make
//! nothing.
//!
//! Changing `sandbox_image` after the GPU runtime is set (plan shows the
//! drift, apply keeps nvidia the default in the real dump) is proved in
//! tests/containerd.rs.

mod common;

use common::{Lab, row, text, with_lab_bundle};

const HOSTS: &str =
    "master1:control-plane,worker1:worker,gpu1:worker+gpu,gpu2:worker+gpu,gpu3:worker+gpu";
/// The bundle's helm, where the addons role unpacks it.
const HELM: &str = "/var/lib/gantry/helm/v3.14.4/helm --kubeconfig /etc/kubernetes/admin.conf";
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// Every release in the cluster, pending ones too: (name, status, revision,
/// chart), sorted by name.
fn releases(lab: &Lab) -> Vec<(String, String, String, String)> {
    let out = lab.exec("master1", &format!("{HELM} list -A -a -o json"));
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut r: Vec<_> = list
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("status"), s("revision"), s("chart"))
        })
        .collect();
    r.sort();
    r
}

fn revisions(lab: &Lab) -> Vec<(String, String)> {
    releases(lab)
        .into_iter()
        .map(|(n, _, rev, _)| (n, rev))
        .collect()
}

fn gpu_nodes(lab: &Lab) -> String {
    lab.exec("master1", &format!("{KUBECTL} get nodes -l gpu=on -o name"))
}

fn default_runtime(lab: &Lab, host: &str) -> String {
    lab.exec(
        host,
        "containerd config dump | sed -n 's/^ *default_runtime_name = \"\\(.*\\)\"$/\\1/p' | head -n 1",
    )
    .trim()
    .to_string()
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn bare_hosts_to_a_gpu_cluster_with_the_guides_addons() {
    let mut lab = Lab::up_with("t-gpu", 48, HOSTS);
    // gpu3 joins later.
    let full = std::fs::read_to_string(&lab.inventory).unwrap();
    let (first, later): (Vec<&str>, Vec<&str>) =
        full.lines().partition(|l| !l.contains("name: gpu3,"));
    std::fs::write(&lab.inventory, first.join("\n") + "\n").unwrap();
    lab.hosts.retain(|h| h != "gpu3");
    let work = tempfile::tempdir().unwrap();
    with_lab_bundle(&lab, &work.path().join("bundle"));
    let addons = "addons:\n  kube-prometheus-stack: {}\n  gpu-operator: {}\n  hami: {}\n  kubernetes-dashboard: {}\n";
    let inv = std::fs::read_to_string(&lab.inventory).unwrap() + addons;
    std::fs::write(&lab.inventory, &inv).unwrap();

    // Bad input is refused at validate, located, before any host is touched.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = bad_dir.path().join("inventory.yaml");
    std::fs::write(
        &bad,
        inv.replace("  hami: {}\n", "  hami: { values: [1] }\n  hamy: {}\n")
            .replace(
                "  gpu-operator: {}\n",
                "  gpu-operator: { version: v99.0.0 }\n",
            ),
    )
    .unwrap();
    let refused = lab.gantry_for(&bad, &["validate", "-p", "cluster"]);
    assert_eq!(refused.status.code(), Some(2));
    let said = text(&refused.stderr) + &text(&refused.stdout);
    for want in [
        "error: addons.hami.values: expected a mapping",
        "error: addons.hamy: unknown addon `hamy`",
        "error: addons.gpu-operator.version: the bundle",
        "holds no chart gpu-operator v99.0.0 (its versions: v25.10.1)",
    ] {
        assert!(said.contains(want), "{want:?} not in:\n{said}");
    }

    // 1 + 3. helm is killed half-way through the dashboard's install (the
    // stand-in's fault knob): that release is left pending-install and the
    // apply fails on master1, with every release before it deployed.
    lab.exec(
        "master1",
        "mkdir -p /etc/lab && echo 'kubernetes-dashboard crash' > /etc/lab/helm-fault",
    );
    let up = lab.gantry_within(
        &["apply", "--accept-new-host-keys", "-p", "cluster"],
        std::time::Duration::from_secs(900),
    );
    assert_ne!(up.status.code(), Some(0), "{}", text(&up.stdout));
    println!(
        "API server's log on master1:\n{}",
        lab.exec("master1", "tail -n 40 /var/log/standin-kube-apiserver.log 2>&1; journalctl -u haproxy -n 20 --no-pager 2>&1; tail -n 30 /var/log/lab-helm.log 2>&1; true")
    );
    let r = releases(&lab);
    let status: Vec<(&str, &str)> = r
        .iter()
        .map(|(n, s, _, _)| (n.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        status,
        [
            ("gpu-operator", "deployed"),
            ("hami", "deployed"),
            ("kubernetes-dashboard", "pending-install"),
            ("prometheus", "deployed"),
        ]
    );
    // The next apply recovers it by the stated policy.
    let fixed = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed.stdout));
    assert!(
        text(&fixed.stdout).contains("kubernetes-dashboard was left pending-install at revision 1"),
        "{}",
        text(&fixed.stdout)
    );
    let charts: Vec<(String, String, String)> = releases(&lab)
        .into_iter()
        .map(|(n, s, _, c)| (n, s, c))
        .collect();
    let want = |n: &str, c: &str| (n.to_string(), "deployed".to_string(), c.to_string());
    assert_eq!(
        charts,
        [
            want("gpu-operator", "gpu-operator-v25.10.1"),
            want("hami", "hami-2.6.1"),
            want("kubernetes-dashboard", "kubernetes-dashboard-7.14.0"),
            want("prometheus", "kube-prometheus-stack-75.15.1"),
        ]
    );
    // The guides' values, as helm holds them; the GPU Operator's namespace
    // is privileged.
    let v = lab.exec(
        "master1",
        &format!("{HELM} get values gpu-operator -n gpu-operator -o json"),
    );
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["devicePlugin"]["enabled"], false, "{v}");
    assert_eq!(v["dcgmExporter"]["serviceMonitor"]["enabled"], true, "{v}");
    let v = lab.exec(
        "master1",
        &format!("{HELM} get values hami -n hami-system -o json"),
    );
    assert!(v.contains("\"imageTag\":\"v1.34.3\""), "{v}");
    assert!(
        lab.exec(
            "master1",
            &format!("{KUBECTL} get namespace gpu-operator -o jsonpath='{{.metadata.labels}}'")
        )
        .contains("\"pod-security.kubernetes.io/enforce\":\"privileged\"")
    );
    // The values file helm read is gone.
    assert_eq!(
        lab.exec("master1", "ls /tmp | grep -c '^tmp' || true")
            .trim(),
        "0"
    );
    // GPU nodes: labelled through the API (real kubectl reads them), NVIDIA's
    // runtime the default in the real containerd's dump; the CPU worker not.
    assert_eq!(gpu_nodes(&lab), "node/gpu1\nnode/gpu2\n");
    assert_eq!(
        lab.exec(
            "master1",
            &format!("{KUBECTL} get nodes -l node-role.kubernetes.io/worker -o name")
        ),
        "node/gpu1\nnode/gpu2\nnode/worker1\n"
    );
    for h in ["gpu1", "gpu2"] {
        assert_eq!(default_runtime(&lab, h), "nvidia", "{h}");
    }
    assert_eq!(default_runtime(&lab, "worker1"), "runc");
    // The GPU nodes' kubelets run the checklist's static CPU manager (their
    // checkpoints say so); the CPU worker's the default.
    for (h, policy) in [("gpu1", "static"), ("gpu2", "static"), ("worker1", "none")] {
        let state = lab.exec(h, "cat /var/lib/kubelet/cpu_manager_state");
        assert!(
            state.contains(&format!("\"policyName\":\"{policy}\"")),
            "{h}: {state}"
        );
    }
    assert!(
        lab.exec("gpu1", "cat /etc/default/kubelet")
            .contains("--topology-manager-policy=restricted")
    );

    // A second apply changes nothing and upgrades no release.
    let before = revisions(&lab);
    let again = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(again.status.code(), Some(0));
    for h in &lab.hosts {
        assert_eq!(row(&again, h)[1], 0, "{h} changed on the second apply");
    }
    assert_eq!(revisions(&lab), before);

    // 2. One value of the GPU Operator changed in the inventory: plan shows
    // that diff and names that release only; apply upgrades it alone.
    let inv = std::fs::read_to_string(&lab.inventory).unwrap().replace(
        "  gpu-operator: {}\n",
        "  gpu-operator: { values: { driver: { enabled: true } } }\n",
    );
    std::fs::write(&lab.inventory, inv).unwrap();
    let plan = lab.gantry(&["plan", "-p", "cluster"]);
    assert_eq!(plan.status.code(), Some(0));
    let p = text(&plan.stdout);
    assert!(
        p.contains("gpu-operator (revision 1): values changed"),
        "{p}"
    );
    assert!(
        p.contains("--- a/gpu-operator/gpu-operator/values\n")
            && p.contains(" driver:\n    -  enabled: false\n    +  enabled: true\n"),
        "{p}"
    );
    let changes: Vec<&str> = p
        .lines()
        .filter(|l| l.starts_with("would change "))
        .collect();
    assert_eq!(
        changes,
        ["would change master1 addons/addon releases: gpu-operator (revision 1): values changed"],
        "{p}"
    );
    let upgrade = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(upgrade.status.code(), Some(0));
    let after: Vec<(String, String)> = revisions(&lab);
    for ((name, rev), (_, was)) in after.iter().zip(&before) {
        let want = if name == "gpu-operator" {
            (was.parse::<u32>().unwrap() + 1).to_string()
        } else {
            was.clone()
        };
        assert_eq!(rev, &want, "{name}");
    }

    // The GPU kubelets' flags changed (the CPU manager back to its default):
    // each is restarted without the old policy's checkpoint, which it would
    // refuse, and its node is Ready again.
    let inv = std::fs::read_to_string(&lab.inventory).unwrap().replacen(
        "vars:\n",
        "vars:\n  kubelet_gpu_args: [--topology-manager-policy=best-effort]\n",
        1,
    );
    std::fs::write(&lab.inventory, inv).unwrap();
    let flags = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(flags.status.code(), Some(0), "{}", text(&flags.stdout));
    for h in ["gpu1", "gpu2"] {
        let state = lab.exec(h, "cat /var/lib/kubelet/cpu_manager_state");
        assert!(state.contains("\"policyName\":\"none\""), "{h}: {state}");
        let ready = format!(
            "{KUBECTL} get node {h} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'"
        );
        let start = std::time::Instant::now();
        while lab.exec("master1", &ready) != "True" {
            assert!(
                start.elapsed().as_secs() < 60,
                "{h} not Ready after its kubelet's restart"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    assert_eq!(row(&flags, "worker1")[1], 0);

    // 5. A third GPU node: it gets the runtime and the label, has the
    // addons' images (HAMi's device plugin runs on gpu=on nodes), and
    // nothing else changes.
    let inv = std::fs::read_to_string(&lab.inventory).unwrap();
    let inv = inv.replacen("vars:\n", &format!("{}\nvars:\n", later.join("\n")), 1);
    std::fs::write(&lab.inventory, inv).unwrap();
    lab.hosts.push("gpu3".into());
    let before = revisions(&lab);
    let add = lab.gantry(&["apply", "--accept-new-host-keys", "-p", "cluster"]);
    assert_eq!(add.status.code(), Some(0), "{}", text(&add.stdout));
    // The others change only what names every host (/etc/hosts, the
    // firewall's sources) and master1 labels gpu3.
    for line in text(&add.stdout)
        .lines()
        .filter(|l| l.starts_with("changed "))
    {
        assert!(
            line.starts_with("changed gpu3 ")
                || line.contains(" etc-hosts/")
                || line.contains(" firewall/")
                || line.starts_with("changed master1 node-labels/node labels: gpu3 "),
            "{line}"
        );
    }
    assert!(row(&add, "gpu3")[1] > 0);
    assert_eq!(gpu_nodes(&lab), "node/gpu1\nnode/gpu2\nnode/gpu3\n");
    assert_eq!(default_runtime(&lab, "gpu3"), "nvidia");
    assert!(
        lab.exec("gpu3", "ctr -n k8s.io images ls -q")
            .contains("docker.io/projecthami/hami:v2.6.1")
    );
    assert_eq!(revisions(&lab), before);
}
