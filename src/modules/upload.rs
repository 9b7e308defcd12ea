//! `upload`: a large file from the controller (a bundle's artifact) put on
//! the host with a pinned sha256. The bytes stream over an SSH channel of
//! their own, never through a shell variable, so the controller's memory
//! stays flat whatever the file's size. The host writes them to a partial
//! file beside the destination, checks the sha256 there, and only then
//! renames it into place.
//!
//! - A host that already holds a file with that hash gets 0 bytes. The hash
//!   of what was put in place is remembered beside it (`.NAME.gantry-sha256`,
//!   with the file's size, inode and change time), so a rerun reads a line,
//!   not the file; any change to the file changes its change time, and it
//!   is hashed again.
//! - A transfer cut short keeps what arrived (`.NAME.gantry-part`); the
//!   next run sends only the rest. Bytes that arrive whole but hash wrong
//!   are removed, and nothing is put in place.
//! - The destination's directory must be root's and writable by no one
//!   else (gantry makes it 0755 when it is missing), and so must every
//!   directory above it, or be sticky: no local user can swap the partial
//!   file or move the directory away, and the file lands root-owned.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Action, Answers, Change, Controller, Decision, Doc, Mode, Module, Probes};
use crate::remote::script::quote;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The file on the controller; a relative path is taken from the
    /// inventory's directory.
    pub src: String,
    pub dest: String,
    pub sha256: String,
    pub mode: Option<Mode>,
    /// Filled by `prepare`: the file's absolute path and size.
    #[serde(skip)]
    pub local: Option<(PathBuf, u64)>,
}

/// The partial and the remembered-hash files beside `dest`.
pub fn beside(dest: &str) -> Result<(String, String, String), String> {
    let (dir, name) = dest
        .rsplit_once('/')
        .filter(|(_, n)| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| format!("upload: dest {dest:?} must be an absolute path to a file"))?;
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok((
        dir.to_string(),
        format!("{dir}/.{name}.gantry-part").replace("//", "/"),
        format!("{dir}/.{name}.gantry-sha256").replace("//", "/"),
    ))
}

