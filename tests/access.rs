//! Lab tests of how gantry reaches hosts in private data centers: sudo that
//! asks for a password, and hosts reachable only through bastions (jump
//! hosts). Real sshd and real sudo in the lab's containers; nothing here is
//! a stand-in.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, root, row, summary, text};

const PASSWORD: &str = "Corr3ct-h0rse-battery";

/// Every command line on this machine, sampled until `stop`: lab hosts'
/// processes are this machine's too, so a password in any process's
/// arguments, here or on a host, shows up in it.
fn sample_process_list(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut seen = String::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(out) = Command::new("ps").args(["-eo", "args"]).output() {
                seen.push_str(&text(&out.stdout));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    })
}

/// Everything gantry left beside the inventory (journal, plan and run
/// records, locks): no password may be in any of it.
fn state_files(lab: &Lab) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find \"$1\" -type f -exec cat {} + 2>/dev/null")
        .arg("sh")
        .arg(lab.inventory.parent().unwrap())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn sudo_with_a_password_from_a_file_and_from_a_prompt() {
    let lab = Lab::up_with("t-sudo", 42, "master1:control-plane,worker1:worker");
    for (h, password) in [("master1", PASSWORD), ("worker1", "another-password")] {
        lab.exec(h, &format!("useradd -m -s /bin/bash ops && echo 'ops:{password}' | chpasswd && install -d -m 700 -o ops /home/ops/.ssh && install -m 600 -o ops /lab/authorized_keys /home/ops/.ssh/authorized_keys && echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops"));
    }
    // Outside the lab's state folder, which is searched for the password.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("become-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inv = std::fs::read_to_string(&lab.inventory).unwrap().replace(
        "  user: root\n",
        &format!(
            "  user: ops\n  become: true\n  become_password: {{ file: {} }}\n",
            file.display()
        ),
    );
    std::fs::write(&lab.inventory, inv).unwrap();

    // 1. From the file: master1's sudo takes it; worker1's sudo has another
    //    password and refuses it, which fails worker1 alone, at once.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_process_list(stop.clone());
    let started = std::time::Instant::now();
    let out = lab.gantry(&["apply", "--accept-new-host-keys"]);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let processes = sampler.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("UNREACHABLE worker1: become: sudo refused the password for \"ops\" (ssh.become_password or --ask-become-pass)"),
        "{shown}"
    );
    assert!(
        took < Duration::from_secs(60),
        "a wrong password hung: {took:?}"
    );
    assert_eq!(row(&out, "master1")[2], 0, "{shown}");
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
    assert_eq!(
        lab.exec("master1", "stat -c %U /etc/sysctl.d/99-gantry.conf")
            .trim(),
        "root"
    );
    assert_eq!(lab.exec("worker1", "hostname").trim(), "debian");
    assert!(
        processes.contains("sudo -S -p gantry-sudo-"),
        "the sampler saw gantry's sudo at work:\n{processes}"
    );
    for (what, seen) in [
        ("output", format!("{shown}{}", text(&out.stderr))),
        ("process list", processes),
        ("state files", state_files(&lab)),
    ] {
        assert!(!seen.contains(PASSWORD), "the password is in the {what}");
    }

    // 2. A file others can read is refused, naming the fix.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lab.gantry(&["plan", "--limit", "master1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!(
            "UNREACHABLE master1: ssh.become_password: {} is mode 644: others can read it; run `chmod 600",
            file.display()
        )),
        "{}",
        text(&out.stdout)
    );

    // 3. From the prompt, on a terminal (a pseudo-terminal from `script`):
    //    it wins over the file, and worker1, whose password it is, converges.
    lab.exec("worker1", &format!("echo 'ops:{PASSWORD}' | chpasswd"));
    std::fs::write(&file, "not-the-password\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let line = format!(
        "{} apply --ask-become-pass -i {}",
        env!("CARGO_BIN_EXE_gantry"),
        lab.inventory.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // Type the password only once the prompt is there (echo is off then),
    // as a person would.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !text(&seen.lock().unwrap()).contains("BECOME password (sudo): ") {
        assert!(
            std::time::Instant::now() < deadline,
            "no prompt: {}",
            text(&seen.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let out = common::wait_within(
        child,
        Duration::from_secs(300),
        "gantry apply --ask-become-pass",
    );
    drop(stdin);
    reader.join().unwrap();
    let shown = text(&seen.lock().unwrap());
    println!("{shown}");
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(lab.exec("worker1", "hostname").trim(), "worker1");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed or printed"
    );
    assert!(!state_files(&lab).contains(PASSWORD));

    // 4. SSH password authentication, off unless set: with ops's key gone
    //    from master1, the key is refused, and the password from the
    //    environment gets in (sudo's from the file, fixed again).
    lab.exec("master1", "rm /home/ops/.ssh/authorized_keys");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let out = lab.gantry(&["plan", "--limit", "master1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout)
            .contains("UNREACHABLE master1: authentication as \"ops\" refused (tried: "),
        "{}",
        text(&out.stdout)
    );
    let inv = std::fs::read_to_string(&lab.inventory).unwrap().replace(
        "  become: true\n",
        "  become: true\n  password: { env: LAB_SSH_PASS }\n",
    );
    std::fs::write(&lab.inventory, inv).unwrap();
    let out = lab.gantry_env(
        &["plan", "--limit", "master1"],
        &[("LAB_SSH_PASS", PASSWORD)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        lab.exec("master1", "journalctl -u ssh -o cat --no-pager")
            .contains("Accepted password for ops"),
        "sshd took the password"
    );
    assert!(!format!("{}{}", text(&out.stdout), text(&out.stderr)).contains(PASSWORD));
}

/// Whether this machine can open a TCP connection to `ip:22` at all.
fn reachable(ip: &str) -> bool {
    let addr: SocketAddr = format!("{ip}:22").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn hosts_behind_one_and_two_bastions() {
    let lab = Lab::up_with(
        "t-jump",
        43,
        "jump1:worker,jump2:worker,master1:control-plane,worker1:worker",
    );
    let (jump1, jump2, master1, worker1) = (lab.ip(0), lab.ip(1), lab.ip(2), lab.ip(3));
    let controller = format!("172.29.{}.1", lab.net);
    // The controller's packets are dropped by jump2 and master1 (reached
    // through jump1), and worker1 answers jump2 alone (two hops). The rules
    // are in each container's own network namespace.
    let gate = |h: &str, rule: &str| {
        lab.exec(h, &format!("nft add table inet gate && nft add chain inet gate in '{{ type filter hook input priority -10; policy accept; }}' && nft add rule inet gate in {rule} drop"));
    };
    gate("jump2", &format!("ip saddr {controller}"));
    gate("master1", &format!("ip saddr {controller}"));
    gate("worker1", &format!("tcp dport 22 ip saddr != {jump2}"));
    assert!(reachable(&jump1));
    for ip in [&jump2, &master1, &worker1] {
        assert!(!reachable(ip), "{ip} answers the controller directly");
    }
    // The bastions are not cluster hosts: the inventory lists master1 and
    // worker1. master1 is behind jump1 by the operator's ssh_config
    // (ProxyJump), worker1 behind jump1 then jump2 by the inventory.
    let ssh_config = lab.inventory.parent().unwrap().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!("Host {master1}\n  ProxyJump root@{jump1}\nHost *\n  User nobody-by-default\n"),
    )
    .unwrap();
    let inv = std::fs::read_to_string(&lab.inventory).unwrap();
    let inv: String = inv
        .lines()
        .filter(|l| !l.contains("name: jump"))
        .map(|l| {
            if l.contains("name: worker1") {
                format!("{}, ssh: {{ bastion: {{ address: {jump2}, via: {{ address: {jump1} }} }} }} }}\n", l.trim_end().trim_end_matches('}').trim_end())
            } else if l == "  user: root" {
                format!("{l}\n  config: {}\n", ssh_config.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&lab.inventory, &inv).unwrap();

    let logins = lab.logins("jump1");
    let plan = lab.gantry(&["plan", "--accept-new-host-keys"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
    let apply = lab.gantry(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stdout));
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
    assert_eq!(lab.exec("worker1", "hostname").trim(), "worker1");
    // One connection to jump1 per run serves master1 (by ssh_config) and
    // the hop to jump2 (by the inventory): the same hop, shared.
    assert_eq!(
        lab.logins("jump1"),
        logins + 2,
        "one login to jump1 per run"
    );
    // Every hop's key was recorded and is checked: the bastions' under
    // their addresses, the hosts' under theirs (what they are asked for
    // through the channel).
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    for ip in [&jump1, &jump2, &master1, &worker1] {
        assert!(
            known.lines().any(|l| l.starts_with(&format!("{ip} "))),
            "{ip} not in known_hosts:\n{known}"
        );
    }
    let again = lab.gantry(&["apply"]);
    assert!(
        summary(&again).contains(" changed=0 failed=0"),
        "{}",
        summary(&again)
    );

    // A host key that changed behind the bastion is refused; the other
    // host goes on.
    lab.exec(
        "master1",
        "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh",
    );
    let out = lab.gantry(&["apply", "--accept-new-host-keys"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "UNREACHABLE master1: HOST KEY CHANGED for {master1}:22"
        )),
        "{shown}"
    );
    assert_eq!(row(&out, "worker1")[2], 0, "{shown}");

    // A bastion that is down makes its hosts unreachable, and says which.
    lab.exec(
        "jump2",
        "systemctl stop ssh.socket ssh.service 2>/dev/null; systemctl stop ssh",
    );
    let out = lab.gantry(&["apply", "--limit", "worker1"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("UNREACHABLE worker1: bastion root@{jump2}:22: connect to {jump2}:22 through the bastion")),
        "{shown}"
    );
}
