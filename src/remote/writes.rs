//! Turning actions into shell text for the host's long-lived shell: one
//! request of writes (and of commands that change only live state) with
//! temp files, validators, one `sync` per stretch and renames in order, and
//! the reading of what such a request printed. The write discipline lives
//! here and nowhere else.

use std::collections::{HashMap, HashSet};

use super::frame;
use super::script::{input_var, quote};
use super::ssh::Scope;
use crate::modules::{Action, Touches};

/// Where the host's shell runs an action's script: writes and plain
/// commands of known programs in itself, anything else in a subshell.
pub fn scope(a: &Action) -> Scope {
    match a {
        Action::Write { .. } | Action::Run { own: true, .. } => Scope::Own,
        Action::Run { .. } | Action::Upload { .. } => Scope::Subshell,
    }
}

/// The script, and the input it reads as `$gantry_stdin`, that carry one
/// action out, in `scope`.
pub fn action_script(a: &Action) -> Result<(String, Option<String>), String> {
    match a {
        Action::Write { content, .. } => Ok((writes_script(&[a], "-")?, Some(content.clone()))),
        // The request's input is a shell variable; a command reads it on
        // its stdin.
        Action::Run {
            script,
            stdin: Some(text),
            ..
        } => Ok((
            format!("printf %s \"$gantry_stdin\" | {{\n{script}\n}}"),
            Some(text.clone()),
        )),
        Action::Run {
            script,
            stdin: None,
            ..
        } => Ok((script.clone(), None)),
        Action::Upload { .. } => {
            Err("internal: an upload is streamed on a channel of its own, not scripted".into())
        }
    }
}

/// Whether an action can go in a request of writes (`writes_script`): a
/// write, or a plain command of a known program that changes only live
/// state or makes a directory, with no input (`hostname`, `sysctl -p`,
/// `nft -f`, `mkdir -p`).
pub fn batchable(a: &Action) -> bool {
    match a {
        Action::Write { .. } => true,
        Action::Run {
            own: true,
            stdin: None,
            touches,
            ..
        } => matches!(touches, Touches::Live | Touches::Made(_)),
        Action::Run { .. } | Action::Upload { .. } => false,
    }
}

