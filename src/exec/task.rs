//! One task on one host: `when` and `loop`, the module calls with their
//! probes, the answers (cached or read ahead), the decision, then the
//! actions (apply) or what they would be (plan).

use std::time::Duration;

use minijinja::Value;
use petgraph::graph::NodeIndex;
use serde_json::{Value as Json, json};

use super::host::HostCx;
use super::probe::{ProbeError, read_ahead};
use super::register::{context, failed, read_out, register, skipped, unchanged};
use super::relay::Source;
use super::write_ahead::{Pending, batchable, write_ahead};
use super::{KNOWN_AFTER_APPLY, Outcome, RunMode, Shared};
use crate::modules::{
    self, Action, AnyModule, Change, Controller, Decision, Probe, ProbeOut, Probes,
};
use crate::plan::vars::val;
use crate::playbook::Task;
use crate::remote::ssh::{self};
use crate::remote::{relay, writes};

/// Render a task's parameters into a typed module call. `template` and
/// `copy: {src}` are resolved here into a `copy` with content.
pub(crate) fn prepare(s: &Shared, task: &Task, ctx: &Value) -> Result<AnyModule, String> {
    let params = s.templates.render_params(&task.params, ctx)?;
    AnyModule::parse(&task.module, params)?.prepare(&RoleCx { s, task, ctx })
}

/// What a module may ask of the controller for one task (`Controller`):
/// its role's templates, rendered with the task's variables, and files.
pub(crate) struct RoleCx<'a> {
    s: &'a Shared,
    task: &'a Task,
    ctx: &'a Value,
}

impl Controller for RoleCx<'_> {
    fn render_template(&self, name: &str) -> Result<String, String> {
        self.s
            .templates
            .render_file(&self.task.role, name, self.ctx)
    }

    fn role_file(&self, name: &str) -> Result<String, String> {
        let role = &self.s.pb.roles[&self.task.role];
        role.files.get(name).cloned().ok_or_else(|| {
            format!(
                "copy: no file {name:?} in {}",
                role.dir.join("files").display()
            )
        })
    }

    fn local_file(&self, path: &str) -> Result<std::path::PathBuf, String> {
        Ok(self.s.opts.base_dir.join(path))
    }
}

pub(crate) fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// What a task does on a host before the host's state is read: nothing
/// (`when` is false, or the loop has no items), or module calls, each with the
/// probes that read the state it decides on.
pub(crate) enum Calls {
    Skip(String),
    NoItems,
    Run(Vec<(AnyModule, Probes)>),
}

pub(crate) fn task_calls(s: &Shared, h: usize, task: &Task, facts: &Json) -> Result<Calls, String> {
    let base = context(s, h, task, facts);
    let ctx = Value::from(base.clone());
    if let Some(w) = &task.when
        && !s
            .templates
            .truthy(w, &ctx)
            .map_err(|e| format!("when: {e}"))?
    {
        return Ok(Calls::Skip(format!("when: {w} is false")));
    }
    // One module call, or one per loop item.
    let contexts: Vec<Value> = match &task.loop_ {
        None => vec![ctx],
        Some(l) => match s.templates.render_params(l, &ctx) {
            Ok(Json::Array(items)) => items
                .into_iter()
                .map(|item| {
                    let mut m = base.clone();
                    m.insert("item".into(), val(item));
                    Value::from(m)
                })
                .collect(),
            Ok(other) => return Err(format!("loop: expected a list, got {other}")),
            Err(e) => return Err(format!("loop: {e}")),
        },
    };
    if contexts.is_empty() {
        return Ok(Calls::NoItems);
    }
    let mut calls = Vec::new();
    for c in &contexts {
        let call = prepare(s, task, c).and_then(|m| m.probes().map(|p| (m, p)));
        calls.push(call.map_err(|e| format!("{} ({})", e, task.source))?);
    }
    Ok(Calls::Run(calls))
}

