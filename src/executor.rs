//! Runs the DAG over SSH: one connection and one worker per host, at most
//! `forks` hosts in flight, each node waiting for its predecessors. A failed
//! node blocks only its dependents; every other host goes on. This is the one
//! place that runs module actions, and it runs none in plan mode.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minijinja::Value;
use petgraph::graph::NodeIndex;
use serde_json::{Value as Json, json};
use tokio::sync::{Semaphore, watch};

use crate::graph::{Dag, Edge};
use crate::inventory::Inventory;
use crate::journal::{self, Journal, Record};
use crate::modules::{
    self, Action, AnyModule, Change, Controller, Decision, Probe, ProbeOut, Probes, Touches,
};
use crate::playbook::{Playbook, Task};
use crate::remote::lock;
use crate::remote::script::quote;
use crate::remote::ssh::{self, Conn, ConnError, HostKeyPolicy};
use crate::remote::{frame, writes};
use crate::report::Reporter;
use crate::template::Templates;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(String),
    Changed {
        reason: String,
        diff: Option<String>,
        actions: Vec<String>,
    },
    Failed {
        reason: String,
        command: Option<String>,
        rc: Option<i32>,
        stderr: String,
    },
    /// `when:` was false: not an error, dependents still run.
    Skipped(String),
    /// Not run because something it depends on did not succeed.
    Blocked(String),
    Unreachable(String),
}

impl Outcome {
    fn lets_dependents_run(&self) -> bool {
        matches!(
            self,
            Outcome::Ok(_) | Outcome::Changed { .. } | Outcome::Skipped(_)
        )
    }

    /// The word the journal and `status` use.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Changed { .. } => "changed",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Blocked(_) => "blocked",
            Outcome::Unreachable(_) => "unreachable",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Outcome::Ok(r)
            | Outcome::Skipped(r)
            | Outcome::Blocked(r)
            | Outcome::Unreachable(r) => r.clone(),
            Outcome::Changed { reason, .. } => reason.clone(),
            Outcome::Failed {
                reason,
                command,
                rc,
                stderr,
            } => {
                let mut s = reason.clone();
                if let Some(c) = command {
                    s.push_str(&format!("; {c}"));
                }
                if let Some(rc) = rc {
                    s.push_str(&format!("; exit code {rc}"));
                }
                if let Some(last) = stderr.lines().last() {
                    s.push_str(&format!("; {last}"));
                }
                s
            }
        }
    }
}

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
    /// Each node's input hash, by node index, for the journal.
    pub inputs: Vec<String>,
    pub journal: Option<Arc<Journal>>,
    /// Stop scheduling new tasks once more than this share of hosts failed.
    pub max_fail_percent: Option<u8>,
    pub fail_fast: bool,
    /// Host locks (apply): a lock whose heartbeat is older is taken over.
    pub lock_stale_after: Option<Duration>,
    /// Connections already open (preflight's), by host index: used instead
    /// of logging in again.
    pub conns: Mutex<HashMap<usize, ssh::Conn>>,
}

impl Options {
    pub fn new(mode: RunMode, forks: usize, host_keys: HostKeyPolicy) -> Options {
        Options {
            mode,
            forks,
            host_keys,
            done: HashSet::new(),
            inputs: Vec::new(),
            journal: None,
            max_fail_percent: None,
            fail_fast: false,
            lock_stale_after: None,
            conns: Mutex::new(HashMap::new()),
        }
    }
}

/// State shared by all host workers.
struct Shared {
    /// The template variables fixed for the run, built once.
    vars: Vars,
    inv: Inventory,
    pb: Playbook,
    dag: Dag,
    templates: Templates,
    /// What `gather_facts` runs on each host.
    facts_script: String,
    opts: Options,
    /// Each node's outcome once it is known; dependents wait on these.
    results: Vec<watch::Sender<Option<Outcome>>>,
    /// Registered results and facts per host: `hostvars` in templates.
    hostvars: Arc<Mutex<HashMap<String, serde_json::Map<String, Json>>>>,
    reporter: Arc<Reporter>,
    forks: Semaphore,
    /// Set when the run stops scheduling: Ctrl-C, --fail-fast, --max-fail-percent.
    stop: AtomicBool,
    stop_reason: Mutex<String>,
    failed_hosts: AtomicUsize,
    hosts_in_run: usize,
}

