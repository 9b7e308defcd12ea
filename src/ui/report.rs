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
fn shorten_diff(d: &str) -> String {
    const WIDTH: usize = 160;
    const LINES: usize = 120;
    let mut out = String::new();
    let total = d.lines().count();
    for line in d.lines().take(LINES) {
        if line.chars().count() > WIDTH {
            let cut: String = line.chars().take(WIDTH).collect();
            out.push_str(&format!("{cut}… ({} more bytes)\n", line.len() - cut.len()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if total > LINES {
        out.push_str(&format!("… ({} more diff lines)\n", total - LINES));
    }
    out
}

#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unreachable: usize,
    /// Finished in an earlier run, not run again (`--retry-failed`, `--from`).
    pub done: usize,
}

pub struct Reporter {
    pub plan: bool,
    pub verbose: bool,
    bar: Option<ProgressBar>,
    counts: Mutex<BTreeMap<String, Counts>>,
    /// Plan's output per host, printed together at the end in inventory
    /// order, so a plan reads host by host and two plans diff cleanly.
    held: Mutex<BTreeMap<String, Vec<String>>>,
    order: Vec<String>,
    pub redactor: Redactor,
}

impl Reporter {
    pub fn new(plan: bool, verbose: bool, total: u64, hosts: &[String]) -> Reporter {
        let bar = console::Term::stdout().is_term().then(|| {
            let b = super::progress::bars().add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks {msg}",
                )
                .unwrap(),
            );
            b
        });
        let counts = hosts
            .iter()
            .map(|h| (h.clone(), Counts::default()))
            .collect();
        Reporter {
            plan,
            verbose,
            bar,
            counts: Mutex::new(counts),
            held: Mutex::new(BTreeMap::new()),
            order: hosts.to_vec(),
            redactor: Redactor::default(),
        }
    }

    fn host_line(&self, host: &str, s: &str) {
        if self.plan {
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
        let changed_word = if self.plan { "would change" } else { "changed" };
        match outcome {
            Outcome::Ok(r) if self.verbose => self.host_line(
                host,
                &format!("{} {host} {task}: {}", style("ok").green(), r),
            ),
            Outcome::Skipped(r) if self.verbose => {
                self.host_line(host, &format!("{} {host} {task}: {r}", style("skip").dim()))
            }
            Outcome::Ok(_) | Outcome::Skipped(_) => {}
            Outcome::Changed {
                reason,
                diff,
                actions,
            } => {
                self.host_line(
                    host,
                    &format!("{} {host} {task}: {reason}", style(changed_word).yellow()),
                );
                if let Some(d) = diff {
                    // Redacted before it is cut: a cut secret no longer
                    // matches.
                    let colored: String = shorten_diff(&self.redactor.redact(d))
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
                    self.host_line(host, colored.trim_end());
                }
                if self.plan || self.verbose {
                    for a in actions {
                        self.host_line(host, &format!("    {} {a}", style("->").dim()));
                    }
                }
            }
            Outcome::Failed {
                reason,
                command,
                rc,
                stderr,
            } => {
                let mut s = format!("{} {host} {task}: {reason}", style("FAILED").red().bold());
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
                self.host_line(host, &s);
            }
            Outcome::Blocked(r) => self.host_line(
                host,
                &format!("{} {host} {task}: {r}", style("skipped").dim()),
            ),
            Outcome::Unreachable(r) => self.host_line(
                host,
                &format!("{} {host} {task}: {r}", style("UNREACHABLE").red().bold()),
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
        if tasks > 0 {
            let word = match o {
                Outcome::Unreachable(_) => style("UNREACHABLE").red().bold(),
                Outcome::Failed { .. } => style("FAILED").red().bold(),
                _ => style("skipped").dim(),
            };
            self.host_line(
                host,
                &format!("{word} {host}: {} ({tasks} task(s) not run)", o.reason()),
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
    }

    /// A run-wide message (stop, retry, lock), printed at once.
    pub fn notice(&self, s: &str) {
        self.line(&format!("{} {s}", style("note:").cyan()));
    }

    /// Print the per-host summary; returns the totals.
    pub fn finish(&self) -> Counts {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let held = self.held.lock().unwrap();
        for h in &self.order {
            for l in held.get(h).into_iter().flatten() {
                crate::outln!("{l}");
            }
        }
        let counts = self.counts.lock().unwrap();
        let width = counts.keys().map(|h| h.len()).max().unwrap_or(4).max(4);
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
        for (h, c) in counts.iter() {
            crate::outln!(
                "{h:width$}  {:>4} {:>9} {:>6} {:>7} {:>11}",
                c.ok,
                c.changed,
                c.failed,
                c.skipped,
                c.unreachable
            );
            t.ok += c.ok;
            t.changed += c.changed;
            t.failed += c.failed;
            t.skipped += c.skipped;
            t.unreachable += c.unreachable;
            t.done += c.done;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_diffs_are_cut_for_display() {
        let d = format!("+{}\n", "x".repeat(1000));
        assert_eq!(
            shorten_diff(&d),
            format!("+{}… (841 more bytes)\n", "x".repeat(159))
        );
        let many: String = (0..200).map(|i| format!("+{i}\n")).collect();
        assert!(shorten_diff(&many).ends_with("… (80 more diff lines)\n"));
    }
}
