//! `gantry check` in the lab. GPU hosts run the STAND-IN nvidia-smi
//! (lab/standin/nvidia-smi), which prints the seeds' real outputs.
//! What the lab cannot produce: swap turned on (swapon in a lab host would
//! reach this machine's swap) and a skewed clock (lab hosts share this
//! machine's kernel clock). Their judging is tested on fixtures instead, in
//! src/check.rs (`judging_thresholds`, `fleet_compares_clocks_...`).

mod common;

use common::{Lab, text};

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn check_is_read_only_and_reports_every_check() {
    let lab = Lab::up("c-clean", 81);
    let before: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    let out = lab.gantry(&["check", "--accept-new-host-keys"]);
    // Fresh hosts all say "debian": apply will name them, so a warning.
    assert_eq!(out.status.code(), Some(0), "only warnings expected");
    let table = text(&out.stdout);
    // What each check says of each host: every check of the table, every
    // level as this lab makes it. Where the lab shares this machine (swap,
    // the cgroup file system), the level follows this machine.
    let json = lab.gantry(&["check", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    common::assert_schema(&v, "check");
    let swap = if std::fs::read_to_string("/proc/swaps")
        .unwrap()
        .lines()
        .count()
        > 1
    {
        "warn"
    } else {
        "pass"
    };
    let cgroup_v2 = std::process::Command::new("stat")
        .args(["-fc", "%T", "/sys/fs/cgroup"])
        .output()
        .unwrap()
        .stdout
        == b"cgroup2fs\n";
    let cgroup = if cgroup_v2 { "pass" } else { "warn" };
    let mut want = vec![
        ("cpu", "all", "pass"),
        ("memory", "all", "pass"),
        ("disk", "all", "pass"),
        ("os", "all", "pass"),
        ("arch", "all", "pass"),
        ("no-kubernetes", "all", "pass"),
        ("ports-free", "all", "pass"),
        ("swap", "all", swap),
        ("cgroup", "all", cgroup),
        ("selinux/apparmor", "all", "pass"),
        // timesyncd is masked in the lab image: no NTP client runs.
        ("time-sync", "all", "warn"),
        ("dns", "all", "pass"),
        ("gpu", "gpu1", "pass"),
        ("gpu-driver", "gpu1", "pass"),
        // No container toolkit on a fresh host: the NVIDIA runtime role's job.
        ("gpu-toolkit", "gpu1", "warn"),
        // The lab's sysctl table is not applied yet; its modules are loaded.
        ("sysctl", "all", "warn"),
        ("modules", "all", "pass"),
        ("hostname", "all", "warn"),
        ("clock-offset", "all", "pass"),
        ("ports-reachable", "all", "pass"),
    ];
    let mut seen = 0;
    for h in v["hosts"].as_array().unwrap() {
        let host = h["host"].as_str().unwrap();
        let findings = h["findings"].as_array().unwrap();
        for f in findings {
            let check = f["check"].as_str().unwrap();
            if check == "etcd-fsync" {
                // The disk's speed is this machine's: pass or warn, never fail.
                assert_eq!(
                    host, "master1",
                    "etcd's disk is probed on control planes only"
                );
                assert_ne!(f["level"], "fail", "{f}");
                assert!(f["measured"].as_str().unwrap().starts_with("p99 "), "{f}");
                continue;
            }
            let (_, _, level) = want
                .iter()
                .find(|(c, on, _)| *c == check && (*on == "all" || *on == host))
                .unwrap_or_else(|| panic!("{host}: unexpected check {check}: {f}"));
            assert_eq!(f["level"], *level, "{host} {check}: {f}");
            seen += 1;
        }
    }
    want.retain(|(_, on, _)| *on == "gpu1");
    assert_eq!(seen, 3 * 17 + want.len(), "{v}");
    assert!(
        table.contains("WARN master1 hostname: \"debian\", also reported by"),
        "{table}"
    );
    let after: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    common::assert_same_etc(&before, &after, "check changed /etc");
    for h in &lab.hosts {
        let (_, left) = lab.try_exec(h, "ls -a /var/lib | grep -c gantry-fsync-probe || true");
        assert_eq!(left.trim(), "0", "{h}: the fsync probe left its file");
    }
    // JSON for machines: the measured values are there.
    let gpu = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "gpu1")
        .unwrap();
    let driver = gpu["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "gpu-driver")
        .unwrap();
    assert_eq!(driver["level"], "pass");
    assert_eq!(driver["measured"], "driver 575.64.03");
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn hosts_made_to_fail_fail_with_the_right_message() {
    let lab = Lab::up("c-bad", 82);
    // A duplicate hostname, with a playbook that does not rename hosts (but
    // has the port table).
    lab.exec("worker1", "hostname master1");
    lab.exec("master1", "hostname master1");
    // A port of the table taken (the kubelet's).
    lab.docker(&["exec", "-d"], "worker1", &["nc", "-lk", "10250"]);
    // An old driver: the stand-in prints the seeds' real 550.144.03 output.
    common::docker(&[
        "cp",
        &format!(
            "{}/tests/fixtures/outputs/nvidia-smi-550.144.03.txt",
            common::root().display()
        ),
        &format!(
            "{}:/usr/local/share/standin/nvidia-smi.txt",
            lab.container("gpu1")
        ),
    ]);
    // A firewall on worker1 drops the kubelet port of the table: the other
    // hosts' probes time out on it.
    lab.exec(
        "worker1",
        "nft add table inet labtest && nft 'add chain inet labtest input { type filter hook input priority 0; }' && nft add rule inet labtest input tcp dport 10250 drop",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = lab.gantry(&[
        "check",
        "--accept-new-host-keys",
        "-p",
        "tests/fixtures/playbooks/firewall-only.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(t.contains("FAIL worker1 hostname: \"master1\", also reported by master1 (required: unique across the fleet)"), "{t}");
    assert!(
        t.contains("FAIL worker1 no-kubernetes: something listens on 10250"),
        "{t}"
    );
    assert!(t.contains("FAIL gpu1 gpu-driver: driver 550.144.03 (required: >= 575); fix: install NVIDIA driver 575 or newer"), "{t}");
    assert!(!t.contains("FAIL master1 no-kubernetes"), "{t}");
    for from in ["master1", "gpu1"] {
        assert!(
            t.contains(&format!("FAIL {from} ports-reachable: blocked: worker1 ({}) 10250/tcp kubelet metrics (required: every table port reachable host to host)", lab.ip(1))),
            "{t}"
        );
    }
    assert!(!t.contains("FAIL worker1 ports-reachable"), "{t}");

    // apply runs the fail-level checks first and changes nothing.
    let before: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    let out = lab.gantry(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(
        t.contains("FAILED preflight worker1 no-kubernetes: something listens on 10250"),
        "{t}"
    );
    assert!(
        t.contains("nothing was changed. Fix them, or rerun with --skip-preflight"),
        "{t}"
    );
    let after: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    common::assert_same_etc(
        &before,
        &after,
        "apply changed a host although preflight failed",
    );
    // --skip-preflight goes ahead.
    let out = lab.gantry(&["apply", "--skip-preflight"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(lab.exec("worker1", "hostname").trim(), "worker1");
}