impl Shared {
    fn stop(&self, why: String) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            self.reporter.notice(&format!(
                "stopping: {why}; running tasks finish, no new ones start"
            ));
            *self.stop_reason.lock().unwrap() = why;
        }
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
        } else if let Some(p) = self.opts.max_fail_percent {
            if n * 100 > p as usize * self.hosts_in_run {
                self.stop(format!(
                    "--max-fail-percent {p}: {n} of {} hosts failed",
                    self.hosts_in_run
                ));
            }
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

pub async fn run(
    inv: Inventory,
    pb: Playbook,
    dag: Dag,
    opts: Options,
    reporter: Arc<Reporter>,
) -> RunResult {
    for v in inv.secrets.values() {
        if let Some(v) = v.as_str() {
            reporter.redactor.add(v);
        }
    }
    let templates = Templates::new(&pb);
    let facts_script = facts_script(&templates, &dag);
    let n = dag.graph.node_count();
    let results = (0..n).map(|_| watch::channel(None).0).collect();
    let forks = Semaphore::new(opts.forks.max(1));
    let vars = Vars::new(&inv, &pb);
    let hosts_in_run = dag.chains.iter().filter(|c| !c.is_empty()).count();
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
        reporter,
        forks,
        stop: AtomicBool::new(false),
        stop_reason: Mutex::new(String::new()),
        failed_hosts: AtomicUsize::new(0),
        hosts_in_run,
    });
    // Ctrl-C once: finish what runs, start nothing new (the journal keeps
    // every finished task). Twice: abort now.
    let on_signal = shared.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.stop("interrupted (Ctrl-C); press it again to abort now".into());
            if tokio::signal::ctrl_c().await.is_ok() {
                if let Some(j) = &on_signal.opts.journal {
                    j.close();
                }
                eprintln!("aborted; finished tasks are in the journal");
                std::process::exit(130);
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
    // Every record on disk before the run reports.
    if let Some(j) = &shared.opts.journal {
        j.close();
    }
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

fn journal(s: &Shared, n: NodeIndex, o: &Outcome) {
    if let Some(j) = &s.opts.journal {
        let node = &s.dag.graph[n];
        let host = &s.inv.hosts[node.host].name;
        let seq = s.dag.chains[node.host]
            .iter()
            .position(|x| *x == n)
            .unwrap_or(0);
        j.record(&Record {
            run: j.run.clone(),
            at: journal::now(),
            host: host.clone(),
            task: node.task.id.clone(),
            seq,
            input: s.opts.inputs.get(n.index()).cloned().unwrap_or_default(),
            outcome: o.word().to_string(),
            reason: s.reporter.redactor.redact(&o.reason()),
        });
    }
}

fn finish(s: &Shared, n: NodeIndex, o: Outcome) {
    let node = &s.dag.graph[n];
    s.reporter
        .task_done(&s.inv.hosts[node.host].name, &node.task.id, &o);
    journal(s, n, &o);
    s.results[n.index()].send_replace(Some(o));
}

/// A node finished in an earlier run: counted, not run, not journaled again.
fn finish_done(s: &Shared, n: NodeIndex) {
    s.reporter
        .done_earlier(&s.inv.hosts[s.dag.graph[n].host].name);
    s.results[n.index()].send_replace(Some(Outcome::Ok("done in an earlier run".into())));
}

/// The host cannot be used: say so once, and record each remaining task.
fn host_lost(s: &Shared, h: usize, nodes: &[NodeIndex], why: &str) {
    host_ends(s, h, nodes, Outcome::Unreachable(why.to_string()));
}

fn host_ends(s: &Shared, h: usize, nodes: &[NodeIndex], o: Outcome) {
    let todo: Vec<NodeIndex> = nodes
        .iter()
        .copied()
        .filter(|n| !s.opts.done.contains(n))
        .collect();
    s.reporter
        .host_unusable(&s.inv.hosts[h].name, &o, todo.len());
    for &n in nodes {
        if s.opts.done.contains(&n) {
            finish_done(s, n);
        } else {
            journal(s, n, &o);
            s.results[n.index()].send_replace(Some(o.clone()));
        }
    }
    if !todo.is_empty() {
        s.host_failed();
    }
}

async fn host_worker(s: Arc<Shared>, h: usize) {
    let host = &s.inv.hosts[h];
    let chain = s.dag.chains[h].clone();
    // A host whose every task finished earlier is not contacted at all.
    if chain.iter().all(|n| s.opts.done.contains(n)) {
        for &n in &chain {
            finish_done(&s, n);
        }
        return;
    }
    let mut permit = Some(s.forks.acquire().await.expect("semaphore open"));
    if let Some(why) = s.stopped() {
        return host_ends(
            &s,
            h,
            &chain,
            Outcome::Blocked(format!("not started: {why}")),
        );
    }
    let cfg = s.inv.ssh_for(host);
    let open = s.opts.conns.lock().unwrap().remove(&h);
    let conn = match open {
        Some(c) => Arc::new(c),
        None => match ssh::connect(&host.address, &cfg, s.opts.host_keys).await {
            Ok(c) => Arc::new(c),
            Err(e) => return host_lost(&s, h, &chain, &e.message),
        },
    };
    // Two applies must not interleave on a host: take its lock, and keep a
    // heartbeat on it while this run holds it.
    let mut heartbeat = None;
    let mut facts_out = None;
    if let (RunMode::Apply, Some(stale)) = (s.opts.mode, s.opts.lock_stale_after) {
        let run = s
            .opts
            .journal
            .as_ref()
            .map(|j| j.run.clone())
            .unwrap_or_default();
        // The lock, then the facts, in one round trip.
        let mut got = lock::acquire(&conn, &run, stale, &s.facts_script).await;
        if let Err(lock::LockError::Held(by)) = &got {
            if lock::owner_is_gone(by) {
                got = lock::acquire(&conn, &run, Duration::ZERO, &s.facts_script).await;
            }
        }
        match got {
            Ok((lock::Acquired::Fresh, out)) => facts_out = Some(out),
            Ok((lock::Acquired::TookOver(old), out)) => {
                s.reporter
                    .notice(&format!("{}: took over a stale lock ({old})", host.name));
                facts_out = Some(out);
            }
            Err(lock::LockError::Held(by)) => {
                conn.close().await;
                let why = format!(
                    "host is locked by another run ({by}); if that run is gone, wait for the lock to go stale or run `gantry unlock --limit {}`",
                    host.name
                );
                return host_ends(
                    &s,
                    h,
                    &chain,
                    Outcome::Failed {
                        reason: why,
                        command: None,
                        rc: None,
                        stderr: String::new(),
                    },
                );
            }
            Err(lock::LockError::Conn(e)) => return host_lost(&s, h, &chain, &e.message),
        }
        heartbeat = Some(lock::heartbeat(conn.clone(), run));
    }
    let facts_out = match facts_out {
        Some(out) => out,
        None => match conn.run_own(&s.facts_script, &[], None).await {
            Ok(out) => out.stdout,
            Err(e) => {
                host_lost(&s, h, &chain, &format!("gathering facts: {e}"));
                conn.close().await;
                return;
            }
        },
    };
    let facts = parse_facts(&facts_out);
    s.hostvars
        .lock()
        .unwrap()
        .entry(host.name.clone())
        .or_default()
        .insert("facts".into(), facts.clone());
    // Plan's view of files that earlier planned tasks would write, so a later
    // task on the same file is judged against the content it would find.
    let mut overlay: HashMap<String, String> = HashMap::new();
    let mut cache = ProbeCache::default();
    let mut host_failed = false;
    // Tasks a write-ahead finished along with an earlier one (`write_ahead`).
    let mut finished_ahead: Vec<(NodeIndex, Outcome)> = Vec::new();
    let mut settled: HashSet<NodeIndex> = HashSet::new();
    for (i, &n) in chain.iter().enumerate() {
        if settled.contains(&n) {
            continue;
        }
        if s.opts.done.contains(&n) {
            finish_done(&s, n);
            continue;
        }
        // Wait for predecessors; give the fork slot back while waiting on
        // other hosts, so a barrier cannot deadlock the pool.
        let mut blocked = None;
        for (p, edge) in s.dag.preds(n).collect::<Vec<_>>() {
            let mut rx = s.results[p.index()].subscribe();
            if rx.borrow().is_none() {
                permit = None;
            }
            let o = rx
                .wait_for(|o| o.is_some())
                .await
                .expect("sender lives")
                .clone()
                .unwrap();
            // A barrier waits for the other hosts to finish, however they
            // finished; order on this host and data from another host need
            // the predecessor to have succeeded.
            if edge != Edge::Barrier && !o.lets_dependents_run() && blocked.is_none() {
                blocked = Some(match o {
                    Outcome::Blocked(r) => r,
                    _ => format!("{} did not succeed", s.dag.label(&s.inv, p)),
                });
            }
        }
        if permit.is_none() {
            permit = Some(s.forks.acquire().await.expect("semaphore open"));
        }
        if blocked.is_none() {
            blocked = s.stopped().map(|why| format!("not started: {why}"));
        }
        if let Some(r) = blocked {
            finish(&s, n, Outcome::Blocked(r));
            continue;
        }
        let task = &s.dag.graph[n].task;
        let mut attempt = 0;
        let outcome = loop {
            let o = run_task(
                &s,
                h,
                task,
                &chain[i + 1..],
                &conn,
                &facts,
                &mut overlay,
                &mut cache,
                n,
                &mut finished_ahead,
            )
            .await;
            // `retries` is for steps that fail transiently; a lost host is not retried.
            if matches!(o, Outcome::Failed { .. })
                && attempt < task.retries
                && s.opts.mode == RunMode::Apply
                && s.stopped().is_none()
            {
                attempt += 1;
                s.reporter.notice(&format!(
                    "{} {}: {}; retry {attempt}/{} in {}s",
                    host.name,
                    task.id,
                    o.reason(),
                    task.retries,
                    task.delay
                ));
                tokio::time::sleep(Duration::from_secs(task.delay)).await;
                continue;
            }
            break o;
        };
        let lost = match &outcome {
            Outcome::Unreachable(r) => Some(format!("connection lost during {}: {r}", task.id)),
            _ => None,
        };
        host_failed |= matches!(outcome, Outcome::Failed { .. });
        finish(&s, n, outcome);
        for (m, o) in finished_ahead.drain(..) {
            host_failed |= matches!(o, Outcome::Failed { .. });
            settled.insert(m);
            finish(&s, m, o);
        }
        if let Some(why) = lost {
            if let Some(hb) = heartbeat {
                hb.abort();
            }
            return host_lost(&s, h, &chain[i + 1..], &why);
        }
    }
    drop(permit);
    if host_failed {
        s.host_failed();
    }
    if let Some(hb) = heartbeat {
        hb.abort();
        let run = s
            .opts
            .journal
            .as_ref()
            .map(|j| j.run.clone())
            .unwrap_or_default();
        lock::release(&conn, &run).await;
    }
    conn.close().await;
}

/// Shell builtins reading /proc: each process spawned here is paid on every
/// host of every run. It runs in the host's shell itself (`Scope::Own`), so
/// /etc/os-release is read line by line, not sourced into it.
const FACTS_SCRIPT: &str = r#"local k v n id ver like
while IFS='=' read -r k v; do
  v=${v#[\"\']}; v=${v%[\"\']}
  case $k in ID) id=$v ;; VERSION_ID) ver=$v ;; ID_LIKE) like=$v ;; esac
done < /etc/os-release 2>/dev/null
echo "os_id=${id:-unknown}"
echo "os_version=$ver"
echo "os_like=${like:-$id}"
read -r v < /proc/sys/kernel/osrelease; echo "kernel=$v"
{ read -r v < /proc/sys/kernel/arch; } 2>/dev/null || v=$(uname -m); echo "arch=$v"
read -r v < /proc/sys/kernel/hostname; echo "hostname=$v"
n=0; { read -r k; while read -r k; do n=$((n + 1)); done; } < /proc/swaps 2>/dev/null; echo "swap_devices=$n"
read -r v < /proc/1/comm; echo "init=$v"
command -v nft >/dev/null && echo "has_nft=true" || echo "has_nft=false"
"#;

