//! `gantry reset`: the reset playbook (role kubeadm-reset) applied to the
//! selected hosts, after the operator says yes.

use std::io::{BufRead, IsTerminal, Write};

use super::{load, selected_hosts};
use crate::cli::{Connect, Input, RunControl};
use crate::error::{Error, Result};

pub fn reset(mut input: Input, connect: &Connect, run: &RunControl, yes: bool) -> Result<i32> {
    input.playbook = Some("reset".into());
    let (inv, _) = load(&input)?;
    let selected = selected_hosts(&inv, &input, connect)?;
    let names: Vec<&str> = selected
        .iter()
        .map(|&h| inv.hosts[h].name.as_str())
        .collect();
    if !yes {
        let all = if connect.limit.is_empty() {
            " (every host: no --limit)"
        } else {
            ""
        };
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(format!(
                "reset removes Kubernetes from {}{all}: pass --yes to do it without a terminal to ask on",
                names.join(", ")
            )));
        }
        eprint!(
            "Remove Kubernetes (kubeadm reset, etcd's data, the CNI config) from {}{all}? [y/N]: ",
            names.join(", ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Error::Other(format!("reading the answer: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            crate::outln!("not reset: nothing was changed");
            return Ok(1);
        }
    }
    super::run::execute(&input, connect, Some(run), crate::cli::Format::Table)
}
