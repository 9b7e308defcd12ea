//! Registered results and the variables a task sees: `register` puts a
//! task's result where later tasks (`hostvars` on other hosts too) read it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use minijinja::Value;
use serde_json::{Value as Json, json};

use super::{Event, KNOWN_AFTER_APPLY, Outcome, Shared};
use crate::plan::vars::val;
use crate::playbook::Task;

/// `hostvars` in templates: every host's facts and registered results, read
/// when a template asks for one host, not copied into every task's context.
#[derive(Debug)]
pub(crate) struct HostVars(Arc<Mutex<HashMap<String, serde_json::Map<String, Json>>>>);

impl minijinja::value::Object for HostVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.lock().unwrap().get(key.as_str()?).map(val)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.0
                .lock()
                .unwrap()
                .keys()
                .map(|k| Value::from(k.clone()))
                .collect(),
        )
    }
}

pub(crate) fn context(s: &Shared, h: usize, task: &Task, facts: &Json) -> BTreeMap<String, Value> {
    let mine = s
        .hostvars
        .lock()
        .unwrap()
        .get(&s.inv.hosts[h].name)
        .cloned();
    s.vars.context(
        h,
        &task.role,
        facts,
        mine.as_ref(),
        Value::from_object(HostVars(s.hostvars.clone())),
    )
}

pub(crate) fn failed(reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
        command: None,
        rc: None,
        stderr: String::new(),
    }
}

/// A task `when:` skipped: registered as such.
pub(crate) fn skipped(s: &Shared, h: usize, task: &Task, why: String) -> Outcome {
    register(
        s,
        h,
        task,
        json!({"changed": false, "skipped": true, "rc": 0, "stdout": "", "stderr": ""}),
    );
    Outcome::Skipped(why)
}

/// A task with nothing to change: registered as such.
pub(crate) fn unchanged(s: &Shared, h: usize, task: &Task, reason: String) -> Outcome {
    register(
        s,
        h,
        task,
        json!({"changed": false, "rc": 0, "stdout": "", "stderr": ""}),
    );
    Outcome::Ok(reason)
}

/// A task that read something and changed nothing: what it read is its
/// registered `stdout`.
pub(crate) fn read_out(
    s: &Shared,
    h: usize,
    task: &Task,
    reason: String,
    output: String,
) -> Outcome {
    let lines: Vec<&str> = output.lines().collect();
    register(
        s,
        h,
        task,
        json!({"changed": false, "rc": 0, "stdout": output, "stderr": "", "stdout_lines": lines}),
    );
    Outcome::Ok(reason)
}

/// Take back what `register` recorded, for a task that did not run after all.
pub(crate) fn unregister(s: &Shared, h: usize, task: &Task) {
    if let Some(name) = &task.register
        && let Some(m) = s.hostvars.lock().unwrap().get_mut(&s.inv.hosts[h].name)
    {
        m.remove(name);
    }
}

pub(crate) fn register(s: &Shared, h: usize, task: &Task, result: Json) {
    if let Some(name) = &task.register {
        if task.no_log {
            for k in ["stdout", "stderr"] {
                if let Some(v) = result
                    .get(k)
                    .and_then(Json::as_str)
                    .filter(|v| *v != KNOWN_AFTER_APPLY)
                {
                    s.report(Event::Secret(v.to_string()));
                }
            }
        }
        s.hostvars
            .lock()
            .unwrap()
            .entry(s.inv.hosts[h].name.clone())
            .or_default()
            .insert(name.clone(), result);
    }
}
