//! The install guide's own OS (RHEL 8.9) on the paths gantry takes for it:
//! firewalld running, rpm offline installs, SELinux labels. Lab tests, on
//! the lab's Debian hosts with the real programs where Debian has them:
//! firewalld 1.3 (nftables backend) under systemd and D-Bus, rpm 4.18 and
//! dnf 4.14 with packages built here by rpmbuild. What stands in, each
//! test says.

mod common;

use std::time::Duration;

use common::{Lab, row, text};

/// Whether `from` can open a TCP connection to `ip:port` (a listener is
/// there; a firewall's reject or drop says no).
fn connects(lab: &Lab, from: &str, ip: &str, port: u16) -> bool {
    lab.try_exec(from, &format!("nc -z -w 2 {ip} {port}")).0
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn firewalld_live_opens_the_port_table_to_its_sources_and_leaves_the_rest() {
    // outside1 is a host of the same network that is not in the cluster:
    // the cluster's inventory leaves it out.
    let lab = Lab::up_with(
        "t-fwd",
        44,
        "master1:control-plane,worker1:worker,outside1:worker",
    );
    let dir = lab.inventory.parent().unwrap();
    let cluster = dir.join("cluster.yaml");
    let whole = std::fs::read_to_string(&lab.inventory).unwrap();
    std::fs::write(
        &cluster,
        whole
            .lines()
            .filter(|l| !l.contains("name: outside1"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    // firewalld runs on the cluster's hosts, as on the guide's RHEL
    // servers, and the operator has opened a port of their own (9999,
    // outside the port table) in the default zone.
    for h in ["master1", "worker1"] {
        lab.exec(
            h,
            "systemctl start firewalld && firewall-cmd --permanent --zone=public --add-port=9999/tcp >/dev/null && firewall-cmd --reload >/dev/null && firewall-cmd --state",
        );
    }
    let out = lab.gantry_for(
        &cluster,
        &["apply", "--accept-new-host-keys", "-p", "node-prep"],
    );
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("firewall/firewalld policy for the port table"),
        "{shown}"
    );
    assert!(shown.contains("firewall/reload firewalld"), "{shown}");
    // gantry's table of its own is not made where firewalld runs.
    assert!(!lab.try_exec("master1", "nft list table inet gantry").0);
    let policy = lab.exec("master1", "firewall-cmd --info-policy=gantry");
    assert!(policy.contains("ingress-zones: ANY"), "{policy}");
    assert!(
        policy.contains(
            "rule family=\"ipv4\" source ipset=\"gantry-control-planes\" port port=\"2379-2380\" protocol=\"tcp\" accept"
        ),
        "{policy}"
    );
    assert_eq!(
        lab.exec(
            "master1",
            "firewall-cmd --info-ipset=gantry-hosts | grep entries:"
        )
        .trim(),
        format!("entries: {} {}", lab.ip(0), lab.ip(1))
    );
    // No zone of the operator's was edited or bound.
    assert!(
        lab.exec("master1", "firewall-cmd --get-active-zones")
            .trim()
            .is_empty()
    );
    // Applied again: nothing changes, and firewalld is not reloaded.
    let again = lab.gantry_for(&cluster, &["apply", "-p", "node-prep"]);
    assert_eq!(again.status.code(), Some(0));
    for h in ["master1", "worker1"] {
        assert_eq!(row(&again, h)[1], 0, "{h} changed on a second apply");
    }

    // gantry check's mesh, between the cluster's hosts: every table port
    // reachable from the hosts it is open to. With outside1 counted in, firewalld rejects it on the
    // ports kept for the cluster ("No route to host"), and the check says
    // which.
    let out = lab.gantry_for(&cluster, &["check", "-p", "node-prep"]);
    let t = text(&out.stdout);
    assert!(!t.contains("ports-reachable: blocked"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("ports-reachable")
                && l.split_whitespace().skip(1).all(|c| c == "ok")),
        "{t}"
    );
    let out = lab.gantry(&["check", "--accept-new-host-keys", "-p", "node-prep"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    let blocked = t
        .lines()
        .find_map(|l| l.strip_prefix("FAIL outside1 ports-reachable: blocked: "))
        .unwrap_or_else(|| panic!("outside1 was not refused: {t}"));
    let (m, w) = (lab.ip(0), lab.ip(1));
    for port in [
        format!("master1 ({m}) 10250/tcp"),
        format!("master1 ({m}) 8443/tcp"),
        format!("worker1 ({w}) 10250/tcp"),
    ] {
        assert!(blocked.contains(&port), "{port} not in: {blocked}");
    }
    // etcd's port is for control planes only: a worker does not try it.
    for port in ["6443/tcp", "30000/tcp", "2379/tcp"] {
        assert!(!blocked.contains(port), "{port} in: {blocked}");
    }
    assert!(!t.contains("FAIL worker1 ports-reachable"), "{t}");

    // Listeners on master1: the API (open to any source), the kubelet
    // (cluster hosts), etcd (control planes), NodePorts (any), and the
    // operator's own port.
    lab.docker(
        &["exec", "-d"],
        "master1",
        &[
            "sh",
            "-c",
            "for p in 6443 10250 2379 30080 9999; do nc -lk -p $p >/dev/null & done; wait",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let m = lab.ip(0);
    for (port, from_worker, from_outside) in [
        (22, true, true),
        (6443, true, true),
        (30080, true, true),
        (10250, true, false),
        (2379, false, false),
        (9999, true, true),
    ] {
        assert_eq!(
            connects(&lab, "worker1", &m, port),
            from_worker,
            "worker1 -> master1:{port}"
        );
        assert_eq!(
            connects(&lab, "outside1", &m, port),
            from_outside,
            "outside1 -> master1:{port}"
        );
    }
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn rpm_packages_install_offline_from_a_directory_on_a_rhel_host() {
    let lab = Lab::up_with("t-rpm", 45, "master1:control-plane");
    // Stand-in: the host's identity. A Debian lab host claims RHEL 8.9 in
    // its os-release, and keeps its rpm database where RHEL does (Debian's
    // rpm keeps one per user). rpm, rpmbuild and dnf are the real ones.
    lab.exec(
        "master1",
        "rm -f /etc/os-release && printf '%s\\n' 'NAME=\"Red Hat Enterprise Linux\"' 'VERSION=\"8.9 (Ootpa)\"' 'ID=\"rhel\"' 'ID_LIKE=\"fedora\"' 'VERSION_ID=\"8.9\"' 'PRETTY_NAME=\"Red Hat Enterprise Linux 8.9 (Ootpa) (lab stand-in identity)\"' > /etc/os-release
mkdir -p /etc/rpm && echo '%_dbpath /var/lib/rpm' > /etc/rpm/macros",
    );
    // Real .rpm files, built on the host by rpmbuild; the lab has no
    // network and the host no repository. hello needs a capability that
    // dep provides; other is in the directory too, and nothing needs it.
    let build = |name: &str, version: &str, extra: &str| {
        format!(
            "printf '%s\\n' 'Name: gantry-lab-{name}' 'Version: {version}' 'Release: 1' 'Summary: built by a gantry lab test' 'License: MIT' 'BuildArch: noarch' {extra} '%description' 'A gantry lab package.' '%install' 'mkdir -p %{{buildroot}}/usr/share/gantry-lab-{name}' 'echo {name} > %{{buildroot}}/usr/share/gantry-lab-{name}/{name}' '%files' '/usr/share/gantry-lab-{name}' > /tmp/{name}.spec && rpmbuild -bb --quiet --define '_topdir /tmp/rpmbuild' --define '_rpmdir /srv/pkgs' --define '_build_name_fmt %%{{NAME}}-%%{{VERSION}}-%%{{RELEASE}}.%%{{ARCH}}.rpm' /tmp/{name}.spec >/dev/null 2>&1"
        )
    };
    lab.exec(
        "master1",
        &format!(
            "set -e; mkdir -p /srv/pkgs\n{}\n{}\n{}",
            build("hello", "1.0", "'Requires: gantry-lab-virtual >= 1'"),
            build("dep", "1.0", "'Provides: gantry-lab-virtual = 1.0'"),
            build("other", "1.0", ""),
        ),
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
    // rpm's own database says so, at the directory's version; dpkg, which
    // the host also has, was not asked.
    assert_eq!(
        lab.exec("master1", "rpm -q gantry-lab-hello gantry-lab-dep"),
        "gantry-lab-hello-1.0-1.noarch\ngantry-lab-dep-1.0-1.noarch\n"
    );
    assert_eq!(
        lab.exec("master1", "cat /usr/share/gantry-lab-hello/hello"),
        "hello\n"
    );
    assert!(!lab.try_exec("master1", "rpm -q gantry-lab-other").0);
    let again = lab.gantry(&["apply", "-p", pb, "-v"]);
    assert_eq!(row(&again, "master1"), [1, 0, 0, 0, 0]);
    assert!(
        text(&again.stdout).contains(
            "ok master1 offline-package/a package from the host's directory: installed: gantry-lab-hello\n"
        ),
        "{}",
        text(&again.stdout)
    );
    // A newer version that needs a package the directory lacks: that host
    // fails at once (no repository is tried), naming what is missing.
    lab.exec(
        "master1",
        &format!(
            "set -e; rpm -e gantry-lab-hello; rm /srv/pkgs/gantry-lab-hello-*.rpm\n{}",
            build("hello", "2.0", "'Requires: gantry-lab-missing'")
        ),
    );
    let out = lab.gantry_within(&["apply", "-p", pb], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(
            "nothing provides gantry-lab-missing needed by gantry-lab-hello-2.0-1.noarch"
        ),
        "{shown}"
    );
    assert!(!lab.try_exec("master1", "rpm -q gantry-lab-hello").0);
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn a_replaced_file_keeps_its_selinux_label() {
    let lab = Lab::up_with("t-label", 46, "master1:control-plane,worker1:worker");
    // Stand-ins for a real SELinux kernel: the lab's kernel has none. The
    // host's /etc/selinux/config says it is set up for SELinux, and the
    // labels are `security.selinux` attributes, which the lab's filesystem
    // keeps without the kernel (set by chcon, read by getfattr). SELinux
    // is not enabled (no selinuxfs), so the policy's labels for new files
    // are not looked up here: a unit test of the write script does that
    // (remote::writes, with matchpathcon standing in).
    lab.exec(
        "master1",
        "mkdir -p /etc/selinux && printf 'SELINUX=enforcing\\nSELINUXTYPE=targeted\\n' > /etc/selinux/config && chcon system_u:object_r:net_conf_t:s0 /etc/hosts",
    );
    lab.exec(
        "worker1",
        "chcon system_u:object_r:net_conf_t:s0 /etc/hosts",
    );
    let label = |h: &str| {
        lab.try_exec(
            h,
            "getfattr -n security.selinux --only-values --absolute-names /etc/hosts",
        )
        .1
        .trim_end_matches('\0')
        .to_string()
    };
    let inode = |h: &str| lab.exec(h, "stat -c %i /etc/hosts");
    let before = (inode("master1"), inode("worker1"));
    let out = lab.gantry(&["apply", "--accept-new-host-keys", "-p", "node-prep"]);
    assert_eq!(out.status.code(), Some(0));
    // /etc/hosts was replaced (a new inode, by rename) on both hosts.
    assert_ne!(inode("master1"), before.0);
    assert_ne!(inode("worker1"), before.1);
    assert!(lab.exec("master1", "cat /etc/hosts").contains("worker1"));
    // Where the host is set up for SELinux, the new file carries the old
    // one's label; where it is not, gantry does not look (the label is the
    // temp file's: none).
    assert_eq!(label("master1"), "system_u:object_r:net_conf_t:s0");
    assert!(
        !lab.try_exec("worker1", "getfattr -n security.selinux /etc/hosts")
            .0
    );
}
