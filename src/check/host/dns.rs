//! dns: the host resolves names.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::inventory::HostSpec;

pub const DNS: Check = Check {
    name: "dns",
    stage: Stage::Always,
    roles: &[],
    reads: &["resolv"],
    judge: Judge::Host(dns),
    requires: "warn: no nameserver in /etc/resolv.conf",
    source: "checklist",
};

fn dns(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let ns: u32 = sec.get("resolv").parse().unwrap_or(0);
    Some(finding(
        "dns",
        if ns > 0 { Level::Pass } else { Level::Warn },
        format!("{ns} nameserver(s)"),
        ">= 1 nameserver in /etc/resolv.conf",
        "add the site's DNS server to /etc/resolv.conf",
    ))
}
