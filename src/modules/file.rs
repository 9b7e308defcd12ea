//! `file`: a path's kind (file, directory, absent, touched) and its mode and
//! owner. It never writes content: that is `copy`'s.

use serde::Deserialize;

use super::file_edit::{Wanted, converge};
use super::{Action, Answers, Change, Decision, Doc, Mode, Module, Probes};

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    File,
    Directory,
    Absent,
    Touch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    #[serde(default)]
    pub state: State,
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Module for File {
    const NAME: &'static str = "file";
    const DOC: Doc = Doc {
        summary: "a path's kind and attributes: a directory made, a path removed, an empty file touched, or the mode and owner of a file that exists",
        params: &[
            ("path", "the path on the host"),
            ("state", "`file` (attributes only; the default), `directory`, `absent` or `touch`"),
            ("mode", "octal, like \"0755\""),
            ("owner", "user name"),
            ("group", "group name"),
        ],
        example: "- name: keepalived config directory\n  file:\n    path: /etc/keepalived\n    state: directory\n    mode: \"0755\"\n",
    };

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().file("path", &self.path))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let cur = a.file("path")?;
        let q = &self.path;
        Ok(match self.state {
            State::Absent if !cur.exists => Decision::unchanged(format!("{q} is absent")),
            State::Absent => Decision::Change(Change::new(
                format!("{q} exists"),
                Action::run(&["rm", "-rf", "--", q])?,
            )),
            State::Directory if cur.exists && !cur.is_dir => {
                return Err(format!("{q} exists and is not a directory"));
            }
            State::Directory if !cur.exists => {
                let mode = self.mode.map(|m| m.0).unwrap_or(0o755);
                let mut c = Change::new(
                    format!("directory {q} does not exist"),
                    Action::run(&["mkdir", "-p", "-m", &format!("{mode:o}"), "--", q])?,
                );
                if self.owner.is_some() || self.group.is_some() {
                    let spec = format!(
                        "{}:{}",
                        self.owner.as_deref().unwrap_or(""),
                        self.group.as_deref().unwrap_or("")
                    );
                    c = c.and(Action::run(&["chown", &spec, "--", q])?);
                }
                Decision::Change(c)
            }
            State::Touch if !cur.exists => {
                converge(q, &cur, Wanted { owner: &self.owner, group: &self.group, ..Wanted::content("", self.mode) })?
            }
            State::File if !cur.exists => {
                return Err(format!(
                    "{q} does not exist (state: file only changes attributes; use copy or state: touch)"
                ));
            }
            _ if cur.is_dir => match self.mode.filter(|m| m.0 != cur.mode) {
                Some(m) => Decision::Change(Change::new(
                    format!("{q}: mode {:04o} -> {m}", cur.mode),
                    Action::run(&["chmod", &format!("{:o}", m.0), "--", q])?,
                )),
                None => Decision::unchanged(format!("directory {q} exists")),
            },
            // Exists with the right kind: attributes only.
            _ => converge(
                q,
                &cur,
                Wanted {
                    owner: &self.owner,
                    group: &self.group,
                    ..Wanted::content(&cur.content, self.mode)
                },
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{absent, change, decide, dir, file, module, unchanged};

    #[test]
    fn file_makes_directories_removes_and_touches() {
        let m: File = module(
            json!({"path": "/etc/keepalived", "state": "directory", "owner": "root", "group": "adm"}),
        );
        let d = change(decide(&m, vec![absent()]).unwrap());
        assert_eq!(d.reason, "directory /etc/keepalived does not exist");
        assert_eq!(
            d.actions(),
            [
                Action::run(&["mkdir", "-p", "-m", "755", "--", "/etc/keepalived"]).unwrap(),
                Action::run(&["chown", "root:adm", "--", "/etc/keepalived"]).unwrap()
            ]
        );
        let m: File = module(json!({"path": "/srv/d", "state": "directory", "mode": "0700"}));
        unchanged(decide(&m, vec![dir("700")]).unwrap());
        let d = change(decide(&m, vec![dir("755")]).unwrap());
        assert_eq!(d.reason, "/srv/d: mode 0755 -> 0700");
        assert_eq!(
            d.actions(),
            [Action::run(&["chmod", "700", "--", "/srv/d"]).unwrap()]
        );
        assert_eq!(
            decide(&m, vec![file("644", "x")]).unwrap_err(),
            "/srv/d exists and is not a directory"
        );
        let gone: File = module(json!({"path": "/srv/old", "state": "absent"}));
        let d = change(decide(&gone, vec![file("644", "x")]).unwrap());
        assert_eq!(
            (d.reason.as_str(), d.actions()),
            (
                "/srv/old exists",
                &[Action::run(&["rm", "-rf", "--", "/srv/old"]).unwrap()][..]
            )
        );
        assert_eq!(
            unchanged(decide(&gone, vec![absent()]).unwrap()),
            "/srv/old is absent"
        );
        let touch: File = module(json!({"path": "/srv/t", "state": "touch", "mode": "0600"}));
        assert!(matches!(
            change(decide(&touch, vec![absent()]).unwrap()).actions(),
            [Action::Write { path, content, mode: 0o600, .. }] if path == "/srv/t" && content.is_empty()
        ));
        unchanged(decide(&touch, vec![file("600", "kept")]).unwrap());
        let attrs: File = module(json!({"path": "/srv/f", "mode": "0600"}));
        assert_eq!(
            decide(&attrs, vec![absent()]).unwrap_err(),
            "/srv/f does not exist (state: file only changes attributes; use copy or state: touch)"
        );
    }
}
