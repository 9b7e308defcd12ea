//! cgroup: v2, as Kubernetes 1.25+ recommends.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::inventory::HostSpec;

pub const CGROUP: Check = Check {
    name: "cgroup",
    stage: Stage::Always,
    roles: &[],
    reads: &["cgroup"],
    judge: Judge::Host(cgroup),
    requires: "warn: cgroup v1",
    source: "checklist",
};

fn cgroup(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let cg = sec.get("cgroup");
    let v2 = cg == "cgroup2fs";
    Some(finding(
        "cgroup",
        if v2 { Level::Pass } else { Level::Warn },
        if v2 {
            "v2".to_string()
        } else {
            format!("v1 ({cg})")
        },
        "v2 (Kubernetes 1.25+ recommends it)",
        "boot with systemd.unified_cgroup_hierarchy=1",
    ))
}
