//! The subcommands as workflows: load and check input, build the DAG, then
//! hand it to the executor (plan/apply) or print it (graph/validate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::{HashMap, HashSet};

use crate::cli::{Cli, Command, Connect, Format, Input, RunControl};
use crate::error::{Error, Result};
use crate::exec::{self, Options, RunMode};
use crate::inventory::Inventory;
use crate::journal;
use crate::loader;
use crate::plan::graph::Dag;
use crate::playbook::Playbook;
use crate::remote::ssh::HostKeyPolicy;
use crate::ui::report::Reporter;
use crate::ui::sink::Sink;

pub fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Validate { input } => {
            let (inv, pb) = load(&input)?;
            let all: Vec<usize> = (0..inv.hosts.len()).collect();
            let dag = Dag::build(&inv, &pb, &all)?;
            println!(
                "ok: {} hosts, {} plays, {} roles, {} tasks in the DAG",
                inv.hosts.len(),
                pb.plays.len(),
                pb.roles.len(),
                dag.graph.node_count()
            );
            Ok(0)
        }
        Command::Graph { input } => {
            let (inv, pb) = load(&input)?;
            let all: Vec<usize> = (0..inv.hosts.len()).collect();
            print!("{}", Dag::build(&inv, &pb, &all)?.dot(&inv));
            Ok(0)
        }
        Command::Plan { input, connect } => execute(&input, &connect, None),
        Command::Apply {
            input,
            connect,
            run,
        } => execute(&input, &connect, Some(&run)),
        Command::Status { input } => status(&input),
        Command::Check { list: true, .. } => {
            print!("{}", crate::check::markdown_table());
            Ok(0)
        }
        Command::Check {
            input,
            connect,
            output,
            no_fsync_probe,
            list: false,
        } => check(&input, &connect, output, !no_fsync_probe),
        Command::Unlock { input, connect } => unlock(&input, &connect),
        Command::Modules { name, markdown } => modules(name.as_deref(), markdown),
    }
}

/// `gantry modules`: from the registry, so it cannot drift from the code.
fn modules(name: Option<&str>, markdown: bool) -> Result<i32> {
    use crate::modules;
    if markdown {
        print!("{}", modules::markdown_table());
        return Ok(0);
    }
    match name {
        Some(n) => match modules::page(n) {
            Some(page) => print!("{page}"),
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
                println!("{n:width$}  {}", params.join(", "));
            }
            println!("\n`gantry modules NAME` shows one module's page.");
        }
    }
    Ok(0)
}

/// Resolve `-p node-prep` to ./playbooks/node-prep.yaml; a path is used as is.
fn playbook_path(p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.extension().is_some() || path.components().count() > 1 {
        return path;
    }
    PathBuf::from("playbooks").join(format!("{p}.yaml"))
}

/// The playbook used when none is named.
pub const DEFAULT_PLAYBOOK: &str = "node-prep";

fn playbook_name(input: &Input) -> &str {
    input.playbook.as_deref().unwrap_or(DEFAULT_PLAYBOOK)
}

pub fn load(input: &Input) -> Result<(Inventory, Playbook)> {
    let pb_path = playbook_path(playbook_name(input));
    // playbooks/ and roles/ are siblings; say `roles/x`, not `playbooks/../roles/x`.
    let mut roles_path = input.roles_dir.clone();
    if roles_path.is_empty() {
        roles_path.push(match pb_path.parent().and_then(Path::parent) {
            Some(top) => top.join("roles"),
            None => PathBuf::from("roles"),
        });
        // The built-in roles, for playbooks kept elsewhere.
        if roles_path[0] != Path::new("roles") {
            roles_path.push(PathBuf::from("roles"));
        }
    }
    let pb = loader::load_playbook(&pb_path, &roles_path)?;
    let (inv, warnings) = loader::load_inventory(&input.inventory, |inv| pb.known_host_roles(inv))?;
    for w in warnings {
        eprintln!("{w}");
    }
    Ok((inv, pb))
}

