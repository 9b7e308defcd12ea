//! swap: off, as the kubelet wants it (apply's swap-off role turns it off).

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::inventory::HostSpec;

pub const SWAP: Check = Check {
    name: "swap",
    stage: Stage::Always,
    roles: &[],
    reads: &["swaps"],
    judge: Judge::Host(swap),
    requires: "warn: swap on (apply's swap-off role turns it off)",
    source: "checklist",
};

fn swap(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let swaps = sec.get("swaps");
    let devices: Vec<&str> = swaps
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    Some(finding(
        "swap",
        if devices.is_empty() {
            Level::Pass
        } else {
            Level::Warn
        },
        if devices.is_empty() {
            "off".into()
        } else {
            format!("on: {}", devices.join(", "))
        },
        "off",
        "apply's swap-off role turns it off",
    ))
}
