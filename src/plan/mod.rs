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
    render_template_item(inv, pb, host, role, template, facts, None)
}

/// `render_template` for a task with a `loop`: `item` is the loop's item.
pub fn render_template_item(
    inv: &Inventory,
    pb: &Playbook,
    host: &str,
    role: &str,
    template: &str,
    facts: Json,
    item: Option<Json>,
) -> Result<String, String> {
    let h = inv
        .hosts
        .iter()
        .position(|x| x.name == host)
        .ok_or_else(|| format!("no host {host}"))?;
    let mine: Option<serde_json::Map<String, Json>> =
        item.map(|i| [("item".to_string(), i)].into_iter().collect());
    let ctx = Vars::new(inv, pb).context(h, role, &facts, mine.as_ref(), val(json!({})));
    Templates::new(pb).render_file(role, template, &Value::from(ctx))
}
