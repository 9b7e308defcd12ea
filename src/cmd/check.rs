//! `gantry check`: every requirement of the guides, per host, read-only.

use std::sync::Arc;

use super::{load, policy, runtime, selected_hosts};
use crate::cli::{Connect, Format, Input};
use crate::error::Result;
use crate::plan::graph::Dag;

/// `gantry check`.
pub fn check(input: &Input, connect: &Connect, format: Format, fsync_probe: bool) -> Result<i32> {
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
        Format::Json => crate::outln!(
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
