//! `hostname`: the host's name, live and in /etc/hostname.

use serde::Deserialize;

use super::file_edit::unified_diff;
use super::{Action, Answers, Decision, Doc, Module, Probes};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hostname {
    pub name: String,
}

impl Module for Hostname {
    const NAME: &'static str = "hostname";
    const DOC: Doc = Doc {
        summary: "the host's name: /etc/hostname and the live name",
        params: &[("name", "the name, an RFC 1123 host name")],
        example: "- name: set the host name\n  hostname:\n    name: \"{{ inventory_hostname }}\"\n",
    };

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new()
            .script(
                "live",
                "{ IFS= read -r v < /proc/sys/kernel/hostname; } 2>/dev/null && printf '%s\\n' \"$v\" || hostname",
            )
            .file("etc", "/etc/hostname"))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let live = a.script("live")?.out.trim().to_string();
        let etc = a.file("etc")?;
        let mut actions = Vec::new();
        let mut why = Vec::new();
        let mut diff = None;
        if etc.content.trim() != self.name {
            why.push(format!("/etc/hostname says {:?}", etc.content.trim()));
            let content = format!("{}\n", self.name);
            diff = Some(unified_diff("/etc/hostname", &etc.content, &content));
            actions.push(Action::Write {
                path: "/etc/hostname".into(),
                content,
                mode: 0o644,
                owner: None,
                group: None,
                validate: None,
            });
        }
        if live != self.name {
            why.push(format!("live hostname is {live:?}"));
            actions.push(Action::run(&["hostname", "--", &self.name])?);
        }
        Ok(Decision::from_actions(
            &why,
            actions,
            diff,
            format!("hostname is {}", self.name),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, file, module, out, unchanged};

    #[test]
    fn hostname_sets_file_and_live_name() {
        let m: Hostname = module(json!({"name": "master1"}));
        let d = change(decide(&m, vec![out(0, "debian\n"), file("644", "debian\n")]).unwrap());
        assert_eq!(
            d.actions(),
            [
                Action::Write {
                    path: "/etc/hostname".into(),
                    content: "master1\n".into(),
                    mode: 0o644,
                    owner: None,
                    group: None,
                    validate: None
                },
                Action::run(&["hostname", "--", "master1"]).unwrap()
            ]
        );
        unchanged(decide(&m, vec![out(0, "master1\n"), file("644", "master1\n")]).unwrap());
    }
}
