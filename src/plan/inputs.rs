//! Each node's input hash, for the journal: a retry reruns a task whose
//! definition, role files or referenced variables moved since it succeeded.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use crate::inventory::Inventory;
use crate::plan::graph::Dag;
use crate::plan::template::Templates;
use crate::plan::vars::identity;
use crate::playbook::{Playbook, Task};

/// One variable as a node's input hash sees it: the same precedence as
/// `Vars::context`, with facts and registered results left out (runtime).
pub(crate) fn input_value(
    view: &serde_json::Map<String, Json>,
    inv: &Inventory,
    pb: &Playbook,
    h: usize,
    role: &str,
    name: &str,
) -> Option<Json> {
    let host = &inv.hosts[h];
    match name {
        "hostvars" => Some(json!({})),
        "facts" => Some(Json::Null),
        "inventory_hostname" => Some(json!(host.name)),
        "host" => Some(identity(host)),
        _ => host
            .vars
            .get(name)
            .or_else(|| inv.vars.get(name))
            .or_else(|| pb.roles[role].defaults.get(name))
            .or_else(|| view.get(name))
            .cloned(),
    }
}

/// The variables a task refers to in its parameters, `when`, `loop` and
/// template file; see `Templates::referenced_in` for `nested`.
pub(crate) fn referenced(
    templates: &Templates,
    t: &Task,
    nested: bool,
) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let strings = crate::plan::template::strings_in(&t.params, "")
        .into_iter()
        .map(|(_, s)| s);
    let exprs = t
        .when
        .iter()
        .map(|w| format!("{{{{ {w} }}}}"))
        .chain(t.loop_.iter().map(|l| l.to_string()));
    for src in strings.chain(exprs) {
        names.extend(templates.referenced_in(&src, nested));
    }
    if let Some(src) = t.params.get("src").and_then(Json::as_str) {
        names.extend(templates.referenced_in_file(&t.role, src, nested));
    }
    names
}

/// Each node's input hash: the task's definition, the role files it uses, and
/// the values of exactly the variables it refers to, as the inventory and role
/// defaults give them (facts and registered results are runtime, not input).
/// A retry reruns a node whose hash moved, and only those. The hash is an
/// HMAC under `key` (`secrets::journal_key`): the values hashed may hold
/// secrets, and the journal that keeps the hashes is not secret.
pub fn input_hashes(inv: &Inventory, pb: &Playbook, dag: &Dag, key: &[u8]) -> Vec<String> {
    use hmac::{KeyInit, Mac};
    let templates = Templates::new(pb);
    let view = inv.template_map();
    // What a task refers to is the same on every host: work it out once per task.
    let mut refs: HashMap<String, (std::collections::BTreeSet<String>, Vec<String>)> =
        HashMap::new();
    dag.graph
        .node_indices()
        .map(|n| {
            let node = &dag.graph[n];
            let t = &node.task;
            let (names, files) = refs.entry(format!("{}@{}", t.id, t.source)).or_insert_with(|| {
                let role = &pb.roles[&t.role];
                let files = t.params.get("src").and_then(Json::as_str).map(|src| role.templates.get(src).or_else(|| role.files.get(src)).cloned().unwrap_or_default()).into_iter().collect::<Vec<_>>();
                (referenced(&templates, t, false), files)
            });
            let values: serde_json::Map<String, Json> = names.iter().filter_map(|k| input_value(&view, inv, pb, node.host, &t.role, k).map(|v| (k.clone(), v))).collect();
            let def = json!({"module": t.module, "params": t.params, "when": t.when, "loop": t.loop_, "register": t.register, "values": values, "files": files});
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(def.to_string().as_bytes());
            hex::encode(&mac.finalize().into_bytes()[..8])
        })
        .collect()
}
