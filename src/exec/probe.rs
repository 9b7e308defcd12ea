//! Reading hosts' state: probes in one round trip (three processes for all
//! file probes, however many), and the answers kept until an action could
//! have changed them, so a host's unchanged tasks cost one round trip.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use petgraph::graph::NodeIndex;

use super::Shared;
use super::host::HostCx;
use super::task::{Calls, tail, task_calls};
use crate::modules::{self, Action, Probe, ProbeOut, Touches};
use crate::remote::frame;
use crate::remote::script::quote;
use crate::remote::ssh::{Conn, ConnError};

/// Why reading a host's state failed: the host was lost, or the state
/// could not be read (a task failure).
pub(crate) enum ProbeError {
    Lost(ConnError),
    Failed(String),
}

impl From<ConnError> for ProbeError {
    fn from(e: ConnError) -> ProbeError {
        ProbeError::Lost(e)
    }
}

impl From<String> for ProbeError {
    fn from(e: String) -> ProbeError {
        ProbeError::Failed(e)
    }
}

/// Run probes in one round trip. Each answer is followed by a line holding a
/// random marker, the probe's index and its exit code, so no file content can
/// be mistaken for a separator, and no process is spent on framing.
pub(crate) async fn run_probes(
    conn: &Conn,
    probes: &[Probe],
    timeout: Option<Duration>,
) -> Result<Vec<ProbeOut>, ProbeError> {
    if probes.is_empty() {
        return Ok(Vec::new());
    }
    let marker = format!("gantry-probe-{}", crate::secrets::random_hex(8)?);
    let out = conn
        .run_own(&probe_script(probes, &marker)?, &[], timeout)
        .await?;
    if let Some(answers) = read_answers(probes, &out.stdout, &marker) {
        return Ok(answers);
    }
    // The one `cat` could not be cut into files (one changed while it was
    // read, a symlink, content that is not text): read each on its own.
    let out = conn
        .run_own(&probe_script_each(probes, &marker)?, &[], timeout)
        .await?;
    read_answers_each(probes, &out.stdout, &marker).ok_or_else(|| {
        ProbeError::Failed(format!(
            "reading state: the answers came back malformed (stderr: {})",
            tail(&out.stderr)
        ))
    })
}

/// The paths of the file probes, each once, in order.
pub(crate) fn file_paths(probes: &[Probe]) -> Vec<&str> {
    each_once(probes, |p| match p {
        Probe::File(f) => Some(f.as_str()),
        _ => None,
    })
}

/// What `pick` takes from the probes, each once, in order.
fn each_once<'a>(probes: &'a [Probe], pick: impl Fn(&'a Probe) -> Option<&'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    probes
        .iter()
        .filter_map(pick)
        .filter(|x| seen.insert(*x))
        .collect()
}

/// The file probes' paths, each once, quoted for one command line; None
/// where there are none.
pub(crate) fn quoted_paths(probes: &[Probe]) -> Result<Option<String>, String> {
    words(&file_paths(probes))
}

/// Words quoted for one command line; None where there are none.
fn words(items: &[&str]) -> Result<Option<String>, String> {
    if items.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        items
            .iter()
            .map(|p| quote(p))
            .collect::<Result<Vec<_>, _>>()?
            .join(" "),
    ))
}

/// Per path: its name, the head a file probe answers with, and what tells
/// a change apart (size, inode, mtime, ctime).
pub(crate) const STAT: &str = "stat --printf '%n\\0%a %U %G %F\\0%s %i %y %z\\0' --";

/// The same stat's change markers alone, without the owner names (whose
/// lookup costs a stat process about as much again).
pub(crate) const RESTAT: &str = "stat --printf '%n\\0%s %i %y %z\\0' --";

/// Where SELinux is enabled (its filesystem mounted; a builtin test, so no
/// process elsewhere): each path's label against the policy's, one
/// `matchpathcon -V` for all paths. It prints "PATH verified." or "PATH has
/// context HAS, should be SHOULD" (`labels` reads it). `quoted`: the
/// paths, quoted for one command line.
fn label_check(quoted: &str) -> String {
    format!("if [ -e /sys/fs/selinux/enforce ]; then matchpathcon -V -- {quoted}; fi")
}

/// The paths whose label is not the policy's, from what `label_check` printed:
/// path -> (the label it has, the policy's).
pub(crate) fn labels(out: &str) -> HashMap<&str, (&str, &str)> {
    out.lines()
        .filter_map(|l| {
            let (path, rest) = l.split_once(" has context ")?;
            let (has, should) = rest.split_once(", should be ")?;
            Some((path, (has.trim(), should.trim())))
        })
        .collect()
}

