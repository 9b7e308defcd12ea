//! `gantry status`: the journal's view of every task on every host, and
//! what `apply --retry-failed` would run. Offline.

use super::load;
use crate::cli::{Format, Input};
use crate::error::Result;
use crate::journal;
use crate::plan::graph::Dag;

/// `gantry status`: the journal's view, and what a retry would run.
pub fn status(input: &Input, format: Format) -> Result<i32> {
    let json = format == Format::Json;
    let Some(st) = journal::state(&input.inventory)? else {
        match json {
            true => crate::outln!(
                "{}",
                serde_json::json!({ "schema": STATUS_SCHEMA, "last_run": null, "hosts": [] })
            ),
            false => crate::outln!(
                "no runs yet: {} does not exist",
                journal::path(&input.inventory).display()
            ),
        }
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
    let ago = journal::now().saturating_sub(st.at);
    if !json {
        crate::outln!("last run {} ({ago}s ago): gantry {}", st.run, st.command);
    }
    let mut failed = 0;
    let mut hosts = Vec::new();
    for (h, chain) in dag.chains.iter().enumerate() {
        if chain.is_empty() {
            continue;
        }
        let host = &inv.hosts[h].name;
        if !json {
            crate::outln!("\n{host}");
        }
        let mut tasks = Vec::new();
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
            tasks.push(serde_json::json!({
                "task": task.id,
                "outcome": rec.map(|r| r.outcome.as_str()),
                "at": rec.map(|r| r.at),
                "reason": reason,
                "retry": if rerun == "keep" { "keep" } else { "rerun" },
                "input_changed": rerun == "rerun: input changed",
            }));
            if json {
                continue;
            }
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
        hosts.push(serde_json::json!({ "name": host, "tasks": tasks }));
    }
    let todo = dag.graph.node_count() - done.len();
    if json {
        let doc = serde_json::json!({
            "schema": STATUS_SCHEMA,
            "last_run": { "id": st.run, "at": st.at, "command": st.command },
            "hosts": hosts,
            "retry_failed_would_run": todo,
            "tasks": dag.graph.node_count(),
        });
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON serializes")
        );
    } else {
        crate::outln!(
            "\n`gantry apply --retry-failed` would run {todo} of {} task(s)",
            dag.graph.node_count()
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The version of `status -o json`'s document.
const STATUS_SCHEMA: &str = "gantry.status/1";