/// One script for consecutive actions, in order, all `batchable`: writes,
/// and between them commands that change live state or make a directory.
/// Each write's content is the request's input of the same index
/// (`ssh::input_var`; a command's input is empty and unused). Each write
/// lands in a temp file in its own directory, created exclusively with its
/// final mode and owner while still empty (a mode the umask can give needs
/// no chmod), filled by the `printf` builtin and checked by its `validate`;
/// then one `sync` makes the temp files durable, and each is renamed over
/// its path in its turn. The temp files are made and synced a stretch at a
/// time: up to and including the next command that makes a directory,
/// since a later write may go into it. A command runs in its turn, after
/// the renames before it and before those after it; its stdout is followed
/// by `\nMARKER INDEX RC\n` (`batch_output` reads it).
///
/// The first action that fails stops the rest: those before it are done,
/// those after it are not, and no temp file is left. The script prints
/// `written N`, the number of actions done, and returns the failing
/// command's status.
///
/// It runs in the host's shell itself (`ssh::Scope::Own`): no subshell per
/// write or per request. Its variables are `local`; the umask and noclobber
/// it sets per write are put back, and its traps (which remove the temp
/// files if the connection drops midway) are cleared before it returns.
///
/// The content cannot arrive cut short: input goes only through the host's
/// shell, which runs a request only once every byte of it has arrived
/// (ssh.rs `request`).
pub fn writes_script(actions: &[&Action], marker: &str) -> Result<String, String> {
    let mut vars = vec![
        "lim".to_string(),
        "r".into(),
        "c".into(),
        "u".into(),
        "k".into(),
        "se".into(),
        "x".into(),
    ];
    let mut s = String::new();
    let mut temps = Vec::new();
    // Stretches of actions: each ends after a command that makes a
    // directory, or at the end.
    let mut stretches: Vec<Vec<usize>> = vec![Vec::new()];
    for (j, a) in actions.iter().enumerate() {
        if !batchable(a) {
            return Err(format!(
                "cannot go in a request of writes: {}",
                a.describe()
            ));
        }
        stretches.last_mut().expect("one at least").push(j);
        if matches!(
            a,
            Action::Run {
                touches: Touches::Made(_),
                ..
            }
        ) {
            stretches.push(Vec::new());
        }
    }
    let mut body = String::new();
    for stretch in stretches.iter().filter(|s| !s.is_empty()) {
        let mut synced = Vec::new();
        for &j in stretch {
            let Action::Write {
                path,
                mode,
                owner,
                group,
                validate,
                ..
            } = actions[j]
            else {
                continue;
            };
            let tmp = quote(&format!("{path}.gantry.{}", crate::secrets::random_hex(6)?))?;
            vars.push(format!("t{j}"));
            vars.push(format!("d{j}"));
            s.push_str(&format!("t{j}={tmp}; d{j}={}\n", quote(path)?));
            temps.push(tmp);
            let t = format!("\"$t{j}\"");
            synced.push(t.clone());
            let input = format!("\"${}\"", input_var(j));
            let by_umask = mode & !0o666 == 0;
            let umask = if by_umask { 0o666 & !mode } else { 0o077 };
            // Created exclusively (noclobber), so nothing already at the temp
            // path, a planted symlink say, is written through. Then owner,
            // mode and content go through the descriptor the creation opened
            // (fd 3; chown and chmod reach it as /proc/self/fd/3), never the
            // path again: a user who can write the directory and swaps the
            // temp file for a symlink cannot aim root's chown, chmod or write
            // at another file. The redirection is the group's, not a special
            // builtin's, so when it fails (no such directory) the long-lived
            // shell goes on. chown before chmod: chown clears setuid/setgid.
            let mut inner = Vec::new();
            if owner.is_some() || group.is_some() {
                let spec = format!(
                    "{}:{}",
                    owner.as_deref().unwrap_or(""),
                    group.as_deref().unwrap_or("")
                );
                inner.push(format!("chown -- {} /proc/self/fd/3", quote(&spec)?));
            }
            if !by_umask {
                inner.push(format!("chmod {mode:o} /proc/self/fd/3"));
            }
            // dash's printf builtin calls every write error "I/O error";
            // where it fails, cat tries again only to name the cause (No
            // space left on device), and the write fails whatever cat does:
            // the descriptor cannot be truncated, so a second try could only
            // add to what the first left.
            inner.push(format!(
                "{{ printf %s {input} >&3 || {{ printf %s {input} | cat >&3; false; }}; }}"
            ));
            let mut steps = vec![
                format!("umask {umask:03o}"),
                "set -C".to_string(),
                format!("{{ set +C; {}; }} 3> {t}", inner.join(" && ")),
            ];
            if let Some(argv) = validate {
                // The candidate is checked in place: the live file is never
                // replaced by one the validator refused.
                let words: Vec<String> = argv
                    .iter()
                    .map(|w| if w == "%s" { Ok(t.clone()) } else { quote(w) })
                    .collect::<Result<_, _>>()?;
                steps.push(format!("{} >&2", words.join(" ")));
            }
            steps.push(label_step(&t, &format!("\"$d{j}\"")));
            // `&&`, not `set -e`: a shell ignores -e inside an `&&` list.
            body.push_str(&format!(
                "[ $lim -gt {j} ] && {{ {{ {}; }} || {{ r=$?; lim={j}; }}; }}\n",
                steps.join(" && ")
            ));
        }
        body.push_str("set +C; umask \"$u\"\n");
        // The stretch's temp files reach the disk before any is renamed
        // (those made: a failed one stops the batch at its index), and a
        // failed fsync stops the stretch's renames.
        let writes: Vec<usize> = stretch
            .iter()
            .copied()
            .filter(|&j| matches!(actions[j], Action::Write { .. }))
            .collect();
        if let Some(&first) = writes.first() {
            let mut picks = String::from("set --;");
            for (&j, t) in writes.iter().zip(&synced) {
                picks.push_str(&format!(" [ $lim -gt {j} ] && set -- \"$@\" {t};"));
            }
            body.push_str(&format!(
                "{picks} [ $# -eq 0 ] || sync -- \"$@\" || {{ r=$?; lim={first}; }}\n"
            ));
        }
        // Each directory a write of the stretch lands in, with the first
        // such write's index: synced if that write was renamed.
        let mut dirs: Vec<(usize, String)> = Vec::new();
        for &j in &writes {
            if let Action::Write { path, .. } = actions[j] {
                let d = match std::path::Path::new(path).parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.display().to_string(),
                    _ => ".".to_string(),
                };
                if !dirs.iter().any(|(_, x)| *x == d) {
                    dirs.push((j, d));
                }
            }
        }
        for &j in stretch {
            match actions[j] {
                // A temp file swapped for a link (by a user who can write
                // the directory) is not renamed into place: the write fails.
                Action::Write { .. } => body.push_str(&format!(
                    "[ $lim -gt {j} ] && {{ {{ [ ! -L \"$t{j}\" ] || {{ printf '%s\\n' \"gantry: $t{j} was replaced by a link while it was written\" >&2; false; }}; }} && mv -fT -- \"$t{j}\" \"$d{j}\" || {{ r=$?; lim={j}; }}; }}\n"
                )),
                Action::Run { script, .. } => body.push_str(&format!(
                    "[ $lim -gt {j} ] && {{ {script}\nc=$?; {}; [ $c -eq 0 ] || {{ r=$c; lim={j}; }}; }}\n",
                    frame::end(marker, j, "$c")
                )),
                // Not batchable: refused at the top.
                Action::Upload { .. } => {}
            }
        }
        // Then the directories, so the renames survive a power loss too;
        // if that fails, the stretch counts as not done (rerun, it changes
        // nothing).
        if let Some(&first) = writes.first() {
            let mut picks = String::from("set --;");
            for (j, d) in &dirs {
                picks.push_str(&format!(
                    " [ $lim -gt {j} ] && set -- \"$@\" {};",
                    quote(d)?
                ));
            }
            body.push_str(&format!(
                "{picks} [ $# -eq 0 ] || sync -- \"$@\" || {{ r=$?; lim={first}; }}\n"
            ));
        }
    }
    let temps = temps.join(" ");
    let trap = |action: &str| quote(&format!("rm -f -- {temps}{action}"));
    let mut head = format!("local {}\n", vars.join(" "));
    // A run that died mid-write (a host that lost power, a controller killed
    // while a validator ran) leaves its temp file beside the target. This run
    // holds the host's lock, so any temp file of gantry's naming there is a
    // dead run's: remove it before this run makes its own. A glob, no
    // process, unless there is one to remove.
    let mut swept = HashSet::new();
    for a in actions {
        if let Action::Write { path, .. } = a
            && swept.insert(path.as_str())
        {
            head.push_str(&format!(
                    "for k in {}.gantry.{}; do {{ [ -e \"$k\" ] || [ -L \"$k\" ]; }} && rm -f -- \"$k\"; done\n",
                    quote(path)?,
                    "[0-9a-f]".repeat(12)
                ));
        }
    }
    // The shell's umask, to put back: read from /proc with builtins (no
    // process), by `umask` where that fails.
    head.push_str("u=; while read -r k u; do [ \"$k\" = Umask: ] && break; u=; done < /proc/$$/status 2>/dev/null\n[ -n \"$u\" ] || u=$(umask)\n");
    if !temps.is_empty() {
        head.push_str(&format!(
            "trap {} EXIT\ntrap {} HUP INT TERM PIPE\n",
            trap("")?,
            trap("; exit 1")?
        ));
    }
    head.push_str(SELINUX);
    head.push_str(&format!("lim={}; r=0\n", actions.len()));
    s.insert_str(0, &head);
    s.push_str(&body);
    if !temps.is_empty() {
        s.push_str(&format!(
            "[ $lim -eq {} ] || rm -f -- {temps}\ntrap - EXIT HUP INT TERM PIPE\n",
            actions.len()
        ));
    }
    s.push_str("printf 'written %d\\n' $lim\nreturn $r\n");
    Ok(s)
}

