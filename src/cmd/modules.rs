//! `gantry modules`: the task modules, from their registry.

use crate::error::{Error, Result};

/// `gantry modules`: from the registry, so it cannot drift from the code.
pub fn modules(name: Option<&str>, markdown: bool) -> Result<i32> {
    use crate::modules;
    if markdown {
        crate::out!("{}", modules::markdown_table());
        return Ok(0);
    }
    match name {
        Some(n) => match modules::page(n) {
            Some(page) => crate::out!("{page}"),
            None => {
                return Err(Error::Usage(format!(
                    "no module {n:?} (modules: {})",
                    modules::NAMES.join(", ")
                )));
            }
        },
        None => {
            let width = modules::NAMES.iter().map(|n| n.len()).max().unwrap_or(0);
            for (n, doc) in modules::docs() {
                let params: Vec<&str> = doc.params.iter().map(|(p, _)| *p).collect();
                crate::outln!("{n:width$}  {}", params.join(", "));
            }
            crate::outln!("\n`gantry modules NAME` shows one module's page.");
        }
    }
    Ok(0)
}
