//! `package`: OS packages installed, from the distribution's repositories or,
//! offline, from a directory of .deb/.rpm files on the host.

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes};
use crate::remote::script::{command, quote};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: Vec<String>,
    /// Offline hosts: a directory on the host with the .deb or .rpm files.
    pub from_dir: Option<String>,
}

/// Prints the host's package manager (`deb`, `rpm` or `none`) and leaves it
/// in `$v`: by the OS family that /etc/os-release names in ID and ID_LIKE,
/// read with builtins; for an OS of neither family, by the tool there is.
const MANAGER: &str = "v=; while IFS='=' read -r k f; do case $k in ID|ID_LIKE) v=\"$v $f\";; esac; done < /etc/os-release 2>/dev/null
case $v in *rhel*|*fedora*|*centos*|*suse*) v=rpm;; *debian*|*ubuntu*) v=deb;; *) if command -v dpkg-query >/dev/null; then v=deb; elif command -v rpm >/dev/null; then v=rpm; else v=none; fi;; esac
echo $v
";

impl Module for Package {
    const NAME: &'static str = "package";
    const DOC: Doc = Doc {
        summary: "OS packages installed with dpkg/apt-get or rpm/dnf (yum). With `from_dir`, the named packages and what they need are installed from that directory's files (nothing else it holds), and no repository is consulted, so a dependency the directory lacks fails at once, named",
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
        // "<name> installed" or "<name> missing". The manager is the OS
        // family's, from os-release's ID and ID_LIKE (read with builtins):
        // a RHEL host that also carries dpkg (or a Debian one with rpm, for
        // alien) still gets its own. Only an OS of neither family is judged
        // by which tool is there.
        let mut s = String::from(MANAGER);
        for n in &self.name {
            let q = quote(n)?;
            s.push_str(&format!("case $v in deb*) dpkg-query -W -f='${{db:Status-Status}}' -- {q} 2>/dev/null | grep -qx installed;; *) rpm -q -- {q} >/dev/null 2>&1;; esac && echo {q} installed || {{ echo {q} missing; v=$v-; }}\n"));
        }
        // Offline, and something is missing: what each package file of the
        // directory is, provides and needs, for `decide` to pick the named
        // packages and what they need, and nothing else.
        if let Some(d) = &self.from_dir {
            let d = quote(d)?;
            s.push_str(&format!(
                "case $v in *-) for f in {d}/*.deb {d}/*.rpm; do [ -f \"$f\" ] || continue; printf 'File: %s\\n' \"$f\"; case $f in *.deb) dpkg-deb -f \"$f\" Package Provides Depends Pre-Depends;; *) rpm -qp --qf 'Package: %{{NAME}}\\n' \"$f\"; rpm -qp --provides \"$f\" | sed 's/^/Provides: /'; rpm -qp --requires \"$f\" | sed 's/^/Depends: /';; esac; done;; esac\n"
            ));
        }
        s.push_str("true\n");
        Ok(Probes::new().script("installed", s))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let answer = &a.script("installed")?.out;
        let mut lines = answer.lines();
        let manager = lines.next().unwrap_or("none");
        let missing: Vec<&str> = answer
            .lines()
            .skip(1)
            .take(self.name.len())
            .filter_map(|l| l.strip_suffix(" missing"))
            .collect();
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
            // Offline: the files of the named packages and of what they
            // need from the same directory; nothing else the directory
            // holds. No repository is consulted (an air-gapped host's
            // sources would only time out), so a dependency the directory
            // lacks is named in apt's or dnf's error at once. Not
            // `--no-download`: apt 2.6 then refuses local files ("Pathname
            // to install is not absolute"), as the lab showed.
            (m @ ("deb" | "rpm"), Some(d)) => {
                let files = offline_files(d, &missing, answer)?;
                if m == "deb" {
                    format!(
                        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null -- {} >&2",
                        command(&files)?
                    )
                } else {
                    format!(
                        "if command -v dnf >/dev/null; then dnf install -y -q --disablerepo='*' -- {f}; else yum install -y -q --disablerepo='*' -- {f}; fi",
                        f = command(&files)?
                    )
                }
            }
            _ => return Err("package: neither dpkg nor rpm found on this host".into()),
        };
        Ok(Decision::Change(Change::new(
            format!("not installed: {}", missing.join(", ")),
            Action::script(script.clone(), script),
        )))
    }
}

/// One package file of an offline directory, as the probe describes it.
#[derive(Debug, Default)]
struct PackageFile {
    path: String,
    name: String,
    /// Its name and what it provides (capabilities, virtual packages).
    provides: Vec<String>,
    /// Each dependency: its alternatives, by name.
    depends: Vec<Vec<String>>,
}

