//! `gantry validate`: inventory, playbook, roles, templates and module
//! parameters, offline, every problem at once.

use super::load;
use crate::cli::Input;
use crate::error::Result;
use crate::plan::graph::Dag;

pub fn validate(input: &Input) -> Result<i32> {
    let (inv, pb) = load(input)?;
    let all: Vec<usize> = (0..inv.hosts.len()).collect();
    let dag = Dag::build(&inv, &pb, &all)?;
    crate::outln!(
        "ok: {} hosts, {} plays, {} roles, {} tasks in the DAG",
        inv.hosts.len(),
        pb.plays.len(),
        pb.roles.len(),
        dag.graph.node_count()
    );
    Ok(0)
}
