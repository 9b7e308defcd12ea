//! sysctl: the kernel parameters the planned `sysctl` tasks set, as they
//! are live now (a warning: apply sets them).

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::facts::kernel::sysctl_values;
use crate::inventory::HostSpec;

pub const SYSCTL: Check = Check {
    name: "sysctl",
    stage: Stage::Always,
    roles: &[],
    reads: &["sysctl"],
    judge: Judge::Host(sysctl),
    requires: "warn: what apply would change, for the keys the planned `sysctl` tasks set",
    source: "checklist",
};

fn sysctl(_: &HostSpec, sec: &Sections, _: &Policy, t: &Targets) -> Option<Finding> {
    let live = sysctl_values(
        sec.raw("sysctl").unwrap_or(""),
        t.sysctl.keys().map(String::as_str),
    );
    let differ: Vec<String> = live
        .iter()
        .zip(t.sysctl.values())
        .filter_map(|((k, have), want)| {
            let have = have
                .as_deref()
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
            (have.as_deref() != Some(want.as_str()))
                .then(|| format!("{k}: {} -> {want}", have.as_deref().unwrap_or("<absent>")))
        })
        .collect();
    Some(finding(
        "sysctl",
        if differ.is_empty() {
            Level::Pass
        } else {
            Level::Warn
        },
        if differ.is_empty() {
            format!("{} keys as wanted", t.sysctl.len())
        } else {
            format!("apply would set {}: {}", differ.len(), differ.join(", "))
        },
        "the tuning table",
        "gantry apply (role sysctl)",
    ))
}
