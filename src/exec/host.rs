//! One host's worker: connect (or take preflight's connection), take the
//! host's lock and read its facts in one round trip, then run its chain of
//! tasks in order, each after its predecessors, giving the fork slot back
//! while it waits on other hosts.

use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use petgraph::graph::NodeIndex;

use super::probe::ProbeCache;
use super::task::run_task;
use super::{Event, Outcome, RunMode, Shared, finish, finish_done, host_ends, host_lost};
use crate::facts::{Sections, template_facts};
use crate::remote::lock;
use crate::remote::ssh;

/// One host's state while its chain runs: what its tasks need besides the
/// run's shared state.
pub(crate) struct HostCx<'a> {
    pub(crate) h: usize,
    pub(crate) conn: &'a ssh::Conn,
    pub(crate) facts: &'a Json,
    /// Plan's view of files that earlier planned tasks would write, so a
    /// later task on the same file is judged against the content it would
    /// find.
    pub(crate) overlay: HashMap<String, String>,
    /// Answers read ahead (`probe::read_ahead`).
    pub(crate) cache: ProbeCache,
    /// Tasks a write-ahead finished along with an earlier one.
    pub(crate) finished_ahead: Vec<(NodeIndex, Outcome)>,
}

pub(crate) async fn host_worker(s: Arc<Shared>, h: usize) {
    // Whatever path this worker ends by, the host stops serving uploads.
    let _present = s.relay.enter(h);
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
        None => match ssh::connect(&cfg, s.opts.host_keys).await {
            Ok(c) => Arc::new(c),
            Err(e) => return host_lost(&s, h, &chain, &e.message),
        },
    };
    // Two applies must not interleave on a host: take its lock, and keep a
    // heartbeat on it while this run holds it.
    let mut heartbeat = None;
    let mut facts_out = None;
    if let (RunMode::Apply, Some(stale)) = (s.opts.mode, s.opts.lock_stale_after) {
        let run = s.opts.run_id.clone();
        // The lock, then the facts, in one round trip.
        let mut got = lock::acquire(&conn, &run, stale, None, &s.facts_script).await;
        if let Err(lock::LockError::Held { owner, .. }) = &got
            && lock::owner_is_gone(owner)
        {
            let dead = owner.clone();
            got = lock::acquire(&conn, &run, stale, Some(&dead), &s.facts_script).await;
        }
        match got {
            Ok((lock::Acquired::Fresh, out)) => facts_out = Some(out),
            Ok((lock::Acquired::TookOver { owner, age }, out)) => {
                let why = if age >= stale.as_secs() {
                    format!("heartbeat {age}s old")
                } else {
                    "its process on this controller is gone".to_string()
                };
                s.notice(format!(
                    "{}: took over a stale lock ({owner}; {why})",
                    host.name
                ));
                facts_out = Some(out);
            }
            Err(lock::LockError::Held { owner, age }) => {
                conn.close().await;
                let why = format!(
                    "host is locked by another run ({owner}; heartbeat {age}s ago); if that run is gone, wait for the lock to go stale or run `gantry unlock --limit {}`",
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
        heartbeat = Some(lock::heartbeat(conn.clone(), run, stale));
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
    let facts = template_facts(&Sections::parse(&facts_out));
    s.hostvars
        .lock()
        .unwrap()
        .entry(host.name.clone())
        .or_default()
        .insert("facts".into(), facts.clone());
    // From here the host may pass uploaded files on to others.
    s.relay.join(h, conn.clone());
    let mut cx = HostCx {
        h,
        conn: &conn,
        facts: &facts,
        overlay: HashMap::new(),
        cache: ProbeCache::default(),
        finished_ahead: Vec::new(),
    };
    // The tasks this host will run, on disk before the first of them runs
    // (the journal's `begin`).
    if s.opts.mode == RunMode::Apply {
        let seqs: Vec<usize> = chain
            .iter()
            .enumerate()
            .filter(|(_, n)| !s.opts.done.contains(n))
            .map(|(i, _)| i)
            .collect();
        let (ack, on_disk) = tokio::sync::oneshot::channel();
        s.report(Event::HostBegins { host: h, seqs, ack });
        if on_disk.await.is_err() {
            if let Some(hb) = heartbeat {
                hb.stop();
                lock::release(&conn, &s.opts.run_id).await;
            }
            conn.close().await;
            return host_ends(
                &s,
                h,
                &chain,
                Outcome::Failed {
                    reason: "the journal could not be written; nothing was run on this host".into(),
                    command: None,
                    rc: None,
                    stderr: String::new(),
                },
            );
        }
    }
    let mut host_failed = false;
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
        let waited = std::time::Instant::now();
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
            // A barrier or a serial turn waits for the other hosts to
            // finish, however they finished; order on this host and data
            // from another host need the predecessor to have succeeded.
            if edge.needs_success() && !o.lets_dependents_run() && blocked.is_none() {
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
        // A run that lost the host's lock (taken over, removed by `gantry
        // unlock`, heartbeats that no longer reach it) changes nothing more
        // there: another run may be at work on it.
        if let Some(why) = heartbeat.as_ref().and_then(lock::Heartbeat::lost) {
            let why = format!(
                "lost the host lock: {why}; stopped before {}",
                s.dag.graph[n].task.id
            );
            let rest: Vec<NodeIndex> = chain[i..]
                .iter()
                .copied()
                .filter(|m| !settled.contains(m))
                .collect();
            host_ends(
                &s,
                h,
                &rest,
                Outcome::Failed {
                    reason: why,
                    command: None,
                    rc: None,
                    stderr: String::new(),
                },
            );
            if let Some(hb) = heartbeat {
                hb.stop();
            }
            conn.close().await;
            return;
        }
        let task = &s.dag.graph[n].task;
        let started = std::time::Instant::now();
        let began = std::time::SystemTime::now();
        let traffic = conn.stats.now();
        let mut attempt = 0;
        let outcome = loop {
            let o = run_task(&s, &mut cx, task, &chain[i + 1..], n).await;
            // `retries` is for steps that fail transiently; a lost host is not retried.
            if matches!(o, Outcome::Failed { .. })
                && attempt < task.retries
                && s.opts.mode == RunMode::Apply
                && s.stopped().is_none()
            {
                attempt += 1;
                s.notice(format!(
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
        // `GANTRY_LOG=gantry::task=debug`: where a run's time goes, task by
        // task (waiting on other hosts, then running here).
        tracing::debug!(
            target: "gantry::task",
            host = %host.name,
            task = %task.id,
            wait_ms = (started - waited).as_millis() as u64,
            run_ms = started.elapsed().as_millis() as u64,
            outcome = outcome.word(),
            "task"
        );
        let lost = match &outcome {
            Outcome::Unreachable(r) => Some(format!("connection lost during {}: {r}", task.id)),
            _ => None,
        };
        host_failed |= matches!(outcome, Outcome::Failed { .. });
        s.report(Event::TaskTimed {
            node: n,
            timing: super::Timing {
                started: began,
                waited: started - waited,
                ran: started.elapsed(),
                traffic: conn.stats.now() - traffic,
            },
        });
        finish(&s, n, outcome);
        for (m, o) in cx.finished_ahead.drain(..) {
            host_failed |= matches!(o, Outcome::Failed { .. });
            settled.insert(m);
            finish(&s, m, o);
        }
        if let Some(why) = lost {
            if let Some(hb) = heartbeat {
                hb.stop();
            }
            let rest: Vec<NodeIndex> = chain[i + 1..]
                .iter()
                .copied()
                .filter(|m| !settled.contains(m))
                .collect();
            return host_lost(&s, h, &rest, &why);
        }
    }
    drop(permit);
    if host_failed {
        s.host_failed();
    }
    // Hosts still running may yet want a file from this one.
    s.relay.retire(h).await;
    if let Some(hb) = heartbeat {
        hb.stop();
        lock::release(&conn, &s.opts.run_id).await;
    }
    conn.close().await;
}