/// Whether the host labels files for SELinux, in `$se`, by builtins alone
/// (no process on a host without SELinux): 2 where SELinux is enabled (its
/// filesystem is mounted), 1 where the host is set up for it but it is off
/// (/etc/selinux/config, as on RHEL with `SELINUX=disabled`), else 0.
pub(crate) const SELINUX: &str = "se=0; if [ -e /sys/fs/selinux/enforce ]; then se=2; elif [ -e /etc/selinux/config ]; then se=1; fi\n";

/// The step that labels a write's temp file `t` for its path `d` (shell
/// words), before the rename: a new file made in the directory carries the
/// directory's label, not the target's, and confined services cannot read
/// a file labelled `etc_t` where the policy says `net_conf_t`. As Ansible's
/// atomic move does: a file that is replaced keeps its label (copied from
/// it); a new one gets the policy's default for its path (`matchpathcon`,
/// what `restorecon` would give). Where SELinux is enabled a failure fails
/// the write; where it is only set up, a file without a label is normal and
/// is left so. Nothing runs on a host without SELinux (`$se` is 0).
pub(crate) fn label_step(t: &str, d: &str) -> String {
    format!(
        "{{ [ $se = 0 ] || if [ -e {d} ]; then if [ $se = 2 ]; then chcon --reference={d} -- {t}; else chcon --reference={d} -- {t} 2>/dev/null || :; fi; elif [ $se = 2 ]; then x=$(matchpathcon -n -- {d}) && chcon -- \"$x\" {t}; fi; }}"
    )
}