/// A file probe's head with the label mismatch, if any, after a tab
/// (`FileState::parse` reads it).
fn with_label(head: &str, label: Option<&(&str, &str)>) -> String {
    match label {
        Some((has, should)) => format!("{head}\tlabel {has} {should}"),
        None => head.to_string(),
    }
}

/// Every part of a probe script ends with `\nMARKER INDEX RC\n`. Probe
/// scripts run in the host's shell itself (`Scope::Own`); the variables
/// modules' script probes use are declared here (`modules::PROBE_LOCALS`).
pub(crate) fn framed(parts: &[String], marker: &str) -> String {
    let mut script = format!("local {}\n", modules::PROBE_LOCALS);
    for (i, part) in parts.iter().enumerate() {
        script.push_str(&format!(
            "{part} 2>/dev/null </dev/null; {}\n",
            frame::end(marker, i, "$?")
        ));
    }
    script
}

/// All file probes in three processes, whatever their number: a `stat` of
/// every path, one `cat` of them all, a `stat` of their change markers again. `read_answers`
/// cuts the contents by the sizes the first stat gave; the second stat shows
/// that nothing changed while cat read. Then one `systemctl show` for all
/// unit probes, each batch script once with every argument asked of it,
/// and the script probes as written.
pub(crate) fn probe_script(probes: &[Probe], marker: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(quoted) = quoted_paths(probes)? {
        parts.push(format!("{STAT} {quoted}"));
        // Only regular files, never through a link: a device (a `dest`
        // templated to /dev/zero, a link planted to one) would stream
        // without end, and a link's content is not the link's. Builtins
        // pick them; the function's own arguments hold the list.
        parts.push(format!(
            "set --; for v in {quoted}; do [ -f \"$v\" ] && [ ! -L \"$v\" ] && set -- \"$@\" \"$v\"; done; [ $# -eq 0 ] || cat -- \"$@\""
        ));
        parts.push(format!("{RESTAT} {quoted}"));
        parts.push(label_check(&quoted));
    }
    if let Some(units) = words(&units(probes))? {
        parts.push(format!("{} {units}", modules::UNIT_SHOW));
    }
    for (script, args) in batches(probes) {
        let args = words(&args)?.unwrap_or_default();
        parts.push(format!("set -- {args}\n{{ {script}\n}}"));
    }
    for p in probes {
        if let Probe::Script(_) = p {
            parts.push(format!("{{ {}\n}}", p.script()?));
        }
    }
    let queries = probes
        .iter()
        .filter(|p| matches!(p, Probe::Query(_)))
        .map(|p| Ok(format!("{{ {}\n}}", p.script()?)))
        .collect::<Result<Vec<String>, String>>()?;
    if queries.is_empty() || parts.is_empty() {
        parts.extend(queries);
        return Ok(framed(&parts, marker));
    }
    Ok(beside(&parts, &queries, marker))
}

/// `framed`, with the queries run side by side with the other parts: each
/// in the background into its own file of a private directory (`mktemp
/// -d`), its frame written there too, then the files in order after the
/// others. Where no directory can be made, they run one by one.
fn beside(parts: &[String], queries: &[String], marker: &str) -> String {
    let first = parts.len();
    let one = |i: usize, q: &str| {
        format!(
            "{q} 2>/dev/null </dev/null; {}",
            frame::end(marker, first + i, "$?")
        )
    };
    let mut start = String::from("q=$(mktemp -d 2>/dev/null) || q=\np=\nif [ -n \"$q\" ]; then\n");
    let mut serial = String::new();
    let mut files = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        start.push_str(&format!("( {} ) >\"$q/{i}\" & p=\"$p $!\"\n", one(i, q)));
        serial.push_str(&one(i, q));
        serial.push('\n');
        files.push(format!("\"$q/{i}\""));
    }
    start.push_str("fi\n");
    let body = framed(parts, marker);
    // `framed` declares the locals first: the background jobs start after.
    let (locals, rest) = body.split_once('\n').unwrap_or((&body, ""));
    format!(
        "{locals}\n{start}{rest}if [ -n \"$q\" ]; then wait $p; cat {}; rm -rf \"$q\"; else\n{serial}fi\n",
        files.join(" ")
    )
}

/// The batch probes' scripts, each once, in order, with their arguments,
/// each once, in order.
fn batches(probes: &[Probe]) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for p in probes {
        if let Probe::Batch { script, arg } = p {
            match out.iter_mut().find(|(s, _)| s == script) {
                Some((_, args)) if args.contains(&arg.as_str()) => {}
                Some((_, args)) => args.push(arg),
                None => out.push((script, vec![arg])),
            }
        }
    }
    out
}

