//! `blockinfile`: a block of lines between marker lines, kept in one piece.

use serde::Deserialize;

use super::file_edit::{Wanted, converge, join_lines, missing, split_lines};
use super::{Answers, Decision, Doc, Mode, Module, Presence, Probes};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockInFile {
    pub path: String,
    #[serde(default)]
    pub block: String,
    #[serde(default = "default_marker")]
    pub marker: String,
    #[serde(default)]
    pub state: Presence,
    #[serde(default)]
    pub create: bool,
    pub mode: Option<Mode>,
}

fn default_marker() -> String {
    "# {mark} GANTRY MANAGED BLOCK".into()
}

impl Module for BlockInFile {
    const NAME: &'static str = "blockinfile";
    const DOC: Doc = Doc {
        summary: "a block of lines between marker lines: replaced in place, or appended; the rest of the file is kept",
        params: &[
            ("path", "the file on the host"),
            ("block", "the lines between the markers"),
            ("marker", "the marker line, `{mark}` becoming BEGIN and END (default `# {mark} GANTRY MANAGED BLOCK`)"),
            ("state", "`present` (default) or `absent`"),
            ("create", "create the file when it is missing (default false)"),
            ("mode", "octal, like \"0644\""),
        ],
        example: "- name: cluster hosts\n  blockinfile:\n    path: /etc/hosts\n    block: \"10.0.0.11 master1\\n\"\n",
    };

    fn validate(&self) -> Result<(), String> {
        if !self.marker.contains("{mark}") {
            return Err(format!(
                "blockinfile.marker: {:?} must hold {{mark}}, or the begin and end lines are the same",
                self.marker
            ));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().file("path", &self.path))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let cur = a.file("path")?;
        if let Some(d) = missing(&self.path, &cur, self.create, self.state == Presence::Absent) {
            return d;
        }
        let begin = self.marker.replace("{mark}", "BEGIN");
        let end = self.marker.replace("{mark}", "END");
        let mut lines = split_lines(&cur.content);
        let b = lines.iter().position(|l| *l == begin);
        let e = b.and_then(|b| lines[b..].iter().position(|l| *l == end).map(|e| e + b));
        let mut block = vec![begin.clone()];
        block.extend(split_lines(&self.block));
        block.push(end.clone());
        match (self.state.clone(), b, e) {
            (Presence::Present, Some(b), Some(e)) => {
                lines.splice(b..=e, block);
            }
            (Presence::Present, _, _) => lines.extend(block),
            (Presence::Absent, Some(b), Some(e)) => {
                lines.drain(b..=e);
            }
            (Presence::Absent, _, _) => {}
        }
        converge(&self.path, &cur, Wanted::content(&join_lines(&lines), self.mode))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Action;
    use crate::modules::testing::{change, decide, file, module, unchanged};

    #[test]
    fn blockinfile_is_idempotent_and_keeps_other_lines() {
        let m: BlockInFile = module(json!({"path": "/etc/hosts", "block": "1.1.1.1 a\n"}));
        let d = change(decide(&m, vec![file("644", "127.0.0.1 localhost\n")]).unwrap());
        let Action::Write { content, .. } = &d.actions()[0] else {
            panic!()
        };
        assert_eq!(
            content,
            "127.0.0.1 localhost\n# BEGIN GANTRY MANAGED BLOCK\n1.1.1.1 a\n# END GANTRY MANAGED BLOCK\n"
        );
        unchanged(decide(&m, vec![file("644", content)]).unwrap());
        let m2: BlockInFile = module(json!({"path": "/etc/hosts", "block": "2.2.2.2 b\n"}));
        let d = change(decide(&m2, vec![file("644", &format!("{content}tail\n"))]).unwrap());
        let Action::Write { content, .. } = &d.actions()[0] else {
            panic!()
        };
        assert_eq!(
            content,
            "127.0.0.1 localhost\n# BEGIN GANTRY MANAGED BLOCK\n2.2.2.2 b\n# END GANTRY MANAGED BLOCK\ntail\n"
        );
    }
}
