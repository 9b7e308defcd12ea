//! The run's one consumer: the engine's host workers send `Event`s on one
//! channel (cargo's job queue, nextest's dispatcher), and this thread
//! renders each, redacts it once, and journals it. Events arrive in the
//! order they were sent, so a secret announced before a result is known
//! here before anything that could show it.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use petgraph::graph::NodeIndex;

use super::out::terminal_safe;
use super::report::Reporter;
use super::timeline::RunReport;
use crate::exec::{Event, Outcome};
use crate::inventory::Inventory;
use crate::journal::{self, Journal, Record};
use crate::plan::graph::Dag;

pub struct Sink {
    pub reporter: Reporter,
    /// Apply's journal; none in plan.
    pub journal: Option<Arc<Journal>>,
    pub inv: Arc<Inventory>,
    pub dag: Arc<Dag>,
    /// Each node's input hash, by node index, for the journal.
    pub inputs: Vec<String>,
    /// Apply's run report (`timeline`); none in plan.
    pub report: Option<RunReport>,
}

impl Sink {
    /// Consume every event until the run drops its sender; then close the
    /// journal (every record on disk before the run reports) and hand the
    /// reporter back for the summary, with the journal's first write error
    /// if it had one.
    pub fn consume(mut self, events: Receiver<Event>) -> (Reporter, Option<String>) {
        for e in events {
            match e {
                Event::TaskDone { node, outcome } => {
                    let outcome = outcome.map_text(terminal_safe);
                    let n = &self.dag.graph[node];
                    self.reporter
                        .task_done(&self.inv.hosts[n.host].name, &n.task.id, &outcome);
                    self.record(node, &outcome);
                    self.timeline(node, Some(node), &outcome);
                }
                Event::TaskTimed { node, timing } => {
                    if let Some(r) = &mut self.report {
                        r.timeline.timed(node, timing);
                    }
                }
                Event::HostUnusable {
                    host,
                    outcome,
                    nodes,
                } => {
                    let outcome = outcome.map_text(terminal_safe);
                    self.reporter
                        .host_unusable(&self.inv.hosts[host].name, &outcome, nodes.len());
                    for n in nodes {
                        self.record(n, &outcome);
                        self.timeline(n, None, &outcome);
                    }
                }
                Event::DoneEarlier { host } => {
                    self.reporter.done_earlier(&self.inv.hosts[host].name)
                }
                Event::HostBegins { host, seqs, ack } => match &self.journal {
                    Some(j) => j.begin(&self.inv.hosts[host].name, &seqs, ack),
                    None => {
                        let _ = ack.send(());
                    }
                },
                Event::Notice(s) => self.reporter.notice(&terminal_safe(&s)),
                Event::Secret(s) => self.reporter.redactor.add(&s),
                Event::Abort => {
                    if let Some(j) = &self.journal {
                        j.close();
                    }
                    // What changed so far was held for the end: show it.
                    if !self.reporter.plan {
                        self.reporter.print_held();
                    }
                    if let Some(r) = &self.report {
                        r.write();
                    }
                    eprintln!("aborted; finished tasks are in the journal");
                    std::process::exit(130);
                }
            }
        }
        let journal_error = self.journal.as_ref().and_then(|j| j.close());
        if let Some(r) = &self.report {
            r.write();
        }
        (self.reporter, journal_error)
    }

    /// A result into the run report, redacted (`timed`: whether a timing
    /// was sent for it).
    fn timeline(&mut self, n: NodeIndex, timed: Option<NodeIndex>, o: &Outcome) {
        let Some(r) = &mut self.report else { return };
        let node = &self.dag.graph[n];
        let reason = self.reporter.redactor.redact(&o.reason());
        r.timeline.done(
            &self.inv.hosts[node.host].name,
            timed,
            &node.task.id,
            o.word(),
            reason,
        );
    }

    fn record(&self, n: NodeIndex, o: &Outcome) {
        let Some(j) = &self.journal else {
            return;
        };
        let node = &self.dag.graph[n];
        let seq = self.dag.chains[node.host]
            .iter()
            .position(|x| *x == n)
            .unwrap_or(0);
        j.record(&Record {
            run: j.run.clone(),
            at: journal::now(),
            host: self.inv.hosts[node.host].name.clone(),
            task: node.task.id.clone(),
            seq,
            input: self.inputs.get(n.index()).cloned().unwrap_or_default(),
            outcome: o.word().to_string(),
            reason: self.reporter.redactor.redact(&o.reason()),
        });
    }
}