/// The unit probes' units, each once, in order.
fn units(probes: &[Probe]) -> Vec<&str> {
    each_once(probes, |p| match p {
        Probe::Unit(u) => Some(u.as_str()),
        _ => None,
    })
}

/// Each unit's answer from one `systemctl show` of them all: a block per
/// unit, in order, a blank line between. None unless there is one block
/// per unit (then `probe_script_each` asks each on its own).
fn unit_answers<'a>(probes: &'a [Probe], out: &ProbeOut) -> Option<HashMap<&'a str, ProbeOut>> {
    let units = units(probes);
    let blocks: Vec<&str> = out.out.trim_end_matches('\n').split("\n\n").collect();
    if out.rc != 0 || blocks.len() != units.len() {
        return None;
    }
    Some(
        units
            .into_iter()
            .zip(blocks)
            .map(|(u, b)| {
                (
                    u,
                    ProbeOut {
                        rc: 0,
                        out: format!("{b}\n"),
                    },
                )
            })
            .collect(),
    )
}

/// The probes' answers from the output of `probe_script`. A file probe's
/// answer is what `Probe::File` reads: the stat line, then the content; a
/// missing path is rc 1 and no output. None where the output is malformed
/// or the contents cannot be cut with certainty: then `probe_script_each`.
pub(crate) fn read_answers(probes: &[Probe], stdout: &str, marker: &str) -> Option<Vec<ProbeOut>> {
    let paths = file_paths(probes);
    let scripts = probes
        .iter()
        .filter(|p| matches!(p, Probe::Script(_) | Probe::Query(_)))
        .count();
    let stats = if paths.is_empty() { 0 } else { 4 };
    let shows = usize::from(probes.iter().any(|p| matches!(p, Probe::Unit(_))));
    let batches = batches(probes);
    let mut answers = split_answers(stdout, marker, stats + shows + batches.len() + scripts)?;
    let mut files: HashMap<&str, ProbeOut> = HashMap::new();
    if stats == 4 {
        let (before, body, after) = (&answers[0].out, &answers[1].out, &answers[2].out);
        let labels = labels(&answers[3].out);
        let fields: Vec<&str> = before.split('\0').collect();
        // The second stat must give each path's change markers as the first.
        let again: String = fields
            .chunks_exact(3)
            .map(|c| format!("{}\0{}\0", c[0], c[2]))
            .collect();
        if *after != again {
            return None;
        }
        let found: HashMap<&str, (&str, &str)> = fields
            .chunks_exact(3)
            .map(|c| (c[0], (c[1], c[2])))
            .collect();
        let mut at = 0;
        for path in paths {
            let answer = match found.get(path) {
                None => ProbeOut {
                    rc: 1,
                    out: String::new(),
                },
                Some((head, meta)) => {
                    let size: usize = meta.split(' ').next()?.parse().ok()?;
                    // Only regular files were read (a link's size is its
                    // target's name, a device's is 0 and endless).
                    let len = match head {
                        h if h.ends_with(" regular file") || h.ends_with(" regular empty file") => {
                            size
                        }
                        _ => 0,
                    };
                    let content = body.get(at..at + len)?;
                    at += len;
                    ProbeOut {
                        rc: 0,
                        out: format!("{}\n{content}", with_label(head, labels.get(path))),
                    }
                }
            };
            files.insert(path, answer);
        }
        if at != body.len() {
            return None;
        }
    }
    let mut rest = answers.split_off(stats);
    let units = if shows == 1 {
        unit_answers(probes, &rest.remove(0))?
    } else {
        HashMap::new()
    };
    let mut scripts = rest.split_off(batches.len());
    let batched: HashMap<&str, ProbeOut> = batches.iter().map(|(s, _)| *s).zip(rest).collect();
    // Scripts' answers first, in order, then the queries'.
    let count = probes
        .iter()
        .filter(|p| matches!(p, Probe::Script(_)))
        .count();
    let queries = scripts.split_off(count);
    let (mut scripts, mut queries) = (scripts.into_iter(), queries.into_iter());
    probes
        .iter()
        .map(|p| match p {
            Probe::File(path) => files.get(path.as_str()).cloned(),
            Probe::Unit(u) => units.get(u.as_str()).cloned(),
            Probe::Batch { script, .. } => batched.get(script.as_str()).cloned(),
            Probe::Script(_) => scripts.next(),
            Probe::Query(_) => queries.next(),
        })
        .collect()
}

