//! `replace`: every match of a regexp in a file, replaced.

use regex::Regex;
use serde::Deserialize;

use super::file_edit::{Wanted, converge};
use super::{Answers, Decision, Doc, Module, Probes};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    pub path: String,
    pub regexp: String,
    #[serde(default)]
    pub replace: String,
}

impl Replace {
    fn regex(&self) -> Result<Regex, String> {
        super::regex(&format!("(?m){}", self.regexp)).map_err(|e| format!("replace.regexp: {e}"))
    }
}

impl Module for Replace {
    const NAME: &'static str = "replace";
    const DOC: Doc = Doc {
        summary: "every match of a regexp in a file replaced, in multi-line mode; groups are `${1}` (Rust regex), not `\\1`",
        params: &[
            ("path", "the file on the host"),
            ("regexp", "what to replace (Rust regex; `^` and `$` match at line ends)"),
            ("replace", "the replacement, `${1}` for a group (default: nothing)"),
        ],
        example: "- name: swap lines commented out\n  replace:\n    path: /etc/fstab\n    regexp: '^([^#\\s]\\S*\\s+\\S+\\s+swap\\s.*)$'\n    replace: '# ${1}'\n",
    };

    fn validate(&self) -> Result<(), String> {
        self.regex().map(|_| ())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().file("path", &self.path))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let cur = a.file("path")?;
        if !cur.exists {
            return Err(format!("{} does not exist", self.path));
        }
        let new = self
            .regex()?
            .replace_all(&cur.content, self.replace.as_str())
            .into_owned();
        converge(&self.path, &cur, Wanted::content(&new, None))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Action;
    use crate::modules::testing::{change, decide, file, module, unchanged};

    #[test]
    fn replace_comments_out_swap_once() {
        let m: Replace = module(
            json!({"path": "/etc/fstab", "regexp": "^([^#\\s]\\S*\\s+\\S+\\s+swap\\s.*)$", "replace": "# ${1}"}),
        );
        let fstab = "UUID=1 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n";
        let d = change(decide(&m, vec![file("644", fstab)]).unwrap());
        let Action::Write { content, .. } = &d.actions()[0] else {
            panic!()
        };
        assert_eq!(
            content,
            "UUID=1 / ext4 defaults 0 1\n# /swap.img none swap sw 0 0\n"
        );
        unchanged(decide(&m, vec![file("644", content)]).unwrap());
    }
}
