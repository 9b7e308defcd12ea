//! What the user sees of a run: live progress (indicatif on a terminal, plain
//! lines otherwise), per-task lines and diffs, and the per-host summary. Every
//! string passes through the redactor, so a secret never reaches the screen.
//! Only the run's sink (`sink.rs`) calls it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use console::style;
use indicatif::{ProgressBar, ProgressStyle};

use super::redact::Redactor;
use crate::exec::Outcome;

/// A diff as shown: long lines cut, long diffs cut, so a 64 KiB one-line
/// file does not flood the terminal. The full change is still applied.
fn shorten_diff(d: &str, lines: usize) -> String {
    const WIDTH: usize = 160;
    let limit = lines;
    let mut out = String::new();
    let total = d.lines().count();
    for line in d.lines().take(limit) {
        if line.chars().count() > WIDTH {
            let cut: String = line.chars().take(WIDTH).collect();
            out.push_str(&format!("{cut}… ({} more bytes)\n", line.len() - cut.len()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if total > limit {
        out.push_str(&format!("… ({} more diff lines)\n", total - limit));
    }
    out
}

/// Where a plan's headline names its host; `group` puts the host, or the
/// hosts, in its place.
const HOST_MARK: &str = "\u{E000}";
/// In a change shown once for many hosts, each host's own name.
const OWN_NAME: &str = "‹host›";

/// A plan's blocks, (host, text) in inventory order, grouped: the same text
/// on several hosts prints once, naming them ("3 hosts (node1..node3)").
/// First the texts that are the same as they are (a /etc/hosts that lists
/// every host); then those that differ only by the host's own name (its
/// /etc/hostname), with `OWN_NAME` in its place.
fn group(blocks: &[(&str, &str)], all: usize) -> Vec<String> {
    /// Blocks by text: (text, the blocks' indexes), in order of first
    /// appearance.
    fn by_text(items: impl Iterator<Item = (String, usize)>) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let mut at: std::collections::HashMap<String, usize> = Default::default();
        for (text, i) in items {
            match at.get(&text) {
                Some(&g) => out[g].1.push(i),
                None => {
                    at.insert(text.clone(), out.len());
                    out.push((text, vec![i]));
                }
            }
        }
        out
    }
    let hosts_of = |ix: &[usize]| ix.iter().map(|&i| blocks[i].0).collect::<Vec<_>>();
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut singles = Vec::new();
    for (text, ix) in by_text(
        blocks
            .iter()
            .enumerate()
            .map(|(i, (_, b))| (b.to_string(), i)),
    ) {
        match ix.as_slice() {
            [one] => singles.push(*one),
            _ => out.push((ix[0], text.replace(HOST_MARK, &many(&hosts_of(&ix), all)))),
        }
    }
    // The singles again, with the host's own name as a mark.
    let marked = singles
        .iter()
        .map(|&i| (own_name_marked(blocks[i].1, blocks[i].0), i));
    let mut rest = Vec::new();
    for (text, ix) in by_text(marked) {
        match ix.as_slice() {
            [one] => rest.push(*one),
            _ => out.push((ix[0], text.replace(HOST_MARK, &many(&hosts_of(&ix), all)))),
        }
    }
    // What is left differs in lines of each host's own (a /etc/hosts that
    // lists every host, its own line among them): the same headline prints
    // once, with the first host's diff.
    let headline =
        |i: usize| own_name_marked(blocks[i].1.lines().next().unwrap_or_default(), blocks[i].0);
    for (_, ix) in by_text(rest.iter().map(|&i| (headline(i), i))) {
        let first = blocks[ix[0]];
        let shown = match ix.as_slice() {
            [_] => first.1.replace(HOST_MARK, first.0),
            _ => {
                let (head, body) = first.1.split_once('\n').unwrap_or((first.1, ""));
                format!(
                    "{}\n    ({}'s diff; the others differ in lines of their own, which -v shows)\n{body}",
                    head.replace(HOST_MARK, &many(&hosts_of(&ix), all)),
                    first.0
                )
            }
        };
        out.push((ix[0], shown.trim_end().to_string()));
    }
    // In task order: by the place of a group's first block among its
    // host's blocks, then by host.
    let seq = |i: usize| {
        blocks[..i]
            .iter()
            .filter(|(h, _)| *h == blocks[i].0)
            .count()
    };
    out.sort_by_key(|(first, _)| (seq(*first), *first));
    out.into_iter().map(|(_, t)| t).collect()
}

/// "node4", "47 hosts (node4..node50)", or "all 50 hosts" (of `all`).
fn many(hosts: &[&str], all: usize) -> String {
    match hosts {
        [one] => one.to_string(),
        _ if hosts.len() == all => format!("all {all} hosts"),
        _ => format!("{} hosts ({})", hosts.len(), compact_hosts(hosts)),
    }
}

/// The text with the host's own name, where it stands as a word, marked.
fn own_name_marked(text: &str, host: &str) -> String {
    if host.is_empty() {
        return text.to_string();
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(host) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + host.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(word) || after.is_some_and(word) {
            out.push_str(host);
        } else {
            out.push_str(OWN_NAME);
        }
        rest = &rest[at + host.len()..];
    }
    out.push_str(rest);
    out
}

/// Host names, runs of three or more numbered alike (node4, node5, node6)
/// as "node4..node6"; past twelve entries, the rest counted.
pub fn compact_hosts(hosts: &[&str]) -> String {
    let split = |h: &str| {
        let digits = h.len() - h.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (p, n) = h.split_at(h.len() - digits);
        (p.to_string(), n.parse::<u64>().ok(), n.len())
    };
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < hosts.len() {
        let (p, n, w) = split(hosts[i]);
        let mut j = i;
        if let Some(n) = n {
            while j + 1 < hosts.len() {
                let (p2, n2, w2) = split(hosts[j + 1]);
                if p2 == p
                    && n2 == Some(n + (j + 1 - i) as u64)
                    && (w2 == w || !hosts[j + 1][p.len()..].starts_with('0'))
                {
                    j += 1;
                } else {
                    break;
                }
            }
        }
        if j - i >= 2 {
            parts.push(format!("{}..{}", hosts[i], hosts[j]));
            i = j + 1;
        } else {
            parts.push(hosts[i].to_string());
            i += 1;
        }
    }
    if parts.len() > 12 {
        let more = parts.len() - 10;
        parts.truncate(10);
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unreachable: usize,
    /// Finished in an earlier run, not run again (`--retry-failed`, `--from`).
    pub done: usize,
}

impl Counts {
    /// Tasks counted, whatever their outcome.
    fn total(&self) -> usize {
        self.ok + self.changed + self.failed + self.skipped + self.unreachable + self.done
    }

    fn add(&mut self, c: &Counts) {
        self.ok += c.ok;
        self.changed += c.changed;
        self.failed += c.failed;
        self.skipped += c.skipped;
        self.unreachable += c.unreachable;
        self.done += c.done;
    }
}

pub struct Reporter {
    pub plan: bool,
    pub verbose: bool,
    bar: Option<ProgressBar>,
    counts: Mutex<BTreeMap<String, Counts>>,
    /// Output held for the end, per host, printed grouped in inventory
    /// order (`group`): all of a plan's, and apply's changes (without
    /// -v), so that the same change on fifty hosts prints once and two
    /// plans diff cleanly. Apply's failures print as they happen.
    held: Mutex<BTreeMap<String, Vec<String>>>,
    order: Vec<String>,
    pub redactor: Redactor,
    /// `--output json`: the playbook's name; every task's outcome is kept
    /// for one document at the end, and nothing else goes to stdout.
    json: Option<String>,
    records: Mutex<BTreeMap<String, Vec<serde_json::Value>>>,
    /// How many tasks each host has in this run, for the bar's hosts done.
    tasks_of: BTreeMap<String, usize>,
}

/// The version of `--output json`'s document; a change that removes or
/// renames a field is a new version.
pub const JSON_SCHEMA: &str = "gantry.run/1";

impl Reporter {
    /// `hosts` with how many tasks each has in this run.
    pub fn new(plan: bool, verbose: bool, hosts: &[(String, usize)]) -> Reporter {
        let total: usize = hosts.iter().map(|(_, n)| n).sum();
        let bar = console::Term::stdout().is_term().then(|| {
            let b = super::progress::bars().add(ProgressBar::new(total as u64));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks, {msg} (ETA {eta})",
                )
                .unwrap(),
            );
            b
        });
        let hosts_total: BTreeMap<String, usize> = hosts.iter().cloned().collect();
        let hosts: Vec<String> = hosts.iter().map(|(h, _)| h.clone()).collect();
        let hosts = hosts.as_slice();
        let counts = hosts
            .iter()
            .map(|h| (h.clone(), Counts::default()))
            .collect();
        let r = Reporter {
            plan,
            verbose,
            bar,
            counts: Mutex::new(counts),
            held: Mutex::new(BTreeMap::new()),
            order: hosts.to_vec(),
            redactor: Redactor::default(),
            json: None,
            records: Mutex::new(BTreeMap::new()),
            tasks_of: hosts_total,
        };
        r.progress();
        r
    }

    /// The bar's words: hosts finished of all, and failures so far.
    fn progress(&self) {
        let Some(b) = &self.bar else { return };
        let counts = self.counts.lock().unwrap();
        let done = counts
            .iter()
            .filter(|(h, c)| self.tasks_of.get(*h).is_some_and(|n| c.total() >= *n))
            .count();
        let failed = counts
            .values()
            .filter(|c| c.failed + c.unreachable > 0)
            .count();
        b.set_message(format!(
            "{done}/{} hosts done, {failed} failed",
            self.tasks_of.len()
        ));
    }

    /// Apply's progress without a terminal (a CI log): one line as each
    /// host finishes all its tasks, since its changes print at the end.
    fn host_progress(&self, host: &str) {
        if self.plan || self.verbose || self.bar.is_some() || self.json.is_some() {
            return;
        }
        let c = self
            .counts
            .lock()
            .unwrap()
            .get(host)
            .copied()
            .unwrap_or_default();
        if self.tasks_of.get(host) == Some(&c.total()) {
            self.line(&format!(
                "{} {host}: ok={} changed={} failed={} skipped={} unreachable={}",
                style("done").dim(),
                c.ok,
                c.changed,
                c.failed,
                c.skipped,
                c.unreachable
            ));
        }
    }

    /// Report as one JSON document (`--output json`).
    pub fn json(&mut self, playbook: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        self.json = Some(playbook.to_string());
    }

    /// One outcome as JSON, every text redacted.
    fn record(&self, host: &str, task: Option<&str>, outcome: &Outcome, tasks: usize) {
        use serde_json::json;
        let r = |t: &str| self.redactor.redact(t);
        let mut v = json!({ "task": task, "outcome": outcome.word() });
        match outcome {
            Outcome::Changed {
                reason,
                diff,
                actions,
            } => {
                v["reason"] = json!(r(reason));
                v["diff"] = json!(diff.as_deref().map(r));
                v["actions"] = json!(actions.iter().map(|a| r(a)).collect::<Vec<_>>());
            }
            Outcome::Failed {
                reason,
                command,
                rc,
                stderr,
            } => {
                v["reason"] = json!(r(reason));
                v["command"] = json!(command.as_deref().map(r));
                v["exit_code"] = json!(rc);
                v["stderr"] = json!(r(stderr));
            }
            other => v["reason"] = json!(r(&other.reason())),
        }
        if task.is_none() {
            v["tasks_not_run"] = json!(tasks);
        }
        self.records
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .push(v);
    }

    /// Whether a task's outcome waits for the end (see `held`).
    fn holds(&self, outcome: &Outcome) -> bool {
        self.plan || (!self.verbose && matches!(outcome, Outcome::Changed { .. }))
    }

    fn host_line(&self, host: &str, s: &str, hold: bool) {
        if hold {
            self.held
                .lock()
                .unwrap()
                .entry(host.to_string())
                .or_default()
                .push(self.redactor.redact(s));
        } else {
            self.line(s);
        }
    }

    fn line(&self, s: &str) {
        let s = self.redactor.redact(s);
        match &self.bar {
            Some(b) => b.println(s),
            None => crate::outln!("{s}"),
        }
    }

    pub fn task_done(&self, host: &str, task: &str, outcome: &Outcome) {
        {
            let mut c = self.counts.lock().unwrap();
            let c = c.entry(host.to_string()).or_default();
            match outcome {
                Outcome::Ok(_) => c.ok += 1,
                Outcome::Changed { .. } => c.changed += 1,
                Outcome::Failed { .. } => c.failed += 1,
                Outcome::Skipped(_) | Outcome::Blocked(_) => c.skipped += 1,
                Outcome::Unreachable(_) => c.unreachable += 1,
            }
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        self.progress();
        self.host_progress(host);
        if self.json.is_some() {
            self.record(host, Some(task), outcome, 1);
            return;
        }
        let changed_word = if self.plan { "would change" } else { "changed" };
        // In what is held for the end the host's name in the headline is a
        // mark, so that the same change on many hosts prints once (`group`).
        let hold = self.holds(outcome);
        let who = if hold { HOST_MARK } else { host };
        match outcome {
            Outcome::Ok(r) if self.verbose => self.host_line(
                host,
                &format!("{} {who} {task}: {}", style("ok").green(), r),
                hold,
            ),
            Outcome::Skipped(r) if self.verbose => self.host_line(
                host,
                &format!("{} {who} {task}: {r}", style("skip").dim()),
                hold,
            ),
            Outcome::Ok(_) | Outcome::Skipped(_) => {}
            Outcome::Changed {
                reason,
                diff,
                actions,
            } => {
                let mut block = vec![format!(
                    "{} {who} {task}: {reason}",
                    style(changed_word).yellow()
                )];
                if let Some(d) = diff {
                    // Redacted before it is cut: a cut secret no longer
                    // matches. Without -v a diff's start shows; the whole
                    // change is still applied.
                    let lines = if self.verbose { 120 } else { 16 };
                    let colored: String = shorten_diff(&self.redactor.redact(d), lines)
                        .lines()
                        .map(|l| {
                            let l = format!("    {l}");
                            if l.starts_with("    +") && !l.starts_with("    +++") {
                                style(l).green().to_string()
                            } else if l.starts_with("    -") && !l.starts_with("    ---") {
                                style(l).red().to_string()
                            } else {
                                l
                            }
                        })
                        .map(|l| l + "\n")
                        .collect();
                    block.push(colored.trim_end().to_string());
                }
                if self.plan || self.verbose {
                    for a in actions {
                        block.push(format!("    {} {a}", style("->").dim()));
                    }
                }
                self.host_line(host, &block.join("\n"), hold);
            }
            Outcome::Failed {
                reason,
                command,
                rc,
                stderr,
            } => {
                let mut s = format!("{} {who} {task}: {reason}", style("FAILED").red().bold());
                if let Some(c) = command {
                    s.push_str(&format!("\n    command: {c}"));
                }
                if let Some(rc) = rc {
                    s.push_str(&format!("\n    exit code: {rc}"));
                }
                if !stderr.trim().is_empty() {
                    s.push_str(&format!(
                        "\n    stderr: {}",
                        stderr.trim().replace('\n', "\n            ")
                    ));
                }
                self.host_line(host, &s, hold);
            }
            Outcome::Blocked(r) => self.host_line(
                host,
                &format!("{} {who} {task}: {r}", style("skipped").dim()),
                hold,
            ),
            Outcome::Unreachable(r) => self.host_line(
                host,
                &format!("{} {who} {task}: {r}", style("UNREACHABLE").red().bold()),
                hold,
            ),
        }
    }

    /// A host that cannot be used (unreachable, locked, not started): one
    /// line, and every remaining task counted.
    pub fn host_unusable(&self, host: &str, o: &Outcome, tasks: usize) {
        {
            let mut c = self.counts.lock().unwrap();
            let c = c.entry(host.to_string()).or_default();
            match o {
                Outcome::Unreachable(_) => c.unreachable += tasks,
                Outcome::Failed { .. } => c.failed += tasks,
                _ => c.skipped += tasks,
            }
        }
        if let Some(b) = &self.bar {
            b.inc(tasks as u64);
        }
        self.progress();
        self.host_progress(host);
        if tasks > 0 && self.json.is_some() {
            self.record(host, None, o, tasks);
        } else if tasks > 0 {
            let word = match o {
                Outcome::Unreachable(_) => style("UNREACHABLE").red().bold(),
                Outcome::Failed { .. } => style("FAILED").red().bold(),
                _ => style("skipped").dim(),
            };
            let who = if self.plan { HOST_MARK } else { host };
            self.host_line(
                host,
                &format!("{word} {who}: {} ({tasks} task(s) not run)", o.reason()),
                self.plan,
            );
        }
    }

    /// A task finished in an earlier run and not run again.
    pub fn done_earlier(&self, host: &str) {
        self.counts
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .done += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        self.progress();
        self.host_progress(host);
    }

    /// A run-wide message (stop, retry, lock), printed at once.
    pub fn notice(&self, s: &str) {
        match self.json {
            Some(_) => eprintln!("note: {}", self.redactor.redact(s)),
            None => self.line(&format!("{} {s}", style("note:").cyan())),
        }
    }

    /// Print the per-host summary; returns the totals.
    pub fn finish(&self) -> Counts {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(playbook) = &self.json {
            return self.finish_json(playbook);
        }
        let grouped = self.print_held();
        let counts = self.counts.lock().unwrap();
        let groups = |word: &str| grouped.iter().filter(|t| t.contains(word)).count();
        let changes: usize = counts.values().map(|c| c.changed).sum();
        let changing = counts.values().filter(|c| c.changed > 0).count();
        if self.plan {
            crate::outln!(
                "\nPlan: {changes} change(s) on {changing} of {} host(s), in {} group(s) of identical changes.",
                counts.len(),
                groups("would change")
            );
        } else if !self.verbose && changes > 0 {
            crate::outln!(
                "\nApplied: {changes} change(s) on {changing} of {} host(s), in {} group(s) of identical changes.",
                counts.len(),
                groups("changed")
            );
        }
        // Rows of many hosts with the same counts print once.
        let rows: Vec<(String, Counts)> = if self.order.len() > 10 {
            let mut by_counts: Vec<(Counts, Vec<&str>)> = Vec::new();
            for h in &self.order {
                let c = counts.get(h).copied().unwrap_or_default();
                match by_counts.iter_mut().find(|(k, _)| *k == c) {
                    Some((_, hs)) => hs.push(h),
                    None => by_counts.push((c, vec![h])),
                }
            }
            by_counts
                .into_iter()
                .map(|(c, hs)| (compact_hosts(&hs), c))
                .collect()
        } else {
            counts.iter().map(|(h, c)| (h.clone(), *c)).collect()
        };
        let width = rows.iter().map(|(h, _)| h.len()).max().unwrap_or(4).max(4);
        let changed_word = if self.plan { "to change" } else { "changed" };
        crate::outln!(
            "\n{:width$}  {:>4} {:>9} {:>6} {:>7} {:>11}",
            "HOST",
            "ok",
            changed_word,
            "failed",
            "skipped",
            "unreachable"
        );
        let mut t = Counts::default();
        for (h, c) in &rows {
            crate::outln!(
                "{h:width$}  {:>4} {:>9} {:>6} {:>7} {:>11}",
                c.ok,
                c.changed,
                c.failed,
                c.skipped,
                c.unreachable
            );
        }
        for c in counts.values() {
            t.add(c);
        }
        let verb = if self.plan { "to change" } else { "changed" };
        let done = if t.done > 0 {
            format!(" (and {} task(s) done in earlier runs, not rerun)", t.done)
        } else {
            String::new()
        };
        crate::outln!(
            "{} hosts: ok={} {verb}={} failed={} skipped={} unreachable={}{done}",
            counts.len(),
            t.ok,
            t.changed,
            t.failed,
            t.skipped,
            t.unreachable
        );
        t
    }
}

impl Reporter {
    /// Print what was held for the end, grouped (-v: every host's own
    /// lines); emptied, so that an abort that prints it leaves nothing
    /// for a second time. Returns what it printed.
    pub fn print_held(&self) -> Vec<String> {
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        let blocks: Vec<(&str, &str)> = self
            .order
            .iter()
            .flat_map(|h| {
                held.get(h)
                    .into_iter()
                    .flatten()
                    .map(move |b| (h.as_str(), b.as_str()))
            })
            .collect();
        let grouped: Vec<String> = match self.verbose {
            // -v: every host's own lines, as they were.
            true => blocks
                .iter()
                .map(|(h, b)| b.replace(HOST_MARK, h))
                .collect(),
            false => group(&blocks, self.order.len()),
        };
        let mut own_name = false;
        for text in &grouped {
            own_name |= text.contains(OWN_NAME);
            crate::outln!("{text}");
        }
        if own_name {
            crate::outln!("({OWN_NAME} stands for each host's own name.)");
        }
        grouped
    }

    /// `--output json`: the run as one document (README, "Machine-readable
    /// output").
    fn finish_json(&self, playbook: &str) -> Counts {
        use serde_json::json;
        let counts = self.counts.lock().unwrap();
        let records = self.records.lock().unwrap();
        let mut t = Counts::default();
        let count = |c: &Counts| {
            json!({
                "ok": c.ok, "changed": c.changed, "failed": c.failed,
                "skipped": c.skipped, "unreachable": c.unreachable, "done_earlier": c.done,
            })
        };
        let hosts: Vec<serde_json::Value> = self
            .order
            .iter()
            .map(|h| {
                let c = counts.get(h).copied().unwrap_or_default();
                t.add(&c);
                json!({
                    "name": h,
                    "counts": count(&c),
                    "results": records.get(h).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let doc = json!({
            "schema": JSON_SCHEMA,
            "command": if self.plan { "plan" } else { "apply" },
            "playbook": playbook,
            "hosts": hosts,
            "totals": count(&t),
        });
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_diffs_are_cut_for_display() {
        let d = format!("+{}\n", "x".repeat(1000));
        assert_eq!(
            shorten_diff(&d, 120),
            format!("+{}… (841 more bytes)\n", "x".repeat(159))
        );
        let many: String = (0..200).map(|i| format!("+{i}\n")).collect();
        assert!(shorten_diff(&many, 120).ends_with("… (80 more diff lines)\n"));
    }

    #[test]
    fn host_lists_are_compacted() {
        let names: Vec<String> = (4..=50).map(|i| format!("node{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(compact_hosts(&names), "node4..node50");
        assert_eq!(
            compact_hosts(&["master1", "master2", "gpu1", "gpu2", "gpu3", "gpu5", "edge"]),
            "master1, master2, gpu1..gpu3, gpu5, edge"
        );
        assert_eq!(compact_hosts(&["n08", "n09", "n10"]), "n08..n10");
    }

    #[test]
    fn the_same_change_on_many_hosts_prints_once() {
        let m = HOST_MARK;
        let hosts_block = format!(
            "would change {m} etc-hosts/list: differs\n    +10.0.0.1 node1\n    +10.0.0.2 node2\n    +10.0.0.3 node3"
        );
        let name = |h: &str| {
            format!("would change {m} hostname/set: /etc/hostname\n    -debian\n    +{h}")
        };
        let blocks = [
            ("node1", name("node1")),
            ("node1", hosts_block.clone()),
            ("node2", name("node2")),
            ("node2", hosts_block.clone()),
            ("node3", name("node3")),
            ("node3", hosts_block.clone()),
            (
                "node3",
                format!("would change {m} sysctl/apply: 1 key differs"),
            ),
        ];
        let blocks: Vec<(&str, &str)> = blocks.iter().map(|(h, b)| (*h, b.as_str())).collect();
        assert_eq!(
            group(&blocks, 4),
            [
                "would change 3 hosts (node1..node3) hostname/set: /etc/hostname\n    -debian\n    +‹host›".to_string(),
                hosts_block.replace(m, "3 hosts (node1..node3)"),
                "would change node3 sysctl/apply: 1 key differs".to_string(),
            ]
        );
        // node10 is not node1's own name.
        assert_eq!(
            own_name_marked("+node10 node1.local", "node1"),
            "+node10 ‹host›.local"
        );
    }
}
