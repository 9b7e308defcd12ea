//! Several tasks' writes in one request: a task of writes takes along the
//! tasks after it that can be settled without another round trip.

use std::time::Duration;

use petgraph::graph::NodeIndex;
use serde_json::{Value as Json, json};

use super::host::HostCx;
use super::register::{failed, read_out, register, skipped, unchanged, unregister};
use super::task::{Calls, decide_calls, tail, task_calls};
use super::{Outcome, Shared};
use crate::modules::{Action, Decision, Probe};
use crate::playbook::Task;
use crate::remote::writes;

/// A task decided to change by batchable actions alone, not yet run.
pub(crate) struct Pending<'a> {
    pub(crate) task: &'a Task,
    pub(crate) reason: String,
    pub(crate) diff: Option<String>,
    pub(crate) shown: Vec<String>,
    pub(crate) actions: Vec<Action>,
}

/// What a write-only task registers once its writes are done.
pub(crate) fn written() -> Json {
    json!({"changed": true, "rc": 0, "stdout": "", "stderr": "", "stdout_lines": []})
}

/// The most content one request of writes carries.
pub(crate) const WRITE_AHEAD_BYTES: usize = 1 << 20;

/// Run a task of writes (and of commands that change only live state or
/// make a directory, `writes::batchable`) together with the tasks after it
/// on this host that can be settled now without another round trip: those
/// whose state is read already and not touched by the actions before them,
/// and that are unchanged, skipped, or changed by such actions alone. All
/// their actions go in one request (`writes::writes_script`). The tasks
/// after the first come back in `finished_ahead`, in order, for the caller
/// to finish; where an action fails, only the tasks before it and the
/// failed one have an outcome, and the rest are left to the caller as
/// usual. Look-ahead stops at a task that waits on an unfinished one, has
/// retries or its own timeout, or needs to read or run anything else, and
/// after a task that registers a command's output (a later task could read
/// it).
pub(crate) async fn write_ahead(
    s: &Shared,
    cx: &mut HostCx<'_>,
    first: Pending<'_>,
    rest: &[NodeIndex],
    timeout: Option<Duration>,
    me: NodeIndex,
) -> Outcome {
    let (h, conn, facts) = (cx.h, cx.conn, cx.facts);
    // Registered now, so later tasks' `when:` can read it; undone on failure.
    register(s, h, first.task, written());
    for a in &first.actions {
        cx.cache.after(a);
    }
    let mut bytes: usize = first.actions.iter().map(content_len).sum();
    // Tasks after the first, in order: settled without writes, or pending.
    let mut ahead: Vec<(NodeIndex, Result<Outcome, Pending>)> = Vec::new();
    let mut open = !registers_output(first.task, &first.actions);
    for &n in rest {
        let task = &s.dag.graph[n].task;
        if !open
            || s.opts.done.contains(&n)
            || s.stopped().is_some()
            || task.retries > 0
            || task.timeout.is_some()
        {
            break;
        }
        let ready = s.dag.preds(n).all(|(p, edge)| {
            p == me
                || ahead.iter().any(|(q, _)| *q == p)
                || s.results[p.index()]
                    .borrow()
                    .as_ref()
                    .is_some_and(|o| !edge.needs_success() || o.lets_dependents_run())
        });
        if !ready {
            break;
        }
        let settled = match task_calls(s, h, task, facts) {
            Err(_) => break,
            Ok(Calls::Skip(why)) => Ok(skipped(s, h, task, why)),
            Ok(Calls::NoItems) => Ok(unchanged(s, h, task, "loop has no items".into())),
            Ok(Calls::Run(calls)) => {
                let probes: Vec<Probe> =
                    calls.iter().flat_map(|(_, p)| p.list().cloned()).collect();
                let Some(answers) = cx.cache.get(&probes) else {
                    break;
                };
                match decide_calls(task, &calls, answers) {
                    Err(_) => break,
                    Ok(Decision::Unchanged(reason)) => Ok(unchanged(s, h, task, reason)),
                    Ok(Decision::Read { reason, output }) => {
                        Ok(read_out(s, h, task, reason, output))
                    }
                    Ok(Decision::Change(c)) if batchable(task, c.read_only, c.actions(), false) => {
                        open = !registers_output(task, c.actions());
                        bytes += c.actions().iter().map(content_len).sum::<usize>();
                        if bytes > WRITE_AHEAD_BYTES {
                            break;
                        }
                        register(s, h, task, written());
                        for a in c.actions() {
                            cx.cache.after(a);
                        }
                        let shown = c.actions().iter().map(Action::describe).collect();
                        let (reason, diff) = (
                            c.reason.clone(),
                            c.shown_diff(task.no_log, s.opts.show_secret_diffs),
                        );
                        Err(Pending {
                            task,
                            reason,
                            diff,
                            shown,
                            actions: c.into_actions(),
                        })
                    }
                    Ok(Decision::Change(_)) => break,
                }
            }
        };
        ahead.push((n, settled));
    }
    // Settled tasks after the last pending one need no request: leave them
    // to the caller, which settles them from the same cached answers.
    while matches!(ahead.last(), Some((_, Ok(_)))) {
        let (n, _) = ahead.pop().expect("not empty");
        unregister(s, h, &s.dag.graph[n].task);
    }
    let marker = match crate::secrets::random_hex(8) {
        Ok(r) => format!("gantry-run-{r}"),
        Err(e) => return failed(e),
    };
    let mut actions: Vec<&Action> = first.actions.iter().collect();
    for (_, a) in &ahead {
        if let Err(p) = a {
            actions.extend(&p.actions);
        }
    }
    let script = match writes::writes_script(&actions, &marker) {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let inputs = writes::batch_inputs(&actions);
    let described: Vec<String> = actions.iter().map(|w| w.describe()).collect();
    let out = match conn.run_own(&script, &inputs, timeout).await {
        Ok(out) => out,
        Err(e) => {
            // Nothing is known to have landed: take back what was
            // registered ahead of it.
            unregister(s, h, first.task);
            for &(n, _) in &ahead {
                unregister(s, h, &s.dag.graph[n].task);
            }
            if e.task_only() {
                return Outcome::Failed {
                    reason: e.message,
                    command: Some(first.shown.join("; ")),
                    rc: None,
                    stderr: String::new(),
                };
            }
            return Outcome::Unreachable(e.message);
        }
    };
    let (done, runs) = writes::batch_output(&out.stdout, &marker);
    let done = if out.rc == 0 && done == described.len() {
        done
    } else {
        done.min(described.len().saturating_sub(1))
    };
    // The task whose write `at` failed: registered and reported as failed.
    let failure = |task: &Task, at: usize| {
        register(
            s,
            h,
            task,
            json!({"changed": false, "failed": true, "rc": out.rc, "stdout": "", "stderr": out.stderr}),
        );
        Outcome::Failed {
            reason: "command failed".into(),
            command: described.get(at).cloned(),
            rc: Some(out.rc),
            stderr: tail(&out.stderr),
        }
    };
    // A task whose actions, from index `at` on, are all done: registered
    // with its last command's output where it ran one.
    let finished = |task: &Task, at: usize, count: usize| {
        if let Some((stdout, rc)) = (at..at + count).rev().find_map(|j| runs.get(&j)) {
            let lines: Vec<&str> = stdout.lines().collect();
            register(
                s,
                h,
                task,
                json!({"changed": true, "rc": rc, "stdout": stdout.trim_end(), "stderr": "", "stdout_lines": lines}),
            );
        }
    };
    // Whose action was the first not done, if any.
    let mut left = done;
    if left < first.actions.len() {
        for &(n, _) in &ahead {
            unregister(s, h, &s.dag.graph[n].task);
        }
        return failure(first.task, left);
    }
    finished(first.task, 0, first.actions.len());
    left -= first.actions.len();
    let mut at = first.actions.len();
    let mut stopped = false;
    for (n, a) in ahead {
        if stopped {
            unregister(s, h, &s.dag.graph[n].task);
            continue;
        }
        match a {
            Ok(o) => cx.finished_ahead.push((n, o)),
            Err(p) if left >= p.actions.len() => {
                left -= p.actions.len();
                finished(p.task, at, p.actions.len());
                at += p.actions.len();
                cx.finished_ahead.push((
                    n,
                    Outcome::Changed {
                        reason: p.reason,
                        diff: p.diff,
                        actions: p.shown,
                    },
                ));
            }
            Err(p) => {
                stopped = true;
                cx.finished_ahead.push((n, failure(p.task, done)));
            }
        }
    }
    Outcome::Changed {
        reason: first.reason,
        diff: first.diff,
        actions: first.shown,
    }
}

/// Whether a task's actions can go in one request of writes
/// (`writes::writes_script`): writes and `writes::batchable` commands,
/// with no write validated after another action, since a validator checks
/// its candidate before the actions before it in its stretch are done, and
/// may read what an earlier write puts in place (keepalived's config names
/// its check script). A task with commands goes only where its output
/// cannot leak or be needed midway: not `no_log`, and not `read_only` (a
/// `changed_when: false` command, reported ok). `first`: the actions open
/// the request.
pub(crate) fn batchable(task: &Task, read_only: bool, actions: &[Action], first: bool) -> bool {
    let runs = actions.iter().any(|a| matches!(a, Action::Run { .. }));
    if actions.is_empty() || read_only || (runs && task.no_log) {
        return false;
    }
    actions.iter().enumerate().all(|(i, a)| match a {
        Action::Write { validate, .. } => validate.is_none() || (first && i == 0),
        a => writes::batchable(a),
    })
}

/// A command whose result is registered: the tasks after it may read its
/// output, known only once it has run.
pub(crate) fn registers_output(task: &Task, actions: &[Action]) -> bool {
    task.register.is_some() && actions.iter().any(|a| matches!(a, Action::Run { .. }))
}

pub(crate) fn content_len(a: &Action) -> usize {
    match a {
        Action::Write { content, .. } => content.len(),
        Action::Run { .. } | Action::Upload { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A validated write may open a request of writes, never follow one:
    /// its validator would not see the earlier writes in place.
    #[test]
    fn validated_writes_only_open_a_request_of_writes() {
        let w = |validate: bool| Action::Write {
            path: "/etc/x".into(),
            content: String::new(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: validate.then(|| vec!["true".into()]),
        };
        let mut task = Task {
            id: "r/t".into(),
            name: "t".into(),
            role: "r".into(),
            module: "copy".into(),
            params: Json::Null,
            when: None,
            register: None,
            no_log: false,
            wait_for: Vec::new(),
            wait_for_at: None,
            loop_: None,
            timeout: None,
            retries: 0,
            delay: 0,
            serial: false,
            source: "r/tasks.yaml:1".into(),
        };
        let t = &task;
        // A copy's change is reported as changed; a `changed_when: false`
        // command's, as ok (read-only).
        let m = false;
        assert!(batchable(t, m, &[w(true), w(false)], true));
        assert!(!batchable(t, m, &[w(true)], false));
        assert!(!batchable(t, m, &[w(false), w(true)], true));
        assert!(batchable(t, m, &[w(false), w(false)], false));
        assert!(!batchable(t, m, &[], true));
        // Commands that change live state or make a directory go along;
        // others, and commands that read input, do not.
        let run = |argv: &[&str]| Action::run(argv).unwrap();
        assert!(!batchable(t, m, &[w(false), run(&["true"])], true));
        assert!(!batchable(
            t,
            m,
            &[w(false), run(&["sh", "-c", "sysctl -p"])],
            true
        ));
        let sysctl = run(&["sysctl", "-q", "-p", "/etc/sysctl.d/x.conf"]);
        let mkdir = run(&["mkdir", "-p", "-m", "755", "--", "/etc/d"]);
        assert!(batchable(
            t,
            m,
            &[w(false), sysctl.clone(), mkdir.clone()],
            false
        ));
        assert!(!batchable(
            t,
            m,
            &[run(&["chmod", "600", "--", "/etc/x"])],
            false
        ));
        let mut fed = sysctl.clone();
        if let Action::Run { stdin, .. } = &mut fed {
            *stdin = Some("x".into());
        }
        assert!(!batchable(t, m, &[fed], false));
        // A `changed_when: false` command is reported ok, so it goes alone.
        let quiet = true;
        assert!(!batchable(t, quiet, std::slice::from_ref(&sysctl), false));
        // A secret task's command goes on its own; a registered command's
        // output closes the request.
        task.no_log = true;
        assert!(!batchable(&task, m, std::slice::from_ref(&sysctl), false));
        assert!(batchable(&task, m, &[w(false)], false));
        task.no_log = false;
        task.register = Some("out".into());
        assert!(registers_output(&task, std::slice::from_ref(&sysctl)));
        assert!(!registers_output(&task, &[w(false)]));
    }
}