/// The probe, one script for every upload of a round trip (`Probe::Batch`):
/// its arguments are the destinations. For each, in order, a `dest PATH`
/// line, then one line of what the file is; its sha256 (remembered when
/// the remembered line is root's and matches the file as it is now); then
/// how much of a partial copy arrived earlier. Read-only, in a subshell of
/// its own (its variables stay there), and one `stat` for every file and
/// remembered line together: a rerun probes every artifact of the bundle
/// on every host, and a `stat` each cost more than the rest of the probe.
/// The `stat` takes each destination and its remembered line in turn and
/// prints their lines in that order (none for a file that is not there),
/// so each line is taken from the front of its output with the shell's
/// own pattern expansion, in one pass: a `read` loop reads a byte per
/// system call, and searching the whole output for each file cost more
/// than the `stat`.
const PROBE: &str = r#"(
n=$#
for d in "$@"; do set -- "$@" "$d" "${d%/*}/.${d##*/}.gantry-sha256"; done
shift $n
st="$(stat -c '%u %g %a %s %i %z|%n' -- "$@" 2>/dev/null)
"
while [ $# -gt 1 ]; do
  d=$1 s=$2; shift 2
  p="${d%/*}/.${d##*/}.gantry-part"
  fs=; su=
  l=${st%%"
"*}; if [ "${l#*|}" = "$d" ]; then fs=${l%%|*}; st=${st#*"
"}; fi
  l=${st%%"
"*}; if [ "${l#*|}" = "$s" ]; then su=${l%% *}; st=${st#*"
"}; fi
  echo "dest $d"
  if [ -L "$d" ]; then echo link; elif [ -f "$d" ]; then
    u=${fs%% *} v=${fs#* }; g=${v%% *} v=${v#* }; m=${v%% *} v=${v#* }
    echo "file $u $g $m"
    if [ -f "$s" ] && [ ! -L "$s" ] && [ "$su" = 0 ] && read -r h r < "$s" && [ "$r" = "$v" ]; then echo "sha $h"
    else h=$(sha256sum < "$d"); echo "sha ${h%% *}"; fi
  elif [ -e "$d" ]; then echo other; else echo absent; fi
  if [ -f "$p" ] && [ ! -L "$p" ]; then echo "part $(stat -c %s -- "$p")"; fi
done
)"#;

/// `dest`'s lines of the probe's answer (after its `dest` line, up to the
/// next one).
fn section<'a>(out: &'a str, dest: &str) -> Option<&'a str> {
    let head = format!("dest {dest}\n");
    let start = if out.starts_with(&head) {
        head.len()
    } else {
        out.find(&format!("\n{head}"))? + head.len() + 1
    };
    let rest = &out[start..];
    Some(match rest.find("\ndest ") {
        Some(end) => &rest[..end + 1],
        None => rest,
    })
}

impl Module for Upload {
    const NAME: &'static str = "upload";
    const DOC: Doc = Doc {
        summary: "a large file from the controller (a bundle artifact), streamed, its sha256 checked on the host before it is renamed into place; 0 bytes when the host has it, and a cut transfer resumes",
        params: &[
            ("src", "the file on the controller; relative to the inventory's directory"),
            ("dest", "the absolute path on the host; its directory must be root's and writable by no one else"),
            ("sha256", "the file's sha256 (64 lowercase hex digits), as the bundle's manifest lists it"),
            ("mode", "octal, like \"0644\" (the default); the file is always root's"),
        ],
        example: "- name: containerd archive\n  upload:\n    src: bundle/bin/containerd-1.7.27-linux-amd64.tar.gz\n    dest: /var/lib/gantry/bundle/bin/containerd-1.7.27-linux-amd64.tar.gz\n    sha256: 0d5e3c8a5e2c4f1b9a7d6e5f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291\n",
    };

    fn validate(&self) -> Result<(), String> {
        crate::bundle::check_sha256(&self.sha256).map_err(|e| format!("upload.sha256: {e}"))?;
        if !self.dest.starts_with('/') || self.dest.contains('\n') {
            return Err(format!(
                "upload.dest: {:?} must be an absolute path (on one line)",
                self.dest
            ));
        }
        beside(&self.dest).map(|_| ())
    }

    fn prepare(mut self, cx: &dyn Controller) -> Result<super::AnyModule, String> {
        let path = cx.local_file(&self.src)?;
        let md = std::fs::metadata(&path).map_err(|e| format!("upload: {}: {e}", path.display()))?;
        if !md.is_file() {
            return Err(format!("upload: {} is not a plain file", path.display()));
        }
        self.local = Some((path, md.len()));
        Ok(self.into())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().batch("state", PROBE, &self.dest))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let (src, size) = self
            .local
            .clone()
            .ok_or("internal: upload decided before its src was read")?;
        let out = section(&a.script("state")?.out, &self.dest)
            .ok_or_else(|| format!("reading {}: no answer came back for it", self.dest))?;
        let mut lines = out.lines();
        let head: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let mut sha = None;
        let mut part = 0u64;
        for l in lines {
            if let Some(h) = l.strip_prefix("sha ") {
                sha = Some(h.to_string());
            } else if let Some(n) = l.strip_prefix("part ") {
                part = n.trim().parse().unwrap_or(0);
            }
        }
        let dest = &self.dest;
        let want_mode = self.mode.map_or(0o644, |m| m.0);
        let upload = |reason: String| {
            let offset = if part < size { part } else { 0 };
            let reason = if offset > 0 {
                format!("{reason}; {offset} of {size} bytes arrived earlier, the rest is sent")
            } else {
                format!("{reason}; {size} bytes are sent")
            };
            Decision::Change(Change::new(
                reason,
                Action::Upload {
                    src: src.clone(),
                    dest: dest.clone(),
                    sha256: self.sha256.clone(),
                    size,
                    offset,
                    mode: want_mode,
                },
            ))
        };
        Ok(match head.as_slice() {
            ["absent"] => upload(format!("{dest} does not exist")),
            ["link"] => {
                return Err(format!(
                    "{dest} is a symbolic link; upload never writes through a link: remove it, or name its target"
                ));
            }
            ["other"] => return Err(format!("{dest} exists and is not a plain file")),
            ["file", uid, gid, mode] => {
                let Some(have) = sha else {
                    return Err(format!("reading {dest}: no sha256 came back"));
                };
                if have != self.sha256 {
                    return Ok(upload(format!("{dest} has sha256 {have}, not {}", self.sha256)));
                }
                let mode = u32::from_str_radix(mode, 8).map_err(|_| format!("reading {dest}: mode {mode:?}"))?;
                let mut fix = Vec::new();
                if (*uid, *gid) != ("0", "0") {
                    fix.push(Action::run(&["chown", "0:0", "--", dest])?);
                }
                if mode != want_mode {
                    fix.push(Action::run(&["chmod", &format!("{want_mode:o}"), "--", dest])?);
                }
                match Change::of(format!("{dest} holds the right bytes; its owner or mode differ"), fix) {
                    Some(c) => Decision::Change(c),
                    None => Decision::unchanged(format!("{dest} has sha256 {}", self.sha256)),
                }
            }
            _ => return Err(format!("reading {dest}: unexpected answer {out:?}")),
        })
    }

    fn holds(&self) -> Option<(&str, &str)> {
        Some((&self.sha256, &self.dest))
    }
}

/// The host side of an `Action::Upload`: a `sh` script whose stdin is the
/// file's bytes from `offset` on. Exit 3 with a message on stderr when it
/// refuses; a transfer cut short keeps the partial file for the next run.
pub fn receive_script(dest: &str, sha256: &str, size: u64, offset: u64, mode: u32) -> Result<String, String> {
    let (dir, part, seen) = beside(dest)?;
    let (d, dq, p, s) = (quote(dest)?, quote(&dir)?, quote(&part)?, quote(&seen)?);
    // Labelled as a write is (remote::writes): the file it replaces keeps
    // its SELinux label, a new one gets the policy's.
    let (selinux, label) = (crate::remote::writes::SELINUX, crate::remote::writes::label_step(&p, &d));
    Ok(format!(
        r#"set -u
fail() {{ printf 'gantry upload: %s\n' "$1" >&2; exit 3; }}
[ -d {dq} ] || mkdir -p -m 0755 -- {dq} || fail "cannot make {dir}"
[ ! -L {dq} ] && [ "$(stat -c %u -- {dq})" = 0 ] || fail "{dir} must be a directory owned by root"
[ -z "$(find {dq} -maxdepth 0 -perm /022)" ] || fail "{dir} is writable by group or others; make it 0755 (or tighter), root's"
a=$(dirname -- {dq})
while :; do
  [ ! -L "$a" ] && [ "$(stat -c %u -- "$a")" = 0 ] && [ -z "$(find "$a" -maxdepth 0 -perm /022 ! -perm -1000)" ] || fail "$a, above {dir}, must be root's and writable by no one else (or sticky, as /tmp): another user could move {dir} away mid-transfer"
  [ "$a" = / ] && break
  a=$(dirname -- "$a")
done
umask 077
if [ {offset} -gt 0 ]; then
  [ -f {p} ] && [ ! -L {p} ] && [ "$(stat -c %s -- {p})" = {offset} ] || fail "the partial copy changed since it was read; run again"
  exec 3>>{p}
else
  rm -f -- {p}
  exec 3>{p}
fi
cat >&3 || fail "writing {part} failed"
exec 3>&-
got=$(stat -c %s -- {p})
[ "$got" -lt {size} ] && fail "the transfer was cut at $got of {size} bytes; the next run sends the rest"
[ "$got" -gt {size} ] && {{ rm -f -- {p}; fail "$got bytes arrived, more than the {size} expected; nothing was put in place"; }}
sync -- {p} || {{ rm -f -- {p}; fail "sync of {part} failed"; }}
v=$(sha256sum < {p}); v=${{v%% *}}
[ "$v" = {sha256} ] || {{ rm -f -- {p}; fail "what arrived has sha256 $v, not {sha256}; nothing was put in place"; }}
{selinux}{label} || {{ rm -f -- {p}; fail "labelling {dest} for SELinux failed"; }}
chown 0:0 -- {p} && chmod {mode:o} -- {p} && mv -fT -- {p} {d} || {{ rm -f -- {p}; fail "putting {dest} in place failed"; }}
printf '%s %s\n' {sha256} "$(stat -c '%s %i %z' -- {d})" > {s}.tmp && mv -fT -- {s}.tmp {s} && sync -- {dq} || fail "recording the sha256 of {dest} failed"
"#
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::ProbeOut;
    use crate::modules::testing::{change, decide, module, out, refused, unchanged};

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn up() -> Upload {
        let mut m: Upload = module(json!({"src": "b/x", "dest": "/var/lib/gantry/x", "sha256": SHA}));
        m.local = Some(("/inv/b/x".into(), 3));
        m
    }

    /// The probe's answer for /var/lib/gantry/x, among others' (another
    /// destination's section before and after it).
    fn st(lines: &str) -> ProbeOut {
        out(
            0,
            &format!("dest /var/lib/gantry/xy\nabsent\ndest /var/lib/gantry/x\n{lines}dest /x\nfile 0 0 644\nsha {SHA}\n"),
        )
    }

    #[test]
    fn sends_what_is_missing_resumes_a_part_and_leaves_a_match_alone() {
        let m = up();
        let d = change(decide(&m, vec![st("absent\n")]).unwrap());
        assert_eq!(d.reason, "/var/lib/gantry/x does not exist; 3 bytes are sent");
        assert!(matches!(&d.actions()[0], Action::Upload { offset: 0, size: 3, mode: 0o644, .. }));
        let d = change(decide(&m, vec![st("absent\npart 2\n")]).unwrap());
        assert_eq!(d.reason, "/var/lib/gantry/x does not exist; 2 of 3 bytes arrived earlier, the rest is sent");
        assert!(matches!(&d.actions()[0], Action::Upload { offset: 2, .. }));
        // A partial as long as the file or longer is not resumed from.
        let d = change(decide(&m, vec![st("absent\npart 3\n")]).unwrap());
        assert!(matches!(&d.actions()[0], Action::Upload { offset: 0, .. }));
        let other = "0".repeat(64);
        let d = change(decide(&m, vec![st(&format!("file 0 0 644\nsha {other}\n"))]).unwrap());
        assert_eq!(d.reason, format!("/var/lib/gantry/x has sha256 {other}, not {SHA}; 3 bytes are sent"));
        assert_eq!(
            unchanged(decide(&m, vec![st(&format!("file 0 0 644\nsha {SHA}\n"))]).unwrap()),
            format!("/var/lib/gantry/x has sha256 {SHA}")
        );
        let d = change(decide(&m, vec![st(&format!("file 1000 0 666\nsha {SHA}\n"))]).unwrap());
        assert_eq!(d.actions().len(), 2);
        assert!(decide(&m, vec![st("link\n")]).unwrap_err().contains("symbolic link"));
    }

    #[test]
    fn refuses_a_bad_hash_and_a_relative_dest() {
        assert!(refused::<Upload>(json!({"src": "x", "dest": "/a/x", "sha256": "abc"})).contains("not a sha256"));
        assert!(refused::<Upload>(json!({"src": "x", "dest": "a/x", "sha256": SHA})).contains("absolute"));
        assert!(refused::<Upload>(json!({"src": "x", "dest": "/a/", "sha256": SHA})).contains("absolute path to a file"));
        assert!(refused::<Upload>(json!({"src": "x", "dest": "/a/x\ndest /b", "sha256": SHA})).contains("on one line"));
    }

    /// One probe for all destinations, run by a real sh as the engine asks
    /// it (every upload's dest an argument): each reads its own section. A
    /// file with root's remembered line that matches it is not hashed again
    /// (the line's hash is taken, here a made-up one); a file whose line is
    /// not root's, or does not match, is.
    #[test]
    fn one_probe_reads_every_destination() {
        let t = tempfile::tempdir().unwrap();
        let at = |n: &str| t.path().join(n).to_str().unwrap().to_string();
        std::fs::write(at("a"), b"abc").unwrap();
        std::fs::set_permissions(at("a"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::write(at(".b.gantry-part"), b"ab").unwrap();
        std::os::unix::fs::symlink(at("a"), at("c")).unwrap();
        std::fs::create_dir(at("d")).unwrap();
        // "e" and "f" are remembered: e's line matches it, f's is stale.
        let remembered = "0".repeat(64);
        for n in ["e", "f"] {
            std::fs::write(at(n), b"abc").unwrap();
            let now = std::process::Command::new("stat").args(["-c", "%s %i %z", &at(n)]).output().unwrap();
            let now = String::from_utf8(now.stdout).unwrap();
            let line = if n == "e" { now.trim().to_string() } else { "3 1 stale".into() };
            std::fs::write(at(&format!(".{n}.gantry-sha256")), format!("{remembered} {line}\n")).unwrap();
        }
        let m = |dest: String| {
            let mut m: Upload = module(json!({"src": "x", "dest": dest, "sha256": SHA}));
            m.local = Some(("/inv/x".into(), 3));
            m
        };
        let ms: Vec<Upload> = ["a", "b", "c", "d", "e", "f"].iter().map(|n| m(at(n))).collect();
        let probes: Vec<crate::modules::Probe> = ms.iter().flat_map(|m| m.probes().unwrap().list().cloned().collect::<Vec<_>>()).collect();
        let script = crate::exec::probe_script(&probes, "M").unwrap();
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(crate::remote::script::own_call(&script).unwrap())
            .output()
            .unwrap();
        let said = String::from_utf8(o.stdout).unwrap();
        let answers = crate::exec::read_answers(&probes, &said, "M").unwrap_or_else(|| panic!("{said:?}"));
        let md = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(at("a")).unwrap());
        let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(at("a")).unwrap());
        assert_eq!(
            section(&answers[0].out, &at("a")).unwrap(),
            format!("file {md} {gid} 644\nsha {SHA}\n")
        );
        assert!(answers.iter().all(|a| a == &answers[0]));
        let d = change(decide(&ms[1], vec![answers[1].clone()]).unwrap());
        assert!(d.reason.ends_with("does not exist; 2 of 3 bytes arrived earlier, the rest is sent"), "{}", d.reason);
        assert!(decide(&ms[2], vec![answers[2].clone()]).unwrap_err().contains("symbolic link"));
        assert!(decide(&ms[3], vec![answers[3].clone()]).unwrap_err().contains("not a plain file"));
        let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(at(".e.gantry-sha256")).unwrap()) == 0;
        let e = if root { &remembered } else { SHA };
        assert_eq!(section(&answers[0].out, &at("e")).unwrap(), format!("file {md} {gid} 644\nsha {e}\n"));
        assert_eq!(section(&answers[0].out, &at("f")).unwrap(), format!("file {md} {gid} 644\nsha {SHA}\n"));
    }

    /// The receiving script run by a local `sh`, as the host runs it: a
    /// whole transfer lands; a cut one keeps its part and resumes; wrong
    /// bytes land nowhere and leave nothing.
    #[test]
    fn the_receiving_script_lands_resumes_and_refuses() {
        if !crate::running_as_root() {
            eprintln!("skipped: the receiving script chowns to root; run as root to test it");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let dest = t.path().join("x").to_str().unwrap().to_string();
        let run = |offset: u64, input: &[u8], sha: &str| {
            use std::io::Write;
            let script = receive_script(&dest, sha, 3, offset, 0o644).unwrap();
            let mut c = std::process::Command::new("sh")
                .args(["-c", &script])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(input).unwrap();
            let o = c.wait_with_output().unwrap();
            (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
        };
        let (part, seen) = (format!("{}/.x.gantry-part", t.path().display()), format!("{}/.x.gantry-sha256", t.path().display()));
        let (rc, err) = run(0, b"ab", SHA);
        assert_eq!((rc, err.as_str()), (Some(3), "gantry upload: the transfer was cut at 2 of 3 bytes; the next run sends the rest\n"));
        assert_eq!(std::fs::read(&part).unwrap(), b"ab");
        assert_eq!(run(2, b"c", SHA), (Some(0), String::new()));
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert!(!std::path::Path::new(&part).exists());
        assert!(std::fs::read_to_string(&seen).unwrap().starts_with(&format!("{SHA} 3 ")));
        // The probe reads the remembered line while the file is as it was
        // (a forged hash in the line shows it was not hashed again), and
        // hashes the file once it changed.
        let probe = || {
            let m = Upload {
                src: "x".into(),
                dest: dest.clone(),
                sha256: SHA.into(),
                mode: None,
                local: None,
            };
            let script = m.probes().unwrap().list().next().unwrap().script().unwrap();
            let o = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
            let said = String::from_utf8(o.stdout).unwrap();
            section(&said, &dest).unwrap_or_else(|| panic!("{said:?}")).to_string()
        };
        assert_eq!(probe(), format!("file 0 0 644\nsha {SHA}\n"));
        let line = std::fs::read_to_string(&seen).unwrap();
        let forged = line.replacen(SHA, &"f".repeat(64), 1);
        std::fs::write(&seen, &forged).unwrap();
        assert_eq!(probe(), format!("file 0 0 644\nsha {}\n", "f".repeat(64)));
        std::fs::write(&dest, b"abd").unwrap();
        let abd = "a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9";
        assert_eq!(probe(), format!("file 0 0 644\nsha {abd}\n"));
        std::fs::write(&dest, b"abc").unwrap();
        std::fs::write(&seen, &line).unwrap();
        let (rc, err) = run(0, b"abd", SHA);
        assert_eq!(rc, Some(3));
        assert!(err.contains("nothing was put in place"), "{err}");
        assert!(!std::path::Path::new(&part).exists());
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        // A directory that is root's and 0755 but sits in one others may
        // write (not sticky) is refused: it could be moved away mid-transfer.
        std::fs::set_permissions(t.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let inner = t.path().join("d");
        std::fs::create_dir(&inner).unwrap();
        let inner_dest = inner.join("x").to_str().unwrap().to_string();
        let script = receive_script(&inner_dest, SHA, 3, 0, 0o644).unwrap();
        let o = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!(
                "gantry upload: {}, above {}, must be root's and writable by no one else (or sticky, as /tmp): another user could move {} away mid-transfer\n",
                t.path().display(),
                inner.display(),
                inner.display()
            )
        );
    }
}
