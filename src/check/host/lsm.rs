//! selinux/apparmor: reported; SELinux enforcing needs the runtime's policy.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::inventory::HostSpec;

pub const LSM: Check = Check {
    name: "selinux/apparmor",
    stage: Stage::Always,
    roles: &[],
    reads: &["selinux", "apparmor"],
    judge: Judge::Host(lsm),
    requires: "warn: SELinux enforcing (the runtime needs its policies)",
    source: "checklist",
};

fn lsm(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let se = sec.get("selinux");
    let aa = sec.get("apparmor");
    Some(finding(
        "selinux/apparmor",
        if se == "Enforcing" {
            Level::Warn
        } else {
            Level::Pass
        },
        format!(
            "SELinux {}, AppArmor {}",
            if se.is_empty() { "absent" } else { &se },
            if aa == "Y" { "enabled" } else { "disabled" }
        ),
        "reported; SELinux enforcing needs policies for the runtime",
        "setenforce 0 or install container-selinux",
    ))
}
