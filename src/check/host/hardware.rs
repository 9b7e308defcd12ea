//! cpu, memory, disk: the hardware profile a host's roles need.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::facts::hardware::{parse_lscpu, parse_meminfo};
use crate::inventory::HostSpec;

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

pub const CPU: Check = Check {
    name: "cpu",
    stage: Stage::Always,
    roles: &[],
    reads: &["lscpu", "nproc"],
    judge: Judge::Host(cpu),
    requires: "fail below the profile's cores: `minimum` 8, `recommended` 16 (`vars.check_profile`); GPU nodes at least 16 (32 recommended); `vars.check_minimums: {cpus, memory_gb, disk_gb}` overrides",
    source: "requirements doc, checklist",
};

fn cpu(host: &HostSpec, sec: &Sections, p: &Policy, _: &Targets) -> Option<Finding> {
    let m = p.minimums_for(&host.roles);
    let cpus = parse_lscpu(&sec.get("lscpu"))
        .or_else(|| sec.get("nproc").parse().ok())
        .unwrap_or(0);
    Some(finding(
        "cpu",
        if cpus >= m.cpus {
            Level::Pass
        } else {
            Level::Fail
        },
        format!("{cpus} CPUs"),
        format!(">= {}", m.cpus),
        "a host with more cores, or lower vars.check_minimums.cpus if you accept the risk",
    ))
}

pub const MEMORY: Check = Check {
    name: "memory",
    stage: Stage::Always,
    roles: &[],
    reads: &["meminfo"],
    judge: Judge::Host(memory),
    requires: "fail below the profile's memory: 16 GB, `recommended` 32 (GPU nodes 256); MemTotal may be 5 % under, for what the kernel reserves",
    source: "requirements doc, checklist",
};

fn memory(host: &HostSpec, sec: &Sections, p: &Policy, _: &Targets) -> Option<Finding> {
    let m = p.minimums_for(&host.roles);
    let mem = parse_meminfo(&sec.get("meminfo")).unwrap_or(0);
    // MemTotal excludes kernel-reserved memory: allow 5 % under the nominal size.
    let ok = gib(mem) >= m.memory_gb as f64 * 0.95;
    Some(finding(
        "memory",
        if ok { Level::Pass } else { Level::Fail },
        format!("{:.1} GiB", gib(mem)),
        format!(">= {} GiB", m.memory_gb),
        "more memory",
    ))
}

pub const DISK: Check = Check {
    name: "disk",
    stage: Stage::Always,
    roles: &[],
    reads: &["rootdisk"],
    judge: Judge::Host(disk),
    requires: "fail below the profile's system disk: 100 GB, `recommended` 200",
    source: "requirements doc",
};

fn disk(host: &HostSpec, sec: &Sections, p: &Policy, _: &Targets) -> Option<Finding> {
    let m = p.minimums_for(&host.roles);
    let disk: u64 = sec.get("rootdisk").parse().unwrap_or(0);
    Some(finding(
        "disk",
        if gib(disk) >= m.disk_gb as f64 * 0.95 {
            Level::Pass
        } else {
            Level::Fail
        },
        format!("{:.0} GiB system disk", gib(disk)),
        format!(">= {} GiB", m.disk_gb),
        "a larger system disk",
    ))
}