/// One decision for a task's calls: a change if any call changes, with
/// their reasons, diffs and actions in order.
pub(crate) fn decide_calls(
    task: &Task,
    calls: &[(AnyModule, Probes)],
    answers: Vec<ProbeOut>,
) -> Result<Decision, String> {
    let mut change: Option<Change> = None;
    let mut answers = answers.into_iter();
    let mut oks = Vec::new();
    let mut read: Vec<String> = Vec::new();
    for (m, p) in calls {
        let mine: Vec<ProbeOut> = answers.by_ref().take(p.len()).collect();
        match m.decide(&p.answered(mine))? {
            Decision::Change(c) => {
                change = Some(match change {
                    Some(prev) => prev.merge(c),
                    None => c,
                });
            }
            Decision::Unchanged(reason) => oks.push(reason),
            Decision::Read { reason, output } => {
                oks.push(reason);
                read.push(output);
            }
        }
    }
    Ok(match change {
        None if !read.is_empty() => Decision::Read {
            reason: oks.join("; "),
            output: read.join("\n"),
        },
        None => Decision::Unchanged(oks.join("; ")),
        Some(mut c) => {
            if let (Some(w), true) = (&task.when, c.unconditional) {
                c.reason = format!("runs because `{w}`");
            }
            Decision::Change(c)
        }
    })
}

