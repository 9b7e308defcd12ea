//! modules: the kernel modules the planned `modprobe` tasks load, as they
//! are now (a warning: apply loads them).

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::facts::kernel::modules_loaded;
use crate::inventory::HostSpec;

pub const MODULES: Check = Check {
    name: "modules",
    stage: Stage::Always,
    roles: &[],
    reads: &["modules"],
    judge: Judge::Host(modules),
    requires: "warn: what apply would load, for the planned `modprobe` tasks",
    source: "checklist",
};

fn modules(_: &HostSpec, sec: &Sections, _: &Policy, t: &Targets) -> Option<Finding> {
    let loaded = modules_loaded(sec.raw("modules").unwrap_or(""));
    let missing: Vec<&str> = t
        .modules
        .iter()
        .filter(|m| !loaded.contains(m))
        .map(String::as_str)
        .collect();
    Some(finding(
        "modules",
        if missing.is_empty() {
            Level::Pass
        } else {
            Level::Warn
        },
        if missing.is_empty() {
            "all loaded".to_string()
        } else {
            format!("apply would load: {}", missing.join(", "))
        },
        t.modules.join(", "),
        "gantry apply (role kernel-modules)",
    ))
}
