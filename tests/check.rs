//! `gantry check` in the lab. GPU hosts run the STAND-IN nvidia-smi
//! (lab/standin/nvidia-smi), which prints the seeds' real outputs.
//! What the lab cannot produce, and so is not tested here: swap turned on
//! (swapon in a lab host would reach this machine's swap) and a skewed clock
//! (lab hosts share this machine's kernel clock). Their judging is covered by
//! the parser and fixture tests in src/check.rs.

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
    for c in [
        "cpu",
        "memory",
        "disk",
        "os",
        "no-kubernetes",
        "ports-free",
        "clock-offset",
        "ports-reachable",
        "gpu-driver",
        "etcd-fsync",
        "sysctl",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(c)),
            "{c} missing:\n{table}"
        );
    }
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
    let json = lab.gantry(&["check", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
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
    let master = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "master1")
        .unwrap();
    let fsync = master["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "etcd-fsync")
        .unwrap();
    assert!(
        fsync["measured"].as_str().unwrap().starts_with("p99 "),
        "{fsync}"
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn hosts_made_to_fail_fail_with_the_right_message() {
    let lab = Lab::up("c-bad", 82);
    // A duplicate hostname, with a playbook that does not rename hosts.
    lab.exec("worker1", "hostname master1");
    lab.exec("master1", "hostname master1");
    // A port of the table taken (the kubelet's).
    let nc = std::process::Command::new("docker")
        .args([
            "exec",
            "-d",
            &lab.container("worker1"),
            "nc",
            "-lk",
            "10250",
        ])
        .status()
        .unwrap();
    assert!(nc.success());
    // An old driver: the stand-in prints the seeds' real 550.144.03 output.
    let cp = std::process::Command::new("docker")
        .args([
            "cp",
            &format!(
                "{}/tests/fixtures/outputs/nvidia-smi-550.144.03.txt",
                common::root().display()
            ),
            &format!(
                "{}:/usr/local/share/standin/nvidia-smi.txt",
                lab.container("gpu1")
            ),
        ])
        .status()
        .unwrap();
    assert!(cp.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = lab.gantry(&[
        "check",
        "--accept-new-host-keys",
        "-p",
        "tests/fixtures/playbooks/slow.yaml",
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
