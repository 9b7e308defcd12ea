//! Converging a file's content, mode and owner: the decision copy,
//! lineinfile, blockinfile, replace and modprobe share (Ansible's
//! module_utils, pyinfra's operations/util/files.py).

use super::{Action, Change, Decision, FileState, Mode};

pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a{path}"), &format!("b{path}"))
        .to_string()
}

/// What a file should be; `validate` checks the candidate before it
/// replaces the live file.
pub struct Wanted<'a> {
    pub content: &'a str,
    pub mode: Option<Mode>,
    pub owner: &'a Option<String>,
    pub group: &'a Option<String>,
    pub validate: Option<Vec<String>>,
}

impl<'a> Wanted<'a> {
    /// Only the content and, where given, the mode.
    pub fn content(content: &'a str, mode: Option<Mode>) -> Wanted<'a> {
        const NONE: &Option<String> = &None;
        Wanted {
            content,
            mode,
            owner: NONE,
            group: NONE,
            validate: None,
        }
    }
}

/// Converge `path` (as it is: `cur`) to what is wanted: one atomic write when
/// the content differs or the file is missing, else chmod/chown for what
/// differs. A directory where a file should be is an error.
pub fn converge(path: &str, cur: &FileState, want: Wanted) -> Result<Decision, String> {
    if cur.is_dir {
        return Err(format!("{path} is a directory"));
    }
    if cur.is_link {
        return Err(link_refused(path));
    }
    if cur.exists && !cur.is_regular() {
        return Err(format!(
            "{path} is a {}: gantry reads and writes only regular files",
            cur.kind
        ));
    }
    let want_mode = want
        .mode
        .map(|m| m.0)
        .unwrap_or(if cur.exists { cur.mode } else { 0o644 });
    let write = || Action::Write {
        path: path.into(),
        content: want.content.into(),
        mode: want_mode,
        owner: want.owner.clone(),
        group: want.group.clone(),
        validate: want.validate.clone(),
    };
    // Not world-readable before or after: its diff is counted, not shown.
    let private = want_mode & 0o004 == 0 || (cur.exists && cur.mode & 0o004 == 0);
    // Where SELinux is enabled, a label that is not the policy's is set to
    // it (what restorecon does); a write keeps the label the file had, so
    // the relabel comes after it.
    let relabel = match &cur.relabel {
        Some((has, should)) => Some((
            format!("SELinux label {has} -> {should} (the policy's)"),
            Action::run(&["chcon", should, "--", path])?,
        )),
        None => None,
    };
    if !cur.exists || cur.content != want.content {
        let mut reason = if cur.exists {
            format!("{path} content differs")
        } else {
            format!("{path} does not exist")
        };
        let mut actions = vec![write()];
        if let Some((why, a)) = relabel {
            reason.push_str(&format!(", {why}"));
            actions.push(a);
        }
        let mut c = Change::of(reason, actions)
            .expect("a write at least")
            .with_diff(Some(unified_diff(path, &cur.content, want.content)));
        c.private = private;
        return Ok(Decision::Change(c));
    }
    let mut actions = Vec::new();
    let mut why = Vec::new();
    if let Some((w, a)) = relabel {
        why.push(w);
        actions.push(a);
    }
    if cur.mode != want_mode {
        why.push(format!("mode {:04o} -> {want_mode:04o}", cur.mode));
        actions.push(Action::run(&[
            "chmod",
            &format!("{want_mode:o}"),
            "--",
            path,
        ])?);
    }
    let owner_off = want.owner.as_ref().is_some_and(|o| *o != cur.owner);
    let group_off = want.group.as_ref().is_some_and(|g| *g != cur.group);
    if owner_off || group_off {
        let spec = format!(
            "{}:{}",
            want.owner.as_deref().unwrap_or(""),
            want.group.as_deref().unwrap_or("")
        );
        why.push(format!("owner {}:{} -> {spec}", cur.owner, cur.group));
        actions.push(Action::run(&["chown", &spec, "--", path])?);
    }
    Ok(
        match Change::of(format!("{path}: {}", why.join(", ")), actions) {
            Some(c) => Decision::Change(c),
            None => Decision::unchanged(format!("{path} is up to date")),
        },
    )
}

/// A file that an edit (lineinfile, blockinfile) finds missing: nothing to
/// do when the edit removes, an error unless it may create the file; None
/// when the edit goes on.
pub fn missing(
    path: &str,
    cur: &FileState,
    create: bool,
    removes: bool,
) -> Option<Result<Decision, String>> {
    if cur.exists || create {
        return None;
    }
    Some(if removes {
        Ok(Decision::unchanged(format!("{path} does not exist")))
    } else {
        Err(format!(
            "{path} does not exist (set create: true to create it)"
        ))
    })
}

/// Why a module does not work on a symbolic link. Following one would write
/// or chmod a file the task does not name (a link a local user planted can
/// point anywhere), and replacing it would silently drop the link.
pub fn link_refused(path: &str) -> String {
    format!(
        "{path} is a symbolic link: gantry writes, chmods and chowns only regular files, never through a link (point the task at the link's target, or remove the link)"
    )
}

pub fn split_lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

pub fn join_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("{}\n", lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::modules::testing::{decide, link, module};
    use crate::modules::{
        blockinfile::BlockInFile, copy::Copy, file::File, lineinfile::LineInFile,
    };

    /// Where SELinux is enabled and a managed file's label is not the
    /// policy's (the probe's stat line says so after a tab), plan shows it
    /// and apply sets the policy's, after a write when there is one.
    #[test]
    fn a_label_that_is_not_the_policys_is_a_change() {
        use crate::modules::testing::{change, out};
        use crate::modules::{Action, ProbeOut};
        let copy: Copy = module(json!({"dest": "/etc/hosts", "content": "a\n"}));
        let labelled = |content: &str| -> ProbeOut {
            out(
                0,
                &format!(
                    "644 root root regular file\tlabel system_u:object_r:etc_t:s0 system_u:object_r:net_conf_t:s0\n{content}"
                ),
            )
        };
        let chcon = Action::run(&[
            "chcon",
            "system_u:object_r:net_conf_t:s0",
            "--",
            "/etc/hosts",
        ])
        .unwrap();
        let d = change(decide(&copy, vec![labelled("a\n")]).unwrap());
        assert_eq!(
            d.reason,
            "/etc/hosts: SELinux label system_u:object_r:etc_t:s0 -> system_u:object_r:net_conf_t:s0 (the policy's)"
        );
        assert_eq!(d.actions(), vec![chcon.clone()]);
        let d = change(decide(&copy, vec![labelled("old\n")]).unwrap());
        assert_eq!(
            d.reason,
            "/etc/hosts content differs, SELinux label system_u:object_r:etc_t:s0 -> system_u:object_r:net_conf_t:s0 (the policy's)"
        );
        assert!(matches!(d.actions(), [Action::Write { .. }, c] if *c == chcon));
        // The label matches: nothing to do.
        let same = out(0, "644 root root regular file\na\n");
        assert!(matches!(
            decide(&copy, vec![same]).unwrap(),
            crate::modules::Decision::Unchanged(_)
        ));
    }

    /// A link in a task's path, one a local user planted say, is refused by
    /// every module that writes, chmods or chowns a file: never followed,
    /// never replaced.
    #[test]
    fn a_symbolic_link_is_never_written_through() {
        let refusal =
            "/etc/x is a symbolic link: gantry writes, chmods and chowns only regular files";
        let copy: Copy = module(json!({"dest": "/etc/x", "content": "a\n", "mode": "0600"}));
        let line: LineInFile = module(json!({"path": "/etc/x", "line": "a", "create": true}));
        let block: BlockInFile = module(json!({"path": "/etc/x", "block": "a"}));
        let attrs: File = module(json!({"path": "/etc/x", "state": "file", "mode": "0600"}));
        let touch: File = module(json!({"path": "/etc/x", "state": "touch", "owner": "root"}));
        for e in [
            decide(&copy, vec![link()]).unwrap_err(),
            decide(&line, vec![link()]).unwrap_err(),
            decide(&block, vec![link()]).unwrap_err(),
            decide(&attrs, vec![link()]).unwrap_err(),
            decide(&touch, vec![link()]).unwrap_err(),
        ] {
            assert!(e.starts_with(refusal), "{e}");
        }
    }
}
