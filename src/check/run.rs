//! Running the checks: one gather script per host, built from the facts the
//! checks that apply to it read, then the port mesh, then the fleet stage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::host::etcd_fsync;
use super::reachability::{self, Target};
use super::{CHECKS, Finding, Policy, Targets, Wanted, judge};
use crate::facts::{self, Sections, kernel};
use crate::inventory::{HostSpec, Inventory};
use crate::remote::ssh::{Conn, HostKeyPolicy};

/// A host's facts as the checks judged them.
pub struct HostReport {
    pub host: String,
    pub findings: Vec<Finding>,
    pub live_hostname: String,
    /// Host clock minus controller clock, seconds (midpoint of the exec).
    pub clock_offset: Option<f64>,
}

pub struct RunOptions {
    pub fsync_probe: bool,
    pub reachability: bool,
    pub policy: HostKeyPolicy,
    pub forks: usize,
    /// Hand each checked host's connection back (to `Checked::conns`) for
    /// the apply that follows, rather than closing it: one login per host.
    pub keep: bool,
}

/// Each selected host's report, or why it could not be checked, and the
/// connections kept open (`RunOptions::keep`), by host index.
pub struct Checked {
    pub results: Vec<Result<HostReport, (String, String)>>,
    pub conns: HashMap<usize, Conn>,
}

/// The script that reads what the checks that apply to `host` read, each
/// fact once. It runs in the host's shell itself, like the run's facts.
pub fn gather_script(host: &HostSpec, p: &Policy, t: &Targets) -> Result<String, String> {
    let mut s = format!("local {} {}\n", facts::LOCALS, etcd_fsync::LOCALS);
    let mut seen = HashSet::new();
    for c in CHECKS.iter().filter(|c| c.applies_to(host)) {
        for &name in c.reads.iter().chain(&["hostname"]) {
            if !seen.insert(name) {
                continue;
            }
            match name {
                "sysctl" => s.push_str(&facts::section(
                    name,
                    &kernel::sysctl_snippet(t.sysctl.keys().map(String::as_str))?,
                )),
                "modules" => s.push_str(&facts::section(
                    name,
                    &kernel::modules_snippet(t.modules.iter().map(String::as_str))?,
                )),
                "fsync" if p.fsync_probe => s.push_str(&facts::section(name, etcd_fsync::SNIPPET)),
                "fsync" => {}
                other => {
                    let f = facts::fact_named(other).ok_or_else(|| {
                        format!("internal: check {} reads no fact {other:?}", c.name)
                    })?;
                    s.push_str(&facts::section(f.name, f.snippet));
                }
            }
        }
    }
    Ok(s)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Gather and judge one host.
pub async fn host_report(
    conn: &Conn,
    host: &HostSpec,
    p: &Policy,
    t: &Targets,
) -> Result<HostReport, String> {
    let out = conn
        .run_own(
            &gather_script(host, p, t)?,
            &[],
            Some(Duration::from_secs(60)),
        )
        .await
        .map_err(|e| e.message)?;
    let sec = Sections::parse(&out.stdout);
    // The clock alone, in its own short exec: the host read it between t0 and
    // t1, so the midpoint is the best guess, off by at most half the round trip.
    let t0 = now_secs();
    let clock = conn
        .run_own("date +%s.%N", &[], Some(Duration::from_secs(10)))
        .await
        .map_err(|e| e.message)?;
    let t1 = now_secs();
    let clock_offset = clock
        .stdout
        .trim()
        .parse::<f64>()
        .ok()
        .map(|h| h - (t0 + t1) / 2.0);
    Ok(HostReport {
        host: host.name.clone(),
        findings: judge(host, &sec, p, t),
        live_hostname: sec.get("hostname"),
        clock_offset,
    })
}

/// Check the selected hosts, at most `forks` at once.
pub async fn run(
    inv: Arc<Inventory>,
    w: Arc<Wanted>,
    selected: &[usize],
    o: &RunOptions,
) -> Checked {
    let sem = Arc::new(tokio::sync::Semaphore::new(o.forks.max(1)));
    let mut tasks = Vec::new();
    for (pos, &h) in selected.iter().enumerate() {
        let (inv, w, sem) = (inv.clone(), w.clone(), sem.clone());
        // Kept open for the run: as many as it runs at once (`--forks`),
        // those it starts first; the others log in again when their turn
        // comes, so a thousand hosts never hold a thousand sessions.
        let (policy, reach, keep) = (o.policy, o.reachability, o.keep && pos < o.forks);
        let all: Vec<usize> = selected.to_vec();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("open");
            let host = &inv.hosts[h];
            let fail = |e: String| (host.name.clone(), e);
            let conn = crate::remote::ssh::connect(&inv.ssh_for(host), policy)
                .await
                .map_err(|e| fail(e.message))?;
            let mut rep = host_report(&conn, host, &w.policy, &w.targets[h])
                .await
                .map_err(fail)?;
            if reach {
                // Every other host's TCP table ports, as its own plan has
                // them, that are open to this host: those for control
                // planes only are tried from control planes only.
                let control_plane = host.roles.iter().any(|r| r == "control-plane");
                let targets: Vec<Target> = all
                    .iter()
                    .filter(|&&g| g != h)
                    .flat_map(|&g| {
                        let t = &inv.hosts[g];
                        let ip = t.ipv4().unwrap_or_else(|| t.address.clone());
                        w.targets[g]
                            .ports
                            .iter()
                            .filter(|r| {
                                r.proto == "tcp" && (control_plane || !r.control_planes_only)
                            })
                            .map(move |r| (t.name.clone(), ip.clone(), r.port, r.what.clone()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let result = reachability::blocked(&conn, &targets).await;
                rep.findings.push(reachability::judge(
                    targets.len(),
                    w.targets[h].no_port_table,
                    result,
                ));
            }
            if keep {
                return Ok((rep, Some(conn)));
            }
            conn.close().await;
            Ok((rep, None))
        }));
    }
    let mut checked = Checked {
        results: Vec::new(),
        conns: HashMap::new(),
    };
    for (t, &h) in tasks.into_iter().zip(selected) {
        checked.results.push(match t.await {
            Ok(Ok((rep, conn))) => {
                if let Some(c) = conn {
                    checked.conns.insert(h, c);
                }
                Ok(rep)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(("?".into(), e.to_string())),
        });
    }
    checked
}