pub(crate) async fn run_task(
    s: &Shared,
    cx: &mut HostCx<'_>,
    task: &Task,
    rest: &[NodeIndex],
    me: NodeIndex,
) -> Outcome {
    let (h, conn, facts) = (cx.h, cx.conn, cx.facts);
    let plan = s.opts.mode == RunMode::Plan;
    let calls = match task_calls(s, h, task, facts) {
        Err(e) => return failed(e),
        Ok(Calls::Skip(why)) => return skipped(s, h, task, why),
        Ok(Calls::NoItems) => return unchanged(s, h, task, "loop has no items".into()),
        Ok(Calls::Run(calls)) => calls,
    };
    let probes: Vec<Probe> = calls.iter().flat_map(|(_, p)| p.list().cloned()).collect();
    let timeout = task.timeout.map(Duration::from_secs);
    let mut answers = match cx.cache.get(&probes) {
        Some(a) => a,
        None => match read_ahead(s, cx, rest, &probes, timeout).await {
            Ok(()) => match cx.cache.get(&probes) {
                Some(a) => a,
                None => return failed("reading state: a probe's answer is missing"),
            },
            Err(ProbeError::Failed(e)) => return failed(e),
            Err(ProbeError::Lost(e)) if e.task_only() => return failed(e.message),
            Err(ProbeError::Lost(e)) => return Outcome::Unreachable(e.message),
        },
    };
    if plan {
        for (p, a) in probes.iter().zip(answers.iter_mut()) {
            if let Probe::File(path) = p
                && let Some(content) = cx.overlay.get(path)
            {
                let st = modules::FileState::parse(a);
                let head = if st.exists {
                    format!("{:o} {} {} regular file", st.mode, st.owner, st.group)
                } else {
                    "644 root root regular file".into()
                };
                *a = ProbeOut {
                    rc: 0,
                    out: format!("{head}\n{content}"),
                };
            }
        }
    }
    let decision = match decide_calls(task, &calls, answers) {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let change = match decision {
        Decision::Unchanged(reason) => {
            // A file found in place may be passed on to other hosts.
            if !plan {
                for (m, _) in &calls {
                    if let Some((sha, path)) = m.holds() {
                        s.relay.hold(sha, h, path);
                    }
                }
            }
            return unchanged(s, h, task, reason);
        }
        Decision::Read { reason, output } => return read_out(s, h, task, reason, output),
        Decision::Change(c) => c,
    };
    let read_only = change.read_only;
    let shown: Vec<String> = change.actions().iter().map(Action::describe).collect();
    let batch = task.retries == 0 && batchable(task, read_only, change.actions(), true);
    let (reason, diff) = (
        change.reason.clone(),
        change.shown_diff(task.no_log, s.opts.show_secret_diffs),
    );
    let actions = change.into_actions();
    if plan {
        for a in &actions {
            if let Action::Write { path, content, .. } = a {
                cx.overlay.insert(path.clone(), content.clone());
            }
        }
        // A command's output exists only once it runs; say so where it is used.
        register(
            s,
            h,
            task,
            json!({"changed": true, "planned": true, "rc": 0, "stdout": KNOWN_AFTER_APPLY, "stderr": "", "stdout_lines": [KNOWN_AFTER_APPLY]}),
        );
        if read_only {
            return Outcome::Ok(format!("{reason}: runs on apply"));
        }
        return Outcome::Changed {
            reason,
            diff,
            actions: shown,
        };
    }
    if batch {
        let pending = Pending {
            task,
            reason,
            diff,
            shown,
            actions,
        };
        return write_ahead(s, cx, pending, rest, timeout, me).await;
    }
    let mut last = ssh::Output::default();
    for a in &actions {
        let result = if let Action::Upload { .. } = a {
            cx.cache.after(a);
            match upload(s, cx.h, conn, a, timeout).await {
                Ok(r) => r,
                Err(e) => return failed(e),
            }
        } else {
            let (script, input) = match writes::action_script(a) {
                Ok(x) => x,
                Err(e) => return failed(e),
            };
            // A read-only command (`changed_when: false`) changes nothing
            // the answers read ahead hold: they stay good, and the host's
            // next tasks need no second read-ahead.
            if !read_only {
                cx.cache.after(a);
            }
            let inputs: Vec<&str> = input.iter().map(String::as_str).collect();
            conn.run_in(writes::scope(a), &script, &inputs, timeout)
                .await
        };
        match result {
            Err(e) if e.task_only() => {
                return Outcome::Failed {
                    reason: e.message,
                    command: Some(a.describe()),
                    rc: None,
                    stderr: String::new(),
                };
            }
            Err(e) => return Outcome::Unreachable(e.message),
            Ok(out) if out.rc != 0 => {
                register(
                    s,
                    h,
                    task,
                    json!({"changed": false, "failed": true, "rc": out.rc, "stdout": out.stdout, "stderr": out.stderr}),
                );
                return Outcome::Failed {
                    reason: "command failed".into(),
                    command: Some(a.describe()),
                    rc: Some(out.rc),
                    stderr: tail(&out.stderr),
                };
            }
            Ok(out) => last = out,
        }
    }
    let lines: Vec<&str> = last.stdout.lines().collect();
    register(
        s,
        h,
        task,
        json!({"changed": !read_only, "rc": last.rc, "stdout": last.stdout.trim_end(), "stderr": last.stderr, "stdout_lines": lines}),
    );
    if read_only {
        return Outcome::Ok(reason);
    }
    Outcome::Changed {
        reason,
        diff,
        actions: shown,
    }
}

/// An `Action::Upload`: the file streamed to the host's receiving script,
/// from a host that already holds it (fan-out, `relay`) or from the
/// controller. A relay that fails on the way (the hosts cannot reach each
/// other) falls back to the controller. An upload has no command timeout
/// of its own (a large file on a slow link takes long); the task's
/// `timeout` bounds it.
async fn upload(
    s: &Shared,
    h: usize,
    conn: &ssh::Conn,
    a: &Action,
    timeout: Option<Duration>,
) -> Result<Result<ssh::Output, ssh::ConnError>, String> {
    let Action::Upload {
        src,
        dest,
        sha256,
        size,
        offset,
        mode,
    } = a
    else {
        return Err("internal: not an upload".into());
    };
    let limit = timeout.unwrap_or(Duration::from_secs(24 * 3600));
    let script = modules::upload_script(dest, sha256, *size, *offset, *mode)?;
    if !s.relay.enabled {
        return direct(s, conn, h, src, &script, *offset..*size, limit).await;
    }
    let from = s.relay.source(sha256, h).await;
    let Source::Peer {
        conn: peer,
        path,
        host: peer_index,
    } = &from
    else {
        let r = direct(s, conn, h, src, &script, *offset..*size, limit).await;
        let landed = matches!(&r, Ok(Ok(o)) if o.rc == 0);
        s.relay.done(sha256, h, dest, &from, landed, false);
        return r;
    };
    tracing::debug!(target: "gantry::relay", host = %conn.host, from = %peer.host, "relay");
    let file = dest.rsplit('/').next().unwrap_or(dest);
    let bar = s
        .transfers
        .relayed(&s.inv.hosts[h].name, &s.inv.hosts[*peer_index].name, file);
    let r = relayed(s, conn, peer, path, &script, *offset, limit).await;
    drop(bar);
    match r {
        Ok(out) if out.rc == 0 => {
            s.relay.done(sha256, h, dest, &from, true, false);
            s.transfers.landed();
            Ok(Ok(out))
        }
        // The receiving script's own refusal (exit 3): the same from anywhere.
        Ok(out) if out.rc == 3 && out.stderr.contains("gantry upload: ") => {
            s.relay.done(sha256, h, dest, &from, false, false);
            Ok(Ok(out))
        }
        // ssh's own failure, or the relay's set-up: from the controller
        // instead, from the start (what arrived is not counted on).
        r => {
            let why = match &r {
                Ok(out) => format!("exit {}: {}", out.rc, out.stderr.trim()),
                Err(e) => e.clone(),
            };
            tracing::info!(target: "gantry::relay", host = %conn.host, from = %peer.host, "relay failed, sending from the controller: {why}");
            s.relay.done(sha256, h, dest, &from, false, true);
            let script = modules::upload_script(dest, sha256, *size, 0, *mode)?;
            direct(s, conn, h, src, &script, 0..*size, limit).await
        }
    }
}

/// From the controller: the file from `offset`, streamed, once one of the
/// controller's few transfer slots is free.
async fn direct(
    s: &Shared,
    conn: &ssh::Conn,
    h: usize,
    src: &std::path::Path,
    script: &str,
    bytes: std::ops::Range<u64>,
    limit: Duration,
) -> Result<Result<ssh::Output, ssh::ConnError>, String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let _slot = s
        .relay
        .controller
        .acquire()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let mut f = tokio::fs::File::open(src)
        .await
        .map_err(|e| format!("upload: {}: {e}", src.display()))?;
    f.seek(std::io::SeekFrom::Start(bytes.start))
        .await
        .map_err(|e| format!("upload: {}: {e}", src.display()))?;
    // Exactly the bytes the decision counted, even if the file grew since.
    let n = bytes.end - bytes.start;
    let file = src
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let bar = s.transfers.direct(&s.inv.hosts[h].name, &file, n);
    let mut body = crate::ui::progress::Counted {
        inner: f.take(n),
        transfer: &bar,
    };
    let r = conn.upload(script, &mut body, limit).await;
    if r.is_ok() {
        conn.stats.add_sent(n);
    }
    if matches!(&r, Ok(o) if o.rc == 0) {
        s.transfers.landed();
    }
    Ok(r)
}

