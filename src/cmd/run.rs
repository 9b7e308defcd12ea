//! `gantry plan` and `gantry apply`: what to run (a retry or `--from`
//! skips what finished), apply's preflight gate, then the engine, with one
//! thread rendering and journaling its events.

use std::sync::Arc;

use super::{load, playbook_name, policy, runtime, selected_hosts};
use crate::cli::{Connect, Format, Input, RunControl};
use crate::error::{Error, Result};
use crate::exec::{self, Options, RunMode};
use crate::journal;
use crate::plan::graph::Dag;
use crate::remote::ssh::HostKeyPolicy;
use crate::ui::report::Reporter;
use crate::ui::sink::Sink;

pub fn execute(
    input: &Input,
    connect: &Connect,
    run: Option<&RunControl>,
    format: Format,
) -> Result<i32> {
    let mode = if run.is_some() {
        RunMode::Apply
    } else {
        RunMode::Plan
    };
    let mut journal_file = None;
    // The command line as typed: the journal's header and the run report.
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let (mut inv, pb) = load(input)?;
    inv.secrets = crate::secrets::resolve(&input.inventory, &inv.secrets, &pb.secret_names())?;
    let selected = selected_hosts(&inv, input, connect)?;
    let dag = Dag::build(&inv, &pb, &selected)?;
    // A bundle that does not match its manifest stops apply before any
    // host is touched.
    if mode == RunMode::Apply
        && let Some(b) = &inv.bundle
    {
        super::bundle::check(&b.dir)?;
    }
    let inputs = crate::plan::inputs::input_hashes(
        &inv,
        &pb,
        &dag,
        &crate::secrets::journal_key(&input.inventory)?,
    );
    // One runtime for preflight and the run: it drives the connections
    // preflight opens and the run goes on with.
    let rt = runtime()?;
    let mut opts = Options::new(
        mode,
        connect.forks,
        if connect.accept_new_host_keys {
            HostKeyPolicy::AcceptNew
        } else {
            HostKeyPolicy::Strict
        },
    );
    opts.show_secret_diffs = connect.show_secret_diffs;
    opts.base_dir = match input.inventory.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if let Some(rc) = run {
        opts.fan_out = !rc.no_fan_out;
        if rc.retry_failed {
            let Some(st) = journal::state(&input.inventory)? else {
                return Err(Error::Usage(format!(
                    "--retry-failed: no journal at {}; nothing ran yet",
                    journal::path(&input.inventory).display()
                )));
            };
            let (done, moved) = journal::retry::finished_earlier(&inv, &dag, &inputs, &st);
            if !moved.is_empty() {
                eprintln!(
                    "note: the inventory or roles changed since the last run for {} task(s); they run again: {}",
                    moved.len(),
                    moved.join(", ")
                );
            }
            let todo = dag.graph.node_count() - done.len();
            if todo == 0 {
                crate::outln!(
                    "nothing to retry: every task finished in the last runs with the same input"
                );
                return Ok(0);
            }
            let hosts: std::collections::BTreeSet<&str> = dag
                .graph
                .node_indices()
                .filter(|n| !done.contains(n))
                .map(|n| inv.hosts[dag.graph[n].host].name.as_str())
                .collect();
            eprintln!(
                "retrying {todo} task(s) on {}",
                hosts.into_iter().collect::<Vec<_>>().join(", ")
            );
            opts.done = done;
        }
        if let Some(from) = &rc.from {
            let Some(before) = journal::retry::before(&dag, from) else {
                return Err(Error::Usage(format!(
                    "--from: no task {from:?} on the selected hosts (write it as role/task name)"
                )));
            };
            opts.done.extend(before);
        }
        if !rc.skip_preflight {
            // Only hosts with something to do: one whose every task finished
            // earlier (`--retry-failed`, `--from`) is not contacted at all.
            let busy: Vec<usize> = selected
                .iter()
                .copied()
                .filter(|&h| dag.chains[h].iter().any(|n| !opts.done.contains(n)))
                .collect();
            match crate::check::preflight::gate(
                &rt,
                &inv,
                &pb,
                &dag,
                &busy,
                policy(connect),
                connect.forks,
                &input.inventory,
            )? {
                Err(code) => return Ok(code),
                Ok(conns) => opts.conns = std::sync::Mutex::new(conns),
            }
        }
        opts.max_fail_percent = rc.max_fail_percent;
        opts.fail_fast = rc.fail_fast;
        opts.lock_stale_after = Some(std::time::Duration::from_secs(rc.lock_stale_after));
        let j = journal::Journal::open(&input.inventory, &command, playbook_name(input))?;
        opts.run_id = j.run.clone();
        journal_file = Some(Arc::new(j));
    }
    let hosts: Vec<(String, usize)> = selected
        .iter()
        .map(|&i| (inv.hosts[i].name.clone(), dag.chains[i].len()))
        .collect();
    let mut reporter = Reporter::new(mode == RunMode::Plan, connect.verbose, &hosts);
    if format == Format::Json {
        reporter.json(playbook_name(input));
    }
    for v in inv.secrets.values() {
        reporter.redactor.add_secret(v);
    }
    // The engine reports through events; one thread renders, redacts and
    // journals them.
    let (inv, dag) = (Arc::new(inv), Arc::new(dag));
    let report = journal_file
        .as_ref()
        .map(|j| crate::ui::timeline::RunReport {
            timeline: crate::ui::timeline::Timeline::new(
                &hosts.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(),
            ),
            dir: crate::ui::timeline::dir(&input.inventory, &j.run),
            run: j.run.clone(),
            command: command.clone(),
            playbook: playbook_name(input).to_string(),
        });
    let sink = Sink {
        reporter,
        report,
        journal: journal_file,
        inv: inv.clone(),
        dag: dag.clone(),
        inputs,
    };
    let (events, queue) = std::sync::mpsc::channel();
    let consumer = std::thread::spawn(move || sink.consume(queue));
    let result = rt.block_on(exec::run(inv, pb, dag, opts, events));
    let (reporter, journal_error) = consumer
        .join()
        .map_err(|_| Error::Other("the run's reporter thread failed".into()))?;
    reporter.finish();
    if let Some(e) = journal_error {
        // A retry trusts the journal; with records missing it could skip
        // what this run left half done.
        eprintln!(
            "error: the journal could not be written ({e}): records of this run may be missing, so do not use --retry-failed after it; run a full apply"
        );
        return Ok(1);
    }
    Ok(if result.any_failed() { 1 } else { 0 })
}
