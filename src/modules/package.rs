//! `package`: OS packages installed, from the distribution's repositories or,
//! offline, from a directory of .deb/.rpm files on the host.

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes, Touches};
use crate::remote::script::{command, quote};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: Vec<String>,
    /// Offline hosts: a directory on the host with the .deb or .rpm files.
    pub from_dir: Option<String>,
}

impl Module for Package {
    const NAME: &'static str = "package";
    const DOC: Doc = Doc {
        summary: "OS packages installed with dpkg/apt-get or rpm/dnf (yum). With `from_dir`, every package file of the directory is installed and no repository is consulted, so a dependency the directory lacks fails at once, named",
        params: &[
            ("name", "the packages, a list"),
            ("from_dir", "offline: a directory of .deb or .rpm files on the host"),
        ],
        example: "- name: install haproxy\n  package:\n    name: [haproxy]\n    from_dir: /root/yum/lb\n",
    };

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("package.name: name at least one package".into());
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        // First line: the package manager; then one line per package:
        // "<name> installed" or "<name> missing".
        let mut s = String::from(
            "if command -v dpkg-query >/dev/null; then echo deb; elif command -v rpm >/dev/null; then echo rpm; else echo none; fi\n",
        );
        for n in &self.name {
            let q = quote(n)?;
            s.push_str(&format!("if command -v dpkg-query >/dev/null; then dpkg-query -W -f='${{db:Status-Status}}' -- {q} 2>/dev/null | grep -qx installed; else rpm -q -- {q} >/dev/null 2>&1; fi && echo {q} installed || echo {q} missing\n"));
        }
        Ok(Probes::new().script("installed", s))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let mut lines = a.script("installed")?.out.lines();
        let manager = lines.next().unwrap_or("none");
        let missing: Vec<&str> = lines.filter_map(|l| l.strip_suffix(" missing")).collect();
        if missing.is_empty() {
            return Ok(Decision::unchanged(format!(
                "installed: {}",
                self.name.join(", ")
            )));
        }
        let script = match (manager, &self.from_dir) {
            // apt explains a failure (unmet dependencies) on stdout, which a
            // failed task does not show: it goes to stderr.
            ("deb", None) => format!(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -- {} >&2",
                command(&missing)?
            ),
            ("rpm", None) => format!(
                "if command -v dnf >/dev/null; then dnf install -y -q -- {m}; else yum install -y -q -- {m}; fi",
                m = command(&missing)?
            ),
            // Offline: install what the directory holds for these names,
            // with their dependencies from the same directory. No
            // repository is consulted (an air-gapped host's sources would
            // only time out), so a dependency the directory lacks is named
            // in apt's error at once. Not `--no-download`: apt 2.6 then
            // refuses local files ("Pathname to install is not absolute"),
            // as the lab showed.
            ("deb", Some(d)) => format!(
                "cd -- {} && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null -- ./*.deb >&2",
                quote(d)?
            ),
            ("rpm", Some(d)) => format!(
                "cd -- {} && if command -v dnf >/dev/null; then dnf install -y -q --disablerepo='*' -- ./*.rpm; else yum install -y -q --disablerepo='*' -- ./*.rpm; fi",
                quote(d)?
            ),
            _ => return Err("package: neither dpkg nor rpm found on this host".into()),
        };
        Ok(Decision::Change(Change::new(
            format!("not installed: {}", missing.join(", ")),
            Action::Run {
                show: script.clone(),
                script,
                stdin: None,
                touches: Touches::All,
                own: false,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, unchanged};

    #[test]
    fn package_installs_what_is_missing_online_or_from_a_directory() {
        let m: Package = module(json!({"name": ["haproxy", "keepalived"]}));
        let d = change(
            decide(&m, vec![out(0, "deb\nhaproxy installed\nkeepalived missing\n")]).unwrap(),
        );
        assert_eq!(d.reason, "not installed: keepalived");
        assert!(matches!(
            d.actions(),
            [Action::Run { script, touches: Touches::All, own: false, .. }]
                if script == "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -- keepalived >&2"
        ));
        assert_eq!(
            unchanged(decide(&m, vec![out(0, "deb\nhaproxy installed\nkeepalived installed\n")]).unwrap()),
            "installed: haproxy, keepalived"
        );
        let offline: Package = module(json!({"name": ["keepalived"], "from_dir": "/root/yum/lb"}));
        let d = change(decide(&offline, vec![out(0, "rpm\nkeepalived missing\n")]).unwrap());
        assert!(matches!(
            d.actions(),
            [Action::Run { script, .. }] if script == "cd -- /root/yum/lb && if command -v dnf >/dev/null; then dnf install -y -q --disablerepo='*' -- ./*.rpm; else yum install -y -q --disablerepo='*' -- ./*.rpm; fi"
        ));
        assert_eq!(
            decide(&offline, vec![out(0, "none\nkeepalived missing\n")]).unwrap_err(),
            "package: neither dpkg nor rpm found on this host"
        );
    }
}