/// Facts that cost processes to read: each is read only in runs where some
/// task refers to it (see `facts_script`).
const COSTLY_FACTS: [(&str, &str); 3] = [
    (
        "firewalld",
        r#"if [ -d /run/systemd/system ]; then echo "firewalld=$(systemctl is-active firewalld 2>/dev/null)"; else echo "firewalld="; fi"#,
    ),
    (
        "nft_gantry_table",
        r#"nft list table inet gantry >/dev/null 2>&1 && echo "nft_gantry_table=true" || echo "nft_gantry_table=false""#,
    ),
    (
        "ipv4",
        r#"ip -o -4 addr show 2>/dev/null | while read -r _ iface _ cidr _; do echo "ipv4=$iface $cidr"; done"#,
    ),
];

/// The facts script for a run: the cheap facts, and each costly one that a
/// task of the run names as `facts.NAME`. A task that reads `facts` whole,
/// by a computed key, or through `hostvars` gets them all.
fn facts_script(templates: &Templates, dag: &Dag) -> String {
    let mut names = std::collections::BTreeSet::new();
    let mut seen = HashSet::new();
    for n in dag.graph.node_indices() {
        let t = &dag.graph[n].task;
        if seen.insert((&t.id, &t.source)) {
            names.extend(referenced(templates, t, true));
        }
    }
    facts_script_for(&names)
}

/// The facts script for tasks that refer to `names` (nested paths).
fn facts_script_for(names: &std::collections::BTreeSet<String>) -> String {
    let all = names
        .iter()
        .any(|n| n == "facts" || n == "hostvars" || n.starts_with("hostvars."));
    let mut script = FACTS_SCRIPT.to_string();
    for (name, part) in COSTLY_FACTS {
        if all
            || names.contains(&format!("facts.{name}"))
            || names
                .iter()
                .any(|n| n.starts_with(&format!("facts.{name}.")))
        {
            script.push_str(part);
            script.push('\n');
        }
    }
    script
}

/// The host facts every template and `when:` can use, from what the facts
/// script printed.
fn parse_facts(stdout: &str) -> Json {
    let mut m = serde_json::Map::new();
    // Each IPv4 address the host has -> its interface and prefix, so roles can
    // find the interface that carries the host's inventory address.
    let mut ipv4 = serde_json::Map::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("ipv4=") {
            if let Some((iface, cidr)) = rest.split_once(' ') {
                let (ip, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
                ipv4.insert(
                    ip.to_string(),
                    json!({"iface": iface, "prefix": prefix.parse::<u8>().unwrap_or(32)}),
                );
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = match v {
                "true" => Json::Bool(true),
                "false" => Json::Bool(false),
                _ => v
                    .parse::<i64>()
                    .map(Json::from)
                    .unwrap_or_else(|_| Json::String(v.to_string())),
            };
            m.insert(k.to_string(), v);
        }
    }
    m.insert("ipv4".into(), Json::Object(ipv4));
    Json::Object(m)
}

/// What a host is to its own templates: `host`.
fn identity(host: &crate::inventory::HostSpec) -> Json {
    json!({"name": host.name, "address": host.address, "ip": host.ipv4(), "roles": host.roles})
}

fn val(j: impl serde::Serialize) -> Value {
    Value::from(minijinja::value::Serde(j))
}

fn values(m: &serde_json::Map<String, Json>) -> Vec<(String, Value)> {
    m.iter().map(|(k, v)| (k.clone(), val(v))).collect()
}

/// The template variables that do not change during a run, as minijinja
/// values built once, so that a task's context costs the same with ten hosts
/// or a thousand: cloning a `Value` is a reference count.
struct Vars {
    view: Vec<(String, Value)>,
    defaults: HashMap<String, Vec<(String, Value)>>,
    vars: Vec<(String, Value)>,
    /// Per host: its vars, then `inventory_hostname` and `host`.
    hosts: Vec<Vec<(String, Value)>>,
}

impl Vars {
    fn new(inv: &Inventory, pb: &Playbook) -> Vars {
        let hosts = inv
            .hosts
            .iter()
            .map(|host| {
                let mut v = values(&host.vars);
                v.push(("inventory_hostname".into(), Value::from(host.name.clone())));
                v.push(("host".into(), val(identity(host))));
                v
            })
            .collect();
        Vars {
            view: values(&inv.template_map()),
            defaults: pb
                .roles
                .iter()
                .map(|(n, r)| (n.clone(), values(&r.defaults)))
                .collect(),
            vars: values(&inv.vars),
            hosts,
        }
    }

    /// What templates see for one task on one host, lowest precedence
    /// first: inventory view, role defaults, inventory vars, host vars, host
    /// identity, facts, this host's registered results, then `hostvars`.
    fn context(
        &self,
        h: usize,
        role: &str,
        facts: &Json,
        mine: Option<&serde_json::Map<String, Json>>,
        hostvars: Value,
    ) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        for (k, v) in self
            .view
            .iter()
            .chain(self.defaults.get(role).into_iter().flatten())
            .chain(&self.vars)
            .chain(&self.hosts[h])
        {
            m.insert(k.clone(), v.clone());
        }
        m.insert("facts".into(), val(facts));
        for (k, v) in mine.into_iter().flatten() {
            m.insert(k.clone(), val(v));
        }
        m.insert("hostvars".into(), hostvars);
        m
    }
}

/// `hostvars` in templates: every host's facts and registered results, read
/// when a template asks for one host, not copied into every task's context.
#[derive(Debug)]
struct HostVars(Arc<Mutex<HashMap<String, serde_json::Map<String, Json>>>>);

impl minijinja::value::Object for HostVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.lock().unwrap().get(key.as_str()?).map(val)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.0
                .lock()
                .unwrap()
                .keys()
                .map(|k| Value::from(k.clone()))
                .collect(),
        )
    }
}

fn context(s: &Shared, h: usize, task: &Task, facts: &Json) -> BTreeMap<String, Value> {
    let mine = s
        .hostvars
        .lock()
        .unwrap()
        .get(&s.inv.hosts[h].name)
        .cloned();
    s.vars.context(
        h,
        &task.role,
        facts,
        mine.as_ref(),
        Value::from_object(HostVars(s.hostvars.clone())),
    )
}

/// One variable as a node's input hash sees it: the same precedence as
/// `Vars::context`, with facts and registered results left out (runtime).
fn input_value(
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
fn referenced(templates: &Templates, t: &Task, nested: bool) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let strings = crate::template::strings_in(&t.params, "")
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
/// A retry reruns a node whose hash moved, and only those.
pub fn input_hashes(inv: &Inventory, pb: &Playbook, dag: &Dag) -> Vec<String> {
    use sha2::Digest;
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
            hex::encode(&sha2::Sha256::digest(def.to_string().as_bytes())[..8])
        })
        .collect()
}

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
    let h = inv
        .hosts
        .iter()
        .position(|x| x.name == host)
        .ok_or_else(|| format!("no host {host}"))?;
    let ctx = Vars::new(inv, pb).context(h, role, &facts, None, val(json!({})));
    Templates::new(pb).render_file(role, template, &Value::from(ctx))
}

/// What plan shows where a value exists only after apply has run a command.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

fn failed(reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
        command: None,
        rc: None,
        stderr: String::new(),
    }
}

/// A task `when:` skipped: registered as such.
fn skipped(s: &Shared, h: usize, task: &Task, why: String) -> Outcome {
    register(
        s,
        h,
        task,
        json!({"changed": false, "skipped": true, "rc": 0, "stdout": "", "stderr": ""}),
    );
    Outcome::Skipped(why)
}

/// A task with nothing to change: registered as such.
fn unchanged(s: &Shared, h: usize, task: &Task, reason: String) -> Outcome {
    register(
        s,
        h,
        task,
        json!({"changed": false, "rc": 0, "stdout": "", "stderr": ""}),
    );
    Outcome::Ok(reason)
}

/// Take back what `register` recorded, for a task that did not run after all.
fn unregister(s: &Shared, h: usize, task: &Task) {
    if let Some(name) = &task.register {
        if let Some(m) = s.hostvars.lock().unwrap().get_mut(&s.inv.hosts[h].name) {
            m.remove(name);
        }
    }
}