/// The files to install for `wanted` from the directory `dir`: each named
/// package's file, then, transitively, for each dependency the first of its
/// alternatives that a file of the directory provides. A dependency no
/// file provides is left to the package manager (installed already, or its
/// error names it).
fn offline_files(dir: &str, wanted: &[&str], answer: &str) -> Result<Vec<String>, String> {
    let mut files: Vec<PackageFile> = Vec::new();
    for l in answer.lines() {
        let Some((k, v)) = l.split_once(": ") else {
            continue;
        };
        match (k, files.last_mut()) {
            ("File", _) => files.push(PackageFile {
                path: v.to_string(),
                ..Default::default()
            }),
            ("Package", Some(f)) => {
                f.name = v.trim().to_string();
                f.provides.push(f.name.clone());
            }
            ("Provides", Some(f)) => f.provides.extend(
                v.split(',')
                    .filter_map(|p| p.split_whitespace().next())
                    .map(|p| p.split(':').next().unwrap_or(p).to_string()),
            ),
            ("Depends" | "Pre-Depends", Some(f)) => {
                for dep in v.split(',') {
                    let alts: Vec<String> = dep
                        .split('|')
                        .filter_map(|a| a.split_whitespace().next())
                        .map(|a| a.split(':').next().unwrap_or(a).to_string())
                        .filter(|a| !a.is_empty() && !a.starts_with("rpmlib("))
                        .collect();
                    if !alts.is_empty() {
                        f.depends.push(alts);
                    }
                }
            }
            _ => {}
        }
    }
    let by_cap = |cap: &str| files.iter().position(|f| f.provides.iter().any(|p| p == cap));
    let mut chosen: Vec<usize> = Vec::new();
    let mut queue: Vec<usize> = Vec::new();
    for w in wanted {
        match files.iter().position(|f| f.name == *w) {
            Some(i) => queue.push(i),
            None => {
                return Err(format!(
                    "package: {w} is not in {dir} (its files: {})",
                    if files.is_empty() {
                        "none".to_string()
                    } else {
                        files
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            }
        }
    }
    while let Some(i) = queue.pop() {
        if chosen.contains(&i) {
            continue;
        }
        chosen.push(i);
        for alts in &files[i].depends {
            if let Some(j) = alts.iter().find_map(|a| by_cap(a)) {
                queue.push(j);
            }
        }
    }
    chosen.sort();
    Ok(chosen.into_iter().map(|i| files[i].path.clone()).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Touches;
    use crate::modules::testing::{change, decide, module, out, unchanged};

    /// The manager is the OS family's: RHEL's rpm even where dpkg is there
    /// too, Debian's dpkg, and for any other OS the tool that is there.
    #[test]
    fn the_package_manager_is_the_os_familys() {
        let dir = tempfile::tempdir().unwrap();
        let run = |release: &str| {
            let f = dir.path().join("os-release");
            std::fs::write(&f, release).unwrap();
            let script = MANAGER.replace("/etc/os-release", f.to_str().unwrap());
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("{script}echo \"[$v]\"")])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let rhel = "NAME=\"Red Hat Enterprise Linux\"\nVERSION_ID=\"8.9\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\n";
        assert_eq!(run(rhel), "rpm\n[rpm]\n");
        assert_eq!(run("ID=rocky\nID_LIKE=\"rhel centos fedora\"\n"), "rpm\n[rpm]\n");
        assert_eq!(run("ID=ubuntu\nID_LIKE=debian\n"), "deb\n[deb]\n");
        assert_eq!(run("ID=debian\n"), "deb\n[deb]\n");
        // Neither family: by the tool (this machine is Debian: dpkg).
        let other = run("ID=alpine\n");
        assert!(other == "deb\n[deb]\n" || other == "rpm\n[rpm]\n" || other == "none\n[none]\n", "{other}");
    }

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
        // What rpm says of the directory's files: keepalived needs
        // libnl3.so (from libnl3) and /bin/sh (installed); haproxy is there
        // too, and not needed.
        let dir = "rpm\nkeepalived missing\nFile: /root/yum/lb/haproxy.rpm\nPackage: haproxy\nProvides: haproxy = 2.4\nDepends: /bin/sh\nFile: /root/yum/lb/keepalived.rpm\nPackage: keepalived\nProvides: keepalived = 2.2\nDepends: libnl-3.so.200()(64bit)\nDepends: /bin/sh\nDepends: rpmlib(CompressedFileNames) <= 3.0.4-1\nFile: /root/yum/lb/libnl3.rpm\nPackage: libnl3\nProvides: libnl-3.so.200()(64bit)\nProvides: libnl3 = 3.7\n";
        let d = change(decide(&offline, vec![out(0, dir)]).unwrap());
        assert!(matches!(
            d.actions(),
            [Action::Run { script, .. }] if script == "if command -v dnf >/dev/null; then dnf install -y -q --disablerepo='*' -- /root/yum/lb/keepalived.rpm /root/yum/lb/libnl3.rpm; else yum install -y -q --disablerepo='*' -- /root/yum/lb/keepalived.rpm /root/yum/lb/libnl3.rpm; fi"
        ), "{:?}", d.actions());
        // Debian: alternatives, versions and architectures in Depends.
        let deb = "deb\nhello missing\nFile: /srv/p/hello.deb\nPackage: hello\nDepends: libfoo (>= 1.0) | libbar, libc6:any (>= 2.34)\nFile: /srv/p/bar.deb\nPackage: bar-impl\nProvides: libbar (= 1)\nFile: /srv/p/other.deb\nPackage: other\n";
        let m: Package = module(json!({"name": ["hello"], "from_dir": "/srv/p"}));
        let d = change(decide(&m, vec![out(0, deb)]).unwrap());
        assert!(matches!(
            d.actions(),
            [Action::Run { script, .. }] if script.ends_with("-- /srv/p/hello.deb /srv/p/bar.deb >&2")
        ), "{:?}", d.actions());
        // A named package the directory does not hold: said before anything runs.
        let m: Package = module(json!({"name": ["nginx"], "from_dir": "/srv/p"}));
        assert_eq!(
            decide(&m, vec![out(0, "deb\nnginx missing\nFile: /srv/p/other.deb\nPackage: other\n")]).unwrap_err(),
            "package: nginx is not in /srv/p (its files: other)"
        );
        assert_eq!(
            decide(&offline, vec![out(0, "none\nkeepalived missing\n")]).unwrap_err(),
            "package: neither dpkg nor rpm found on this host"
        );
    }
}
