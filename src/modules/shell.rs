//! `shell`: a script run by the host's shell, as written: you write the
//! quoting. It runs in a subshell, so its `exit`, `cd` and traps stay there.

use serde::Deserialize;

use super::run::Guards;
use super::{Answers, Decision, Doc, Module, Probes};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shell {
    /// The script.
    pub cmd: String,
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub chdir: Option<String>,
    pub stdin: Option<String>,
    pub changed_when: Option<bool>,
}

impl Shell {
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

impl Module for Shell {
    const NAME: &'static str = "shell";
    const DOC: Doc = Doc {
        summary: "a script run by `sh -c` as written: you write the quoting",
        params: &[
            ("cmd", "the script"),
            ("creates", "skip when this path exists"),
            ("removes", "run only when this path exists"),
            ("chdir", "run in this directory"),
            ("stdin", "text for its stdin (secrets go here)"),
            ("changed_when", "false: a read-only script, reported ok"),
        ],
        example: "- name: a marker file\n  shell:\n    cmd: \"date > /root/prepared\"\n    creates: /root/prepared\n",
    };

    fn probes(&self) -> Result<Probes, String> {
        self.guards().probes()
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        self.guards().decide(a, None, &self.cmd)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, refused, unchanged};
    use crate::modules::{Action, Touches};

    #[test]
    fn shell_runs_its_script_as_written_unless_created() {
        let m: Shell = module(json!({"cmd": "echo a | tr a b > /tmp/x", "creates": "/tmp/x"}));
        assert_eq!(
            m.probes().unwrap(),
            Probes::new().script("creates", "test -e /tmp/x")
        );
        let d = change(decide(&m, vec![out(1, "")]).unwrap());
        assert_eq!(d.reason, "not yet done");
        assert_eq!(
            d.actions(),
            [Action::Run {
                script: "echo a | tr a b > /tmp/x".into(),
                show: "echo a | tr a b > /tmp/x".into(),
                stdin: None,
                touches: Touches::All,
                own: false
            }]
        );
        assert_eq!(unchanged(decide(&m, vec![out(0, "")]).unwrap()), "/tmp/x exists");
        assert_eq!(
            refused::<Shell>(json!({"argv": ["ls"]})),
            "shell.argv: unknown field `argv`, expected one of `cmd`, `creates`, `removes`, `chdir`, `stdin`, `changed_when`"
        );
    }
}
