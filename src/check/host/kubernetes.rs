//! no-kubernetes, ports-free: a clean host, before gantry installs one.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::facts::network::parse_listening;
use crate::inventory::HostSpec;

pub const NO_KUBERNETES: Check = Check {
    name: "no-kubernetes",
    stage: Stage::Install,
    roles: &[],
    reads: &["kubelet", "adminconf", "listen"],
    judge: Judge::Host(no_kubernetes),
    requires: "fail: kubelet running, something on 6443/10250/2379, or `/etc/kubernetes/admin.conf`",
    source: "requirements doc",
};

fn no_kubernetes(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let listening = parse_listening(&sec.get("listen"));
    let existing: Vec<String> = [
        (
            sec.get("kubelet") == "active",
            "kubelet is running".to_string(),
        ),
        (
            sec.get("adminconf") == "present",
            "/etc/kubernetes/admin.conf exists".to_string(),
        ),
    ]
    .into_iter()
    .filter(|(b, _)| *b)
    .map(|(_, s)| s)
    .chain(
        [6443u16, 10250, 2379]
            .into_iter()
            .filter(|p| listening.contains(p))
            .map(|p| format!("something listens on {p}")),
    )
    .collect();
    Some(finding(
        "no-kubernetes",
        if existing.is_empty() {
            Level::Pass
        } else {
            Level::Fail
        },
        if existing.is_empty() {
            "none found".into()
        } else {
            existing.join("; ")
        },
        "no kubelet, nothing on 6443/10250/2379, no admin.conf",
        "run `kubeadm reset` and stop what holds the ports, or use a clean host",
    ))
}

pub const PORTS_FREE: Check = Check {
    name: "ports-free",
    stage: Stage::Install,
    roles: &[],
    reads: &["listen"],
    judge: Judge::Host(ports_free),
    requires: "fail: a port of the table (as the planned firewall renders it for the host's roles) taken",
    source: "requirements doc",
};

fn ports_free(_: &HostSpec, sec: &Sections, _: &Policy, t: &Targets) -> Option<Finding> {
    let listening = parse_listening(&sec.get("listen"));
    let taken: Vec<String> = t
        .ports
        .iter()
        .filter(|r| listening.contains(&r.port))
        .map(|r| format!("{}/{} ({})", r.port, r.proto, r.what))
        .collect();
    Some(finding(
        "ports-free",
        if taken.is_empty() {
            Level::Pass
        } else {
            Level::Fail
        },
        if taken.is_empty() {
            "all free".into()
        } else {
            format!("in use: {}", taken.join(", "))
        },
        "the port table's ports free",
        "stop the service that holds them",
    ))
}
