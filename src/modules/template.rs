//! `template`: a role template rendered on the controller (minijinja, with
//! the task's variables), then written as `copy` writes it.

use serde::Deserialize;

use super::copy::Copy;
use super::{AnyModule, Answers, Controller, Decision, Doc, Mode, Module, Probes, RoleFile};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub src: String,
    pub dest: String,
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub validate: Option<String>,
}

impl Module for Template {
    const NAME: &'static str = "template";
    const DOC: Doc = Doc {
        summary: "a role template, rendered on the controller with the task's variables, then written as `copy`",
        params: &[
            ("src", "a file in the role's templates/"),
            ("dest", "the path on the host"),
            ("mode", "octal, like \"0644\""),
            ("owner", "user name"),
            ("group", "group name"),
            ("validate", "a command run on the candidate, which it names as %s"),
        ],
        example: "- name: haproxy configuration\n  template:\n    src: haproxy.cfg.j2\n    dest: /etc/haproxy/haproxy.cfg\n    mode: \"0644\"\n    validate: haproxy -c -f %s\n",
    };

    fn validate(&self) -> Result<(), String> {
        Copy::validator(&self.validate).map(|_| ())
    }

    fn role_file(&self) -> Option<RoleFile<'_>> {
        Some(RoleFile::Template(&self.src))
    }

    fn prepare(self, cx: &dyn Controller) -> Result<AnyModule, String> {
        Ok(AnyModule::Copy(Copy {
            content: Some(cx.render_template(&self.src)?),
            src: None,
            dest: self.dest,
            mode: self.mode,
            owner: self.owner,
            group: self.group,
            validate: self.validate,
        }))
    }

    // A template is a `copy` by the time its host is read (`prepare`).
    fn probes(&self) -> Result<Probes, String> {
        Err("internal: a template is read as the copy it renders into".into())
    }

    fn decide(&self, _: &Answers) -> Result<Decision, String> {
        Err("internal: a template is decided as the copy it renders into".into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Action;
    use crate::modules::testing::{change, decide, file, module, unchanged};

    struct Fixed;
    impl Controller for Fixed {
        fn render_template(&self, name: &str) -> Result<String, String> {
            assert_eq!(name, "haproxy.cfg.j2");
            Ok("global\n    daemon\n".into())
        }
        fn role_file(&self, name: &str) -> Result<String, String> {
            Err(format!("no file {name}"))
        }
        fn local_file(&self, path: &str) -> Result<std::path::PathBuf, String> {
            Err(format!("no file {path}"))
        }
    }

    /// The rendered text, mode and validator go into one write.
    #[test]
    fn template_writes_the_rendered_text_with_its_validator() {
        let t: Template = module(
            json!({"src": "haproxy.cfg.j2", "dest": "/etc/haproxy/haproxy.cfg", "mode": "0644", "validate": "haproxy -c -f %s"}),
        );
        let AnyModule::Copy(m) = t.prepare(&Fixed).unwrap() else {
            panic!("a template becomes a copy")
        };
        let d = change(decide(&m, vec![file("644", "global\n")]).unwrap());
        assert_eq!(d.reason, "/etc/haproxy/haproxy.cfg content differs");
        assert_eq!(
            d.actions(),
            [Action::Write {
                path: "/etc/haproxy/haproxy.cfg".into(),
                content: "global\n    daemon\n".into(),
                mode: 0o644,
                owner: None,
                group: None,
                validate: Some(vec!["haproxy".into(), "-c".into(), "-f".into(), "%s".into()])
            }]
        );
        unchanged(decide(&m, vec![file("644", "global\n    daemon\n")]).unwrap());
    }
}
