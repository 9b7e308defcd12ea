//! `gantry graph`: the task DAG as Graphviz DOT.

use super::load;
use crate::cli::Input;
use crate::error::Result;
use crate::plan::graph::Dag;

pub fn graph(input: &Input) -> Result<i32> {
    let (inv, pb) = load(input)?;
    let all: Vec<usize> = (0..inv.hosts.len()).collect();
    crate::out!("{}", Dag::build(&inv, &pb, &all)?.dot(&inv));
    Ok(0)
}
