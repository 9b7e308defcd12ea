//! `gantry check`: every requirement of the seeds, per host, before anything
//! changes. One check per file under `host/` (judged from one host's facts),
//! plus the fleet's (`fleet.rs`: unique names, clock offsets) and the port
//! mesh (`reachability.rs`). The registry below is the table's order and the
//! README's table; each check names its stage and the facts it reads, and
//! the gather script reads exactly those (`gather`). Checks are pure
//! functions of facts; the only write is the etcd-disk fsync probe's temp
//! file under /var/lib, removed when the probe ends.

pub mod fleet;
pub mod host;
pub mod preflight;
pub mod reachability;
pub mod run;
pub mod wanted;

use serde::Serialize;

use crate::facts::Sections;
use crate::inventory::HostSpec;
pub use run::{Checked, HostReport, RunOptions, run};
pub use wanted::{Minimums, Policy, Targets, Wanted, wanted};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub measured: String,
    pub required: String,
    pub fix: String,
}

pub fn finding(
    check: &'static str,
    level: Level,
    measured: impl Into<String>,
    required: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        check,
        level,
        measured: measured.into(),
        required: required.into(),
        fix: fix.into(),
    }
}

/// When a check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before gantry first works on a host: apply's preflight skips it on
    /// hosts the journal shows gantry already manages (their Kubernetes is
    /// gantry's own).
    Install,
    /// On every run.
    Always,
}

/// How a check is judged.
pub enum Judge {
    /// From one host's facts, its inventory entry and what is wanted of it;
    /// None where the facts show it does not apply (no fsync probe ran).
    Host(fn(&HostSpec, &Sections, &Policy, &Targets) -> Option<Finding>),
    /// Across the fleet's reports (`fleet::fleet`).
    Fleet,
    /// By the port mesh (`reachability`).
    Reach,
}

pub struct Check {
    pub name: &'static str,
    pub stage: Stage,
    /// The host roles it applies to; empty: every host.
    pub roles: &'static [&'static str],
    /// The facts it reads (`facts::FACTS`, or the keyed ones of `gather`).
    pub reads: &'static [&'static str],
    pub judge: Judge,
    /// The README's row: what is required, and when it is not met.
    pub requires: &'static str,
    pub source: &'static str,
}

impl Check {
    pub fn applies_to(&self, host: &HostSpec) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| host.roles.iter().any(|h| h == r))
    }
}

/// Every check, in the table's order: one line each.
pub const CHECKS: &[&Check] = &[
    &host::hardware::CPU,
    &host::hardware::MEMORY,
    &host::hardware::DISK,
    &host::os::OS,
    &host::os::ARCH,
    &fleet::HOSTNAME,
    &host::kubernetes::NO_KUBERNETES,
    &host::kubernetes::PORTS_FREE,
    &host::swap::SWAP,
    &host::cgroup::CGROUP,
    &host::lsm::LSM,
    &host::time::TIME_SYNC,
    &fleet::CLOCK_OFFSET,
    &host::dns::DNS,
    &reachability::PORTS_REACHABLE,
    &host::gpu::GPU,
    &host::gpu::GPU_DRIVER,
    &host::gpu::GPU_TOOLKIT,
    &host::etcd_fsync::ETCD_FSYNC,
    &host::sysctl::SYSCTL,
    &host::modules::MODULES,
];

pub fn check_named(name: &str) -> Option<&'static Check> {
    CHECKS.iter().copied().find(|c| c.name == name)
}

/// Judge one host from its facts: every host check that applies to it, in
/// the registry's order. Pure: tests feed it fixtures.
pub fn judge(host: &HostSpec, sec: &Sections, p: &Policy, t: &Targets) -> Vec<Finding> {
    CHECKS
        .iter()
        .filter(|c| c.applies_to(host))
        .filter_map(|c| match c.judge {
            Judge::Host(f) => f(host, sec, p, t),
            Judge::Fleet | Judge::Reach => None,
        })
        .collect()
}

/// The checks table, as the README shows it (`gantry check --list`).
pub fn markdown_table() -> String {
    let mut s = String::from("| check | stage | when not met | source |\n|---|---|---|---|\n");
    for c in CHECKS {
        let on = if c.roles.is_empty() {
            String::new()
        } else {
            format!(" ({} only)", c.roles.join(", "))
        };
        let stage = match c.stage {
            Stage::Install => "install",
            Stage::Always => "always",
        };
        s.push_str(&format!(
            "| {}{on} | {stage} | {} | {} |\n",
            c.name, c.requires, c.source
        ));
    }
    s
}

#[cfg(test)]
mod tests;