fn register(s: &Shared, h: usize, task: &Task, result: Json) {
    if let Some(name) = &task.register {
        if task.no_log {
            for k in ["stdout", "stderr"] {
                if let Some(v) = result
                    .get(k)
                    .and_then(Json::as_str)
                    .filter(|v| *v != KNOWN_AFTER_APPLY)
                {
                    s.reporter.redactor.add(v);
                }
            }
        }
        s.hostvars
            .lock()
            .unwrap()
            .entry(s.inv.hosts[h].name.clone())
            .or_default()
            .insert(name.clone(), result);
    }
}

/// Render a task's parameters into a typed module call. `template` and
/// `copy: {src}` are resolved here into a `copy` with content.
fn prepare(s: &Shared, task: &Task, ctx: &Value) -> Result<AnyModule, String> {
    let params = s.templates.render_params(&task.params, ctx)?;
    AnyModule::parse(&task.module, params)?.prepare(&RoleCx { s, task, ctx })
}

/// What a module may ask of the controller for one task (`Controller`):
/// its role's templates, rendered with the task's variables, and files.
struct RoleCx<'a> {
    s: &'a Shared,
    task: &'a Task,
    ctx: &'a Value,
}

impl Controller for RoleCx<'_> {
    fn render_template(&self, name: &str) -> Result<String, String> {
        self.s
            .templates
            .render_file(&self.task.role, name, self.ctx)
    }

    fn role_file(&self, name: &str) -> Result<String, String> {
        let role = &self.s.pb.roles[&self.task.role];
        role.files.get(name).cloned().ok_or_else(|| {
            format!(
                "copy: no file {name:?} in {}",
                role.dir.join("files").display()
            )
        })
    }
}

/// Run probes in one round trip. Each answer is followed by a line holding a
/// random marker, the probe's index and its exit code, so no file content can
/// be mistaken for a separator, and no process is spent on framing.
async fn run_probes(
    conn: &Conn,
    probes: &[Probe],
    timeout: Option<Duration>,
) -> Result<Result<Vec<ProbeOut>, String>, ConnError> {
    if probes.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let marker = match crate::secrets::random_hex(8) {
        Ok(r) => format!("gantry-probe-{r}"),
        Err(e) => return Ok(Err(e)),
    };
    let out = match probe_script(probes, &marker) {
        Ok(script) => conn.run_own(&script, &[], timeout).await?,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(answers) = read_answers(probes, &out.stdout, &marker) {
        return Ok(Ok(answers));
    }
    // The one `cat` could not be cut into files (one changed while it was
    // read, a symlink, content that is not text): read each on its own.
    let out = match probe_script_each(probes, &marker) {
        Ok(script) => conn.run_own(&script, &[], timeout).await?,
        Err(e) => return Ok(Err(e)),
    };
    Ok(
        read_answers_each(probes, &out.stdout, &marker).ok_or_else(|| {
            format!(
                "reading state: the answers came back malformed (stderr: {})",
                tail(&out.stderr)
            )
        }),
    )
}

/// The paths of the file probes, each once, in order.
fn file_paths(probes: &[Probe]) -> Vec<&str> {
    let mut seen = HashSet::new();
    probes
        .iter()
        .filter_map(|p| {
            if let Probe::File(f) = p {
                Some(f.as_str())
            } else {
                None
            }
        })
        .filter(|f| seen.insert(*f))
        .collect()
}

/// The file probes' paths, each once, quoted for one command line; None
/// where there are none.
fn quoted_paths(probes: &[Probe]) -> Result<Option<String>, String> {
    let paths = file_paths(probes);
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        paths
            .iter()
            .map(|p| quote(p))
            .collect::<Result<Vec<_>, _>>()?
            .join(" "),
    ))
}

/// Per path: its name, the head a file probe answers with, and what tells
/// a change apart (size, inode, mtime, ctime).
const STAT: &str = "stat --printf '%n\\0%a %U %G %F\\0%s %i %y %z\\0' --";

/// The same stat's change markers alone, without the owner names (whose
/// lookup costs a stat process about as much again).
const RESTAT: &str = "stat --printf '%n\\0%s %i %y %z\\0' --";

/// Every part of a probe script ends with `\nMARKER INDEX RC\n`. Probe
/// scripts run in the host's shell itself (`Scope::Own`); the variables
/// modules' script probes use are declared here (`modules::PROBE_LOCALS`).
fn framed(parts: &[String], marker: &str) -> String {
    let mut script = format!("local {}\n", modules::PROBE_LOCALS);
    for (i, part) in parts.iter().enumerate() {
        script.push_str(&format!(
            "{part} 2>/dev/null </dev/null; {}\n",
            frame::end(marker, i, "$?")
        ));
    }
    script
}

/// All file probes in three processes, whatever their number: a `stat` of
/// every path, one `cat` of them all, a `stat` of their change markers again. `read_answers`
/// cuts the contents by the sizes the first stat gave; the second stat shows
/// that nothing changed while cat read. Script probes follow, as written.
fn probe_script(probes: &[Probe], marker: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(quoted) = quoted_paths(probes)? {
        parts.push(format!("{STAT} {quoted}"));
        parts.push(format!("cat -- {quoted}"));
        parts.push(format!("{RESTAT} {quoted}"));
    }
    for p in probes {
        if let Probe::Script(_) = p {
            parts.push(format!("{{ {}\n}}", p.script()?));
        }
    }
    Ok(framed(&parts, marker))
}

/// The probes' answers from the output of `probe_script`. A file probe's
/// answer is what `Probe::File` reads: the stat line, then the content; a
/// missing path is rc 1 and no output. None where the output is malformed
/// or the contents cannot be cut with certainty: then `probe_script_each`.
fn read_answers(probes: &[Probe], stdout: &str, marker: &str) -> Option<Vec<ProbeOut>> {
    let paths = file_paths(probes);
    let scripts = probes
        .iter()
        .filter(|p| matches!(p, Probe::Script(_)))
        .count();
    let stats = if paths.is_empty() { 0 } else { 3 };
    let mut answers = split_answers(stdout, marker, stats + scripts)?;
    let mut files: HashMap<&str, ProbeOut> = HashMap::new();
    if stats == 3 {
        let (before, body, after) = (&answers[0].out, &answers[1].out, &answers[2].out);
        let fields: Vec<&str> = before.split('\0').collect();
        // The second stat must give each path's change markers as the first.
        let again: String = fields
            .chunks_exact(3)
            .map(|c| format!("{}\0{}\0", c[0], c[2]))
            .collect();
        if *after != again {
            return None;
        }
        let found: HashMap<&str, (&str, &str)> = fields
            .chunks_exact(3)
            .map(|c| (c[0], (c[1], c[2])))
            .collect();
        let mut at = 0;
        for path in paths {
            let answer = match found.get(path) {
                None => ProbeOut {
                    rc: 1,
                    out: String::new(),
                },
                Some((head, meta)) => {
                    let size: usize = meta.split(' ').next()?.parse().ok()?;
                    let len = match head {
                        h if h.ends_with(" directory") => 0,
                        h if h.ends_with(" regular file") || h.ends_with(" regular empty file") => {
                            size
                        }
                        // A symlink's size is its target's name, not what cat reads.
                        _ => return None,
                    };
                    let content = body.get(at..at + len)?;
                    at += len;
                    ProbeOut {
                        rc: 0,
                        out: format!("{head}\n{content}"),
                    }
                }
            };
            files.insert(path, answer);
        }
        if at != body.len() {
            return None;
        }
    }
    let mut scripts = answers.split_off(stats).into_iter();
    probes
        .iter()
        .map(|p| match p {
            Probe::File(path) => files.get(path.as_str()).cloned(),
            Probe::Script(_) => scripts.next(),
        })
        .collect()
}

/// File probes one by one: one `stat` for all paths, then a `cat` per path
/// that is not a directory. Script probes as written. Slower than
/// `probe_script`, and right whatever the files are.
fn probe_script_each(probes: &[Probe], marker: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(quoted) = quoted_paths(probes)? {
        parts.push(format!("{STAT} {quoted}"));
    }
    for p in probes {
        parts.push(match p {
            Probe::File(path) => {
                let q = quote(path)?;
                format!("{{ [ -d {q} ] || cat -- {q}; }}")
            }
            Probe::Script(_) => format!("{{ {}\n}}", p.script()?),
        });
    }
    Ok(framed(&parts, marker))
}

