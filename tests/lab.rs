//! Lab tests: gantry against real hosts. Each test starts its own lab (lab/up.sh):
//! containers from the locally built Debian image, each with systemd as PID 1,
//! its own sshd, hostname, address and /etc. Nothing here is mocked; the only
//! limits are the lab's: net.* sysctls only, and no module loading, since the
//! hosts share this machine's kernel.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`, which then reports
//! them as ignored; `./test.sh` builds the lab image and runs them.

mod common;

use std::process::Command;

use common::{Lab, root, summary, text};

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn plan_is_read_only_then_apply_converges_and_second_apply_changes_nothing() {
    let lab = Lab::up("t-converge", 21);
    let before: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();

    let plan = lab.gantry(&["plan", "--accept-new-host-keys"]);
    assert_eq!(plan.status.code(), Some(0));
    let out = text(&plan.stdout);
    assert!(
        out.contains("would change master1 hostname/set the host name"),
        "{out}"
    );
    assert!(
        out.contains(&format!("    +{} worker1", lab.ip(1))),
        "plan shows the /etc/hosts diff: {out}"
    );
    assert!(out.contains("    -> run: sysctl -w"), "{out}");
    let after: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    common::assert_same_etc(&before, &after, "plan changed /etc on a host");
    assert_eq!(
        lab.exec("master1", "hostname").trim(),
        "debian",
        "plan changed the live hostname"
    );
    assert_eq!(
        lab.exec("master1", "sysctl -n net.core.somaxconn").trim(),
        "4096",
        "plan changed a live sysctl"
    );

    let apply = lab.gantry(&["apply"]);
    assert_eq!(apply.status.code(), Some(0));
    assert!(summary(&apply).contains("changed=4"), "{}", summary(&apply));
    // What apply did, read back from the hosts themselves.
    for (i, h) in lab.hosts.iter().enumerate() {
        assert_eq!(lab.exec(h, "hostname").trim(), h);
        assert_eq!(lab.exec(h, "cat /etc/hostname").trim(), h);
        let hosts = lab.exec(h, "cat /etc/hosts");
        assert!(hosts.contains(&format!("{} {h}\n", lab.ip(i))), "{hosts}");
        assert!(
            hosts.contains(&format!("172.29.{}.100 apiserver.cluster.local\n", lab.net)),
            "{hosts}"
        );
        assert_eq!(
            lab.exec(h, "sysctl -n net.core.somaxconn net.ipv4.tcp_fin_timeout"),
            "65536\n30\n"
        );
        assert!(
            lab.exec(h, "cat /etc/fstab")
                .contains("# /swap.img none swap sw 0 0")
        );
        assert!(
            lab.exec(h, "cat /etc/security/limits.d/90-gantry.conf")
                .contains("*    soft nofile 65536\n")
        );
        let nft = lab.exec(h, "nft list table inet gantry");
        assert!(nft.contains("udp dport 8472 drop"), "{nft}");
        assert_eq!(
            nft.contains("2379-2380"),
            h == "master1",
            "etcd ports only on control planes: {nft}"
        );
        assert_eq!(
            lab.exec(h, "systemctl is-enabled gantry-firewall").trim(),
            "enabled"
        );
        // The docker NAT table in the host's netns is not gantry's: untouched.
        assert!(lab.exec(h, "nft list tables").contains("table ip nat"));
    }
    let converged: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();

    let again = lab.gantry(&["apply"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        summary(&again).contains(" changed=0 failed=0"),
        "{}",
        summary(&again)
    );
    let still: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    common::assert_same_etc(&converged, &still, "a no-op apply touched /etc");

    let plan = lab.gantry(&["plan"]);
    assert!(
        summary(&plan).contains(" to change=0 "),
        "{}",
        summary(&plan)
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn drift_shows_in_plan_and_apply_repairs_it() {
    let lab = Lab::up("t-drift", 22);
    assert_eq!(
        lab.gantry(&["apply", "--accept-new-host-keys"])
            .status
            .code(),
        Some(0)
    );
    lab.exec("worker1", "sysctl -qw net.core.somaxconn=1024; sed -i 's/^172.29.22.11 master1$/172.29.22.99 master1/' /etc/hosts; nft delete table inet gantry; echo tampered >> /etc/sysctl.d/99-gantry.conf");

    let plan = lab.gantry(&["plan"]);
    let out = text(&plan.stdout);
    assert!(
        out.contains(
            "would change worker1 sysctl/apply changed kernel parameters: 1 of 5 key(s) differ"
        ),
        "{out}"
    );
    assert!(
        out.contains("      net.core.somaxconn: 1024 -> 65536"),
        "{out}"
    );
    assert!(
        out.contains("    -172.29.22.99 master1\n    +172.29.22.11 master1"),
        "{out}"
    );
    assert!(out.contains("    -tampered"), "{out}");
    assert!(
        out.contains("would change worker1 firewall/load the nftables rules"),
        "{out}"
    );
    assert!(
        !out.contains("would change master1"),
        "only the drifted host changes: {out}"
    );

    let apply = lab.gantry(&["apply"]);
    assert_eq!(apply.status.code(), Some(0));
    assert_eq!(
        lab.exec("worker1", "sysctl -n net.core.somaxconn").trim(),
        "65536"
    );
    assert!(
        lab.exec("worker1", "cat /etc/hosts")
            .contains("172.29.22.11 master1\n")
    );
    assert!(
        lab.exec("worker1", "nft list table inet gantry")
            .contains("8472")
    );
    assert!(summary(&lab.gantry(&["apply"])).contains(" changed=0 "));
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn unknown_and_changed_host_keys_are_refused() {
    let lab = Lab::up_with("t-keys", 23, "master1:control-plane");
    let kh = lab.known_hosts();
    // Unknown: refused, fingerprint shown, known_hosts untouched.
    let out = lab.gantry(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let fp = lab.exec(
        "master1",
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2",
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "UNREACHABLE master1: host key of {}:22 is not known (ssh-ed25519 {})",
            lab.ip(0),
            fp.trim()
        )),
        "{shown}"
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "");
    // Trust on first use records it; the next run needs no flag.
    assert_eq!(
        lab.gantry(&["plan", "--accept-new-host-keys"])
            .status
            .code(),
        Some(0)
    );
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(
        recorded
            .trim_start()
            .starts_with(&format!("{} ssh-ed25519 ", lab.ip(0))),
        "{recorded}"
    );
    assert_eq!(lab.gantry(&["plan"]).status.code(), Some(0));
    // Changed: the host is reinstalled with new keys. A hard failure, even
    // with --accept-new-host-keys, and known_hosts is not rewritten.
    lab.exec(
        "master1",
        "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh",
    );
    let out = lab.gantry(&["apply", "--accept-new-host-keys"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "UNREACHABLE master1: HOST KEY CHANGED for {}:22",
            lab.ip(0)
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("which differs from {} line", kh.display())),
        "{shown}"
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), recorded);
    assert_eq!(
        lab.exec("master1", "hostname").trim(),
        "debian",
        "nothing ran on a host with a changed key"
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn hostile_inventory_values_never_reach_a_shell() {
    let lab = Lab::up_with("t-hostile", 24, "master1:control-plane");
    let mut inv = std::fs::read_to_string(&lab.inventory).unwrap();
    // A file name cannot hold '/', so the names' payloads touch relative paths
    // (the login directory, /root); the content's payload an absolute one.
    inv.push_str("  evil_name: \"x;touch pwned1 #\"\n  evil_arg: \"$(touch pwned2)`touch pwned3`\"\n  evil_content: \"'; touch /tmp/pwned4; echo '\"\n");
    std::fs::write(&lab.inventory, inv).unwrap();
    let out = lab.gantry(&[
        "apply",
        "--accept-new-host-keys",
        "-p",
        "tests/fixtures/playbooks/hostile.yaml",
        "-v",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let files = lab.exec("master1", "ls -1 / /root /tmp");
    assert!(
        !files.lines().any(|f| f.starts_with("pwned")),
        "a hostile value ran: {files}"
    );
    assert_eq!(
        lab.exec("master1", "cat '/tmp/x;touch pwned1 #'"),
        "'; touch /tmp/pwned4; echo '\n"
    );
    assert!(
        lab.exec("master1", "ls -1 /tmp/")
            .contains("$(touch pwned2)`touch pwned3`\n")
    );
    assert!(
        lab.exec("master1", "cat /etc/motd")
            .contains("\n'; touch /tmp/pwned4; echo '\n")
    );
    // `command: {cmd}` splits words as a shell would, then quotes each one:
    // no substitution happens.
    assert!(
        text(&out.stdout).contains("run: echo '$(touch' 'pwned2)`touch' 'pwned3`'"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn cross_host_secret_reaches_workers_and_never_the_output() {
    let lab = Lab::up("t-secret", 25);
    // One fork: a worker waiting for master1's output must give its slot back.
    // This playbook does not name hosts, and fresh lab hosts all say "debian":
    // preflight would rightly refuse that, so it is skipped here.
    let out = lab.gantry(&[
        "apply",
        "--accept-new-host-keys",
        "--skip-preflight",
        "--forks",
        "1",
        "-p",
        "tests/fixtures/playbooks/cross-host.yaml",
        "-v",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let token = lab.exec("master1", "cat /root/.lab-token");
    assert_eq!(token.len(), 24, "{token}");
    for w in ["worker1", "gpu1"] {
        assert_eq!(
            lab.exec(w, "cat /root/join.sh"),
            format!("kubeadm join 10.0.0.1:6443 --token {token}\n")
        );
        assert_eq!(lab.exec(w, "stat -c %a /root/join.sh").trim(), "600");
    }
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(&token), "the secret was printed:\n{all}");
    assert!(
        all.contains("********"),
        "the diff of join.sh is shown redacted:\n{all}"
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn a_failed_host_stops_only_its_own_dependents() {
    let lab = Lab::up("t-fail", 26);
    let out = lab.gantry(&[
        "apply",
        "--accept-new-host-keys",
        "-p",
        "tests/fixtures/playbooks/fail-one.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(shown.contains("FAILED worker1 fail-one/a step that fails on one host: command failed\n    command: run: sh -c"), "{shown}");
    assert!(
        shown.contains("    exit code: 3\n    stderr: disk quota exceeded"),
        "{shown}"
    );
    assert!(shown.contains("skipped worker1 hostname/set the host name: worker1:fail-one/a step that fails on one host did not succeed"), "{shown}");
    // The others went on, past the barrier.
    for h in ["master1", "gpu1"] {
        assert_eq!(lab.exec(h, "cat /root/after-failure"), "ran\n");
        assert_eq!(lab.exec(h, "hostname").trim(), h);
    }
    assert_eq!(lab.exec("worker1", "hostname").trim(), "debian");
    assert!(
        shown.contains("worker1     0         0      1       2           0"),
        "{shown}"
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn an_unreachable_host_does_not_hold_up_the_others() {
    let lab = Lab::up("t-down", 27);
    assert_eq!(
        lab.gantry(&["plan", "--accept-new-host-keys"])
            .status
            .code(),
        Some(0)
    );
    let cut = Command::new(root().join("lab/cut.sh"))
        .args([lab.name.as_str(), "gpu1"])
        .output()
        .unwrap();
    assert!(cut.status.success(), "{}", text(&cut.stderr));
    let out = lab.gantry(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("UNREACHABLE gpu1: connect to 172.29.27.13:22"),
        "{shown}"
    );
    assert!(shown.contains("(19 task(s) not run)"), "{shown}");
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
    assert_eq!(lab.exec("worker1", "hostname").trim(), "worker1");
    // Healed, the host converges like the rest.
    let heal = Command::new(root().join("lab/cut.sh"))
        .args([lab.name.as_str(), "gpu1", "heal"])
        .output()
        .unwrap();
    assert!(heal.status.success(), "{}", text(&heal.stderr));
    assert_eq!(lab.gantry(&["apply"]).status.code(), Some(0));
    assert_eq!(lab.exec("gpu1", "hostname").trim(), "gpu1");
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn become_uses_sudo_and_says_when_a_password_is_needed() {
    let lab = Lab::up_with("t-become", 28, "master1:control-plane,worker1:worker");
    for (h, sudoers) in [
        ("master1", "ops ALL=(ALL) NOPASSWD: ALL"),
        ("worker1", "ops ALL=(ALL) ALL"),
    ] {
        lab.exec(h, &format!("useradd -m -s /bin/bash ops && install -d -m 700 -o ops /home/ops/.ssh && install -m 600 -o ops /lab/authorized_keys /home/ops/.ssh/authorized_keys && echo '{sudoers}' > /etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops"));
    }
    let inv = std::fs::read_to_string(&lab.inventory)
        .unwrap()
        .replace("  user: root\n", "  user: ops\n  become: true\n");
    std::fs::write(&lab.inventory, inv).unwrap();
    let out = lab.gantry(&["apply", "--accept-new-host-keys"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("become: sudo wants a password for this user; gantry uses `sudo -n`"),
        "{shown}"
    );
    assert_eq!(
        lab.exec("master1", "hostname").trim(),
        "master1",
        "become via sudo -n worked"
    );
    assert_eq!(
        lab.exec("master1", "stat -c %U /etc/sysctl.d/99-gantry.conf")
            .trim(),
        "root"
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn a_command_past_its_timeout_fails_that_host_only() {
    let lab = Lab::up_with("t-slow", 29, "master1:control-plane,worker1:worker");
    let started = std::time::Instant::now();
    // Fresh lab hosts share a name and this playbook does not rename them.
    let out = lab.gantry(&[
        "apply",
        "--accept-new-host-keys",
        "--skip-preflight",
        "-p",
        "tests/fixtures/playbooks/slow.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed().as_secs() < 25,
        "the run waited for the hung command"
    );
    let shown = text(&out.stdout);
    assert!(shown.contains("FAILED worker1 slow/a step that hangs on one host: command timed out after 2s\n    command: run: sleep 30"), "{shown}");
    assert_eq!(lab.exec("master1", "cat /root/after-slow"), "ran\n");
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn rsa_key_through_ssh_agent() {
    let lab = Lab::up_with("t-agent", 30, "master1:control-plane");
    let dir = lab.inventory.parent().unwrap().to_path_buf();
    let key = dir.join("id_rsa");
    let _ = std::fs::remove_file(&key);
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let pubkey = std::fs::read_to_string(dir.join("id_rsa.pub")).unwrap();
    lab.exec(
        "master1",
        &format!("echo '{}' > /root/.ssh/authorized_keys", pubkey.trim()),
    );
    // The inventory names no key: gantry asks the agent.
    let inv = std::fs::read_to_string(&lab.inventory).unwrap();
    let inv: String = inv
        .lines()
        .filter(|l| !l.contains("identity_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&lab.inventory, inv).unwrap();
    let sock = dir.join("agent.sock");
    let _ = std::fs::remove_file(&sock);
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock)
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "apply",
            "--accept-new-host-keys",
            "-i",
            lab.inventory.to_str().unwrap(),
        ])
        .current_dir(root())
        .env("SSH_AUTH_SOCK", &sock)
        .env("HOME", &dir)
        .output()
        .unwrap();
    let _ = agent.kill();
    println!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
}
