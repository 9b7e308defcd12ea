//! The engine: runs the DAG over SSH, one connection and one worker per
//! host, at most `forks` hosts in flight, each node waiting for its
//! predecessors. A failed node blocks only its dependents; every other host
//! goes on. This is the one place that runs module actions, and it runs
//! none in plan mode.
//!
//! - `mod.rs` (here): the run itself, its options, and the stop policy
//!   (`--fail-fast`, `--max-fail-percent`, Ctrl-C);
//! - `host.rs`: one host's worker: connect, lock, facts, its chain of tasks;
//! - `task.rs`: one task: when and loop, module calls, decide, act or plan;
//! - `probe.rs`: reading hosts' state, and answers read ahead for later tasks;
//! - `write_ahead.rs`: several tasks' writes in one request;
//! - `register.rs`: registered results and the variables a task sees;
//! - `event.rs`: outcomes and the events workers report. Workers never
//!   print or journal: they send events to the run's one consumer.

mod event;
mod host;
mod probe;
#[cfg(test)]
pub(crate) use probe::{probe_script, read_answers};
mod register;
mod relay;
mod task;
mod write_ahead;

pub use event::{Event, Outcome, Timing};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petgraph::graph::NodeIndex;
use serde_json::Value as Json;
use tokio::sync::{Semaphore, watch};

use crate::facts::run_script;
use crate::inventory::Inventory;
use crate::plan::graph::Dag;
use crate::plan::template::Templates;
use crate::plan::vars::Vars;
use crate::playbook::Playbook;
use crate::remote::ssh::{self, HostKeyPolicy};
use host::host_worker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Plan,
    Apply,
}

pub struct Options {
    pub mode: RunMode,
    pub forks: usize,
    pub host_keys: HostKeyPolicy,
    /// Nodes finished in an earlier run (`--retry-failed`, `--from`): not run.
    pub done: HashSet<NodeIndex>,
    /// The run's id (apply): the owner its host locks name.
    pub run_id: String,
    /// Stop scheduling new tasks once more than this share of hosts failed.
    pub max_fail_percent: Option<u8>,
    pub fail_fast: bool,
    /// Host locks (apply): a lock whose heartbeat is older is taken over.
    pub lock_stale_after: Option<Duration>,
    /// Show diffs of private files and `no_log` tasks in full.
    pub show_secret_diffs: bool,
    /// Connections already open (preflight's), by host index: used instead
    /// of logging in again.
    pub conns: Mutex<HashMap<usize, ssh::Conn>>,
    /// Where relative controller paths (`upload.src`) start: the
    /// inventory's directory.
    pub base_dir: std::path::PathBuf,
    /// Uploads fan out between hosts (`relay`).
    pub fan_out: bool,
}

impl Options {
    pub fn new(mode: RunMode, forks: usize, host_keys: HostKeyPolicy) -> Options {
        Options {
            mode,
            forks,
            host_keys,
            done: HashSet::new(),
            run_id: String::new(),
            max_fail_percent: None,
            fail_fast: false,
            lock_stale_after: None,
            show_secret_diffs: false,
            conns: Mutex::new(HashMap::new()),
            base_dir: std::path::PathBuf::from("."),
            fan_out: true,
        }
    }
}

/// State shared by all host workers.
pub(crate) struct Shared {
    /// The template variables fixed for the run, built once.
    vars: Vars,
    inv: Arc<Inventory>,
    pb: Playbook,
    dag: Arc<Dag>,
    templates: Templates,
    /// What `gather_facts` runs on each host.
    facts_script: String,
    opts: Options,
    /// Each node's outcome once it is known; dependents wait on these.
    results: Vec<watch::Sender<Option<Outcome>>>,
    /// Registered results and facts per host: `hostvars` in templates.
    hostvars: Arc<Mutex<HashMap<String, serde_json::Map<String, Json>>>>,
    /// To the run's one consumer: what to show and journal.
    events: Sender<Event>,
    forks: Semaphore,
    /// Set when the run stops scheduling: Ctrl-C, --fail-fast, --max-fail-percent.
    stop: AtomicBool,
    stop_reason: Mutex<String>,
    failed_hosts: AtomicUsize,
    hosts_in_run: usize,
    /// Where each host's uploads come from.
    relay: relay::Relay,
    /// The uploads' progress bars (drawn only on a terminal).
    transfers: crate::ui::progress::Transfers,
}

impl Shared {
    fn stop(&self, why: String) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            self.notice(format!(
                "stopping: {why}; running tasks finish, no new ones start"
            ));
            *self.stop_reason.lock().unwrap() = why;
        }
    }

    /// Report an event. The consumer outlives the run, so a send cannot
    /// fail while workers run.
    fn report(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn notice(&self, s: String) {
        self.report(Event::Notice(s));
    }

    fn stopped(&self) -> Option<String> {
        self.stop
            .load(Ordering::SeqCst)
            .then(|| self.stop_reason.lock().unwrap().clone())
    }

    /// A host ended with a failure: apply --fail-fast and --max-fail-percent.
    fn host_failed(&self) {
        let n = self.failed_hosts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.opts.fail_fast {
            self.stop(format!("--fail-fast: a host failed ({n} so far)"));
        } else if let Some(p) = self.opts.max_fail_percent
            && n * 100 > p as usize * self.hosts_in_run
        {
            self.stop(format!(
                "--max-fail-percent {p}: {n} of {} hosts failed",
                self.hosts_in_run
            ));
        }
    }
}

