//! What `command` and `shell` share: the `creates`/`removes` guards, `chdir`,
//! `stdin` and `changed_when`, and the change that runs the command.

use serde::Deserialize;

use super::action::{live_only, own_program};
use super::{Action, Answers, Change, Decision, Probes, Touches};
use crate::remote::script::quote;

/// The keywords around the command itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub chdir: Option<String>,
    /// Sent on the command's stdin, never on a command line: for secrets.
    pub stdin: Option<String>,
    pub changed_when: Option<bool>,
}

impl Guards {
    pub fn probes(&self) -> Result<Probes, String> {
        let mut p = Probes::new();
        if let Some(c) = &self.creates {
            p = p.script("creates", format!("test -e {}", quote(c)?));
        }
        if let Some(r) = &self.removes {
            p = p.script("removes", format!("test -e {}", quote(r)?));
        }
        Ok(p)
    }

    /// The decision for a command: `words` when it is a program and its
    /// arguments (each quoted), else `script` as written (a shell script).
    pub fn decide(
        &self,
        a: &Answers,
        words: Option<&[String]>,
        script: &str,
    ) -> Result<Decision, String> {
        if let Some(c) = &self.creates
            && a.ok("creates")?
        {
            return Ok(Decision::unchanged(format!("{c} exists")));
        }
        if let Some(r) = &self.removes
            && !a.ok("removes")?
        {
            return Ok(Decision::unchanged(format!("{r} does not exist")));
        }
        let program = words.and_then(|w| w.first());
        // Any other command, and any shell script, could change anything.
        let touches = match program {
            Some(p) if live_only(p) => Touches::Live,
            _ => Touches::All,
        };
        let own =
            self.chdir.is_none() && self.stdin.is_none() && program.is_some_and(|p| own_program(p));
        let full = match &self.chdir {
            Some(d) => format!("cd -- {} && {script}", quote(d)?),
            None => script.to_string(),
        };
        let reason = if self.changed_when == Some(false) {
            "read-only command"
        } else if self.creates.is_some() {
            "not yet done"
        } else {
            "commands always run"
        };
        let mut c = Change::new(
            reason,
            Action::Run {
                script: full,
                show: script.to_string(),
                stdin: self.stdin.clone(),
                touches,
                own,
            },
        );
        c.read_only = self.changed_when == Some(false);
        c.unconditional = true;
        Ok(Decision::Change(c))
    }
}
