//! What the engine reports: each task's outcome, and the events a run sends
//! to its one consumer (`ui::Sink`), which renders, redacts and journals
//! them. Nothing here prints; this file imports nothing from the ui.

use petgraph::graph::NodeIndex;

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
    /// Every string in it passed through `f` (the sink makes host text
    /// safe for a terminal this way).
    pub fn map_text(self, f: impl Fn(&str) -> String) -> Outcome {
        match self {
            Outcome::Ok(r) => Outcome::Ok(f(&r)),
            Outcome::Changed {
                reason,
                diff,
                actions,
            } => Outcome::Changed {
                reason: f(&reason),
                diff: diff.map(|d| f(&d)),
                actions: actions.iter().map(|a| f(a)).collect(),
            },
            Outcome::Failed {
                reason,
                command,
                rc,
                stderr,
            } => Outcome::Failed {
                reason: f(&reason),
                command: command.map(|c| f(&c)),
                rc,
                stderr: f(&stderr),
            },
            Outcome::Skipped(r) => Outcome::Skipped(f(&r)),
            Outcome::Blocked(r) => Outcome::Blocked(f(&r)),
            Outcome::Unreachable(r) => Outcome::Unreachable(f(&r)),
        }
    }

    pub fn lets_dependents_run(&self) -> bool {
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

/// Where a task's time went: when it began, how long it waited on other
/// hosts' tasks (barriers, serial turns, data) and then ran, and the round
/// trips and bytes it cost its host's connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub started: std::time::SystemTime,
    pub waited: std::time::Duration,
    pub ran: std::time::Duration,
    pub traffic: crate::remote::traffic::Traffic,
}

/// What a run reports, in the order it happens. Host workers send these on
/// one channel; the one consumer renders, redacts and journals them.
#[derive(Debug)]
pub enum Event {
    /// A task finished on its host.
    TaskDone { node: NodeIndex, outcome: Outcome },
    /// When a task ran and what it cost, sent just before its `TaskDone`
    /// (the run report). Tasks a write-ahead finished along with it, and
    /// tasks never run, have none.
    TaskTimed { node: NodeIndex, timing: Timing },
    /// A host cannot be used (unreachable, locked, not started): its
    /// remaining tasks, each recorded with this outcome.
    HostUnusable {
        host: usize,
        outcome: Outcome,
        nodes: Vec<NodeIndex>,
    },
    /// A task finished in an earlier run, not run again.
    DoneEarlier { host: usize },
    /// A host is about to run these tasks (their places in its order):
    /// journaled and on disk before `ack` is told, so a task whose record
    /// is lost in a crash is known to have begun.
    HostBegins {
        host: usize,
        seqs: Vec<usize>,
        ack: tokio::sync::oneshot::Sender<()>,
    },
    /// A run-wide message (a stop, a retry, a lock taken over).
    Notice(String),
    /// A value that must never be shown (a `no_log` result): sent before
    /// anything that could show it.
    Secret(String),
    /// A second Ctrl-C: journal what came before, then end the process.
    Abort,
}
