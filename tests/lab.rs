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
use std::time::Duration;

use common::{Lab, root, row, summary, text};

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn plan_is_read_only_then_apply_converges_and_second_apply_changes_nothing() {
    let lab = Lab::up("t-converge", 21);
    let before: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();

    let plan = lab.gantry(&["plan", "--accept-new-host-keys"]);
    assert_eq!(plan.status.code(), Some(0));
    let out = text(&plan.stdout);
    // The same change on every host prints once, naming the hosts; what
    // differs only by each host's own name shows it as ‹host›.
    assert!(
        out.contains("would change all 3 hosts hostname/set the host name: /etc/hostname says \"debian\", live hostname is \"debian\"\n    --- a/etc/hostname\n    +++ b/etc/hostname\n    @@ -1 +1 @@\n    -debian\n    +‹host›\n"),
        "{out}"
    );
    assert!(
        out.contains("(‹host› stands for each host's own name.)\n"),
        "{out}"
    );
    assert!(
        out.contains("\nPlan: 45 change(s) on 3 of 3 host(s), in "),
        "terraform's closing line: {out}"
    );
    assert_eq!(
        out.matches("hostname/set the host name").count(),
        1,
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

    // The same plan as one JSON document (schema gantry.run/1): every
    // task of every host, with what a change would be.
    let json = lab.gantry(&["plan", "-o", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let doc: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("plan -o json prints one JSON document");
    common::assert_schema(&doc, "run");
    assert_eq!(
        (&doc["schema"], &doc["command"], &doc["playbook"]),
        (&"gantry.run/1".into(), &"plan".into(), &"node-prep".into())
    );
    assert_eq!(doc["totals"]["changed"], 45, "{doc}");
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["name"], lab.hosts[i].as_str());
        assert_eq!(h["results"].as_array().unwrap().len(), 21, "{h}");
        let name = h["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == "hostname/set the host name")
            .unwrap();
        assert_eq!(name["outcome"], "changed");
        assert!(
            name["diff"]
                .as_str()
                .unwrap()
                .contains(&format!("+{}\n", lab.hosts[i])),
            "{name}"
        );
    }

    // An installed gantry (the binary alone, in a prefix of its own) plans
    // the same from a directory outside the repository: its playbooks and
    // roles are built in.
    let prefix = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(prefix.path().join("bin")).unwrap();
    std::fs::create_dir_all(prefix.path().join("home")).unwrap();
    let installed = prefix.path().join("bin/gantry");
    std::fs::copy(env!("CARGO_BIN_EXE_gantry"), &installed).unwrap();
    let elsewhere = Command::new(&installed)
        .args(["plan", "-i", lab.inventory.to_str().unwrap()])
        .current_dir(prefix.path())
        .env("HOME", prefix.path().join("home"))
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    assert_eq!(
        elsewhere.status.code(),
        Some(0),
        "{}",
        text(&elsewhere.stderr)
    );
    assert!(
        text(&elsewhere.stdout).contains("\nPlan: 45 change(s) on 3 of 3 host(s), in "),
        "{}",
        text(&elsewhere.stdout)
    );

    let nat: Vec<String> = lab
        .hosts
        .iter()
        .map(|h| lab.exec(h, "nft list table ip nat"))
        .collect();
    let apply = lab.gantry(&["apply"]);
    assert_eq!(apply.status.code(), Some(0));
    // node-prep's 21 tasks per host: 15 change a fresh host; 5 are skipped
    // (swapoff now: the lab keeps its swap; firewalld's directories, ipsets,
    // policy and reload: firewalld does not run); 1 is ok
    // (/etc/security/limits.d exists).
    for h in &lab.hosts {
        assert_eq!(row(&apply, h), [1, 15, 0, 5, 0], "{h}");
    }
    assert_eq!(
        summary(&apply),
        "3 hosts: ok=3 changed=45 failed=0 skipped=15 unreachable=0"
    );
    // Apply holds its changes to the end and groups them like the plan:
    // the host name change prints once for the three hosts. Without a
    // terminal, each host's end is a line of its own as it happens.
    let shown = text(&apply.stdout);
    assert_eq!(
        shown.matches("hostname/set the host name").count(),
        1,
        "{shown}"
    );
    assert!(
        shown.contains("changed all 3 hosts hostname/set the host name: "),
        "{shown}"
    );
    assert!(
        shown.contains("\nApplied: 45 change(s) on 3 of 3 host(s), in "),
        "{shown}"
    );
    for h in &lab.hosts {
        assert!(
            shown.contains(&format!(
                "done {h}: ok=1 changed=15 failed=0 skipped=5 unreachable=0\n"
            )),
            "{shown}"
        );
    }
    // The run report: report.json holds every task of every host with its
    // times and cost, report.html shows them in a real browser.
    let stderr = text(&apply.stderr);
    let page = std::path::PathBuf::from(
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("run report: "))
            .unwrap_or_else(|| panic!("no run report named: {stderr}")),
    );
    let page = if page.is_absolute() {
        page
    } else {
        root().join(page)
    };
    assert!(
        page.starts_with(lab.inventory.parent().unwrap().join(".gantry/runs")),
        "{}",
        page.display()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(page.with_file_name("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema"], "gantry.report/1");
    common::assert_schema(&report, "report");
    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["name"], lab.hosts[i].as_str());
        let tasks = h["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 21, "{h}");
        let n = |k: &str| tasks.iter().map(|t| t[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(
            tasks.iter().filter(|t| t["outcome"] == "changed").count(),
            15
        );
        assert!(
            n("round_trips") >= 2 && n("bytes_sent") > 0 && n("bytes_received") > 0,
            "{h}"
        );
        for t in tasks {
            assert!(t["end_ms"].as_u64() >= t["start_ms"].as_u64(), "{t}");
            assert!(
                t["end_ms"].as_u64() <= report["duration_ms"].as_u64(),
                "{t}"
            );
        }
        let name = tasks
            .iter()
            .find(|t| t["task"] == "hostname/set the host name")
            .unwrap();
        assert!(name["round_trips"].as_u64().unwrap() >= 1, "{name}");
    }
    assert_eq!(report["slowest_hosts"].as_array().unwrap().len(), 3);
    let png = common::artifacts().join("run-report.png");
    let dom = common::browser(&page, &png);
    for h in &lab.hosts {
        assert!(
            dom.contains(&format!("<g class=\"lane\" data-host=\"{h}\">")),
            "{h}: {dom}"
        );
    }
    assert_eq!(
        dom.matches("<rect class=\"bar\"").count(),
        63,
        "a bar per task"
    );
    assert!(
        dom.contains("<title>master1 hostname/set the host name: changed in "),
        "{dom}"
    );
    assert!(dom.contains("id=\"slowest-tasks\""), "{dom}");
    println!("run report screenshot: {}", png.display());
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
    }
    // The docker NAT table in each host's netns is not gantry's: untouched.
    for (h, before) in lab.hosts.iter().zip(&nat) {
        assert_eq!(&lab.exec(h, "nft list table ip nat"), before, "{h}");
    }
    let converged: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();

    let logins: Vec<usize> = lab.hosts.iter().map(|h| lab.logins(h)).collect();
    let again = lab.gantry(&["apply"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        summary(&again).contains(" changed=0 failed=0"),
        "{}",
        summary(&again)
    );
    let still: Vec<String> = lab.hosts.iter().map(|h| lab.etc_state(h)).collect();
    common::assert_same_etc(&converged, &still, "a no-op apply touched /etc");
    // apply goes on with its preflight's connections: one login per host.
    for (h, n) in lab.hosts.iter().zip(&logins) {
        assert_eq!(lab.logins(h), n + 1, "{h}: logins during one apply");
    }
    // apply -o json: the same exit code, and the document counts no change.
    let json = lab.gantry(&["apply", "--skip-preflight", "-o", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    common::assert_schema(&doc, "run");
    assert_eq!(
        (&doc["command"], &doc["totals"]["changed"]),
        (&"apply".into(), &0.into())
    );
    assert_eq!(
        doc["totals"]["ok"].as_u64().unwrap() + doc["totals"]["skipped"].as_u64().unwrap(),
        63
    );
    // A no-op run costs three round trips per host: lock and facts, the
    // probes, unlock (the debug log times each remote command).
    let traced = lab.gantry_env(
        &["apply", "--skip-preflight"],
        &[("GANTRY_LOG", "gantry::ssh=debug")],
    );
    assert_eq!(traced.status.code(), Some(0));
    let log = text(&traced.stderr);
    for i in 0..lab.hosts.len() {
        let ip = lab.ip(i);
        let names_host = |l: &str| {
            l.match_indices(&ip)
                .any(|(at, _)| !l[at + ip.len()..].starts_with(|c: char| c.is_ascii_digit()))
        };
        assert_eq!(
            log.lines().filter(|l| names_host(l)).count(),
            3,
            "round trips to {}:\n{log}",
            lab.hosts[i]
        );
    }

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
    let others: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("would change ") && !l.contains("would change worker1 "))
        .collect();
    assert!(
        others.is_empty(),
        "only the drifted host changes: {others:?}"
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
    // A man in the middle offering only another algorithm (review finding
    // 11): the host has a recorded key, so this is a change, not a new host
    // to learn, with or without --accept-new-host-keys.
    lab.exec(
        "master1",
        "echo 'HostKeyAlgorithms ecdsa-sha2-nistp256' >> /etc/ssh/sshd_config && systemctl restart ssh",
    );
    let out = lab.gantry(&["plan", "--accept-new-host-keys"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "UNREACHABLE master1: HOST KEY CHANGED for {}:22: it now offers ecdsa-sha2-nistp256 ",
            lab.ip(0)
        )),
        "{shown}"
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), recorded);
    lab.exec(
        "master1",
        "sed -i '/^HostKeyAlgorithms/d' /etc/ssh/sshd_config && systemctl restart ssh",
    );
    // A revoked key is refused even where a plain line lists it, and never
    // learned (finding 12).
    let key = lab.exec(
        "master1",
        "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub",
    );
    std::fs::write(&kh, format!("{recorded}@revoked * {key}")).unwrap();
    let out = lab.gantry(&["plan", "--accept-new-host-keys"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!(
            "is REVOKED ({} line {})",
            kh.display(),
            recorded.lines().count() + 1
        )),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(&kh, &recorded).unwrap();
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
        shown.contains(&format!(
            "which is none of the keys recorded for it ({} line ",
            kh.display()
        )),
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
    // On fresh hosts the join command exists only once apply has run init:
    // plan says so rather than guess. (The file is 0600: its diff shows only
    // when asked for.)
    let plan = lab.gantry(&[
        "plan",
        "--accept-new-host-keys",
        "--show-secret-diffs",
        "-p",
        "tests/fixtures/playbooks/cross-host.yaml",
    ]);
    assert_eq!(plan.status.code(), Some(0));
    let shown = text(&plan.stdout);
    assert!(
        shown.contains("would change 2 hosts (worker1, gpu1) join/keep the join command: /root/join.sh does not exist\n    --- a/root/join.sh\n    +++ b/root/join.sh\n    @@ -0,0 +1 @@\n    +(known after apply)\n"),
        "{shown}"
    );
    // One fork: a worker waiting for master1's output must give its slot back.
    // This playbook does not name hosts, and fresh lab hosts all say "debian":
    // preflight would rightly refuse that, so it is skipped here.
    let out = lab.gantry(&[
        "apply",
        "--accept-new-host-keys",
        "--skip-preflight",
        "--forks",
        "1",
        "--show-secret-diffs",
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
    // Each worker's join.sh diff is shown (asked for: the file is 0600),
    // with the secret line redacted.
    for w in ["worker1", "gpu1"] {
        let shown = format!("changed {w} join/keep the join command: ");
        let at = all
            .find(&shown)
            .unwrap_or_else(|| panic!("{shown:?} not in:\n{all}"));
        let diff: Vec<&str> = all[at..].lines().skip(1).take(4).collect();
        assert!(
            diff.contains(&"    +********"),
            "{w}: the redacted diff line: {diff:?}"
        );
    }
    // Registered output is not journaled.
    let journal = std::fs::read_to_string(
        lab.inventory
            .parent()
            .unwrap()
            .join(".gantry/journal.jsonl"),
    )
    .unwrap();
    assert!(journal.contains("init/print join command"), "{journal}");
    assert!(!journal.contains(&token), "the journal holds the secret");
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
    lab.cut("gpu1", false);
    let out = lab.gantry(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("UNREACHABLE gpu1: connect to 172.29.27.13:22"),
        "{shown}"
    );
    assert!(shown.contains("(21 task(s) not run)"), "{shown}");
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
    assert_eq!(lab.exec("worker1", "hostname").trim(), "worker1");
    // Healed, the host converges like the rest.
    lab.cut("gpu1", true);
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
        shown.contains("UNREACHABLE worker1: become: sudo wants a password for this user; set ssh.become_password ({ env: NAME } or { file: PATH }) or pass --ask-become-pass"),
        "{shown}"
    );
    assert_eq!(
        lab.exec("worker1", "hostname").trim(),
        "debian",
        "nothing ran on the host whose sudo wants a password"
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
    assert!(shown.contains("FAILED worker1 slow/a step that hangs on one host: command timed out after 2s; gantry stopped it on the host\n    command: run: sleep 30"), "{shown}");
    assert!(
        !lab.try_exec("worker1", "pgrep -x sleep").0,
        "the hung command goes on"
    );
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
    /// The agent ends with the test, passed or failed.
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock)
            .status()
            .unwrap()
            .success()
    );
    let home = dir.to_str().unwrap();
    let out = lab.gantry_env(
        &["apply", "--accept-new-host-keys"],
        &[("SSH_AUTH_SOCK", sock.to_str().unwrap()), ("HOME", home)],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn fail_fast_max_fail_percent_and_from() {
    let lab = Lab::up("t-stop", 31);
    // worker1 fails 2 s in; master1 and gpu1 are then inside a 5 s step.
    // Fresh hosts share a name and this playbook does not rename them.
    let apply = |extra: &[&str]| {
        let mut a = vec![
            "apply",
            "--accept-new-host-keys",
            "--skip-preflight",
            "-p",
            "tests/fixtures/playbooks/stop-policy.yaml",
        ];
        a.extend(extra);
        lab.gantry(&a)
    };
    let ran_after = |h: &str| lab.try_exec(h, "test -e /root/after-stop").0;
    for (flag, why) in [
        (vec!["--fail-fast"], "--fail-fast: a host failed (1 so far)"),
        (
            vec!["--max-fail-percent", "30"],
            "--max-fail-percent 30: 1 of 3 hosts failed",
        ),
    ] {
        let out = apply(&flag);
        assert_eq!(out.status.code(), Some(1));
        let shown = text(&out.stdout);
        assert!(
            shown.contains(&format!(
                "note: stopping: {why}; running tasks finish, no new ones start\n"
            )),
            "{shown}"
        );
        for h in ["master1", "gpu1"] {
            // The running step finished; the one after it never started.
            assert!(
                shown.contains(&format!(
                    "skipped {h} stop-policy/the step after it: not started: {why}\n"
                )),
                "{shown}"
            );
            assert!(!ran_after(h), "{h}: a new task started after the stop");
            assert_eq!(row(&out, h), [0, 1, 0, 2, 0]);
        }
    }
    // One failed host of three is 33 %: under 50 % the others go on.
    let out = apply(&["--max-fail-percent", "50"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !text(&out.stdout).contains("stopping"),
        "{}",
        text(&out.stdout)
    );
    for h in ["master1", "gpu1"] {
        assert!(ran_after(h), "{h}: the last step did not run");
    }
    assert!(!ran_after("worker1"));
    // --from starts each host at that task: worker1's failing step is not run.
    let out = apply(&["--from", "stop-policy/the step after it"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(ran_after("worker1"));
    assert_eq!(row(&out, "worker1"), [0, 1, 0, 0, 0]);
    assert_eq!(row(&out, "master1"), [1, 0, 0, 0, 0]);
    assert!(
        summary(&out).ends_with(" (and 6 task(s) done in earlier runs, not rerun)"),
        "{}",
        summary(&out)
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn offline_package_from_a_directory_on_the_host() {
    let lab = Lab::up_with("t-pkg", 32, "master1:control-plane");
    // Real .debs, built on the host by dpkg-deb; the lab has no network.
    // hello needs dep (through a virtual package dep provides); other is in
    // the directory too, and nothing names or needs it.
    lab.exec(
        "master1",
        "set -e; mkdir -p /srv/pkgs; for p in hello dep other; do d=/tmp/build/gantry-lab-$p; mkdir -p $d/DEBIAN $d/usr/share/gantry-lab-$p
printf 'Package: gantry-lab-%s\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: gantry lab <lab@example.invalid>\\nDescription: built by a gantry lab test\\n' $p > $d/DEBIAN/control
echo $p > $d/usr/share/gantry-lab-$p/$p; done
echo 'Depends: gantry-lab-virtual (>= 1) | gantry-lab-absent' >> /tmp/build/gantry-lab-hello/DEBIAN/control
echo 'Provides: gantry-lab-virtual (= 1.0)' >> /tmp/build/gantry-lab-dep/DEBIAN/control
for p in hello dep other; do dpkg-deb --build /tmp/build/gantry-lab-$p /srv/pkgs/gantry-lab-${p}_1.0_all.deb >/dev/null; done",
    );
    let pb = "tests/fixtures/playbooks/offline-package.yaml";
    let out = lab.gantry(&["apply", "--accept-new-host-keys", "-p", pb]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains(
            "changed master1 offline-package/a package from the host's directory: not installed: gantry-lab-hello\n"
        ),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        lab.exec(
            "master1",
            "dpkg-query -W -f='${db:Status-Status} ${Version}' gantry-lab-hello"
        ),
        "installed 1.0"
    );
    assert_eq!(
        lab.exec("master1", "cat /usr/share/gantry-lab-hello/hello"),
        "hello\n"
    );
    // What it needs came along; what nothing named stayed in the directory
    // (review finding 21: `./*.deb` installed it all).
    assert!(lab.try_exec("master1", "dpkg-query -W gantry-lab-dep").0);
    assert!(
        !lab.try_exec(
            "master1",
            "dpkg-query -W -f='${db:Status-Status}' gantry-lab-other | grep -qx installed"
        )
        .0
    );
    let again = lab.gantry(&["apply", "-p", pb, "-v"]);
    assert_eq!(row(&again, "master1"), [1, 0, 0, 0, 0]);
    assert!(
        text(&again.stdout).contains(
            "ok master1 offline-package/a package from the host's directory: installed: gantry-lab-hello\n"
        ),
        "{}",
        text(&again.stdout)
    );
    // A newer version that needs a package the directory lacks: refused at
    // once (no repository is tried), naming what is missing.
    lab.exec("master1", "dpkg -r gantry-lab-hello >/dev/null");
    lab.exec(
        "master1",
        "set -e; d=/tmp/build/gantry-lab-hello; sed -i 's/^Version: 1.0$/Version: 2.0/; s/^Depends: .*/Depends: gantry-lab-missing/' $d/DEBIAN/control
rm /srv/pkgs/*.deb; dpkg-deb --build $d /srv/pkgs/gantry-lab-hello_2.0_all.deb >/dev/null",
    );
    let out = lab.gantry_within(&["apply", "-p", pb], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("gantry-lab-hello : Depends: gantry-lab-missing but it is not installable"),
        "{shown}"
    );
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn a_login_shell_that_talks_is_never_taken_for_an_answer() {
    let lab = Lab::up_with("t-banner", 33, "master1:control-plane,worker1:worker");
    // As GPU servers often greet: a banner on stdout and a module system's
    // note on stderr, at the top of root's .bashrc (sshd runs every command
    // through the login shell, so each request and side channel meets them).
    for h in &lab.hosts {
        lab.exec(
            h,
            "printf '%s\\n' 'echo \"Welcome to prod, $(hostname)\"' 'echo \"module: cuda/12.4 loaded\" >&2' | cat - /root/.bashrc > /tmp/rc && mv /tmp/rc /root/.bashrc",
        );
    }
    // An SSH command meets both lines, as gantry's will.
    let key = lab.inventory.parent().unwrap().join("id_ed25519");
    let login = Command::new("ssh")
        .args(["-i", key.to_str().unwrap()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
        .arg(format!("root@{}", lab.ip(0)))
        .arg("true")
        .output()
        .unwrap();
    assert!(
        text(&login.stdout).starts_with("Welcome to prod, "),
        "{}",
        text(&login.stdout)
    );
    assert_eq!(text(&login.stderr), "module: cuda/12.4 loaded\n");
    let plan = lab.gantry(&["plan", "--accept-new-host-keys"]);
    assert_eq!(plan.status.code(), Some(0));
    assert!(
        !text(&plan.stdout).contains("Welcome"),
        "{}",
        text(&plan.stdout)
    );
    let check = lab.gantry(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
    let apply = lab.gantry(&["apply"]);
    assert_eq!(apply.status.code(), Some(0));
    assert_eq!(lab.exec("worker1", "hostname").trim(), "worker1");
    let again = lab.gantry(&["apply"]);
    assert!(
        summary(&again).contains(" changed=0 failed=0"),
        "{}",
        summary(&again)
    );
    for out in [&plan, &check, &apply, &again] {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!all.contains("Welcome to prod"), "{all}");
    }
}

/// Security review findings 2, 3 and 16, against real hosts: a device as a
/// destination, a command that prints without end, a NUL byte in a value,
/// and a local user racing gantry's writes in a directory they can write.
/// Each fails its own task at most; the other host finishes, the lock is
/// released, and no file but gantry's own is ever written.
#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn a_hostile_host_costs_a_task_never_the_controller_or_another_file() {
    let lab = Lab::up_with("t-bounded", 34, "master1:control-plane,worker1:worker");
    let base = std::fs::read_to_string(&lab.inventory)
        .unwrap()
        .replace("ssh:\n", "ssh:\n  max_output_mib: 2\n")
        + "  nul_value: \"a\\0b\"\n";
    let run = |case: &str, extra: &str| {
        std::fs::write(&lab.inventory, format!("{base}  case: {case}\n{extra}")).unwrap();
        let out = lab.gantry(&[
            "apply",
            "--accept-new-host-keys",
            "-p",
            "tests/fixtures/playbooks/bounded.yaml",
            "--skip-preflight",
        ]);
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(lab.exec("worker1", "cat /root/after"), format!("{case}\n"));
        for h in ["master1", "worker1"] {
            assert!(
                !lab.try_exec(h, "test -e /run/gantry.lock").0,
                "{h}: the lock was left: {shown}"
            );
        }
        (out.status.code(), shown)
    };
    let (code, shown) = run("device", "");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("FAILED master1 bounded/a destination that is a device: /dev/zero is a character special file: gantry reads and writes only regular files"),
        "{shown}"
    );
    // Past the cap (2 MiB here), the task fails and the shell is closed,
    // which ends the command on the host.
    let (code, shown) = run("flood", "");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("FAILED master1 bounded/a command that prints without end: the command's output passed the cap of 2 MiB (ssh.max_output_mib)"),
        "{shown}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !lab.try_exec("master1", "pgrep -x yes").0,
        "the flood goes on"
    );
    // A NUL byte fails the task, names no value, and the host goes on to
    // release its lock (it was marked unreachable and kept its lock before).
    let (code, shown) = run("nul", "");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("FAILED master1 bounded/a value that holds a NUL byte: a value of 3 bytes holds a NUL byte (at byte 1), which no remote command can be given"),
        "{shown}"
    );
    // The race: `nobody` may write /srv/shared (not sticky), and swaps
    // every temp file of gantry's it sees for a link to root's 0600 file.
    lab.exec(
        "master1",
        "mkdir -p /srv/shared && chmod 777 /srv/shared && printf 'root only\\n' > /root/victim && chmod 600 /root/victim",
    );
    let racer = r#"
import os, time
n = 0
end = time.time() + 120
while time.time() < end and not os.path.exists('/srv/shared/stop'):
    for e in os.scandir('/srv/shared'):
        if '.gantry.' in e.name and not e.is_symlink():
            try:
                os.rename(e.path, '/srv/shared/stolen.%d' % n)
                os.symlink('/root/victim', e.path)
                n += 1
                open('/tmp/swaps', 'w').write(str(n))
            except OSError:
                pass
"#;
    let py = "/tmp/racer.py";
    lab.exec(
        "master1",
        &format!("cat > {py} <<'EOF'\n{racer}\nEOF\nchmod 644 {py}"),
    );
    lab.docker(&["exec", "-d", "-u", "nobody"], "master1", &["python3", py]);
    let mut failed_writes = 0;
    for round in 0..4 {
        let (_, shown) = run("race", &format!("  round: {round}\n"));
        failed_writes += shown
            .matches("was replaced by a link while it was written")
            .count();
    }
    lab.exec("master1", "touch /srv/shared/stop");
    let swaps: usize = lab
        .try_exec("master1", "cat /tmp/swaps")
        .1
        .trim()
        .parse()
        .unwrap_or(0);
    println!("the racer swapped {swaps} temp files; {failed_writes} writes refused the link");
    assert!(swaps > 0, "the racer never won: this run proved nothing");
    assert_eq!(
        lab.exec(
            "master1",
            "stat -c '%U:%G %a' /root/victim; cat /root/victim"
        ),
        "root:root 600\nroot only\n"
    );
    // No managed path became a link.
    assert_eq!(
        lab.exec("master1", "find /srv/shared -name 'conf*' -type l | wc -l")
            .trim(),
        "0"
    );
}