fn selected_hosts(inv: &Inventory, input: &Input, connect: &Connect) -> Result<Vec<usize>> {
    if connect.limit.is_empty() {
        return Ok((0..inv.hosts.len()).collect());
    }
    connect
        .limit
        .iter()
        .map(|name| {
            inv.hosts
                .iter()
                .position(|h| &h.name == name)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--limit: no host named {name:?} in {}",
                        input.inventory.display()
                    ))
                })
        })
        .collect()
}

/// The nodes a rerun need not run: finished in an earlier run with the same
/// input. Returns them and a note of what reruns because its input moved.
fn finished_earlier(
    inv: &Inventory,
    dag: &Dag,
    inputs: &[String],
    st: &journal::State,
) -> (HashSet<petgraph::graph::NodeIndex>, Vec<String>) {
    let mut done = HashSet::new();
    let mut moved = Vec::new();
    for (h, chain) in dag.chains.iter().enumerate() {
        for (seq, &n) in chain.iter().enumerate() {
            let task = &dag.graph[n].task;
            match st.get(&inv.hosts[h].name, seq, &task.id) {
                Some(r) if r.succeeded() && r.input == inputs[n.index()] => {
                    done.insert(n);
                }
                Some(r) if r.succeeded() => {
                    moved.push(format!("{}:{}", inv.hosts[h].name, task.id))
                }
                _ => {}
            }
        }
    }
    // Registered results are not journaled (they may be secrets), so a task
    // that registers reruns when anything after it on its host, or any task
    // waiting for it on another host, runs.
    loop {
        let mut again = Vec::new();
        for &n in &done {
            if dag.graph[n].task.register.is_none() {
                continue;
            }
            let h = dag.graph[n].host;
            let pos = dag.chains[h].iter().position(|x| *x == n).unwrap();
            let later_runs = dag.chains[h][pos + 1..].iter().any(|x| !done.contains(x));
            let consumer_runs = dag
                .graph
                .neighbors_directed(n, petgraph::Direction::Outgoing)
                .any(|x| !done.contains(&x));
            if later_runs || consumer_runs {
                again.push(n);
            }
        }
        if again.is_empty() {
            break;
        }
        for n in again {
            done.remove(&n);
        }
    }
    (done, moved)
}