/// The inputs of a request of `writes_script`, by index: each write's
/// content; a command's is empty and unused.
pub fn batch_inputs<'a>(actions: &[&'a Action]) -> Vec<&'a str> {
    actions
        .iter()
        .map(|a| match a {
            Action::Write { content, .. } => content.as_str(),
            Action::Run { .. } | Action::Upload { .. } => "",
        })
        .collect()
}

/// From what `writes_script` printed: how many actions were done, and each
/// command's stdout and status by its index.
pub fn batch_output(stdout: &str, marker: &str) -> (usize, HashMap<usize, (String, i32)>) {
    let (frames, rest) = frame::parse(stdout, marker).unwrap_or_default();
    let done = rest
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .and_then(|l| l.strip_prefix("written "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let runs = frames
        .into_iter()
        .map(|f| (f.index, (f.out, f.rc)))
        .collect();
    (done, runs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::Decision;
    use crate::remote::script::own_call;

    #[test]
    fn command_stdin_is_fed_from_the_input() {
        let secret = "token: 'abc'\n$(id)\nno newline";
        let m =
            crate::modules::AnyModule::parse("command", json!({"argv": ["cat"], "stdin": secret}))
                .unwrap();
        let Decision::Change(d) = m.decide(&m.probes().unwrap().answered(vec![])).unwrap() else {
            panic!("a command runs")
        };
        let (script, input) = action_script(&d.actions()[0]).unwrap();
        assert!(
            !script.contains("abc"),
            "the secret is in the script: {script}"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("gantry_stdin", input.unwrap())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), secret);
    }

    /// SELinux labels, with the script run by a local sh as root on this
    /// machine's filesystem, which stores `security.selinux` attributes
    /// without an SELinux kernel (chcon and stat %C read and set them as
    /// plain attributes). Stand-ins: the two paths that tell the script
    /// SELinux is set up or enabled point into a temp directory, and
    /// `matchpathcon` (the policy's default for a path) is a script on PATH.
    #[test]
    fn a_replaced_file_keeps_its_selinux_label_and_a_new_one_gets_the_policys() {
        if !crate::running_as_root() {
            eprintln!("SKIPPED: setting security.selinux attributes needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (config, enforce, bin) = (d.join("config"), d.join("enforce"), d.join("bin"));
        std::fs::create_dir(&bin).unwrap();
        let calls = d.join("calls");
        std::fs::write(
            bin.join("matchpathcon"),
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\n[ -e {}/refuse ] && {{ echo 'matchpathcon: no policy' >&2; exit 1; }}\necho system_u:object_r:kubelet_var_lib_t:s0\n",
                calls.display(),
                d.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bin.join("matchpathcon"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let label = |p: &std::path::Path| {
            let out = std::process::Command::new("stat")
                .args(["-c", "%C", "--"])
                .arg(p)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let write = |path: &std::path::Path| {
            let a = Action::Write {
                path: path.to_str().unwrap().into(),
                content: "new\n".into(),
                mode: 0o644,
                owner: None,
                group: None,
                validate: None,
            };
            let (script, input) = action_script(&a).unwrap();
            let script = script
                .replace("/etc/selinux/config", config.to_str().unwrap())
                .replace("/sys/fs/selinux/enforce", enforce.to_str().unwrap());
            std::process::Command::new("sh")
                .arg("-c")
                .arg(own_call(&script).unwrap())
                .env("gantry_stdin", input.unwrap())
                .env(
                    "PATH",
                    format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", bin.display()),
                )
                .output()
                .unwrap()
        };
        use std::os::unix::fs::MetadataExt;
        let hosts = d.join("hosts");
        std::fs::write(&hosts, "old\n").unwrap();
        let chcon = |ctx: &str, p: &std::path::Path| {
            assert!(
                std::process::Command::new("chcon")
                    .arg(ctx)
                    .arg(p)
                    .status()
                    .unwrap()
                    .success()
            );
        };
        chcon("system_u:object_r:net_conf_t:s0", &hosts);
        // No SELinux: nothing is labelled, and the label is the temp
        // file's (here: none).
        let ino = std::fs::metadata(&hosts).unwrap().ino();
        assert!(write(&hosts).status.success());
        assert_ne!(std::fs::metadata(&hosts).unwrap().ino(), ino);
        assert_eq!(label(&hosts), "?");
        // Set up for SELinux (its config file there): a replaced file keeps
        // its label. The file is a new inode, so the label was set on the
        // temp file before the rename.
        std::fs::write(&config, "SELINUX=enforcing\n").unwrap();
        std::fs::write(&hosts, "old\n").unwrap();
        chcon("system_u:object_r:net_conf_t:s0", &hosts);
        let ino = std::fs::metadata(&hosts).unwrap().ino();
        let out = write(&hosts);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), "new\n");
        assert_ne!(std::fs::metadata(&hosts).unwrap().ino(), ino);
        assert_eq!(label(&hosts), "system_u:object_r:net_conf_t:s0");
        // A file with no label (SELinux set up but off): written, unlabelled.
        let plain = d.join("plain");
        std::fs::write(&plain, "old\n").unwrap();
        assert!(write(&plain).status.success());
        assert_eq!(label(&plain), "?");
        // A new file where SELinux is only set up: no policy lookup.
        assert!(write(&d.join("new-off")).status.success());
        assert!(!calls.exists());
        // SELinux enabled: a new file gets the policy's default for its
        // path; a replaced one still keeps its own.
        std::fs::write(&enforce, "1\n").unwrap();
        let kubelet = d.join("config.yaml");
        let out = write(&kubelet);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(label(&kubelet), "system_u:object_r:kubelet_var_lib_t:s0");
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            format!("-n -- {}\n", kubelet.display())
        );
        assert!(write(&hosts).status.success());
        assert_eq!(label(&hosts), "system_u:object_r:net_conf_t:s0");
        // Where the label cannot be had, the write fails and leaves no file.
        std::fs::write(d.join("refuse"), "").unwrap();
        let other = d.join("other.yaml");
        let out = write(&other);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("matchpathcon: no policy"));
        assert!(!other.exists());
        let temps = std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".gantry.")
            })
            .count();
        assert_eq!(temps, 0, "a temp file was left");
        // Unlabelled where SELinux is enabled: the failure is chcon's, said.
        let out = write(&plain);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("failed to get security context"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "new\n");
    }

    /// The write script itself, run by a local sh: atomic replace, mode set
    /// before content, and a refused `validate` leaves the old file alone.
    #[test]
    fn write_script_is_atomic_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        std::fs::write(&path, "old\n").unwrap();
        let p = path.to_str().unwrap().to_string();
        let run = |a: &Action| {
            // The input as the remote shell has it: a variable of the
            // shell running the script (here from its environment).
            let (script, input) = action_script(a).unwrap();
            std::process::Command::new("sh")
                .arg("-c")
                .arg(own_call(&script).unwrap())
                .env("gantry_stdin", input.unwrap())
                .output()
                .unwrap()
        };
        let bad = Action::Write {
            path: p.clone(),
            content: "new\n".into(),
            mode: 0o600,
            owner: None,
            group: None,
            validate: Some(vec![
                "grep".into(),
                "-q".into(),
                "nomatch".into(),
                "%s".into(),
            ]),
        };
        assert!(!run(&bad).status.success());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temp file left behind");
        let good = Action::Write {
            path: p.clone(),
            content: "new\n".into(),
            mode: 0o600,
            owner: None,
            group: None,
            validate: Some(vec!["grep".into(), "-q".into(), "new".into(), "%s".into()]),
        };
        assert!(run(&good).status.success());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // Content cut short by a lost connection never reaches this script:
        // the remote shell runs a request only whole (ssh.rs tests,
        // a_request_runs_whole_with_its_stdin_or_not_at_all).
        // The mode is the file's from its creation, before any content is
        // written: by the umask where it can be, else by chmod on the empty
        // file. Owner and group are set on the empty file too, and all three
        // through the descriptor the exclusive creation opened.
        let (script, _) = action_script(&good).unwrap();
        assert!(
            script.contains(
                "{ umask 066 && set -C && { set +C; { printf %s \"$gantry_stdin\" >&3 || "
            ),
            "{script}"
        );
        assert!(script.contains("} 3> \"$t0\""), "{script}");
        let exec = Action::Write {
            path: p.clone(),
            content: "#!/bin/sh\n".into(),
            mode: 0o755,
            owner: Some("root".into()),
            group: None,
            validate: None,
        };
        let (script, _) = action_script(&exec).unwrap();
        let at = |needle: &str| {
            script
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} not in {script}"))
        };
        assert!(
            at("set -C") < at("chown -- root: /proc/self/fd/3")
                && at("chown") < at("chmod 755 /proc/self/fd/3")
                && at("chmod 755") < at("printf %s")
                && at("printf %s") < at("3> \"$t0\"")
        );
        let euid = std::process::Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&euid.stdout).trim() == "0" {
            assert!(run(&exec).status.success());
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
                0o755
            );
        } else {
            println!("SKIPPED: the owner=root write needs root to chown; run as root to check it");
        }
    }

    /// A local user who can write the target's directory swaps gantry's
    /// temp file for a link to a file of theirs' choosing, between its
    /// creation and its chown (here a `chown` early in PATH does the swap,
    /// so the race is won every time). Owner, mode and content go through
    /// the descriptor of the file gantry created, so the victim is never
    /// chowned, chmodded or written.
    #[test]
    fn a_temp_file_swapped_for_a_link_never_aims_a_write() {
        if !crate::running_as_root() {
            println!("SKIPPED: the swap needs a chown as root; run as root to check it");
            return;
        }
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "theirs\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&victim, Some(65534), Some(65534)).unwrap();
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let chown = bin.join("chown");
        std::fs::write(
            &chown,
            format!(
                "#!/bin/sh\nfor t in {conf}/f.gantry.*; do mv \"$t\" {conf}/moved && ln -s {victim} \"$t\"; done\nexec /bin/chown \"$@\"\n",
                conf = conf.display(),
                victim = victim.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&chown, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = Action::Write {
            path: conf.join("f").display().to_string(),
            content: "gantry's\n".into(),
            mode: 0o4755,
            owner: Some("root".into()),
            group: Some("root".into()),
            validate: None,
        };
        let (script, input) = action_script(&w).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(own_call(&script).unwrap())
            .env("gantry_stdin", input.unwrap())
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        assert!(
            conf.join("moved").exists(),
            "the swap did not happen: {out:?}"
        );
        // The link is not renamed into place: the write fails, and says why.
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("was replaced by a link while it was written"),
            "{out:?}"
        );
        assert!(std::fs::symlink_metadata(conf.join("f")).is_err());
        let v = std::fs::metadata(&victim).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "theirs\n");
        assert_eq!((v.uid(), v.gid()), (65534, 65534));
        assert_eq!(v.permissions().mode() & 0o7777, 0o600);
        // What gantry created got it all.
        let m = std::fs::metadata(conf.join("moved")).unwrap();
        assert_eq!(
            std::fs::read_to_string(conf.join("moved")).unwrap(),
            "gantry's\n"
        );
        assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    }

    /// A target that became a link to a directory after it was read is
    /// replaced, not written into: `mv -T`.
    #[test]
    fn a_write_replaces_a_link_to_a_directory_never_lands_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let dest = dir.path().join("conf");
        std::os::unix::fs::symlink(&elsewhere, &dest).unwrap();
        let w = Action::Write {
            path: dest.display().to_string(),
            content: "x\n".into(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        };
        let (script, input) = action_script(&w).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(own_call(&script).unwrap())
            .env("gantry_stdin", input.unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "x\n");
    }

    /// Several writes in one script: the first refused stops the rest; those
    /// before it land, none after it does, no temp file is left, and the
    /// script says how many landed.
    #[test]
    fn writes_in_one_script_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(n).display().to_string();
        let write = |n: &str, content: &str, validate: Option<&str>| Action::Write {
            path: file(n),
            content: content.into(),
            mode: 0o640,
            owner: None,
            group: None,
            validate: validate.map(|v| vec!["grep".into(), "-q".into(), v.into(), "%s".into()]),
        };
        let run = |writes: &[&Action]| {
            let script = writes_script(writes, "M").unwrap();
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(own_call(&script).unwrap());
            for (i, w) in writes.iter().enumerate() {
                if let Action::Write { content, .. } = w {
                    c.env(input_var(i), content);
                }
            }
            c.output().unwrap()
        };
        let (a, b, c) = (
            write("a", "A\n", None),
            write("b", "it's B", Some("nomatch")),
            write("c", "C\n", None),
        );
        let out = run(&[&a, &b, &c]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "written 1\n");
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(), ["a"]);
        assert_eq!(std::fs::read_to_string(file("a")).unwrap(), "A\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(file("a")).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let b = write("b", "it's B", Some("B"));
        let out = run(&[&a, &b, &c]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "written 3\n");
        assert_eq!(names(), ["a", "b", "c"]);
        assert_eq!(std::fs::read_to_string(file("b")).unwrap(), "it's B");
        // A directory that is not there fails the write that needs it.
        let lost = write("no/such/dir", "x", None);
        let out = run(&[&c, &lost]);
        assert_ne!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "written 1\n");
        assert_eq!(names(), ["a", "b", "c"]);
        // In the host's shell itself, landed or refused, chmod'ed or not, the
        // writes leave its variables, umask, options and traps as they were.
        let mut x = write("x", "X\n", None);
        if let Action::Write { mode, .. } = &mut x {
            *mode = 0o1750;
        }
        let refused = write("y", "Y\n", Some("nomatch"));
        for (writes, landed) in [
            (vec![&a, &x], "written 2\n"),
            (vec![&c, &refused, &b], "written 1\n"),
        ] {
            let inputs = batch_inputs(&writes);
            let script = writes_script(&writes, "M").unwrap();
            let out = crate::remote::ssh::tests::shell_left_as_found(&script, &inputs).unwrap();
            assert!(out.contains(landed), "{out}");
        }
        assert_eq!(names(), ["a", "b", "c", "x"]);
    }

    /// A dead run's temp file beside a target (a host that lost power while
    /// a validator ran) is removed by the next write of that target, a link
    /// as a link; files that only look alike are left alone.
    #[test]
    fn a_dead_runs_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(n).display().to_string();
        let target = std::fs::canonicalize(dir.path()).unwrap().join("outside");
        std::fs::write(&target, "keep\n").unwrap();
        std::fs::write(file("a.gantry.0123456789ab"), "half").unwrap();
        std::os::unix::fs::symlink(&target, file("a.gantry.ba9876543210")).unwrap();
        for other in [
            "a.gantry.backup",
            "a.gantry.0123456789abc",
            "b.gantry.0123456789ab",
        ] {
            std::fs::write(file(other), "mine").unwrap();
        }
        let a = Action::Write {
            path: file("a"),
            content: "A\n".into(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        };
        let script = writes_script(&[&a], "M").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(own_call(&script).unwrap())
            .env(input_var(0), "A\n")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "written 1\n",
            "{out:?}"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "a",
                "a.gantry.0123456789abc",
                "a.gantry.backup",
                "b.gantry.0123456789ab",
                "outside"
            ]
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    }

    /// Commands between the writes run in their turn, each with its own
    /// output; a directory made midway takes the writes after it; a failed
    /// command stops the rest.
    #[test]
    fn commands_run_in_their_turn_among_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(n).display().to_string();
        let write = |n: &str| Action::Write {
            path: file(n),
            content: format!("{n}\n"),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        };
        let sub = file("sub");
        let actions = [
            write("a"),
            Action::run(&["hostname"]).unwrap(),
            Action::run(&["mkdir", "-p", "-m", "700", "--", &sub]).unwrap(),
            write("sub/f"),
            Action::run(&["mkdir", "-p", "--", "/proc/gantry/no"]).unwrap(),
            write("c"),
        ];
        let refs: Vec<&Action> = actions.iter().collect();
        assert!(refs.iter().all(|a| batchable(a)));
        let script = writes_script(&refs, "M").unwrap();
        let out =
            crate::remote::ssh::tests::shell_left_as_found(&script, &batch_inputs(&refs)).unwrap();
        let (done, runs) = batch_output(&out, "M");
        assert_eq!(done, 4, "{out}");
        let host = std::process::Command::new("hostname").output().unwrap();
        assert_eq!(
            runs[&1],
            (String::from_utf8_lossy(&host.stdout).into_owned(), 0)
        );
        assert_eq!(runs[&2], (String::new(), 0));
        assert_ne!(runs[&4].1, 0);
        assert_eq!(runs.len(), 3);
        assert_eq!(std::fs::read_to_string(file("sub/f")).unwrap(), "sub/f\n");
        assert!(!std::path::Path::new(&file("c")).exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .chain(std::fs::read_dir(&sub).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "f", "sub"], "a temp file was left");
    }
}
