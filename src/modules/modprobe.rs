//! `modprobe`: a kernel module loaded (or not), and kept across boots by a
//! file in /etc/modules-load.d when asked.

use serde::Deserialize;

use super::file_edit::{Wanted, converge};
use super::{Action, Answers, Decision, Doc, Mode, Module, Presence, Probes};
use crate::facts::kernel;

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Persistent {
    Present,
    Absent,
    #[default]
    Disabled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modprobe {
    pub name: String,
    #[serde(default)]
    pub state: Presence,
    #[serde(default)]
    pub persistent: Persistent,
}

impl Modprobe {
    fn conf(&self) -> String {
        format!("/etc/modules-load.d/{}.conf", self.name)
    }
}

impl Module for Modprobe {
    const NAME: &'static str = "modprobe";
    const DOC: Doc = Doc {
        summary: "a kernel module loaded or unloaded, and kept across boots in /etc/modules-load.d",
        params: &[
            ("name", "the module, like br_netfilter"),
            ("state", "`present` (default: loaded) or `absent`"),
            ("persistent", "`present` writes /etc/modules-load.d/NAME.conf, `absent` removes it, `disabled` (default) leaves it"),
        ],
        example: "- name: bridge netfilter\n  modprobe:\n    name: br_netfilter\n    persistent: present\n",
    };

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            return Err(format!("modprobe: {:?} is not a module name", self.name));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new()
            .script("loaded", kernel::module_test(&self.name)?)
            .file("conf", self.conf()))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let loaded = a.ok("loaded")?;
        let conf = a.file("conf")?;
        let path = self.conf();
        let mut actions = Vec::new();
        let mut why = Vec::new();
        match (&self.state, loaded) {
            (Presence::Present, false) => {
                why.push(format!("module {} is not loaded", self.name));
                actions.push(Action::run(&["modprobe", "--", &self.name])?);
            }
            (Presence::Absent, true) => {
                why.push(format!("module {} is loaded", self.name));
                actions.push(Action::run(&["modprobe", "-r", "--", &self.name])?);
            }
            _ => {}
        }
        let mut diff = None;
        let line = format!("{}\n", self.name);
        match self.persistent {
            Persistent::Present if conf.content != line => {
                if let Decision::Change(c) =
                    converge(&path, &conf, Wanted::content(&line, Some(Mode(0o644))))?
                {
                    why.push(c.reason.clone());
                    diff = c.diff.clone();
                    actions.extend(c.into_actions());
                }
            }
            Persistent::Absent if conf.exists => {
                why.push(format!("{path} exists"));
                actions.push(Action::run(&["rm", "-f", "--", &path])?);
            }
            _ => {}
        }
        Ok(Decision::from_actions(
            &why,
            actions,
            diff,
            format!("module {} is as wanted", self.name),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{absent, change, decide, file, module, out, unchanged};

    #[test]
    fn modprobe_loads_and_persists() {
        let m: Modprobe = module(json!({"name": "br_netfilter", "persistent": "present"}));
        let d = change(decide(&m, vec![out(1, ""), absent()]).unwrap());
        assert_eq!(
            d.actions()[0],
            Action::run(&["modprobe", "--", "br_netfilter"]).unwrap()
        );
        assert!(
            matches!(&d.actions()[1], Action::Write { path, content, .. } if path == "/etc/modules-load.d/br_netfilter.conf" && content == "br_netfilter\n")
        );
        unchanged(decide(&m, vec![out(0, ""), file("644", "br_netfilter\n")]).unwrap());
    }
}