pub struct RunResult {
    pub outcomes: Vec<(NodeIndex, Outcome)>,
}

impl RunResult {
    pub fn any_failed(&self) -> bool {
        self.outcomes.iter().any(|(_, o)| {
            matches!(
                o,
                Outcome::Failed { .. } | Outcome::Unreachable(_) | Outcome::Blocked(_)
            )
        })
    }
}

/// Run the DAG. Everything to show or journal goes to `events`, whose
/// consumer must run until the sender is dropped, when this returns.
pub async fn run(
    inv: Arc<Inventory>,
    pb: Playbook,
    dag: Arc<Dag>,
    opts: Options,
    events: Sender<Event>,
) -> RunResult {
    let templates = Templates::new(&pb);
    let facts_script = run_script(&templates, &dag);
    let n = dag.graph.node_count();
    let results = (0..n).map(|_| watch::channel(None).0).collect();
    let forks = Semaphore::new(opts.forks.max(1));
    let vars = Vars::new(&inv, &pb);
    let hosts_in_run = dag.chains.iter().filter(|c| !c.is_empty()).count();
    let fan_out = opts.fan_out && opts.mode == RunMode::Apply && hosts_in_run > 1;
    let shared = Arc::new(Shared {
        vars,
        inv,
        pb,
        dag,
        templates,
        facts_script,
        opts,
        results,
        hostvars: Arc::new(Mutex::new(HashMap::new())),
        events,
        forks,
        stop: AtomicBool::new(false),
        stop_reason: Mutex::new(String::new()),
        failed_hosts: AtomicUsize::new(0),
        hosts_in_run,
        relay: relay::Relay::new(fan_out, hosts_in_run),
        transfers: Default::default(),
    });
    // Ctrl-C once: finish what runs, start nothing new (the journal keeps
    // every finished task). Twice: abort now; the consumer journals what
    // came before and ends the process.
    // SIGTERM (a CI job cancelled, systemd stopping a unit) counts as the
    // first Ctrl-C: what runs finishes and is journaled.
    let on_signal = shared.clone();
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let first = tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok().then_some("Ctrl-C"),
            () = terminated => Some("SIGTERM"),
        };
        if let Some(what) = first {
            on_signal.stop(format!("interrupted ({what}); press Ctrl-C to abort now"));
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.report(Event::Abort);
                std::future::pending::<()>().await;
            }
        }
    });
    let mut workers = Vec::new();
    for h in 0..shared.inv.hosts.len() {
        if shared.dag.chains[h].is_empty() {
            continue;
        }
        let s = shared.clone();
        workers.push(tokio::spawn(async move { host_worker(s, h).await }));
    }
    for w in workers {
        let _ = w.await;
    }
    // The last holder of the events' sender but this one goes: once this
    // returns, the consumer sees the channel close.
    signals.abort();
    let _ = signals.await;
    let outcomes = shared
        .dag
        .graph
        .node_indices()
        .map(|n| {
            (
                n,
                shared.results[n.index()]
                    .borrow()
                    .clone()
                    .unwrap_or(Outcome::Blocked("not run".into())),
            )
        })
        .collect();
    RunResult { outcomes }
}

pub(crate) fn finish(s: &Shared, n: NodeIndex, o: Outcome) {
    s.report(Event::TaskDone {
        node: n,
        outcome: o.clone(),
    });
    s.results[n.index()].send_replace(Some(o));
}

/// A node finished in an earlier run: counted, not run, not journaled again.
pub(crate) fn finish_done(s: &Shared, n: NodeIndex) {
    s.report(Event::DoneEarlier {
        host: s.dag.graph[n].host,
    });
    s.results[n.index()].send_replace(Some(Outcome::Ok("done in an earlier run".into())));
}

/// The host cannot be used: say so once, and record each remaining task.
pub(crate) fn host_lost(s: &Shared, h: usize, nodes: &[NodeIndex], why: &str) {
    host_ends(s, h, nodes, Outcome::Unreachable(why.to_string()));
}

pub(crate) fn host_ends(s: &Shared, h: usize, nodes: &[NodeIndex], o: Outcome) {
    let todo: Vec<NodeIndex> = nodes
        .iter()
        .copied()
        .filter(|n| !s.opts.done.contains(n))
        .collect();
    let lost = !todo.is_empty();
    s.report(Event::HostUnusable {
        host: h,
        outcome: o.clone(),
        nodes: todo,
    });
    for &n in nodes {
        if s.opts.done.contains(&n) {
            finish_done(s, n);
        } else {
            s.results[n.index()].send_replace(Some(o.clone()));
        }
    }
    if lost {
        s.host_failed();
    }
}

/// What plan shows where a value exists only after apply has run a command.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";
