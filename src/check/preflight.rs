//! Apply's gate: the fail-level checks before anything changes, on the
//! hosts the run will touch. Install-stage checks are skipped on hosts the
//! journal shows gantry already manages: their cluster is gantry's own.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::inventory::Inventory;
use crate::journal;
use crate::plan::graph::Dag;
use crate::playbook::Playbook;
use crate::remote::ssh::{Conn, HostKeyPolicy};

/// Before apply changes anything: the fail-level checks. Hosts gantry has
/// already worked on (per the journal) are past the install-time checks (no
/// existing Kubernetes, ports free): their cluster is gantry's own. Returns
/// an exit code when apply must not go on, else the checked hosts' open
/// connections for apply to go on with (on the same runtime, which drives
/// them).
#[allow(clippy::too_many_arguments)]
pub fn gate(
    rt: &tokio::runtime::Runtime,
    inv: &Inventory,
    pb: &Playbook,
    dag: &Dag,
    selected: &[usize],
    policy: HostKeyPolicy,
    forks: usize,
    inventory: &Path,
) -> Result<std::result::Result<HashMap<usize, Conn>, i32>> {
    let managed: HashSet<String> = journal::state(inventory)?
        .map(|st| {
            st.records
                .iter()
                .filter(|r| r.succeeded())
                .map(|r| r.host.clone())
                .collect()
        })
        .unwrap_or_default();
    let w = Arc::new(super::wanted(inv, pb, dag, false));
    let o = super::RunOptions {
        fsync_probe: false,
        reachability: false,
        policy,
        forks,
        keep: true,
    };
    let checked = rt.block_on(super::run(Arc::new(inv.clone()), w.clone(), selected, &o));
    let results = checked.results;
    // An unreachable host is the executor's to report, per host; here only
    // what a reachable host fails stops the run.
    let mut reports: Vec<_> = results.into_iter().filter_map(|r| r.ok()).collect();
    super::fleet::fleet(&mut reports, &w.policy);
    let mut failing = Vec::new();
    for r in &reports {
        for f in &r.findings {
            let install_time =
                super::check_named(f.check).is_some_and(|c| c.stage == super::Stage::Install);
            if f.level == super::Level::Fail && !(install_time && managed.contains(&r.host)) {
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
        crate::outln!("{l}");
    }
    crate::outln!(
        "preflight: {} check(s) failed; nothing was changed. Fix them, or rerun with --skip-preflight",
        failing.len()
    );
    Ok(Err(1))
}
