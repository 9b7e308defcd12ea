//! `command`: a program and its arguments, each shell-quoted, so nothing in
//! a value is expanded; `cmd` is split into words as a shell would, then
//! quoted the same way.

use serde::Deserialize;

use super::run::Guards;
use super::{Answers, Decision, Doc, Module, Probes};
use crate::remote::script::command;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The argument vector, each quoted.
    pub argv: Option<Vec<String>>,
    /// Split into words like a shell would, each then quoted.
    pub cmd: Option<String>,
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub chdir: Option<String>,
    pub stdin: Option<String>,
    pub changed_when: Option<bool>,
}

impl Command {
    fn words(&self) -> Result<Vec<String>, String> {
        match (&self.argv, &self.cmd) {
            (Some(argv), _) => Ok(argv.clone()),
            // `cmd`: split as a shell would, then each word quoted, so no
            // expansion, pipe or `;` takes effect.
            (None, Some(cmd)) => {
                shlex::split(cmd).ok_or_else(|| format!("cannot split {cmd:?} into words"))
            }
            (None, None) => Err("command: give exactly one of `argv` and `cmd`".into()),
        }
    }

    fn guards(&self) -> Guards {
        Guards {
            creates: self.creates.clone(),
            removes: self.removes.clone(),
            chdir: self.chdir.clone(),
            stdin: self.stdin.clone(),
            changed_when: self.changed_when,
        }
    }
}

impl Module for Command {
    const NAME: &'static str = "command";
    const DOC: Doc = Doc {
        summary: "a program and its arguments, every word shell-quoted: nothing is expanded",
        params: &[
            ("argv", "the program and its arguments, a list"),
            ("cmd", "or a string, split into words as a shell would, each then quoted"),
            ("creates", "skip when this path exists"),
            ("removes", "run only when this path exists"),
            ("chdir", "run in this directory"),
            ("stdin", "text for its stdin (secrets go here, never in argv)"),
            ("changed_when", "false: a read-only command, reported ok"),
        ],
        example: "- name: reload kernel parameters\n  command:\n    argv: [sysctl, --system]\n",
    };

    fn validate(&self) -> Result<(), String> {
        if self.argv.is_some() == self.cmd.is_some() {
            return Err("command: give exactly one of `argv` and `cmd`".into());
        }
        let words = self.words()?;
        if words.is_empty() {
            return Err("command: no program to run".into());
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        self.guards().probes()
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let words = self.words()?;
        let line = command(&words)?;
        self.guards().decide(a, Some(&words), &line)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, unchanged};
    use crate::modules::{Action, Touches};

    #[test]
    fn command_quotes_argv_and_honours_creates() {
        let m: Command = module(json!({"argv": ["touch", "a;touch pwned"], "creates": "/x"}));
        unchanged(decide(&m, vec![out(0, "")]).unwrap());
        let d = change(decide(&m, vec![out(1, "")]).unwrap());
        assert!(
            matches!(&d.actions()[0], Action::Run { script, .. } if script == "touch 'a;touch pwned'")
        );
        // `command` with a string is split into words, never given to a shell.
        let m: Command = module(json!({"cmd": "echo $(reboot) ; id"}));
        let d = change(decide(&m, vec![]).unwrap());
        assert!(
            matches!(&d.actions()[0], Action::Run { script, .. } if script == "echo '$(reboot)' ';' id"),
            "{:?}",
            d.actions()
        );
        // A program that changes only live kernel state keeps file answers
        // good; anything else, and any shell script, may change anything.
        let touches = |v: serde_json::Value| {
            let m: Command = module(v);
            change(decide(&m, vec![]).unwrap()).actions()[0].touches()
        };
        assert_eq!(
            touches(json!({"argv": ["sysctl", "-p", "/etc/sysctl.d/k8s.conf"]})),
            Touches::Live
        );
        assert_eq!(
            touches(json!({"cmd": "nft -f /etc/nftables.conf"})),
            Touches::Live
        );
        assert_eq!(
            touches(json!({"argv": ["systemctl", "enable", "kubelet"]})),
            Touches::All
        );
        let sh: crate::modules::shell::Shell = module(json!({"cmd": "sysctl -p; rm -rf /etc/x"}));
        assert_eq!(
            change(decide(&sh, vec![]).unwrap()).actions()[0].touches(),
            Touches::All
        );
    }
}
