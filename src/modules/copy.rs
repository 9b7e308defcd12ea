//! `copy`: one file's content, mode and owner, written atomically. The
//! content is given inline or comes from the role's `files/`; `validate`
//! runs a command on the candidate before it replaces the live file.

use serde::Deserialize;

use super::file_edit::{Wanted, converge};
use super::{Answers, Controller, Decision, Doc, Mode, Module, Probes, RoleFile};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    pub dest: String,
    pub content: Option<String>,
    pub src: Option<String>,
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// A command that checks the new file before it replaces the old one;
    /// `%s` is the temporary file (Ansible's `validate`).
    pub validate: Option<String>,
}

impl Copy {
    /// The validator's words, `%s` among them.
    pub fn validator(validate: &Option<String>) -> Result<Option<Vec<String>>, String> {
        let Some(v) = validate else {
            return Ok(None);
        };
        let argv =
            shlex::split(v).ok_or_else(|| format!("validate: cannot split {v:?} into words"))?;
        if !argv.iter().any(|w| w == "%s") {
            return Err(format!(
                "validate: {v:?} must name the candidate file as %s"
            ));
        }
        Ok(Some(argv))
    }
}

impl Module for Copy {
    const NAME: &'static str = "copy";
    const DOC: Doc = Doc {
        summary: "a file's content, mode and owner, written atomically (temp file, fsync, rename); `validate: \"haproxy -c -f %s\"` checks the candidate before it replaces the file",
        params: &[
            ("dest", "the path on the host"),
            ("content", "the text to write (or `src`)"),
            ("src", "a file in the role's files/ to write"),
            ("mode", "octal, like \"0644\"; a new file gets 0644, an existing one keeps its mode"),
            ("owner", "user name"),
            ("group", "group name"),
            ("validate", "a command run on the candidate, which it names as %s; a refusal keeps the live file"),
        ],
        example: "- name: kubelet extra args\n  copy:\n    dest: /etc/default/kubelet\n    content: \"KUBELET_EXTRA_ARGS=--max-pods=220\\n\"\n    mode: \"0644\"\n",
    };

    fn validate(&self) -> Result<(), String> {
        if self.content.is_some() == self.src.is_some() {
            return Err("copy: give exactly one of `content` and `src`".into());
        }
        Copy::validator(&self.validate).map(|_| ())
    }

    fn role_file(&self) -> Option<RoleFile<'_>> {
        self.src.as_deref().map(RoleFile::File)
    }

    fn prepare(mut self, cx: &dyn Controller) -> Result<super::AnyModule, String> {
        if let Some(src) = self.src.take() {
            self.content = Some(cx.role_file(&src)?);
        }
        Ok(self.into())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().file("dest", &self.dest))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let content = self
            .content
            .as_deref()
            .ok_or("internal: copy decided before its src was read")?;
        converge(
            &self.dest,
            &a.file("dest")?,
            Wanted {
                content,
                mode: self.mode,
                owner: &self.owner,
                group: &self.group,
                validate: Copy::validator(&self.validate)?,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Action;
    use crate::modules::testing::{absent, change, decide, file, module, refused, unchanged};

    #[test]
    fn copy_creates_updates_and_leaves_alone() {
        let m: Copy = module(json!({"dest": "/etc/x", "content": "a\n", "mode": "0600"}));
        assert_eq!(m.probes().unwrap(), Probes::new().file("dest", "/etc/x"));
        let d = change(decide(&m, vec![absent()]).unwrap());
        assert_eq!(d.reason, "/etc/x does not exist");
        assert_eq!(
            d.actions(),
            vec![Action::Write {
                path: "/etc/x".into(),
                content: "a\n".into(),
                mode: 0o600,
                owner: None,
                group: None,
                validate: None
            }]
        );
        let d = change(decide(&m, vec![file("600", "b\n")]).unwrap());
        assert_eq!(d.reason, "/etc/x content differs");
        assert!(d.diff.unwrap().contains("-b\n+a\n"));
        unchanged(decide(&m, vec![file("600", "a\n")]).unwrap());
        let d = change(decide(&m, vec![file("644", "a\n")]).unwrap());
        assert_eq!(d.reason, "/etc/x: mode 0644 -> 0600");
        assert_eq!(
            d.actions(),
            vec![Action::run(&["chmod", "600", "--", "/etc/x"]).unwrap()]
        );
    }

    #[test]
    fn copy_keeps_existing_mode_when_none_given() {
        let m: Copy = module(json!({"dest": "/etc/x", "content": "a\n"}));
        let d = change(decide(&m, vec![file("640", "old\n")]).unwrap());
        assert!(matches!(&d.actions()[0], Action::Write { mode: 0o640, .. }));
    }

    #[test]
    fn mode_must_be_octal() {
        let e = refused::<Copy>(json!({"dest": "/x", "content": "", "mode": "0999"}));
        assert_eq!(
            e,
            "copy.mode: mode \"0999\" is not octal digits like \"0644\""
        );
    }

    #[test]
    fn content_or_src_and_a_validator_that_names_the_candidate() {
        assert_eq!(
            refused::<Copy>(json!({"dest": "/x"})),
            "copy: give exactly one of `content` and `src`"
        );
        assert_eq!(
            refused::<Copy>(json!({"dest": "/x", "content": "", "validate": "haproxy -c -f /x"})),
            "validate: \"haproxy -c -f /x\" must name the candidate file as %s"
        );
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let m: Copy = module(json!({"dest": "/etc/x", "content": "a\n"}));
        let dir = crate::modules::testing::dir("755");
        assert_eq!(decide(&m, vec![dir]).unwrap_err(), "/etc/x is a directory");
    }
}