/// File probes one by one: one `stat` for all paths, then a `cat` per path
/// that is not a directory. Script probes as written. Slower than
/// `probe_script`, and right whatever the files are.
pub(crate) fn probe_script_each(probes: &[Probe], marker: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(quoted) = quoted_paths(probes)? {
        parts.push(format!("{STAT} {quoted}"));
        parts.push(label_check(&quoted));
    }
    for p in probes {
        parts.push(match p {
            Probe::File(path) => {
                let q = quote(path)?;
                format!(
                    "if {}; then cat -- {q}; else [ -e {q} ] || [ -L {q} ]; fi",
                    modules::regular_file(&q)
                )
            }
            Probe::Script(_) | Probe::Query(_) | Probe::Unit(_) | Probe::Batch { .. } => {
                format!("{{ {}\n}}", p.script()?)
            }
        });
    }
    Ok(framed(&parts, marker))
}

/// The answers from the output of `probe_script_each`; a missing (or
/// unreadable) path is rc 1 and no output.
pub(crate) fn read_answers_each(
    probes: &[Probe],
    stdout: &str,
    marker: &str,
) -> Option<Vec<ProbeOut>> {
    let stat = !file_paths(probes).is_empty();
    let mut answers = split_answers(stdout, marker, probes.len() + 2 * usize::from(stat))?;
    if !stat {
        return Some(answers);
    }
    let heads = answers.remove(0).out;
    let label_out = answers.remove(0).out;
    let labels = labels(&label_out);
    let fields: Vec<&str> = heads.split('\0').collect();
    let found: HashMap<&str, &str> = fields.chunks_exact(3).map(|c| (c[0], c[1])).collect();
    for (p, a) in probes.iter().zip(answers.iter_mut()) {
        if let Probe::File(path) = p {
            *a = match found.get(path.as_str()) {
                Some(head) if a.rc == 0 => ProbeOut {
                    rc: 0,
                    out: format!("{}\n{}", with_label(head, labels.get(path.as_str())), a.out),
                },
                _ => ProbeOut {
                    rc: 1,
                    out: String::new(),
                },
            };
        }
    }
    Some(answers)
}

/// Cut probe output into its `count` parts (`frame::parts`).
pub(crate) fn split_answers(stdout: &str, marker: &str, count: usize) -> Option<Vec<ProbeOut>> {
    Some(
        frame::parts(stdout, marker, count)?
            .into_iter()
            .map(|f| ProbeOut {
                rc: f.rc,
                out: f.out,
            })
            .collect(),
    )
}

/// Probe answers read ahead, so a host's unchanged tasks cost one round trip
/// between them, not one each. An answer stays good until an action could
/// have changed what it read, as the action's `Touches` says.
#[derive(Default)]
pub(crate) struct ProbeCache {
    pub(crate) answers: HashMap<String, (Probe, ProbeOut)>,
}

impl ProbeCache {
    pub(crate) fn get(&self, probes: &[Probe]) -> Option<Vec<ProbeOut>> {
        probes
            .iter()
            .map(|p| {
                p.script()
                    .ok()
                    .and_then(|k| self.answers.get(&k))
                    .map(|(_, a)| a.clone())
            })
            .collect()
    }

    pub(crate) fn after(&mut self, action: &Action) {
        match action.touches() {
            Touches::Path(path) => {
                let p = Path::new(&path);
                self.answers.retain(|_, (probe, _)| match probe {
                    Probe::File(f) => !(Path::new(f).starts_with(p) || p.starts_with(f)),
                    Probe::Script(_) | Probe::Query(_) | Probe::Unit(_) | Probe::Batch { .. } => {
                        false
                    }
                });
            }
            Touches::Made(path) => {
                let p = Path::new(&path);
                self.answers.retain(
                    |_, (probe, _)| matches!(probe, Probe::File(f) if !p.starts_with(f.as_str())),
                );
            }
            Touches::Live => self
                .answers
                .retain(|_, (probe, _)| matches!(probe, Probe::File(_))),
            Touches::All => self.answers.clear(),
        }
    }
}

