//! What the checks hold hosts to: the inventory's policy (hardware profile,
//! driver minimum, clock bound), and per host the targets its planned tasks
//! set (sysctl keys, kernel modules, the port table), read from the plan
//! itself rather than from role variable names, so check and apply agree.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::inventory::Inventory;
use crate::modules::AnyModule;
use crate::plan::graph::Dag;
use crate::plan::inputs::referenced;
use crate::plan::template::Templates;
use crate::plan::vars::{Vars, val};
use crate::playbook::{Playbook, Task};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Minimums {
    pub cpus: u32,
    pub memory_gb: u64,
    pub disk_gb: u64,
}

/// The inventory's policy, for every host.
pub struct Policy {
    /// `minimum` or `recommended`.
    pub profile: String,
    /// `vars.check_minimums`: replaces the profile's numbers for every host.
    pub minimums_override: Option<Minimums>,
    pub driver_min: String,
    pub clock_bound: f64,
    pub fsync_probe: bool,
    /// The playbook names hosts itself (role hostname): a duplicate live
    /// name is then apply's to fix, a warning, not a failure.
    pub sets_hostname: bool,
}

impl Policy {
    /// The hardware a host needs: the profile's row, raised for GPU nodes per
    /// the checklist (at least 16 cores; 256 GB recommended), unless the
    /// inventory sets its own numbers.
    pub fn minimums_for(&self, roles: &[String]) -> Minimums {
        if let Some(m) = self.minimums_override {
            return m;
        }
        let rec = self.profile == "recommended";
        let mut m = if rec {
            Minimums {
                cpus: 16,
                memory_gb: 32,
                disk_gb: 200,
            }
        } else {
            Minimums {
                cpus: 8,
                memory_gb: 16,
                disk_gb: 100,
            }
        };
        if roles.iter().any(|r| r == "gpu") {
            m.cpus = m.cpus.max(if rec { 32 } else { 16 });
            if rec {
                m.memory_gb = 256;
            }
        }
        m
    }
}

/// What one host's planned tasks set.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The `sysctl` tasks' keys and values.
    pub sysctl: BTreeMap<String, String>,
    /// The `modprobe` tasks' modules (loaded).
    pub modules: Vec<String>,
    /// The port table's rows that apply to this host, from the
    /// `firewall_rules` a planned task renders.
    pub ports: Vec<PortRow>,
    /// No planned task renders a port table: the port checks say so.
    pub no_port_table: bool,
}

/// A row of the port table, as it applies to a host.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRow {
    pub proto: String,
    /// The first port of the row's range.
    pub port: u16,
    pub what: String,
    /// Open to the control planes only (`from: control-plane`): other
    /// hosts are meant to be refused.
    pub control_planes_only: bool,
}

/// The policy, and each selected host's targets (by inventory index).
pub struct Wanted {
    pub policy: Policy,
    pub targets: Vec<Targets>,
}

pub fn wanted(inv: &Inventory, pb: &Playbook, dag: &Dag, fsync_probe: bool) -> Wanted {
    let profile = inv
        .vars
        .get("check_profile")
        .and_then(Json::as_str)
        .unwrap_or("minimum")
        .to_string();
    let minimums_override = inv.vars.get("check_minimums").map(|o| {
        let n = |k: &str, d: u64| o.get(k).and_then(Json::as_u64).unwrap_or(d);
        Minimums {
            cpus: n("cpus", 8) as u32,
            memory_gb: n("memory_gb", 16),
            disk_gb: n("disk_gb", 100),
        }
    });
    let policy = Policy {
        profile,
        minimums_override,
        driver_min: inv
            .vars
            .get("nvidia_driver_min")
            .and_then(Json::as_str)
            .unwrap_or("575")
            .to_string(),
        clock_bound: inv
            .vars
            .get("clock_offset_max_s")
            .and_then(Json::as_f64)
            .unwrap_or(2.0),
        fsync_probe,
        sets_hostname: pb.roles.contains_key("hostname"),
    };
    let templates = Templates::new(pb);
    let vars = Vars::new(inv, pb);
    let targets = (0..inv.hosts.len())
        .map(|h| host_targets(inv, dag, &templates, &vars, h))
        .collect();
    Wanted { policy, targets }
}

/// A host's targets from its planned tasks: each sysctl and modprobe call
/// (loops unrolled), rendered as apply would render it (without facts and
/// registered results, which a check does not have: a call that needs them
/// is not counted), and the `firewall_rules` of the first task that
/// renders them.
fn host_targets(
    inv: &Inventory,
    dag: &Dag,
    templates: &Templates,
    vars: &Vars,
    h: usize,
) -> Targets {
    let mut t = Targets {
        no_port_table: true,
        ..Default::default()
    };
    let empty = serde_json::json!({});
    for &n in &dag.chains[h] {
        let task: &Task = &dag.graph[n].task;
        let ctx = vars.context(h, &task.role, &empty, None, val(serde_json::json!({})));
        if t.no_port_table
            && referenced(templates, task, false).contains("firewall_rules")
            && let Some(rows) = ctx
                .get("firewall_rules")
                .and_then(|v| serde_json::to_value(v).ok())
        {
            t.ports = port_rows(&rows, &inv.hosts[h].roles);
            t.no_port_table = false;
        }
        if task.module != "sysctl" && task.module != "modprobe" {
            continue;
        }
        for params in calls(templates, task, &ctx) {
            match AnyModule::parse(&task.module, params) {
                Ok(AnyModule::Sysctl(s)) => {
                    for (k, v) in s.keys() {
                        let v = match v {
                            Json::String(s) => s,
                            o => o.to_string(),
                        };
                        t.sysctl.insert(k, v);
                    }
                }
                Ok(AnyModule::Modprobe(m))
                    if m.state == crate::modules::Presence::Present
                        && !t.modules.contains(&m.name) =>
                {
                    t.modules.push(m.name);
                }
                _ => {}
            }
        }
    }
    t
}

/// A task's rendered parameters, once per loop item.
fn calls(
    templates: &Templates,
    task: &Task,
    ctx: &BTreeMap<String, minijinja::Value>,
) -> Vec<Json> {
    let base = minijinja::Value::from(ctx.clone());
    let items = match &task.loop_ {
        None => {
            return templates
                .render_params(&task.params, &base)
                .into_iter()
                .collect();
        }
        Some(l) => match templates.render_params(l, &base) {
            Ok(Json::Array(items)) => items,
            _ => return Vec::new(),
        },
    };
    items
        .into_iter()
        .filter_map(|item| {
            let mut m = ctx.clone();
            m.insert("item".into(), val(item));
            templates
                .render_params(&task.params, &minijinja::Value::from(m))
                .ok()
        })
        .collect()
}

/// The rows of a port table (`firewall_rules`) that apply to a host with
/// these roles.
fn port_rows(rows: &Json, roles: &[String]) -> Vec<PortRow> {
    rows.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let on: Vec<&str> = r
                .get("on")?
                .as_array()?
                .iter()
                .filter_map(Json::as_str)
                .collect();
            if !on
                .iter()
                .any(|o| *o == "all" || roles.iter().any(|r| r == o))
            {
                return None;
            }
            let first: u16 = r
                .get("ports")?
                .as_str()?
                .split(['-', ','])
                .next()?
                .trim()
                .parse()
                .ok()?;
            Some(PortRow {
                proto: r.get("proto")?.as_str()?.to_string(),
                port: first,
                what: r
                    .get("what")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
                control_planes_only: r.get("from").and_then(Json::as_str) == Some("control-plane"),
            })
        })
        .collect()
}
