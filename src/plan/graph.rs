//! The task DAG: one node per (host, task), edges from task order on a host,
//! from `after:` barriers between plays, and from `wait_for:` data
//! dependencies across hosts. petgraph checks it is acyclic.

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::playbook::{Playbook, Task};

#[derive(Debug, Clone)]
pub struct Node {
    pub host: usize,
    pub play: usize,
    /// The role's task, shared by every host that runs it.
    pub task: Arc<Task>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The previous task on the same host.
    Order,
    /// An `after:` barrier between plays.
    Barrier,
    /// `wait_for:` data from a task on another host.
    Data,
    /// `serial: true`: the same task on the host before, in inventory
    /// order, so that hosts run it one at a time (control-plane joins: etcd
    /// takes one new member at a time).
    Serial,
}

impl Edge {
    /// Whether the successor runs only if this predecessor succeeded. A
    /// barrier or a serial turn waits for the other host to finish, however
    /// it finished; order on one host and data from another need success.
    pub fn needs_success(self) -> bool {
        matches!(self, Edge::Order | Edge::Data)
    }
}

pub struct Dag {
    pub graph: DiGraph<Node, Edge>,
    /// Per host (inventory index), its nodes in run order.
    pub chains: Vec<Vec<NodeIndex>>,
}

impl Dag {
    /// Build the DAG for the hosts in `selected` (inventory indexes).
    pub fn build(inv: &Inventory, pb: &Playbook, selected: &[usize]) -> Result<Dag> {
        let mut graph = DiGraph::new();
        let mut chains = vec![Vec::new(); inv.hosts.len()];
        // (play, host) -> (first, last) node of that host in that play.
        let mut span: HashMap<(usize, usize), (NodeIndex, NodeIndex)> = HashMap::new();
        for &h in selected {
            let host = &inv.hosts[h];
            for (pi, play) in pb.plays.iter().enumerate() {
                if !play.selects(host) {
                    continue;
                }
                for r in &play.roles {
                    for t in &pb.roles[r].tasks {
                        let n = graph.add_node(Node {
                            host: h,
                            play: pi,
                            task: Arc::clone(t),
                        });
                        if let Some(&prev) = chains[h].last() {
                            graph.add_edge(prev, n, Edge::Order);
                        }
                        chains[h].push(n);
                        let e = span.entry((pi, h)).or_insert((n, n));
                        e.1 = n;
                    }
                }
            }
        }
        for (pi, play) in pb.plays.iter().enumerate() {
            for a in &play.after {
                let ai = pb
                    .plays
                    .iter()
                    .position(|p| &p.name == a)
                    .expect("checked at load");
                for &h in selected {
                    let Some(&(first, _)) = span.get(&(pi, h)) else {
                        continue;
                    };
                    for &g in selected {
                        if let Some(&(_, last)) = span.get(&(ai, g))
                            && last != first
                            && !graph.contains_edge(last, first)
                        {
                            graph.add_edge(last, first, Edge::Barrier);
                        }
                    }
                }
            }
        }
        let by_id: HashMap<&str, Vec<NodeIndex>> =
            graph.node_indices().fold(HashMap::new(), |mut m, n| {
                m.entry(graph[n].task.id.as_str()).or_default().push(n);
                m
            });
        let mut data_edges = Vec::new();
        for n in graph.node_indices() {
            for w in &graph[n].task.wait_for {
                match by_id.get(w.as_str()) {
                    Some(srcs) => {
                        data_edges.extend(srcs.iter().filter(|s| **s != n).map(|s| (*s, n)))
                    }
                    None if pb
                        .roles
                        .values()
                        .any(|r| r.tasks.iter().any(|t| &t.id == w)) => {}
                    None => {
                        return Err(Error::Other(format!(
                            "task {} waits for {w:?}, which is no task of this playbook (write it as role/task name)",
                            graph[n].task.id
                        )));
                    }
                }
            }
        }
        for (a, b) in data_edges {
            graph.add_edge(a, b, Edge::Data);
        }
        // `serial: true`: each host's turn follows the previous host's.
        let mut serial: HashMap<&str, Vec<NodeIndex>> = HashMap::new();
        for &h in selected {
            for &n in &chains[h] {
                if graph[n].task.serial {
                    serial.entry(graph[n].task.id.as_str()).or_default().push(n);
                }
            }
        }
        let serial_edges: Vec<(NodeIndex, NodeIndex)> = serial
            .values()
            .flat_map(|ns| ns.windows(2).map(|w| (w[0], w[1])))
            .collect();
        for (a, b) in serial_edges {
            graph.add_edge(a, b, Edge::Serial);
        }
        let dag = Dag { graph, chains };
        dag.check_acyclic(inv)?;
        Ok(dag)
    }

    pub fn label(&self, inv: &Inventory, n: NodeIndex) -> String {
        let node = &self.graph[n];
        format!("{}:{}", inv.hosts[node.host].name, node.task.id)
    }

    fn check_acyclic(&self, inv: &Inventory) -> Result<()> {
        if toposort(&self.graph, None).is_ok() {
            return Ok(());
        }
        let scc = tarjan_scc(&self.graph)
            .into_iter()
            .find(|c| c.len() > 1)
            .unwrap_or_default();
        let mut names: Vec<String> = scc.iter().rev().map(|n| self.label(inv, *n)).collect();
        if let Some(first) = names.first().cloned() {
            names.push(first);
        }
        Err(Error::Cycle(names))
    }

    /// Nodes this node waits for, and why.
    pub fn preds(&self, n: NodeIndex) -> impl Iterator<Item = (NodeIndex, Edge)> + '_ {
        use petgraph::visit::EdgeRef;
        self.graph
            .edges_directed(n, Direction::Incoming)
            .map(|e| (e.source(), *e.weight()))
    }

    /// Graphviz DOT, one cluster per host.
    pub fn dot(&self, inv: &Inventory) -> String {
        let mut s =
            String::from("digraph gantry {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
        for (h, chain) in self.chains.iter().enumerate() {
            if chain.is_empty() {
                continue;
            }
            s.push_str(&format!(
                "  subgraph \"cluster_{h}\" {{\n    label={:?};\n",
                inv.hosts[h].name
            ));
            for n in chain {
                s.push_str(&format!(
                    "    n{} [label={:?}];\n",
                    n.index(),
                    self.graph[*n].task.id
                ));
            }
            s.push_str("  }\n");
        }
        for e in self.graph.edge_indices() {
            let (a, b) = self.graph.edge_endpoints(e).unwrap();
            let style = match self.graph[e] {
                Edge::Order => "",
                Edge::Barrier => " [style=dashed, color=blue, label=\"after\"]",
                Edge::Data => " [style=bold, color=red, label=\"wait_for\"]",
                Edge::Serial => " [style=dotted, color=darkgreen, label=\"serial\"]",
            };
            s.push_str(&format!("  n{} -> n{}{style};\n", a.index(), b.index()));
        }
        s.push_str("}\n");
        s
    }
}
