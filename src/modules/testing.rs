//! Helpers for the modules' fixture tests: probe answers as a host gives
//! them, and a module decided against them.

use serde_json::Value as Json;

use super::{AnyModule, Change, Decision, Module, ProbeOut};

pub fn file(mode: &str, content: &str) -> ProbeOut {
    ProbeOut {
        rc: 0,
        out: format!("{mode} root root regular file\n{content}"),
    }
}

pub fn dir(mode: &str) -> ProbeOut {
    ProbeOut {
        rc: 0,
        out: format!("{mode} root root directory\n"),
    }
}

/// A symbolic link, as `stat` describes one (it does not follow it).
pub fn link() -> ProbeOut {
    ProbeOut {
        rc: 0,
        out: "777 root root symbolic link\n".into(),
    }
}

pub fn absent() -> ProbeOut {
    ProbeOut {
        rc: 1,
        out: String::new(),
    }
}

/// A script probe's answer.
pub fn out(rc: i32, text: &str) -> ProbeOut {
    ProbeOut {
        rc,
        out: text.into(),
    }
}

/// A stand-in for a host's command: a shell script at `path`, executable,
/// for the tests that run a probe under a real sh with its directory first
/// on PATH.
pub fn executable(path: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Typed and validated parameters, or the test fails.
pub fn module<M: Module>(v: Json) -> M {
    let m: M = serde_json::from_value(v).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    m.validate().unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    m
}

/// Parameters refused by the module's struct or its `validate`: the message.
pub fn refused<M: Module>(v: Json) -> String {
    AnyModule::parse(M::NAME, v).unwrap_err()
}

/// The module decided on these answers, in the order of its probes.
pub fn decide<M: Module>(m: &M, answers: Vec<ProbeOut>) -> Result<Decision, String> {
    let p = m.probes()?;
    assert_eq!(p.len(), answers.len(), "one answer per probe: {p:?}");
    m.decide(&p.answered(answers))
}

/// The change a decision holds, or the test fails.
pub fn change(d: Decision) -> Change {
    match d {
        Decision::Change(c) => c,
        Decision::Unchanged(r) | Decision::Read { reason: r, .. } => panic!("unchanged: {r}"),
    }
}

/// The reason a decision is unchanged, or the test fails.
pub fn unchanged(d: Decision) -> String {
    match d {
        Decision::Unchanged(r) | Decision::Read { reason: r, .. } => r,
        Decision::Change(c) => panic!("changed: {c:?}"),
    }
}
