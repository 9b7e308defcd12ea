//! Playbooks, roles and tasks as loaded: the shape users know from Ansible.
//! A play selects hosts and lists roles; a role is an ordered task list with
//! defaults and templates. Nothing here talks to a host.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::inventory::{HostSpec, Inventory, Vars};

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One play as written in `playbooks/<name>.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaySpec {
    pub name: String,
    /// Host selectors: a role (`control-plane`), a host name, or `all`.
    pub hosts: OneOrMany,
    pub roles: Vec<String>,
    /// Earlier plays whose hosts must all have finished before this play
    /// starts on any host: a cross-host barrier.
    #[serde(default)]
    pub after: Option<OneOrMany>,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: Vec<String>,
    pub roles: Vec<String>,
    pub after: Vec<String>,
}

impl Play {
    /// Host roles this play's selectors name (everything but `all` and host names).
    pub fn selected_roles<'a>(
        &'a self,
        inv: &'a Inventory,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.hosts
            .iter()
            .filter(move |s| *s != "all" && inv.host(s).is_none())
    }

    pub fn selects(&self, host: &HostSpec) -> bool {
        self.hosts
            .iter()
            .any(|s| s == "all" || *s == host.name || host.roles.contains(s))
    }
}

/// A task: one module call plus the Ansible-style keywords around it.
#[derive(Debug, Clone)]
pub struct Task {
    /// `role/name`, unique in a playbook run; `wait_for` refers to it.
    pub id: String,
    pub name: String,
    pub role: String,
    pub module: String,
    /// Module parameters, not yet rendered; strings may hold templates.
    pub params: Json,
    pub when: Option<String>,
    pub register: Option<String>,
    /// The registered value is a secret: it never appears in any output.
    pub no_log: bool,
    /// Tasks (by `role/name`) that must have finished on every host that runs
    /// them before this task starts: how one host waits for data another host
    /// registers (a worker's join waits for the first control plane's init).
    pub wait_for: Vec<String>,
    /// Where `wait_for` is written, for a located error.
    pub wait_for_at: Option<crate::error::Location>,
    /// Run the module once per item (`item` in templates): a list, or an
    /// expression that gives one. All items' state is read in one round trip.
    pub loop_: Option<Json>,
    /// Per-task command timeout in seconds.
    pub timeout: Option<u64>,
    /// Retry a failed task this many times, `delay` seconds apart, for steps
    /// that can fail transiently. A lost host is never retried.
    pub retries: u32,
    pub delay: u64,
    /// Hosts run this task one at a time, in inventory order (`serial:
    /// true`), each after the one before has finished.
    pub serial: bool,
    /// Where the task is written, for messages.
    pub source: String,
}

pub const TASK_KEYWORDS: &[&str] = &[
    "name", "when", "register", "no_log", "wait_for", "timeout", "loop", "retries", "delay",
    "serial",
];

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub dir: PathBuf,
    /// Shared with the DAG's nodes: one copy per task, however many hosts.
    pub tasks: Vec<std::sync::Arc<Task>>,
    pub defaults: Vars,
    /// templates/*.j2 and files/*, by name relative to their folder.
    pub templates: BTreeMap<String, String>,
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: PathBuf,
    pub plays: Vec<Play>,
    pub roles: BTreeMap<String, Role>,
}

impl Playbook {
    /// Secret names the roles declare in their defaults (`gantry_secrets`).
    /// The secrets the roles name in `gantry_secrets:`, each with its kind:
    /// a name alone is a password, `{name: N, kind: K}` a typed secret
    /// (`secrets::Kind`). The entries were checked when the role loaded.
    pub fn secret_names(&self) -> std::collections::BTreeMap<String, crate::secrets::Kind> {
        self.roles
            .values()
            .filter_map(|r| r.defaults.get("gantry_secrets"))
            .filter_map(Json::as_array)
            .flatten()
            .filter_map(secret_entry)
            .collect()
    }

    /// Host roles that some play selects: the roles an inventory may use.
    pub fn known_host_roles(&self, inv: &Inventory) -> HashSet<String> {
        let mut s: HashSet<String> = self
            .plays
            .iter()
            .flat_map(|p| p.selected_roles(inv).cloned())
            .collect();
        // Roles any cluster has, even when this playbook does not use them yet.
        for r in ["control-plane", "worker", "gpu"] {
            s.insert(r.to_string());
        }
        s
    }
}

/// One `gantry_secrets` entry: `NAME` (a password) or `{name, kind}`.
pub fn secret_entry(v: &Json) -> Option<(String, crate::secrets::Kind)> {
    match v {
        Json::String(n) => Some((n.clone(), crate::secrets::Kind::Password)),
        Json::Object(o) => {
            let name = o.get("name")?.as_str()?.to_string();
            let kind = crate::secrets::Kind::parse(o.get("kind")?.as_str()?)?;
            Some((name, kind))
        }
        _ => None,
    }
}
