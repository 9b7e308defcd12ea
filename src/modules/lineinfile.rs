//! `lineinfile`: one line of a file, found by a regexp or by itself.

use serde::Deserialize;

use super::file_edit::{Wanted, converge, join_lines, missing, split_lines};
use super::{Answers, Decision, Doc, Mode, Module, Presence, Probes};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineInFile {
    pub path: String,
    pub line: Option<String>,
    pub regexp: Option<String>,
    #[serde(default)]
    pub state: Presence,
    #[serde(default)]
    pub create: bool,
    pub mode: Option<Mode>,
}

impl Module for LineInFile {
    const NAME: &'static str = "lineinfile";
    const DOC: Doc = Doc {
        summary: "one line of a file: replaces the last line the regexp matches, or appends it; `state: absent` removes every match",
        params: &[
            ("path", "the file on the host"),
            ("line", "the line wanted (needed for present)"),
            ("regexp", "finds the line to replace or remove (Rust regex); without it, the line itself"),
            ("state", "`present` (default) or `absent`"),
            ("create", "create the file when it is missing (default false)"),
            ("mode", "octal, like \"0644\""),
        ],
        example: "- name: no DNS lookups by sshd\n  lineinfile:\n    path: /etc/ssh/sshd_config\n    regexp: \"^#?UseDNS\"\n    line: UseDNS no\n",
    };

    fn validate(&self) -> Result<(), String> {
        if self.state == Presence::Present && self.line.is_none() {
            return Err("lineinfile: state=present needs `line`".into());
        }
        if let Some(r) = &self.regexp {
            super::regex(r).map_err(|e| format!("lineinfile.regexp: {e}"))?;
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
        let re = self.regexp.as_deref().map(super::regex).transpose()?;
        let mut lines = split_lines(&cur.content);
        let matches = |l: &str| match (&re, &self.line) {
            (Some(r), _) => r.is_match(l),
            (None, Some(line)) => l == line,
            (None, None) => false,
        };
        match self.state {
            Presence::Present => {
                let line = self.line.clone().unwrap_or_default();
                match lines.iter().rposition(|l| matches(l)) {
                    Some(i) => lines[i] = line,
                    None => lines.push(line),
                }
            }
            Presence::Absent => lines.retain(|l| !matches(l)),
        }
        converge(&self.path, &cur, Wanted::content(&join_lines(&lines), self.mode))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Action;
    use crate::modules::testing::{absent, change, decide, file, module, refused, unchanged};

    #[test]
    fn lineinfile_replaces_last_match_or_appends() {
        let m: LineInFile = module(json!({"path": "/f", "regexp": "^a=", "line": "a=2"}));
        let d = change(decide(&m, vec![file("644", "a=1\nb=1\n")]).unwrap());
        assert!(matches!(&d.actions()[0], Action::Write { content, .. } if content == "a=2\nb=1\n"));
        let d = change(decide(&m, vec![file("644", "b=1\n")]).unwrap());
        assert!(matches!(&d.actions()[0], Action::Write { content, .. } if content == "b=1\na=2\n"));
        unchanged(decide(&m, vec![file("644", "a=2\nb=1\n")]).unwrap());
        let e = decide(&m, vec![absent()]).unwrap_err();
        assert_eq!(e, "/f does not exist (set create: true to create it)");
    }

    #[test]
    fn a_regexp_that_does_not_compile_is_refused_before_any_host() {
        let e = refused::<LineInFile>(json!({"path": "/f", "regexp": "(", "line": "x"}));
        assert_eq!(e, "lineinfile.regexp: \"(\" does not compile: unclosed group");
    }
}
