//! `sysctl`: kernel parameters set live. Every key is read in one probe and
//! only those that differ are written, in one `sysctl -w`. (Persisting them
//! is a file's job: the sysctl role writes one with `template`.)

use serde::Deserialize;
use serde_json::Value as Json;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes};
use crate::facts::kernel;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    pub name: Option<String>,
    pub value: Option<Json>,
    /// gantry's batch form: many keys read and set in one round trip.
    #[serde(default)]
    pub values: serde_json::Map<String, Json>,
}

impl Sysctl {
    /// Every key: `values`, and `name` among them when given.
    pub fn keys(&self) -> serde_json::Map<String, Json> {
        let mut m = self.values.clone();
        if let (Some(n), Some(v)) = (&self.name, &self.value) {
            m.insert(n.clone(), v.clone());
        }
        m
    }
}

fn json_scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn norm_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Module for Sysctl {
    const NAME: &'static str = "sysctl";
    const DOC: Doc = Doc {
        summary: "kernel parameters set live: every key read in one probe, only those that differ written",
        params: &[
            ("name", "one key, with `value`"),
            ("value", "its value"),
            ("values", "many keys at once: {key: value}"),
        ],
        example: "- name: forwarding on\n  sysctl:\n    values: { net.ipv4.ip_forward: 1, net.core.somaxconn: 65536 }\n",
    };

    fn validate(&self) -> Result<(), String> {
        if self.name.is_some() != self.value.is_some() {
            return Err("sysctl: `name` needs `value`".into());
        }
        for k in self.keys().keys() {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
                || k.contains("..")
            {
                return Err(format!("sysctl: {k:?} is not a sysctl key"));
            }
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        let keys = self.keys();
        Ok(Probes::new().script(
            "values",
            kernel::sysctl_snippet(keys.keys().map(String::as_str))?,
        ))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let keys = self.keys();
        let live = kernel::sysctl_values(&a.script("values")?.out, keys.keys().map(String::as_str));
        let mut set = Vec::new();
        let mut shown = Vec::new();
        for ((k, have), v) in live.into_iter().zip(keys.values()) {
            let want = json_scalar(v);
            let Some(have) = have else {
                return Err(format!(
                    "sysctl {k} does not exist on this host (is its kernel module loaded?)"
                ));
            };
            if norm_ws(&have) != norm_ws(&want) {
                shown.push(format!("{k}: {} -> {}", norm_ws(&have), norm_ws(&want)));
                set.push(format!("{k}={want}"));
            }
        }
        if set.is_empty() {
            return Ok(Decision::unchanged(format!(
                "{} sysctl key(s) already set",
                keys.len()
            )));
        }
        let mut argv = vec!["sysctl", "-w"];
        argv.extend(set.iter().map(String::as_str));
        Ok(Decision::Change(
            Change::new(
                format!("{} of {} key(s) differ", set.len(), keys.len()),
                Action::run(&argv)?,
            )
            .with_diff(Some(shown.iter().map(|s| format!("  {s}\n")).collect())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, refused, unchanged};

    #[test]
    fn sysctl_sets_only_what_differs() {
        let m: Sysctl =
            module(json!({"values": {"net.core.somaxconn": 65536, "net.ipv4.ip_forward": 1}}));
        let d = change(decide(&m, vec![out(0, "/proc/sys/net/core/somaxconn:4096\n/proc/sys/net/ipv4/ip_forward:1\n")]).unwrap());
        assert_eq!(d.reason, "1 of 2 key(s) differ");
        assert_eq!(
            d.actions(),
            vec![Action::run(&["sysctl", "-w", "net.core.somaxconn=65536"]).unwrap()]
        );
        unchanged(decide(&m, vec![out(0, "/proc/sys/net/core/somaxconn:65536\n/proc/sys/net/ipv4/ip_forward:1\n")]).unwrap());
        let e = decide(&m, vec![out(0, "/proc/sys/net/ipv4/ip_forward:1\n")]).unwrap_err();
        assert!(e.contains("net.core.somaxconn does not exist"), "{e}");
        // Multi-value keys compare by words, as the kernel prints tabs.
        let m: Sysctl = module(json!({"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}));
        unchanged(decide(&m, vec![out(0, "/proc/sys/net/ipv4/ip_local_port_range:1024\t65000\n")]).unwrap());
    }

    #[test]
    fn sysctl_refuses_keys_that_are_paths() {
        for key in ["../../etc/passwd", "net/../../x", "", "a b"] {
            assert_eq!(
                refused::<Sysctl>(json!({"name": key, "value": 1})),
                format!("sysctl: {key:?} is not a sysctl key")
            );
        }
        let _: Sysctl = module(json!({"name": "net.ipv4.ip_forward", "value": 1}));
    }
}