fn execute(input: &Input, connect: &Connect, run: Option<&RunControl>) -> Result<i32> {
    let mode = if run.is_some() {
        RunMode::Apply
    } else {
        RunMode::Plan
    };
    let mut journal_file = None;
    let (mut inv, pb) = load(input)?;
    inv.secrets = crate::secrets::resolve(&input.inventory, &inv.secrets, &pb.secret_names())?;
    let selected = selected_hosts(&inv, input, connect)?;
    let dag = Dag::build(&inv, &pb, &selected)?;
    let inputs = crate::plan::inputs::input_hashes(&inv, &pb, &dag);
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
    if let Some(rc) = run {
        if rc.retry_failed {
            let Some(st) = journal::state(&input.inventory)? else {
                return Err(Error::Usage(format!(
                    "--retry-failed: no journal at {}; nothing ran yet",
                    journal::path(&input.inventory).display()
                )));
            };
            let (done, moved) = finished_earlier(&inv, &dag, &inputs, &st);
            if !moved.is_empty() {
                eprintln!(
                    "note: the inventory or roles changed since the last run for {} task(s); they run again: {}",
                    moved.len(),
                    moved.join(", ")
                );
            }
            let todo = dag.graph.node_count() - done.len();
            if todo == 0 {
                println!(
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
            let mut found = false;
            for chain in &dag.chains {
                if let Some(pos) = chain.iter().position(|n| {
                    &dag.graph[*n].task.id == from || &dag.graph[*n].task.name == from
                }) {
                    found = true;
                    opts.done.extend(chain[..pos].iter().copied());
                } else {
                    opts.done.extend(chain.iter().copied());
                }
            }
            if !found {
                return Err(Error::Usage(format!(
                    "--from: no task {from:?} on the selected hosts (write it as role/task name)"
                )));
            }
        }
        if !rc.skip_preflight {
            // Only hosts with something to do: one whose every task finished
            // earlier (`--retry-failed`, `--from`) is not contacted at all.
            let busy: Vec<usize> = selected
                .iter()
                .copied()
                .filter(|&h| dag.chains[h].iter().any(|n| !opts.done.contains(n)))
                .collect();
            match preflight(&rt, &inv, &pb, &dag, &busy, connect, &input.inventory)? {
                Err(code) => return Ok(code),
                Ok(conns) => opts.conns = std::sync::Mutex::new(conns),
            }
        }
        opts.max_fail_percent = rc.max_fail_percent;
        opts.fail_fast = rc.fail_fast;
        opts.lock_stale_after = Some(std::time::Duration::from_secs(rc.lock_stale_after));
        let command: Vec<String> = std::env::args().skip(1).collect();
        let j = journal::Journal::open(&input.inventory, &command.join(" "), playbook_name(input))?;
        opts.run_id = j.run.clone();
        journal_file = Some(Arc::new(j));
    }
    let names: Vec<String> = selected
        .iter()
        .map(|&i| inv.hosts[i].name.clone())
        .collect();
    let reporter = Reporter::new(
        mode == RunMode::Plan,
        connect.verbose,
        dag.graph.node_count() as u64,
        &names,
    );
    for v in inv.secrets.values().filter_map(|v| v.as_str()) {
        reporter.redactor.add(v);
    }
    // The engine reports through events; one thread renders, redacts and
    // journals them.
    let (inv, dag) = (Arc::new(inv), Arc::new(dag));
    let sink = Sink {
        reporter,
        journal: journal_file,
        inv: inv.clone(),
        dag: dag.clone(),
        inputs,
    };
    let (events, queue) = std::sync::mpsc::channel();
    let consumer = std::thread::spawn(move || sink.consume(queue));
    let result = rt.block_on(exec::run(inv, pb, dag, opts, events));
    let reporter = consumer
        .join()
        .map_err(|_| Error::Other("the run's reporter thread failed".into()))?;
    reporter.finish();
    Ok(if result.any_failed() { 1 } else { 0 })
}

/// `gantry status`: the journal's view, and what a retry would run.
fn status(input: &Input) -> Result<i32> {
    let Some(st) = journal::state(&input.inventory)? else {
        println!(
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
    let inputs = crate::plan::inputs::input_hashes(&inv, &pb, &dag);
    let (done, _) = finished_earlier(&inv, &dag, &inputs, &st);
    println!(
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
        println!("\n{host}");
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
            println!(
                "  {word:<11} {:<50} {when:>10}  [{rerun}]{}",
                task.id,
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("  {reason}")
                }
            );
        }
    }
    let todo = dag.graph.node_count() - done.len();
    println!(
        "\n`gantry apply --retry-failed` would run {todo} of {} task(s)",
        dag.graph.node_count()
    );
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `gantry unlock`: remove the run lock from the selected hosts.
fn unlock(input: &Input, connect: &Connect) -> Result<i32> {
    let (inv, _) = load(input)?;
    let selected = selected_hosts(&inv, input, connect)?;
    let policy = if connect.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else {
        HostKeyPolicy::Strict
    };
    let rt = runtime()?;
    let mut code = 0;
    rt.block_on(async {
        for &h in &selected {
            let host = &inv.hosts[h];
            match crate::remote::ssh::connect(&host.address, &inv.ssh_for(host), policy).await {
                Err(e) => {
                    println!("{}: {e}", host.name);
                    code = 1;
                }
                Ok(conn) => {
                    match crate::remote::lock::force_release(&conn).await {
                        Ok(Some(owner)) => println!("{}: removed lock ({owner})", host.name),
                        Ok(None) => println!("{}: not locked", host.name),
                        Err(e) => {
                            println!("{}: {e}", host.name);
                            code = 1;
                        }
                    }
                    conn.close().await;
                }
            }
        }
    });
    Ok(code)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("starting the runtime: {e}")))
}

fn policy(connect: &Connect) -> HostKeyPolicy {
    if connect.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else {
        HostKeyPolicy::Strict
    }
}

/// `gantry check`.
fn check(input: &Input, connect: &Connect, format: Format, fsync_probe: bool) -> Result<i32> {
    let (inv, pb) = load(input)?;
    let selected = selected_hosts(&inv, input, connect)?;
    let dag = Dag::build(&inv, &pb, &selected)?;
    let w = Arc::new(crate::check::wanted(&inv, &pb, &dag, fsync_probe));
    let inv = Arc::new(inv);
    let o = crate::check::RunOptions {
        fsync_probe,
        reachability: true,
        policy: policy(connect),
        forks: connect.forks,
        keep: false,
    };
    let results = runtime()?
        .block_on(crate::check::run(inv, w.clone(), &selected, &o))
        .results;
    let (mut reports, mut down) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(rep) => reports.push(rep),
            Err(e) => down.push(e),
        }
    }
    crate::check::fleet::fleet(&mut reports, &w.policy);
    match format {
        Format::Table => crate::ui::table::print_table(&reports, &down),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&crate::ui::table::json(&reports, &down)).unwrap()
        ),
    }
    let failed = !down.is_empty()
        || reports.iter().any(|r| {
            r.findings
                .iter()
                .any(|f| f.level == crate::check::Level::Fail)
        });
    Ok(if failed { 1 } else { 0 })
}

