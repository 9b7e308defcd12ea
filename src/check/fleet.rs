//! hostname, clock-offset: what only the whole fleet shows. Every host's
//! live name must be unique, and every clock within the bound of the fleet's
//! median (measured by `run::host_report` in its own short exec).

use std::collections::HashMap;

use super::{Check, HostReport, Judge, Level, Policy, Stage, finding};

pub const HOSTNAME: Check = Check {
    name: "hostname",
    stage: Stage::Always,
    roles: &[],
    reads: &["hostname"],
    judge: Judge::Fleet,
    requires: "unique across the fleet, as the hosts report it live: a duplicate warns when the playbook renames hosts (role hostname) and fails otherwise",
    source: "requirements doc",
};

pub const CLOCK_OFFSET: Check = Check {
    name: "clock-offset",
    stage: Stage::Always,
    roles: &[],
    reads: &[],
    judge: Judge::Fleet,
    requires: "fail beyond ±2 s from the fleet's median (`vars.clock_offset_max_s`); measured in its own short exec, to within half a round trip",
    source: "checklist (NTP)",
};

/// The fleet stage: unique live hostnames, clock offsets within the bound.
pub fn fleet(reports: &mut [HostReport], p: &Policy) {
    let bound = p.clock_bound;
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for r in reports.iter() {
        by_name
            .entry(r.live_hostname.clone())
            .or_default()
            .push(r.host.clone());
    }
    let offsets: Vec<f64> = reports.iter().filter_map(|r| r.clock_offset).collect();
    let median = {
        let mut o = offsets.clone();
        o.sort_by(|a, b| a.total_cmp(b));
        o.get(o.len() / 2).copied().unwrap_or(0.0)
    };
    for r in reports.iter_mut() {
        let same = &by_name[&r.live_hostname];
        let dup = same.len() > 1;
        let others: Vec<&str> = same
            .iter()
            .filter(|h| **h != r.host)
            .map(String::as_str)
            .collect();
        r.findings.push(finding(
            "hostname",
            match (dup, p.sets_hostname) {
                (false, _) => Level::Pass,
                (true, true) => Level::Warn,
                (true, false) => Level::Fail,
            },
            if dup {
                format!("{:?}, also reported by {}", r.live_hostname, others.join(", "))
            } else {
                format!("{:?}", r.live_hostname)
            },
            "unique across the fleet",
            if p.sets_hostname {
                "apply names each host from the inventory (role hostname)"
            } else {
                "give each host a unique name (hostnamectl set-hostname), or run a playbook with the hostname role"
            },
        ));
        if let Some(o) = r.clock_offset {
            let d = o - median;
            r.findings.push(finding(
                "clock-offset",
                if d.abs() <= bound {
                    Level::Pass
                } else {
                    Level::Fail
                },
                format!("{d:+.2} s from the fleet's median"),
                format!("within ±{bound} s"),
                "sync the clock (chronyc makestep) and enable NTP",
            ));
        }
    }
}
