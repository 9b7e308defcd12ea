//! What a module decides: the host is as wanted (and why), or a change with
//! its reason, diff and the actions that make it. A change with nothing to
//! run cannot be built.

use super::Action;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do, and why ("/etc/hosts is up to date").
    Unchanged(String),
    Change(Change),
    /// Nothing to do, and what the probes read, which a task's `register`
    /// keeps as its `stdout` (a CA's pin, read from the host): plan reads it
    /// too, since it comes from probes alone.
    Read {
        reason: String,
        output: String,
    },
}

/// A change: at least one action, with the reason and an optional diff.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub reason: String,
    pub diff: Option<String>,
    /// Never empty (`Change::new`, `Change::of`).
    actions: Vec<Action>,
    /// Reported as ok, not changed: a command marked `changed_when: false`.
    pub read_only: bool,
    /// It runs whenever its task runs (a command with no `creates`): the
    /// engine then gives the task's `when:` as the reason it runs.
    pub unconditional: bool,
    /// The diff is of a file that is not world-readable, before or after:
    /// shown only as a count of lines (`shown_diff`).
    pub private: bool,
}

impl Change {
    pub fn new(reason: impl Into<String>, first: Action) -> Change {
        Change {
            reason: reason.into(),
            diff: None,
            actions: vec![first],
            read_only: false,
            unconditional: false,
            private: false,
        }
    }

    /// A change of these actions, or None when there are none.
    pub fn of(reason: impl Into<String>, actions: Vec<Action>) -> Option<Change> {
        (!actions.is_empty()).then(|| Change {
            reason: reason.into(),
            diff: None,
            actions,
            read_only: false,
            unconditional: false,
            private: false,
        })
    }

    /// One more action, after the others.
    pub fn and(mut self, a: Action) -> Change {
        self.actions.push(a);
        self
    }

    pub fn with_diff(mut self, diff: Option<String>) -> Change {
        self.diff = diff;
        self
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    pub fn into_actions(self) -> Vec<Action> {
        self.actions
    }

    /// Two calls of one task (a loop): one change, reasons and diffs in order.
    pub fn merge(mut self, other: Change) -> Change {
        self.reason = format!("{}; {}", self.reason, other.reason);
        self.diff = match (self.diff, other.diff) {
            (Some(a), Some(b)) => Some(a + &b),
            (a, b) => a.or(b),
        };
        self.actions.extend(other.actions);
        self.read_only &= other.read_only;
        self.unconditional |= other.unconditional;
        self.private |= other.private;
        self
    }

    /// The diff as plan and apply print it. That of a private file, or of a
    /// `no_log` task, is only counted unless the operator asks for it: the
    /// old side of a rotated password, or a key, would otherwise land in
    /// terminals and CI logs, and the redactor knows only the new values.
    pub fn shown_diff(&self, no_log: bool, show_secrets: bool) -> Option<String> {
        let diff = self.diff.as_ref()?;
        if show_secrets || !(self.private || no_log) {
            return Some(diff.clone());
        }
        let count = |c: char| {
            diff.lines()
                .filter(|l| l.starts_with(c) && !l.starts_with("+++") && !l.starts_with("---"))
                .count()
        };
        Some(format!(
            "(content hidden: {}; {} line(s) removed, {} added; --show-secret-diffs shows it)\n",
            if self.private {
                "the file is not world-readable"
            } else {
                "the task is no_log"
            },
            count('-'),
            count('+')
        ))
    }
}

impl Decision {
    pub fn unchanged(reason: impl Into<String>) -> Decision {
        Decision::Unchanged(reason.into())
    }

    /// A change of `actions` for the reasons in `why`, or unchanged with
    /// `ok` when there is nothing to run.
    pub fn from_actions(
        why: &[String],
        actions: Vec<Action>,
        diff: Option<String>,
        ok: impl Into<String>,
    ) -> Decision {
        match Change::of(why.join(", "), actions) {
            Some(c) => Decision::Change(c.with_diff(diff)),
            None => Decision::Unchanged(ok.into()),
        }
    }

    pub fn is_change(&self) -> bool {
        matches!(self, Decision::Change(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Unchanged(r) | Decision::Read { reason: r, .. } => r,
            Decision::Change(c) => &c.reason,
        }
    }
}