/// The answers from the output of `probe_script_each`; a missing (or
/// unreadable) path is rc 1 and no output.
fn read_answers_each(probes: &[Probe], stdout: &str, marker: &str) -> Option<Vec<ProbeOut>> {
    let stat = !file_paths(probes).is_empty();
    let mut answers = split_answers(stdout, marker, probes.len() + usize::from(stat))?;
    if !stat {
        return Some(answers);
    }
    let heads = answers.remove(0).out;
    let fields: Vec<&str> = heads.split('\0').collect();
    let found: HashMap<&str, &str> = fields.chunks_exact(3).map(|c| (c[0], c[1])).collect();
    for (p, a) in probes.iter().zip(answers.iter_mut()) {
        if let Probe::File(path) = p {
            *a = match found.get(path.as_str()) {
                Some(head) if a.rc == 0 => ProbeOut {
                    rc: 0,
                    out: format!("{head}\n{}", a.out),
                },
                _ => ProbeOut {
                    rc: 1,
                    out: String::new(),
                },
            };
        }
    }
    Some(answers)
}

/// Cut probe output into its `count` parts (`frame::parts`).
fn split_answers(stdout: &str, marker: &str, count: usize) -> Option<Vec<ProbeOut>> {
    Some(
        frame::parts(stdout, marker, count)?
            .into_iter()
            .map(|f| ProbeOut {
                rc: f.rc,
                out: f.out,
            })
            .collect(),
    )
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// What a task does on a host before the host's state is read: nothing
/// (`when` is false, or the loop has no items), or module calls, each with the
/// probes that read the state it decides on.
enum Calls {
    Skip(String),
    NoItems,
    Run(Vec<(AnyModule, Probes)>),
}

fn task_calls(s: &Shared, h: usize, task: &Task, facts: &Json) -> Result<Calls, String> {
    let base = context(s, h, task, facts);
    let ctx = Value::from(base.clone());
    if let Some(w) = &task.when {
        if !s
            .templates
            .truthy(w, &ctx)
            .map_err(|e| format!("when: {e}"))?
        {
            return Ok(Calls::Skip(format!("when: {w} is false")));
        }
    }
    // One module call, or one per loop item.
    let contexts: Vec<Value> = match &task.loop_ {
        None => vec![ctx],
        Some(l) => match s.templates.render_params(l, &ctx) {
            Ok(Json::Array(items)) => items
                .into_iter()
                .map(|item| {
                    let mut m = base.clone();
                    m.insert("item".into(), val(item));
                    Value::from(m)
                })
                .collect(),
            Ok(other) => return Err(format!("loop: expected a list, got {other}")),
            Err(e) => return Err(format!("loop: {e}")),
        },
    };
    if contexts.is_empty() {
        return Ok(Calls::NoItems);
    }
    let mut calls = Vec::new();
    for c in &contexts {
        let call = prepare(s, task, c).and_then(|m| m.probes().map(|p| (m, p)));
        calls.push(call.map_err(|e| format!("{} ({})", e, task.source))?);
    }
    Ok(Calls::Run(calls))
}

/// Probe answers read ahead, so a host's unchanged tasks cost one round trip
/// between them, not one each. An answer stays good until an action could
/// have changed what it read, as the action's `Touches` says.
#[derive(Default)]
struct ProbeCache {
    answers: HashMap<String, (Probe, ProbeOut)>,
}

impl ProbeCache {
    fn get(&self, probes: &[Probe]) -> Option<Vec<ProbeOut>> {
        probes
            .iter()
            .map(|p| {
                p.script()
                    .ok()
                    .and_then(|k| self.answers.get(&k))
                    .map(|(_, a)| a.clone())
            })
            .collect()
    }

    fn after(&mut self, action: &Action) {
        match action.touches() {
            Touches::Path(path) => {
                let p = Path::new(&path);
                self.answers.retain(|_, (probe, _)| match probe {
                    Probe::File(f) => !(Path::new(f).starts_with(p) || p.starts_with(f)),
                    Probe::Script(_) => false,
                });
            }
            Touches::Made(path) => {
                let p = Path::new(&path);
                self.answers.retain(
                    |_, (probe, _)| matches!(probe, Probe::File(f) if !p.starts_with(f.as_str())),
                );
            }
            Touches::Live => self
                .answers
                .retain(|_, (probe, _)| matches!(probe, Probe::File(_))),
            Touches::All => self.answers.clear(),
        }
    }
}

/// The probes of `task` and of the tasks after it on this host whose calls
/// can be known now, read in one round trip into the cache.
async fn read_ahead(
    s: &Shared,
    h: usize,
    rest: &[NodeIndex],
    first: &[Probe],
    conn: &Conn,
    facts: &Json,
    cache: &mut ProbeCache,
    timeout: Option<Duration>,
) -> Result<Result<(), String>, ConnError> {
    let mut batch: Vec<Probe> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |p: &Probe, batch: &mut Vec<Probe>| {
        if let Ok(k) = p.script() {
            if !cache.answers.contains_key(&k) && seen.insert(k) {
                batch.push(p.clone());
            }
        }
    };
    for p in first {
        add(p, &mut batch);
    }
    for &n in rest {
        if s.opts.done.contains(&n) {
            continue;
        }
        // A task whose calls depend on what has not happened yet (a result
        // registered later in this run) fails to render here: it is read
        // when its turn comes.
        if let Ok(Calls::Run(calls)) = task_calls(s, h, &s.dag.graph[n].task, facts) {
            for (_, probes) in &calls {
                for p in probes.list() {
                    add(p, &mut batch);
                }
            }
        }
    }
    let answers = match run_probes(conn, &batch, timeout).await? {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    for (p, a) in batch.iter().zip(answers) {
        if let Ok(k) = p.script() {
            cache.answers.insert(k, (p.clone(), a));
        }
    }
    Ok(Ok(()))
}

/// One decision for a task's calls: a change if any call changes, with
/// their reasons, diffs and actions in order.
fn decide_calls(
    task: &Task,
    calls: &[(AnyModule, Probes)],
    answers: Vec<ProbeOut>,
) -> Result<Decision, String> {
    let mut change: Option<Change> = None;
    let mut answers = answers.into_iter();
    let mut oks = Vec::new();
    for (m, p) in calls {
        let mine: Vec<ProbeOut> = answers.by_ref().take(p.len()).collect();
        match m.decide(&p.answered(mine))? {
            Decision::Change(c) => {
                change = Some(match change {
                    Some(prev) => prev.merge(c),
                    None => c,
                });
            }
            Decision::Unchanged(reason) => oks.push(reason),
        }
    }
    Ok(match change {
        None => Decision::Unchanged(oks.join("; ")),
        Some(mut c) => {
            if let (Some(w), true) = (&task.when, c.unconditional) {
                c.reason = format!("runs because `{w}`");
            }
            Decision::Change(c)
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_task(
    s: &Shared,
    h: usize,
    task: &Task,
    rest: &[NodeIndex],
    conn: &Conn,
    facts: &Json,
    overlay: &mut HashMap<String, String>,
    cache: &mut ProbeCache,
    me: NodeIndex,
    finished_ahead: &mut Vec<(NodeIndex, Outcome)>,
) -> Outcome {
    let plan = s.opts.mode == RunMode::Plan;
    let calls = match task_calls(s, h, task, facts) {
        Err(e) => return failed(e),
        Ok(Calls::Skip(why)) => return skipped(s, h, task, why),
        Ok(Calls::NoItems) => return unchanged(s, h, task, "loop has no items".into()),
        Ok(Calls::Run(calls)) => calls,
    };
    let probes: Vec<Probe> = calls.iter().flat_map(|(_, p)| p.list().cloned()).collect();
    let timeout = task.timeout.map(Duration::from_secs);
    let mut answers = match cache.get(&probes) {
        Some(a) => a,
        None => match read_ahead(s, h, rest, &probes, conn, facts, cache, timeout).await {
            Ok(Ok(())) => match cache.get(&probes) {
                Some(a) => a,
                None => return failed("reading state: a probe's answer is missing"),
            },
            Ok(Err(e)) => return failed(e),
            Err(e) => return Outcome::Unreachable(e.message),
        },
    };
    if plan {
        for (p, a) in probes.iter().zip(answers.iter_mut()) {
            if let Probe::File(path) = p {
                if let Some(content) = overlay.get(path) {
                    let st = modules::FileState::parse(a);
                    let head = if st.exists {
                        format!("{:o} {} {} regular file", st.mode, st.owner, st.group)
                    } else {
                        "644 root root regular file".into()
                    };
                    *a = ProbeOut {
                        rc: 0,
                        out: format!("{head}\n{content}"),
                    };
                }
            }
        }
    }
    let decision = match decide_calls(task, &calls, answers) {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let change = match decision {
        Decision::Unchanged(reason) => return unchanged(s, h, task, reason),
        Decision::Change(c) => c,
    };
    let read_only = change.read_only;
    let shown: Vec<String> = change.actions().iter().map(Action::describe).collect();
    let batch = task.retries == 0 && batchable(task, read_only, change.actions(), true);
    let (reason, diff) = (change.reason.clone(), change.diff.clone());
    let actions = change.into_actions();
    if plan {
        for a in &actions {
            if let Action::Write { path, content, .. } = a {
                overlay.insert(path.clone(), content.clone());
            }
        }
        // A command's output exists only once it runs; say so where it is used.
        register(
            s,
            h,
            task,
            json!({"changed": true, "planned": true, "rc": 0, "stdout": KNOWN_AFTER_APPLY, "stderr": "", "stdout_lines": [KNOWN_AFTER_APPLY]}),
        );
        if read_only {
            return Outcome::Ok(format!("{reason}: runs on apply"));
        }
        return Outcome::Changed {
            reason,
            diff,
            actions: shown,
        };
    }
    if batch {
        let pending = Pending {
            task,
            reason,
            diff,
            shown,
            actions,
        };
        return write_ahead(
            s,
            h,
            pending,
            rest,
            facts,
            cache,
            conn,
            timeout,
            me,
            finished_ahead,
        )
        .await;
    }
    let mut last = ssh::Output::default();
    for a in &actions {
        let (script, input) = match writes::action_script(a) {
            Ok(x) => x,
            Err(e) => return failed(e),
        };
        cache.after(a);
        let inputs: Vec<&str> = input.iter().map(String::as_str).collect();
        match conn
            .run_in(writes::scope(a), &script, &inputs, timeout)
            .await
        {
            Err(e) if e.message.starts_with("command timed out") => {
                return Outcome::Failed {
                    reason: e.message,
                    command: Some(a.describe()),
                    rc: None,
                    stderr: String::new(),
                };
            }
            Err(e) => return Outcome::Unreachable(e.message),
            Ok(out) if out.rc != 0 => {
                register(
                    s,
                    h,
                    task,
                    json!({"changed": false, "failed": true, "rc": out.rc, "stdout": out.stdout, "stderr": out.stderr}),
                );
                return Outcome::Failed {
                    reason: "command failed".into(),
                    command: Some(a.describe()),
                    rc: Some(out.rc),
                    stderr: tail(&out.stderr),
                };
            }
            Ok(out) => last = out,
        }
    }
    let lines: Vec<&str> = last.stdout.lines().collect();
    register(
        s,
        h,
        task,
        json!({"changed": !read_only, "rc": last.rc, "stdout": last.stdout.trim_end(), "stderr": last.stderr, "stdout_lines": lines}),
    );
    if read_only {
        return Outcome::Ok(reason);
    }
    Outcome::Changed {
        reason,
        diff,
        actions: shown,
    }
}

/// A task decided to change by batchable actions alone, not yet run.
struct Pending<'a> {
    task: &'a Task,
    reason: String,
    diff: Option<String>,
    shown: Vec<String>,
    actions: Vec<Action>,
}

/// What a write-only task registers once its writes are done.
fn written() -> Json {
    json!({"changed": true, "rc": 0, "stdout": "", "stderr": "", "stdout_lines": []})
}

/// The most content one request of writes carries.
const WRITE_AHEAD_BYTES: usize = 1 << 20;

/// Run a task of writes (and of commands that change only live state or
/// make a directory, `writes::batchable`) together with the tasks after it
/// on this host that can be settled now without another round trip: those
/// whose state is read already and not touched by the actions before them,
/// and that are unchanged, skipped, or changed by such actions alone. All
/// their actions go in one request (`writes::writes_script`). The tasks
/// after the first come back in `finished_ahead`, in order, for the caller
/// to finish; where an action fails, only the tasks before it and the
/// failed one have an outcome, and the rest are left to the caller as
/// usual. Look-ahead stops at a task that waits on an unfinished one, has
/// retries or its own timeout, or needs to read or run anything else, and
/// after a task that registers a command's output (a later task could read
/// it).
#[allow(clippy::too_many_arguments)]
async fn write_ahead(
    s: &Shared,
    h: usize,
    first: Pending<'_>,
    rest: &[NodeIndex],
    facts: &Json,
    cache: &mut ProbeCache,
    conn: &Conn,
    timeout: Option<Duration>,
    me: NodeIndex,
    finished_ahead: &mut Vec<(NodeIndex, Outcome)>,
) -> Outcome {
    // Registered now, so later tasks' `when:` can read it; undone on failure.
    register(s, h, first.task, written());
    for a in &first.actions {
        cache.after(a);
    }
    let mut bytes: usize = first.actions.iter().map(content_len).sum();
    // Tasks after the first, in order: settled without writes, or pending.
    let mut ahead: Vec<(NodeIndex, Result<Outcome, Pending>)> = Vec::new();
    let mut open = !registers_output(first.task, &first.actions);
    for &n in rest {
        let task = &s.dag.graph[n].task;
        if !open
            || s.opts.done.contains(&n)
            || s.stopped().is_some()
            || task.retries > 0
            || task.timeout.is_some()
        {
            break;
        }
        let ready = s.dag.preds(n).all(|(p, edge)| {
            p == me
                || ahead.iter().any(|(q, _)| *q == p)
                || s.results[p.index()]
                    .borrow()
                    .as_ref()
                    .is_some_and(|o| edge == Edge::Barrier || o.lets_dependents_run())
        });
        if !ready {
            break;
        }
        let settled = match task_calls(s, h, task, facts) {
            Err(_) => break,
            Ok(Calls::Skip(why)) => Ok(skipped(s, h, task, why)),
            Ok(Calls::NoItems) => Ok(unchanged(s, h, task, "loop has no items".into())),
            Ok(Calls::Run(calls)) => {
                let probes: Vec<Probe> =
                    calls.iter().flat_map(|(_, p)| p.list().cloned()).collect();
                let Some(answers) = cache.get(&probes) else {
                    break;
                };
                match decide_calls(task, &calls, answers) {
                    Err(_) => break,
                    Ok(Decision::Unchanged(reason)) => Ok(unchanged(s, h, task, reason)),
                    Ok(Decision::Change(c)) if batchable(task, c.read_only, c.actions(), false) => {
                        open = !registers_output(task, c.actions());
                        bytes += c.actions().iter().map(content_len).sum::<usize>();
                        if bytes > WRITE_AHEAD_BYTES {
                            break;
                        }
                        register(s, h, task, written());
                        for a in c.actions() {
                            cache.after(a);
                        }
                        let shown = c.actions().iter().map(Action::describe).collect();
                        let (reason, diff) = (c.reason.clone(), c.diff.clone());
                        Err(Pending {
                            task,
                            reason,
                            diff,
                            shown,
                            actions: c.into_actions(),
                        })
                    }
                    Ok(Decision::Change(_)) => break,
                }
            }
        };
        ahead.push((n, settled));
    }
    // Settled tasks after the last pending one need no request: leave them
    // to the caller, which settles them from the same cached answers.
    while matches!(ahead.last(), Some((_, Ok(_)))) {
        let (n, _) = ahead.pop().expect("not empty");
        unregister(s, h, &s.dag.graph[n].task);
    }
    let marker = match crate::secrets::random_hex(8) {
        Ok(r) => format!("gantry-run-{r}"),
        Err(e) => return failed(e),
    };
    let mut actions: Vec<&Action> = first.actions.iter().collect();
    for (_, a) in &ahead {
        if let Err(p) = a {
            actions.extend(&p.actions);
        }
    }
    let script = match writes::writes_script(&actions, &marker) {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let inputs = writes::batch_inputs(&actions);
    let described: Vec<String> = actions.iter().map(|w| w.describe()).collect();
    let out = match conn.run_own(&script, &inputs, timeout).await {
        Ok(out) => out,
        Err(e) => {
            // Nothing is known to have landed: take back what was
            // registered ahead of it.
            unregister(s, h, first.task);
            for &(n, _) in &ahead {
                unregister(s, h, &s.dag.graph[n].task);
            }
            if e.message.starts_with("command timed out") {
                return Outcome::Failed {
                    reason: e.message,
                    command: Some(first.shown.join("; ")),
                    rc: None,
                    stderr: String::new(),
                };
            }
            return Outcome::Unreachable(e.message);
        }
    };
    let (done, runs) = writes::batch_output(&out.stdout, &marker);
    let done = if out.rc == 0 && done == described.len() {
        done
    } else {
        done.min(described.len().saturating_sub(1))
    };
    // The task whose write `at` failed: registered and reported as failed.
    let failure = |task: &Task, at: usize| {
        register(
            s,
            h,
            task,
            json!({"changed": false, "failed": true, "rc": out.rc, "stdout": "", "stderr": out.stderr}),
        );
        Outcome::Failed {
            reason: "command failed".into(),
            command: described.get(at).cloned(),
            rc: Some(out.rc),
            stderr: tail(&out.stderr),
        }
    };
    // A task whose actions, from index `at` on, are all done: registered
    // with its last command's output where it ran one.
    let finished = |task: &Task, at: usize, count: usize| {
        if let Some((stdout, rc)) = (at..at + count).rev().find_map(|j| runs.get(&j)) {
            let lines: Vec<&str> = stdout.lines().collect();
            register(
                s,
                h,
                task,
                json!({"changed": true, "rc": rc, "stdout": stdout.trim_end(), "stderr": "", "stdout_lines": lines}),
            );
        }
    };
    // Whose action was the first not done, if any.
    let mut left = done;
    if left < first.actions.len() {
        for &(n, _) in &ahead {
            unregister(s, h, &s.dag.graph[n].task);
        }
        return failure(first.task, left);
    }
    finished(first.task, 0, first.actions.len());
    left -= first.actions.len();
    let mut at = first.actions.len();
    let mut stopped = false;
    for (n, a) in ahead {
        if stopped {
            unregister(s, h, &s.dag.graph[n].task);
            continue;
        }
        match a {
            Ok(o) => finished_ahead.push((n, o)),
            Err(p) if left >= p.actions.len() => {
                left -= p.actions.len();
                finished(p.task, at, p.actions.len());
                at += p.actions.len();
                finished_ahead.push((
                    n,
                    Outcome::Changed {
                        reason: p.reason,
                        diff: p.diff,
                        actions: p.shown,
                    },
                ));
            }
            Err(p) => {
                stopped = true;
                finished_ahead.push((n, failure(p.task, done)));
            }
        }
    }
    Outcome::Changed {
        reason: first.reason,
        diff: first.diff,
        actions: first.shown,
    }
}

/// Whether a task's actions can go in one request of writes
/// (`writes::writes_script`): writes and `writes::batchable` commands,
/// with no write validated after another action, since a validator checks
/// its candidate before the actions before it in its stretch are done, and
/// may read what an earlier write puts in place (keepalived's config names
/// its check script). A task with commands goes only where its output
/// cannot leak or be needed midway: not `no_log`, and not `read_only` (a
/// `changed_when: false` command, reported ok). `first`: the actions open
/// the request.
fn batchable(task: &Task, read_only: bool, actions: &[Action], first: bool) -> bool {
    let runs = actions.iter().any(|a| matches!(a, Action::Run { .. }));
    !actions.is_empty()
        && !read_only
        && !(runs && task.no_log)
        && actions.iter().enumerate().all(|(i, a)| match a {
            Action::Write { validate, .. } => validate.is_none() || (first && i == 0),
            a => writes::batchable(a),
        })
}

/// A command whose result is registered: the tasks after it may read its
/// output, known only once it has run.
fn registers_output(task: &Task, actions: &[Action]) -> bool {
    task.register.is_some() && actions.iter().any(|a| matches!(a, Action::Run { .. }))
}

fn content_len(a: &Action) -> usize {
    match a {
        Action::Write { content, .. } => content.len(),
        Action::Run { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of reading many probes at once read exactly what one
    /// `Probe::File` script per path reads, run through a real sh.
    #[test]
    fn batched_file_probes_read_what_single_probes_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("plain"), "a\nb\n").unwrap();
        std::fs::write(d.join("no newline"), "x").unwrap();
        std::fs::write(d.join("it's"), "").unwrap();
        std::fs::write(d.join("utf8"), "héllo ✓\n").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let names = [
            "plain",
            "no newline",
            "it's",
            "sub",
            "missing",
            "utf8",
            "plain",
        ];
        let mut probes: Vec<Probe> = names
            .iter()
            .map(|n| Probe::File(d.join(n).display().to_string()))
            .collect();
        probes.insert(2, Probe::Script("echo between; sh -c 'exit 4'".into()));
        let sh = |script: &str| {
            String::from_utf8_lossy(
                &std::process::Command::new("sh")
                    .arg("-c")
                    .arg(crate::remote::script::own_call(script).unwrap())
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned()
        };
        let one_cat =
            read_answers(&probes, &sh(&probe_script(&probes, "M").unwrap()), "M").unwrap();
        let each = read_answers_each(&probes, &sh(&probe_script_each(&probes, "M").unwrap()), "M")
            .unwrap();
        for (i, p) in probes.iter().enumerate() {
            let one = std::process::Command::new("sh")
                .arg("-c")
                .arg(p.script().unwrap())
                .output()
                .unwrap();
            let want = ProbeOut {
                rc: one.status.code().unwrap().min(1),
                out: String::from_utf8(one.stdout).unwrap(),
            };
            let want = if matches!(p, Probe::Script(_)) {
                ProbeOut {
                    rc: 4,
                    out: "between\n".into(),
                }
            } else {
                want
            };
            assert_eq!(one_cat[i], want, "one cat: {p:?}");
            assert_eq!(each[i], want, "each: {p:?}");
        }
        assert!(one_cat[4].out.contains("directory") && one_cat[5].rc == 1);
        // What one cat cannot be cut into with certainty is read file by
        // file: a symlink (stat gives the link's size), bytes that are not
        // text, a file that changed between the two stats.
        std::os::unix::fs::symlink(d.join("plain"), d.join("link")).unwrap();
        std::fs::write(d.join("binary"), b"\xff\xfe").unwrap();
        for odd in ["link", "binary"] {
            let probes = vec![
                Probe::File(d.join(odd).display().to_string()),
                Probe::File(d.join("plain").display().to_string()),
            ];
            assert!(
                read_answers(&probes, &sh(&probe_script(&probes, "M").unwrap()), "M").is_none(),
                "{odd}"
            );
            let each =
                read_answers_each(&probes, &sh(&probe_script_each(&probes, "M").unwrap()), "M")
                    .unwrap();
            assert_eq!(each[1], one_cat[0], "{odd}");
        }
        let probes = vec![Probe::File(d.join("plain").display().to_string())];
        let out = sh(&probe_script(&probes, "M").unwrap());
        let changed = out.replacen("\u{0}4 ", "\u{0}5 ", 1);
        assert_ne!(out, changed);
        assert!(
            read_answers(&probes, &changed, "M").is_none(),
            "a size that changed between the stats"
        );
    }

    /// Probe requests run in the host's shell itself: with every kind of
    /// module's probes in them, they leave it as they found it.
    #[test]
    fn probe_requests_leave_the_shell_as_found() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f").display().to_string();
        std::fs::write(&file, "x\n").unwrap();
        let mut probes = Vec::new();
        for (name, params) in [
            ("copy", json!({"dest": file, "content": "y"})),
            (
                "sysctl",
                json!({"values": {"kernel.ostype": "Linux", "kernel.pid_max": 1, "no.such.key": 1}}),
            ),
            ("hostname", json!({"name": "n1"})),
            ("modprobe", json!({"name": "br_netfilter"})),
            ("command", json!({"argv": ["true"], "creates": file})),
            ("package", json!({"name": ["bash"]})),
        ] {
            probes.extend(
                AnyModule::parse(name, params)
                    .unwrap()
                    .probes()
                    .unwrap()
                    .list()
                    .cloned(),
            );
        }
        type Reader = fn(&[Probe], &str, &str) -> Option<Vec<ProbeOut>>;
        let ways: [(String, Reader); 2] = [
            (probe_script(&probes, "M").unwrap(), read_answers),
            (probe_script_each(&probes, "M").unwrap(), read_answers_each),
        ];
        for (script, read) in ways {
            let out = crate::remote::ssh::tests::shell_left_as_found(&script, &[]).unwrap();
            let answers = read(&probes, &out, "M").unwrap_or_else(|| panic!("malformed: {out}"));
            // The sysctl probe read the kernel's values whole, string and
            // number (keys in order), and found no key where there is none.
            let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
            assert_eq!(
                answers[1].out,
                format!("0 Linux\n0 {pid_max}1\n"),
                "{:?}",
                answers[1]
            );
        }
    }

    /// The facts script runs in the host's shell itself: it reads
    /// /etc/os-release as sourcing it would, and leaves the shell as found.
    #[test]
    fn facts_leave_the_shell_as_found() {
        let all: std::collections::BTreeSet<String> = ["facts".to_string()].into();
        let out =
            crate::remote::ssh::tests::shell_left_as_found(&facts_script_for(&all), &[]).unwrap();
        let facts = parse_facts(&out);
        let sourced = std::process::Command::new("sh")
            .arg("-c")
            .arg(". /etc/os-release; printf '%s|%s|%s' \"${ID:-unknown}\" \"$VERSION_ID\" \"${ID_LIKE:-$ID}\"")
            .output()
            .unwrap();
        assert_eq!(
            format!(
                "{}|{}|{}",
                facts["os_id"], facts["os_version"], facts["os_like"]
            )
            .replace('"', ""),
            String::from_utf8_lossy(&sourced.stdout)
        );
        assert!(
            facts["kernel"].as_str().is_some_and(|k| !k.is_empty()),
            "{facts}"
        );
        assert!(
            facts.get("swap_devices").is_some_and(|n| n.is_i64()),
            "{facts}"
        );
    }

    /// A costly fact is read where a task names it, and all of them where a
    /// task reads facts in a way that cannot be followed.
    #[test]
    fn costly_facts_are_read_only_where_a_task_names_them() {
        let t = Templates::new(&Playbook {
            path: Default::default(),
            plays: Vec::new(),
            roles: Default::default(),
        });
        let script = |srcs: &[&str]| {
            facts_script_for(&srcs.iter().flat_map(|s| t.referenced_in(s, true)).collect())
        };
        let none = script(&["{{ inventory_hostname }}", "{{ facts.os_id }}"]);
        assert!(
            !none.contains("nft list") && !none.contains("ip -o") && !none.contains("systemctl"),
            "{none}"
        );
        let ipv4 = script(&["{% set a = facts.ipv4[host.ip] %}{{ a.iface }}"]);
        assert!(
            ipv4.contains("ip -o") && !ipv4.contains("nft list"),
            "{ipv4}"
        );
        let fw = script(&["{{ facts.firewalld != 'active' and not facts.nft_gantry_table }}"]);
        assert!(
            fw.contains("systemctl") && fw.contains("nft list") && !fw.contains("ip -o"),
            "{fw}"
        );
        for whole in [
            "{{ facts['ipv4'] }}",
            "{{ facts }}",
            "{{ hostvars[h].facts.ipv4 }}",
        ] {
            let all = script(&[whole]);
            assert!(
                all.contains("systemctl") && all.contains("nft list") && all.contains("ip -o"),
                "{whole}: {all}"
            );
        }
    }

    /// A validated write may open a request of writes, never follow one:
    /// its validator would not see the earlier writes in place.
    #[test]
    fn validated_writes_only_open_a_request_of_writes() {
        let w = |validate: bool| Action::Write {
            path: "/etc/x".into(),
            content: String::new(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: validate.then(|| vec!["true".into()]),
        };
        let mut task = Task {
            id: "r/t".into(),
            name: "t".into(),
            role: "r".into(),
            module: "copy".into(),
            params: Json::Null,
            when: None,
            register: None,
            no_log: false,
            wait_for: Vec::new(),
            wait_for_at: None,
            loop_: None,
            timeout: None,
            retries: 0,
            delay: 0,
            source: "r/tasks.yaml:1".into(),
        };
        let t = &task;
        // A copy's change is reported as changed; a `changed_when: false`
        // command's, as ok (read-only).
        let m = false;
        assert!(batchable(t, m, &[w(true), w(false)], true));
        assert!(!batchable(t, m, &[w(true)], false));
        assert!(!batchable(t, m, &[w(false), w(true)], true));
        assert!(batchable(t, m, &[w(false), w(false)], false));
        assert!(!batchable(t, m, &[], true));
        // Commands that change live state or make a directory go along;
        // others, and commands that read input, do not.
        let run = |argv: &[&str]| Action::run(argv).unwrap();
        assert!(!batchable(t, m, &[w(false), run(&["true"])], true));
        assert!(!batchable(
            t,
            m,
            &[w(false), run(&["sh", "-c", "sysctl -p"])],
            true
        ));
        let sysctl = run(&["sysctl", "-q", "-p", "/etc/sysctl.d/x.conf"]);
        let mkdir = run(&["mkdir", "-p", "-m", "755", "--", "/etc/d"]);
        assert!(batchable(
            t,
            m,
            &[w(false), sysctl.clone(), mkdir.clone()],
            false
        ));
        assert!(!batchable(
            t,
            m,
            &[run(&["chmod", "600", "--", "/etc/x"])],
            false
        ));
        let mut fed = sysctl.clone();
        if let Action::Run { stdin, .. } = &mut fed {
            *stdin = Some("x".into());
        }
        assert!(!batchable(t, m, &[fed], false));
        // A `changed_when: false` command is reported ok, so it goes alone.
        let quiet = true;
        assert!(!batchable(t, quiet, std::slice::from_ref(&sysctl), false));
        // A secret task's command goes on its own; a registered command's
        // output closes the request.
        task.no_log = true;
        assert!(!batchable(&task, m, std::slice::from_ref(&sysctl), false));
        assert!(batchable(&task, m, &[w(false)], false));
        task.no_log = false;
        task.register = Some("out".into());
        assert!(registers_output(&task, std::slice::from_ref(&sysctl)));
        assert!(!registers_output(&task, &[w(false)]));
    }

    #[test]
    fn an_action_drops_only_the_answers_it_could_change() {
        let file = |p: &str| Probe::File(p.into());
        let sysctl = Probe::Script("sysctl -n x".into());
        let cache = || {
            let mut c = ProbeCache::default();
            for p in [
                file("/etc/a"),
                file("/etc/b"),
                file("/etc/c"),
                file("/etc/c/d/x"),
                sysctl.clone(),
            ] {
                c.answers
                    .insert(p.script().unwrap(), (p, ProbeOut::default()));
            }
            c
        };
        let has = |c: &ProbeCache, p: &Probe| c.get(std::slice::from_ref(p)).is_some();
        let mut c = cache();
        c.after(&Action::Write {
            path: "/etc/a".into(),
            content: String::new(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        });
        assert!(!has(&c, &file("/etc/a")) && !has(&c, &sysctl));
        assert!(has(&c, &file("/etc/b")) && has(&c, &file("/etc/c")));
        // rm -rf reaches the paths above and below the one it names; mkdir -p
        // only the path and those above it.
        let mut c = cache();
        c.after(&Action::run(&["rm", "-rf", "--", "/etc/c/d"]).unwrap());
        assert!(!has(&c, &file("/etc/c")) && !has(&c, &file("/etc/c/d/x")));
        assert!(has(&c, &file("/etc/b")));
        let mut c = cache();
        c.after(&Action::run(&["mkdir", "-p", "-m", "755", "--", "/etc/c/d"]).unwrap());
        assert!(!has(&c, &file("/etc/c")) && has(&c, &file("/etc/c/d/x")) && !has(&c, &sysctl));
        assert!(has(&c, &file("/etc/b")));
        // Live state is what scripts read; files stay good.
        let mut c = cache();
        c.after(&Action::run(&["hostname", "--", "n1"]).unwrap());
        assert!(!has(&c, &sysctl) && has(&c, &file("/etc/a")));
        // A user's command could change anything.
        let mut c = cache();
        c.after(&Action::run(&["sh", "-c", "true"]).unwrap());
        assert!(c.answers.is_empty());
    }
}
