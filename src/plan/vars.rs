//! The template variables a task sees, built once per run: the inventory,
//! role defaults, inventory and host vars, the host's identity. Cloning a
//! `Value` is a reference count, so a task's context costs the same with
//! ten hosts or a thousand.

use std::collections::{BTreeMap, HashMap};

use minijinja::Value;
use serde_json::{Value as Json, json};

use crate::inventory::Inventory;
use crate::playbook::Playbook;

/// What a host is to its own templates: `host`.
pub(crate) fn identity(host: &crate::inventory::HostSpec) -> Json {
    json!({"name": host.name, "address": host.address, "ip": host.ipv4(), "roles": host.roles, "arch": host.arch})
}

pub(crate) fn val(j: impl serde::Serialize) -> Value {
    Value::from(minijinja::value::Serde(j))
}

pub(crate) fn values(m: &serde_json::Map<String, Json>) -> Vec<(String, Value)> {
    m.iter().map(|(k, v)| (k.clone(), val(v))).collect()
}

/// The template variables that do not change during a run, as minijinja
/// values built once, so that a task's context costs the same with ten hosts
/// or a thousand: cloning a `Value` is a reference count.
pub(crate) struct Vars {
    view: Vec<(String, Value)>,
    defaults: HashMap<String, Vec<(String, Value)>>,
    vars: Vec<(String, Value)>,
    /// Per host: its vars, then `inventory_hostname` and `host`.
    hosts: Vec<Vec<(String, Value)>>,
}

impl Vars {
    pub(crate) fn new(inv: &Inventory, pb: &Playbook) -> Vars {
        let hosts = inv
            .hosts
            .iter()
            .map(|host| {
                let mut v = values(&host.vars);
                v.push(("inventory_hostname".into(), Value::from(host.name.clone())));
                v.push(("host".into(), val(identity(host))));
                v
            })
            .collect();
        Vars {
            view: values(&inv.template_map()),
            defaults: pb
                .roles
                .iter()
                .map(|(n, r)| (n.clone(), values(&r.defaults)))
                .collect(),
            vars: values(&inv.vars),
            hosts,
        }
    }

    /// What templates see for one task on one host, lowest precedence
    /// first: inventory view, role defaults, inventory vars, host vars, host
    /// identity, facts, this host's registered results, then `hostvars`.
    pub(crate) fn context(
        &self,
        h: usize,
        role: &str,
        facts: &Json,
        mine: Option<&serde_json::Map<String, Json>>,
        hostvars: Value,
    ) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        for (k, v) in self
            .view
            .iter()
            .chain(self.defaults.get(role).into_iter().flatten())
            .chain(&self.vars)
            .chain(&self.hosts[h])
        {
            m.insert(k.clone(), v.clone());
        }
        m.insert("facts".into(), val(facts));
        for (k, v) in mine.into_iter().flatten() {
            m.insert(k.clone(), val(v));
        }
        m.insert("hostvars".into(), hostvars);
        m
    }
}
