//! From what the operator wrote to per-host work, without touching a host:
//! the task DAG (`graph`), templates and expressions (`template`), the task
//! variables (`vars`), the input hashes the journal keeps (`inputs`), and
//! previews of a role's templates.

pub mod graph;
pub mod inputs;
pub mod template;
pub mod vars;

use minijinja::Value;
use serde_json::{Value as Json, json};

use crate::inventory::Inventory;
use crate::plan::template::Templates;
use crate::playbook::Playbook;
use vars::{Vars, val};

/// Render one role template for one host as a task would, offline, with the
/// given facts. For tests and previews.
pub fn render_template(
    inv: &Inventory,
    pb: &Playbook,
    host: &str,
    role: &str,
    template: &str,
    facts: Json,
) -> Result<String, String> {
    render_template_with(inv, pb, host, role, template, facts, Default::default())
}

/// `render_template` with the task's own variables as a task would have them:
/// a loop's `item`, the host's registered results by name.
pub fn render_template_with(
    inv: &Inventory,
    pb: &Playbook,
    host: &str,
    role: &str,
    template: &str,
    facts: Json,
    mine: serde_json::Map<String, Json>,
) -> Result<String, String> {
    let h = inv
        .hosts
        .iter()
        .position(|x| x.name == host)
        .ok_or_else(|| format!("no host {host}"))?;
    let ctx = Vars::new(inv, pb).context(h, role, &facts, Some(&mine), val(json!({})));
    Templates::new(pb).render_file(role, template, &Value::from(ctx))
}
