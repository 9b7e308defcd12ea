//! What a rerun skips: `--retry-failed` (the tasks that finished with the
//! same input, by the journal) and `--from` (the tasks before one). Both
//! give the set of DAG nodes a run counts as done earlier.

use std::collections::HashSet;

use petgraph::graph::NodeIndex;

use crate::inventory::Inventory;
use crate::plan::graph::Dag;

/// The nodes a rerun need not run: finished in an earlier run with the same
/// input. Returns them and a note of what reruns because its input moved.
pub fn finished_earlier(
    inv: &Inventory,
    dag: &Dag,
    inputs: &[String],
    st: &super::State,
) -> (HashSet<NodeIndex>, Vec<String>) {
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

/// `--from TASK`: on each host, the tasks before TASK (`role/task name`, or
/// a task name); a host without it skips all its tasks. None when no host
/// has it.
pub fn before(dag: &Dag, from: &str) -> Option<HashSet<NodeIndex>> {
    let mut done = HashSet::new();
    let mut found = false;
    for chain in &dag.chains {
        match chain
            .iter()
            .position(|n| dag.graph[*n].task.id == from || dag.graph[*n].task.name == from)
        {
            Some(pos) => {
                found = true;
                done.extend(chain[..pos].iter().copied());
            }
            None => done.extend(chain.iter().copied()),
        }
    }
    found.then_some(done)
}
