//! `service`: a systemd unit's state (started, stopped, restarted,
//! reloaded) and whether it starts at boot.

use serde::Deserialize;

use super::{Action, Answers, Decision, Doc, Module, Probes};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub state: Option<State>,
    pub enabled: Option<bool>,
}

impl Module for Service {
    const NAME: &'static str = "service";
    const DOC: Doc = Doc {
        summary: "a systemd unit started, stopped, restarted or reloaded, and enabled or not at boot",
        params: &[
            ("name", "the unit"),
            ("state", "`started`, `stopped`, `restarted` or `reloaded` (the last two on every run they are asked for: gate them with `when`)"),
            ("enabled", "true or false: starts at boot"),
        ],
        example: "- name: haproxy runs and starts at boot\n  service:\n    name: haproxy\n    state: started\n    enabled: true\n",
    };

    fn probes(&self) -> Result<Probes, String> {
        // ActiveState is what `is-active` prints, UnitFileState what
        // `is-enabled` prints, empty for a unit that does not exist. The
        // engine asks one systemctl for every unit of a round trip (a rerun
        // reads every service of every role).
        Ok(Probes::new().unit("state", &self.name))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let out = &a.script("state")?.out;
        let value = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let active = value("ActiveState").unwrap_or("unknown").to_string();
        let enabled = value("UnitFileState").unwrap_or("not-found").to_string();
        let mut actions = Vec::new();
        let mut why = Vec::new();
        let n = self.name.as_str();
        match self.state {
            Some(State::Started) if active != "active" => {
                why.push(format!("{n} is {active}"));
                actions.push(Action::run(&["systemctl", "start", "--", n])?);
            }
            Some(State::Stopped) if active == "active" => {
                why.push(format!("{n} is active"));
                actions.push(Action::run(&["systemctl", "stop", "--", n])?);
            }
            Some(State::Restarted) => {
                why.push("restart requested".into());
                actions.push(Action::run(&["systemctl", "restart", "--", n])?);
            }
            Some(State::Reloaded) => {
                why.push("reload requested".into());
                actions.push(Action::run(&["systemctl", "reload-or-restart", "--", n])?);
            }
            _ => {}
        }
        match self.enabled {
            Some(true) if enabled != "enabled" => {
                why.push(format!("{n} is {enabled}, not enabled"));
                actions.push(Action::run(&["systemctl", "enable", "--", n])?);
            }
            Some(false) if enabled == "enabled" => {
                why.push(format!("{n} is enabled"));
                actions.push(Action::run(&["systemctl", "disable", "--", n])?);
            }
            _ => {}
        }
        Ok(Decision::from_actions(
            &why,
            actions,
            None,
            format!("{n} is {active}, {enabled}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, unchanged};

    #[test]
    fn service_starts_and_enables() {
        let m: Service = module(json!({"name": "haproxy", "state": "started", "enabled": true}));
        let d = change(decide(&m, vec![out(0, "ActiveState=inactive\nUnitFileState=disabled\n")]).unwrap());
        assert_eq!(d.reason, "haproxy is inactive, haproxy is disabled, not enabled");
        assert_eq!(
            d.actions(),
            [
                Action::run(&["systemctl", "start", "--", "haproxy"]).unwrap(),
                Action::run(&["systemctl", "enable", "--", "haproxy"]).unwrap()
            ]
        );
        unchanged(decide(&m, vec![out(0, "ActiveState=active\nUnitFileState=enabled\n")]).unwrap());
        // A unit that does not exist (systemd prints an empty UnitFileState).
        let d = change(decide(&m, vec![out(0, "ActiveState=inactive\nUnitFileState=\n")]).unwrap());
        assert_eq!(d.reason, "haproxy is inactive, haproxy is not-found, not enabled");
    }

    #[test]
    fn service_restarts_reloads_and_stops() {
        let decide_for = |state: &str, active: &str| {
            let m: Service = module(json!({"name": "keepalived", "state": state}));
            decide(&m, vec![out(0, &format!("ActiveState={active}\nUnitFileState=enabled\n"))]).unwrap()
        };
        // restarted and reloaded act on every run they are asked for (the
        // roles ask only when the config changed).
        let d = change(decide_for("restarted", "active"));
        assert_eq!(
            (d.reason.as_str(), d.actions()),
            (
                "restart requested",
                &[Action::run(&["systemctl", "restart", "--", "keepalived"]).unwrap()][..]
            )
        );
        let d = change(decide_for("reloaded", "active"));
        assert_eq!(
            d.actions(),
            [Action::run(&["systemctl", "reload-or-restart", "--", "keepalived"]).unwrap()]
        );
        let d = change(decide_for("stopped", "active"));
        assert_eq!(
            d.actions(),
            [Action::run(&["systemctl", "stop", "--", "keepalived"]).unwrap()]
        );
        assert_eq!(
            unchanged(decide_for("stopped", "inactive")),
            "keepalived is inactive, enabled"
        );
        let m: Service = module(json!({"name": "keepalived", "enabled": false}));
        let d = change(decide(&m, vec![out(0, "ActiveState=active\nUnitFileState=enabled\n")]).unwrap());
        assert_eq!(
            d.actions(),
            [Action::run(&["systemctl", "disable", "--", "keepalived"]).unwrap()]
        );
    }
}