/// Before apply changes anything: the fail-level checks. Hosts gantry has
/// already worked on (per the journal) are past the install-time checks (no
/// existing Kubernetes, ports free): their cluster is gantry's own. Returns
/// an exit code when apply must not go on, else the checked hosts' open
/// connections for apply to go on with (on the same runtime, which drives
/// them).
fn preflight(
    rt: &tokio::runtime::Runtime,
    inv: &Inventory,
    pb: &crate::playbook::Playbook,
    dag: &Dag,
    selected: &[usize],
    connect: &Connect,
    inventory: &Path,
) -> Result<std::result::Result<HashMap<usize, crate::remote::ssh::Conn>, i32>> {
    let managed: HashSet<String> = journal::state(inventory)?
        .map(|st| {
            st.records
                .iter()
                .filter(|r| r.succeeded())
                .map(|r| r.host.clone())
                .collect()
        })
        .unwrap_or_default();
    let w = Arc::new(crate::check::wanted(inv, pb, dag, false));
    let o = crate::check::RunOptions {
        fsync_probe: false,
        reachability: false,
        policy: policy(connect),
        forks: connect.forks,
        keep: true,
    };
    let checked = rt.block_on(crate::check::run(
        Arc::new(inv.clone()),
        w.clone(),
        selected,
        &o,
    ));
    let results = checked.results;
    // An unreachable host is the executor's to report, per host; here only
    // what a reachable host fails stops the run.
    let mut reports: Vec<_> = results.into_iter().filter_map(|r| r.ok()).collect();
    crate::check::fleet::fleet(&mut reports, &w.policy);
    let mut failing = Vec::new();
    for r in &reports {
        for f in &r.findings {
            let install_time = crate::check::check_named(f.check)
                .is_some_and(|c| c.stage == crate::check::Stage::Install);
            if f.level == crate::check::Level::Fail && !(install_time && managed.contains(&r.host))
            {
                failing.push(format!(
                    "FAILED preflight {} {}: {} (required: {}); fix: {}",
                    r.host, f.check, f.measured, f.required, f.fix
                ));
            }
        }
    }
    if failing.is_empty() {
        return Ok(Ok(checked.conns));
    }
    for conn in checked.conns.into_values() {
        rt.block_on(conn.close());
    }
    for l in &failing {
        println!("{l}");
    }
    println!(
        "preflight: {} check(s) failed; nothing was changed. Fix them, or rerun with --skip-preflight",
        failing.len()
    );
    Ok(Err(1))
}