/// The probes of `task` and of the tasks after it on this host whose calls
/// can be known now, read in one round trip into the cache.
pub(crate) async fn read_ahead(
    s: &Shared,
    cx: &mut HostCx<'_>,
    rest: &[NodeIndex],
    first: &[Probe],
    timeout: Option<Duration>,
) -> Result<(), ProbeError> {
    let (h, conn, facts) = (cx.h, cx.conn, cx.facts);
    let cache = &mut cx.cache;
    let mut batch: Vec<Probe> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |p: &Probe, batch: &mut Vec<Probe>| {
        if let Ok(k) = p.script()
            && !cache.answers.contains_key(&k)
            && seen.insert(k)
        {
            batch.push(p.clone());
        }
    };
    for p in first {
        add(p, &mut batch);
    }
    for &n in rest {
        if s.opts.done.contains(&n) {
            continue;
        }
        // A task that waits for another host's data (`wait_for`) is read
        // once that data is there: its parameters may be rendered from it
        // (a join is judged by the first control plane's reading of the
        // Nodes), and read before, it would ask what it need not.
        let waits = s.dag.preds(n).any(|(p, e)| {
            e == crate::plan::graph::Edge::Data && s.results[p.index()].borrow().is_none()
        });
        if waits {
            continue;
        }
        // A task whose calls depend on what has not happened yet (a result
        // registered later in this run) fails to render here: it is read
        // when its turn comes.
        if let Ok(Calls::Run(calls)) = task_calls(s, h, &s.dag.graph[n].task, facts) {
            for (_, probes) in &calls {
                for p in probes.list() {
                    add(p, &mut batch);
                }
            }
        }
    }
    let answers = run_probes(conn, &batch, timeout).await?;
    for (p, a) in batch.iter().zip(answers) {
        if let Ok(k) = p.script() {
            cache.answers.insert(k, (p.clone(), a));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every unit probe of a round trip is one `systemctl show` (a script
    /// on PATH here, printing systemd's blocks), each unit's block its
    /// answer; a reply that does not hold one block per unit falls back to
    /// asking each on its own.
    #[test]
    fn unit_probes_share_one_systemctl() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let calls = d.join("calls");
        std::fs::write(
            d.join("systemctl"),
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nshift 6\nfirst=1\nfor u; do [ $first = 1 ] || echo; first=0; case $u in gone) printf 'ActiveState=inactive\\nUnitFileState=\\n';; *) printf 'ActiveState=active\\nUnitFileState=enabled\\n';; esac; done\n",
                calls.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("systemctl"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let probes = vec![
            Probe::Unit("containerd".into()),
            Probe::Script("echo between".into()),
            Probe::Unit("gone".into()),
            Probe::Unit("containerd".into()),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(crate::remote::script::own_call(&probe_script(&probes, "M").unwrap()).unwrap())
            .env("PATH", format!("{}:/usr/bin:/bin", d.display()))
            .output()
            .unwrap();
        let said = String::from_utf8(out.stdout).unwrap();
        let a = read_answers(&probes, &said, "M").unwrap_or_else(|| panic!("{said:?}"));
        let on = "ActiveState=active\nUnitFileState=enabled\n";
        assert_eq!(
            a[0],
            ProbeOut {
                rc: 0,
                out: on.into()
            }
        );
        assert_eq!(
            a[1],
            ProbeOut {
                rc: 0,
                out: "between\n".into()
            }
        );
        assert_eq!(
            a[2],
            ProbeOut {
                rc: 0,
                out: "ActiveState=inactive\nUnitFileState=\n".into()
            }
        );
        assert_eq!(a[3], a[0]);
        // One systemctl, each unit once.
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            "show -p ActiveState -p UnitFileState -- containerd gone\n"
        );
        // A block short: no guessing which unit it was.
        let short = "ActiveState=active\nUnitFileState=enabled\n\nM 0 0\nbetween\n\nM 1 0\n";
        assert!(read_answers(&probes, short, "M").is_none());
    }

    /// Batch probes with one script run it once, with every argument asked
    /// (each once, in order, quoted), and each reads the whole answer;
    /// another script is its own call; one alone (the fallback, or a cache
    /// miss) is asked with its own argument. Run by a real sh.
    #[test]
    fn batch_probes_share_one_call_with_all_their_arguments() {
        use super::*;
        let batch = |script: &str, arg: &str| Probe::Batch {
            script: script.into(),
            arg: arg.into(),
        };
        let ls = "printf '%s|' \"$@\"; echo";
        let probes = vec![
            batch(ls, "name==\"a:1\""),
            Probe::Script("echo between".into()),
            batch(ls, "b c"),
            batch("echo other \"$#\"; (exit 3)", "x"),
            batch(ls, "name==\"a:1\""),
            batch("echo other \"$#\"; (exit 3)", "y"),
        ];
        let run = |script: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::remote::script::own_call(script).unwrap())
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let said = run(&probe_script(&probes, "M").unwrap());
        let a = read_answers(&probes, &said, "M").unwrap_or_else(|| panic!("{said:?}"));
        let both = ProbeOut {
            rc: 0,
            out: "name==\"a:1\"|b c|\n".into(),
        };
        assert_eq!((&a[0], &a[2], &a[4]), (&both, &both, &both));
        assert_eq!(a[1].out, "between\n");
        let other = ProbeOut {
            rc: 3,
            out: "other 2\n".into(),
        };
        assert_eq!((&a[3], &a[5]), (&other, &other));
        // Asked on its own: its own argument alone.
        let each = run(&probe_script_each(&probes[2..3], "M").unwrap());
        let a = read_answers_each(&probes[2..3], &each, "M").unwrap();
        assert_eq!(a[0].out, "b c|\n");
    }

    /// Where SELinux is enabled, each file probe's head carries its label
    /// against the policy's, from one `matchpathcon -V` (a script on PATH
    /// here, printing what libselinux's does; the enabled test points at a
    /// temp file); elsewhere no process runs and nothing is added.
    #[test]
    fn file_probes_carry_a_label_that_is_not_the_policys() {
        use super::*;
        use crate::modules::FileState;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (hosts, other) = (d.join("hosts"), d.join("other"));
        std::fs::write(&hosts, "h\n").unwrap();
        std::fs::write(&other, "o\n").unwrap();
        std::fs::create_dir(d.join("bin")).unwrap();
        let stub = d.join("bin/matchpathcon");
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\n[ \"$1 $2\" = '-V --' ] || exit 9\nshift 2\nfor p; do case $p in *hosts) echo \"$p has context system_u:object_r:etc_t:s0, should be system_u:object_r:net_conf_t:s0\";; *) echo \"$p verified.\";; esac; done\ntouch {}/ran\n",
                d.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let probes = vec![
            Probe::File(hosts.display().to_string()),
            Probe::File(other.display().to_string()),
        ];
        let enforce = d.join("enforce");
        let run = |script: String| {
            let script = script.replace("/sys/fs/selinux/enforce", enforce.to_str().unwrap());
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::remote::script::own_call(&script).unwrap())
                .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        for each in [false, true] {
            let read = |script: String| {
                let out = run(script);
                if each {
                    read_answers_each(&probes, &out, "M").unwrap()
                } else {
                    read_answers(&probes, &out, "M").unwrap()
                }
            };
            let script = || {
                if each {
                    probe_script_each(&probes, "M")
                } else {
                    probe_script(&probes, "M")
                }
                .unwrap()
            };
            // SELinux not enabled: no label, and matchpathcon never ran.
            let a = read(script());
            assert_eq!(FileState::parse(&a[0]).relabel, None);
            assert_eq!(FileState::parse(&a[0]).content, "h\n");
            assert!(!d.join("ran").exists());
            std::fs::write(&enforce, "1").unwrap();
            let a = read(script());
            let st = FileState::parse(&a[0]);
            assert_eq!(
                st.relabel,
                Some((
                    "system_u:object_r:etc_t:s0".into(),
                    "system_u:object_r:net_conf_t:s0".into()
                ))
            );
            assert_eq!(
                (st.kind.as_str(), st.content.as_str()),
                ("regular file", "h\n")
            );
            assert_eq!(FileState::parse(&a[1]).relabel, None);
            assert!(d.join("ran").exists());
            std::fs::remove_file(&enforce).unwrap();
            std::fs::remove_file(d.join("ran")).unwrap();
        }
    }

    use super::*;
    use crate::modules::AnyModule;

    /// Both ways of reading many probes at once read exactly what one
    /// `Probe::File` script per path reads, run through a real sh.
    #[test]
    fn batched_file_probes_read_what_single_probes_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("plain"), "a\nb\n").unwrap();
        std::fs::write(d.join("no newline"), "x").unwrap();
        std::fs::write(d.join("it's"), "").unwrap();
        std::fs::write(d.join("utf8"), "héllo ✓\n").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let names = [
            "plain",
            "no newline",
            "it's",
            "sub",
            "missing",
            "utf8",
            "plain",
        ];
        let mut probes: Vec<Probe> = names
            .iter()
            .map(|n| Probe::File(d.join(n).display().to_string()))
            .collect();
        probes.insert(2, Probe::Script("echo between; sh -c 'exit 4'".into()));
        let sh = |script: &str| {
            String::from_utf8_lossy(
                &std::process::Command::new("sh")
                    .arg("-c")
                    .arg(crate::remote::script::own_call(script).unwrap())
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned()
        };
        let one_cat =
            read_answers(&probes, &sh(&probe_script(&probes, "M").unwrap()), "M").unwrap();
        let each = read_answers_each(&probes, &sh(&probe_script_each(&probes, "M").unwrap()), "M")
            .unwrap();
        for (i, p) in probes.iter().enumerate() {
            let one = std::process::Command::new("sh")
                .arg("-c")
                .arg(p.script().unwrap())
                .output()
                .unwrap();
            let want = ProbeOut {
                rc: one.status.code().unwrap().min(1),
                out: String::from_utf8(one.stdout).unwrap(),
            };
            let want = if matches!(p, Probe::Script(_)) {
                ProbeOut {
                    rc: 4,
                    out: "between\n".into(),
                }
            } else {
                want
            };
            assert_eq!(one_cat[i], want, "one cat: {p:?}");
            assert_eq!(each[i], want, "each: {p:?}");
        }
        assert!(one_cat[4].out.contains("directory") && one_cat[5].rc == 1);
        // Only regular files are read (review finding 3): a link and a
        // device are described by their stat line alone, in one cat and one
        // by one, and /dev/zero's endless content is never asked for.
        std::os::unix::fs::symlink(d.join("plain"), d.join("link")).unwrap();
        for odd in [
            d.join("link").display().to_string(),
            "/dev/zero".to_string(),
        ] {
            let probes = vec![
                Probe::File(odd.clone()),
                Probe::File(d.join("plain").display().to_string()),
            ];
            let one =
                read_answers(&probes, &sh(&probe_script(&probes, "M").unwrap()), "M").unwrap();
            let each =
                read_answers_each(&probes, &sh(&probe_script_each(&probes, "M").unwrap()), "M")
                    .unwrap();
            assert_eq!(one, each, "{odd}");
            assert_eq!(one[1], one_cat[0], "{odd}");
            let (head, content) = one[0].out.split_once('\n').unwrap();
            assert!(
                head.ends_with(" symbolic link") || head.ends_with(" character special file"),
                "{head}"
            );
            assert_eq!(content, "", "{odd}");
        }
        // What one cat cannot be cut into with certainty is read file by
        // file: bytes that are not text, a file that changed between the
        // two stats.
        std::fs::write(d.join("binary"), b"\xff\xfe").unwrap();
        let probes = vec![
            Probe::File(d.join("binary").display().to_string()),
            Probe::File(d.join("plain").display().to_string()),
        ];
        assert!(read_answers(&probes, &sh(&probe_script(&probes, "M").unwrap()), "M").is_none());
        let each = read_answers_each(&probes, &sh(&probe_script_each(&probes, "M").unwrap()), "M")
            .unwrap();
        assert_eq!(each[1], one_cat[0]);
        let probes = vec![Probe::File(d.join("plain").display().to_string())];
        let out = sh(&probe_script(&probes, "M").unwrap());
        let changed = out.replacen("\u{0}4 ", "\u{0}5 ", 1);
        assert_ne!(out, changed);
        assert!(
            read_answers(&probes, &changed, "M").is_none(),
            "a size that changed between the stats"
        );
    }

    /// Queries run side by side with the other probes: the first waits
    /// for a file the second makes, which it could not see if they ran one
    /// after the other. Each answer is its own, in order, and the shell is
    /// left as found, with no directory of theirs left behind.
    #[test]
    fn queries_run_side_by_side_and_answer_in_order() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("second-ran").display().to_string();
        // A file probe beside them, on a path they do not touch.
        let elsewhere = tempfile::tempdir().unwrap();
        let other = elsewhere.path().join("f").display().to_string();
        std::fs::write(&other, "x\n").unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let probes = vec![
            Probe::Query(format!(
                "i=0; while [ ! -e {flag} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; [ -e {flag} ] && echo saw-second"
            )),
            Probe::Script("echo plain; false".into()),
            Probe::Query(format!("touch {flag}; echo second; sh -c 'exit 3'")),
            Probe::File(other.clone()),
        ];
        let script = probe_script(&probes, "M").unwrap();
        let out = crate::remote::ssh::tests::shell_left_as_found(&script, &[]).unwrap();
        let answers =
            read_answers(&probes, &out, "M").unwrap_or_else(|| panic!("malformed: {out}"));
        assert_eq!(
            (answers[0].rc, answers[0].out.as_str()),
            (0, "saw-second\n"),
            "{out}"
        );
        assert_eq!((answers[1].rc, answers[1].out.as_str()), (1, "plain\n"));
        assert_eq!((answers[2].rc, answers[2].out.as_str()), (3, "second\n"));
        // Their directory is made in TMPDIR and removed.
        std::fs::remove_file(&flag).unwrap();
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("f() {{\n{script}\n}}; f"))
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        let again = read_answers(&probes, &String::from_utf8_lossy(&o.stdout), "M").unwrap();
        assert_eq!(again[0].out, "saw-second\n");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        // Queries alone have nothing to run beside: no directory.
        let alone = probe_script(&probes[2..3], "M").unwrap();
        assert!(!alone.contains("mktemp"), "{alone}");
    }

    /// Probe requests run in the host's shell itself: with every kind of
    /// module's probes in them, they leave it as they found it.
    #[test]
    fn probe_requests_leave_the_shell_as_found() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f").display().to_string();
        std::fs::write(&file, "x\n").unwrap();
        let mut probes = Vec::new();
        for (name, params) in [
            ("copy", json!({"dest": file, "content": "y"})),
            (
                "sysctl",
                json!({"values": {"kernel.ostype": "Linux", "kernel.pid_max": 1, "no.such.key": 1}}),
            ),
            ("hostname", json!({"name": "n1"})),
            ("modprobe", json!({"name": "br_netfilter"})),
            ("command", json!({"argv": ["true"], "creates": file})),
            ("package", json!({"name": ["bash"]})),
            // A batch (two uploads, one stat) and a query (kubectl, or
            // `no-cluster` here), run beside the rest.
            (
                "upload",
                json!({"src": "x", "dest": file, "sha256": "a".repeat(64)}),
            ),
            (
                "upload",
                json!({"src": "x", "dest": "/nonexistent/y", "sha256": "a".repeat(64)}),
            ),
            ("node_label", json!({"node": "n1", "labels": {"a": "b"}})),
        ] {
            probes.extend(
                AnyModule::parse(name, params)
                    .unwrap()
                    .probes()
                    .unwrap()
                    .list()
                    .cloned(),
            );
        }
        type Reader = fn(&[Probe], &str, &str) -> Option<Vec<ProbeOut>>;
        let ways: [(String, Reader); 2] = [
            (probe_script(&probes, "M").unwrap(), read_answers),
            (probe_script_each(&probes, "M").unwrap(), read_answers_each),
        ];
        for (script, read) in ways {
            let out = crate::remote::ssh::tests::shell_left_as_found(&script, &[]).unwrap();
            let answers = read(&probes, &out, "M").unwrap_or_else(|| panic!("malformed: {out}"));
            // The sysctl probe read the kernel's values whole, string and
            // number (keys in order), and found no key where there is none.
            let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
            assert_eq!(
                answers[1].out,
                format!("/proc/sys/kernel/ostype:Linux\n/proc/sys/kernel/pid_max:{pid_max}"),
                "{:?}",
                answers[1]
            );
            // Both uploads have the one answer, each its section in it.
            let batch: Vec<&ProbeOut> = probes
                .iter()
                .zip(&answers)
                .filter(|(p, _)| matches!(p, Probe::Batch { .. }))
                .map(|(_, a)| a)
                .collect();
            assert_eq!(batch.len(), 2);
            assert!(
                batch[0].out.contains(&format!("dest {file}\nfile ")),
                "{:?}",
                batch[0]
            );
            assert!(
                batch[1].out.contains("dest /nonexistent/y\nabsent\n"),
                "{:?}",
                batch[1]
            );
            let query = probes
                .iter()
                .position(|p| matches!(p, Probe::Query(_)))
                .unwrap();
            assert!(
                answers[query].out.contains("no-cluster"),
                "{:?}",
                answers[query]
            );
        }
    }

    #[test]
    fn an_action_drops_only_the_answers_it_could_change() {
        let file = |p: &str| Probe::File(p.into());
        let sysctl = Probe::Script("sysctl -n x".into());
        let cache = || {
            let mut c = ProbeCache::default();
            for p in [
                file("/etc/a"),
                file("/etc/b"),
                file("/etc/c"),
                file("/etc/c/d/x"),
                sysctl.clone(),
            ] {
                c.answers
                    .insert(p.script().unwrap(), (p, ProbeOut::default()));
            }
            c
        };
        let has = |c: &ProbeCache, p: &Probe| c.get(std::slice::from_ref(p)).is_some();
        let mut c = cache();
        c.after(&Action::Write {
            path: "/etc/a".into(),
            content: String::new(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        });
        assert!(!has(&c, &file("/etc/a")) && !has(&c, &sysctl));
        assert!(has(&c, &file("/etc/b")) && has(&c, &file("/etc/c")));
        // rm -rf reaches the paths above and below the one it names; mkdir -p
        // only the path and those above it.
        let mut c = cache();
        c.after(&Action::run(&["rm", "-rf", "--", "/etc/c/d"]).unwrap());
        assert!(!has(&c, &file("/etc/c")) && !has(&c, &file("/etc/c/d/x")));
        assert!(has(&c, &file("/etc/b")));
        let mut c = cache();
        c.after(&Action::run(&["mkdir", "-p", "-m", "755", "--", "/etc/c/d"]).unwrap());
        assert!(!has(&c, &file("/etc/c")) && has(&c, &file("/etc/c/d/x")) && !has(&c, &sysctl));
        assert!(has(&c, &file("/etc/b")));
        // Live state is what scripts read; files stay good.
        let mut c = cache();
        c.after(&Action::run(&["hostname", "--", "n1"]).unwrap());
        assert!(!has(&c, &sysctl) && has(&c, &file("/etc/a")));
        // A user's command could change anything.
        let mut c = cache();
        c.after(&Action::run(&["sh", "-c", "true"]).unwrap());
        assert!(c.answers.is_empty());
    }
}
