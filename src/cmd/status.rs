//! `gantry status`: the journal's view of every task on every host, and
//! what `apply --retry-failed` would run. Offline.

use super::load;
use crate::cli::Input;
use crate::error::Result;
use crate::journal;
use crate::plan::graph::Dag;

/// `gantry status`: the journal's view, and what a retry would run.
pub fn status(input: &Input) -> Result<i32> {
    let Some(st) = journal::state(&input.inventory)? else {
        crate::outln!(
            "no runs yet: {} does not exist",
            journal::path(&input.inventory).display()
        );
        return Ok(0);
    };
    let mut input = input.clone();
    if input.playbook.is_none() {
        input.playbook = st.playbook.clone();
    }
    let (inv, pb) = load(&input)?;
    let all: Vec<usize> = (0..inv.hosts.len()).collect();
    let dag = Dag::build(&inv, &pb, &all)?;
    let inputs = crate::plan::inputs::input_hashes(
        &inv,
        &pb,
        &dag,
        &crate::secrets::journal_key(&input.inventory)?,
    );
    let (done, _) = journal::retry::finished_earlier(&inv, &dag, &inputs, &st);
    crate::outln!(
        "last run {} ({}s ago): gantry {}",
        st.run,
        journal::now().saturating_sub(st.at),
        st.command
    );
    let mut failed = 0;
    for (h, chain) in dag.chains.iter().enumerate() {
        if chain.is_empty() {
            continue;
        }
        let host = &inv.hosts[h].name;
        crate::outln!("\n{host}");
        for (seq, &n) in chain.iter().enumerate() {
            let task = &dag.graph[n].task;
            let rec = st.get(host, seq, &task.id);
            let (word, when, reason) = match rec {
                Some(r) => (
                    r.outcome.as_str(),
                    format!("{}s ago", journal::now().saturating_sub(r.at)),
                    r.reason.as_str(),
                ),
                None => ("never run", String::new(), ""),
            };
            if rec.is_some_and(|r| !r.succeeded()) {
                failed += 1;
            }
            let rerun = if done.contains(&n) {
                "keep"
            } else if rec.is_some_and(|r| r.succeeded() && r.input != inputs[n.index()]) {
                "rerun: input changed"
            } else {
                "rerun"
            };
            crate::outln!(
                "  {word:<11} {:<50} {when:>10}  [{rerun}]{}",
                task.id,
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("  {}", crate::ui::out::terminal_safe(reason))
                }
            );
        }
    }
    let todo = dag.graph.node_count() - done.len();
    crate::outln!(
        "\n`gantry apply --retry-failed` would run {todo} of {} task(s)",
        dag.graph.node_count()
    );
    Ok(if failed > 0 { 1 } else { 0 })
}