/// From the peer that holds a copy at `path`: authorize the peer on this
/// host for this one transfer, have the peer send, then revoke, whatever
/// happened (`remote::relay`). An error is the relay's own failure.
async fn relayed(
    s: &Shared,
    conn: &ssh::Conn,
    peer: &ssh::Conn,
    path: &str,
    script: &str,
    offset: u64,
    limit: Duration,
) -> Result<ssh::Output, String> {
    let (private, public) = s.relay.key()?;
    let tag = crate::secrets::random_hex(8)?;
    // authorized_keys' from= takes addresses; a name would need the host's
    // DNS to agree, so a peer known by name is not restricted by address.
    let from = match peer.host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => "*".into(),
    };
    let setup = Duration::from_secs(60);
    let auth = conn
        .run(
            &relay::authorize(&tag, &from, &public)?,
            &[script],
            Some(setup),
        )
        .await
        .map_err(|e| e.message)?;
    let sent = if auth.rc == 0 {
        let send = relay::send(path, offset, &conn.host, conn.port, &conn.host_key)?;
        peer.upload(&send, &mut private.as_bytes(), limit)
            .await
            .map_err(|e| e.message)
    } else {
        Err(format!("relay set-up: {}", auth.stderr.trim()))
    };
    let revoked = conn.run(&relay::revoke(&tag)?, &[], Some(setup)).await;
    if let Ok(out) = &revoked
        && out.rc != 0
    {
        return Err(format!("relay clean-up: {}", out.stderr.trim()));
    }
    sent
}
