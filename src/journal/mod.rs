//! The run journal: one JSON line per finished (host, task) node, appended
//! and fsynced as the run goes, in `.gantry/journal.jsonl` beside the
//! inventory. A crash or SIGKILL of gantry keeps every line written before it;
//! a torn last line is ignored on reading. `--retry-failed` and `gantry status`
//! read the last run from it. Secrets never reach it: reasons pass through the
//! redactor, and registered output is not stored.

pub mod retry;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub fn path(inventory: &Path) -> PathBuf {
    inventory
        .parent()
        .unwrap_or(Path::new("."))
        .join(".gantry")
        .join("journal.jsonl")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub run: String,
    /// Seconds since the epoch.
    pub at: u64,
    pub host: String,
    /// `role/task name`.
    pub task: String,
    /// The position of the task in its host's run order.
    pub seq: usize,
    /// Hash of the task's inputs (definition, role files, variables).
    pub input: String,
    /// ok, changed, failed, skipped, blocked, unreachable, stopped
    pub outcome: String,
    pub reason: String,
}

impl Record {
    /// Finished for good: a rerun need not touch it while its input holds.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome.as_str(), "ok" | "changed" | "skipped")
    }
}

/// Records go to a writer thread that appends every record waiting and then
/// fsyncs once (group commit): the host workers never block on the disk, and
/// a thousand hosts finishing tasks together cost a few fsyncs, not one each.
/// A SIGKILL loses at most the records of the last moments; those nodes
/// simply run again on a retry.
pub struct Journal {
    tx: Mutex<Option<mpsc::Sender<String>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub run: String,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    pub fn open(inventory: &Path, command: &str, playbook: &str) -> Result<Journal> {
        let p = path(inventory);
        let dir = p.parent().unwrap();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        // Time and pid name the run for people; the random part keeps two
        // runs of one process in the same second apart.
        let salt = crate::secrets::random_hex(3).unwrap_or_default();
        let run = format!("{}-{}-{salt}", now(), std::process::id());
        // A run header, so `status` can say when and how the last run started.
        let header =
            serde_json::json!({"run": run, "at": now(), "start": command, "playbook": playbook});
        writeln!(file, "{header}")
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&p, e))?;
        let (tx, rx) = mpsc::channel::<String>();
        let writer = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                // Each record is one write of whole lines, so a crash tears
                // at most the last line.
                let mut batch = first;
                while let Ok(more) = rx.try_recv() {
                    batch.push_str(&more);
                }
                if let Err(e) = file
                    .write_all(batch.as_bytes())
                    .and_then(|_| file.sync_data())
                {
                    tracing::error!("journal write failed: {e}");
                }
            }
        });
        Ok(Journal {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            run,
        })
    }

    pub fn record(&self, r: &Record) {
        let mut line = serde_json::to_string(r).expect("records serialize");
        line.push('\n');
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(line);
        }
    }

    /// Write and fsync every record sent so far, and stop the writer.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap().take());
        if let Some(w) = self.writer.lock().unwrap().take() {
            let _ = w.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the journal knows: the last run's header, and the latest record of
/// every (host, task) node over all runs, so a retry that fails again still
/// knows what earlier runs finished.
pub struct State {
    pub run: String,
    pub at: u64,
    pub command: String,
    pub playbook: Option<String>,
    pub records: Vec<Record>,
}

impl State {
    pub fn get(&self, host: &str, seq: usize, task: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.host == host && r.seq == seq && r.task == task)
    }
}

pub fn state(inventory: &Path) -> Result<Option<State>> {
    let p = path(inventory);
    let f = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&p, e)),
    };
    let mut st: Option<State> = None;
    let mut latest: std::collections::HashMap<(String, usize, String), Record> = Default::default();
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        // A line cut by a crash does not parse: it is skipped.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(cmd) = v.get("start").and_then(|c| c.as_str()) {
            st = Some(State {
                run: v["run"].as_str().unwrap_or("").to_string(),
                at: v["at"].as_u64().unwrap_or(0),
                command: cmd.to_string(),
                playbook: v["playbook"].as_str().map(str::to_string),
                records: Vec::new(),
            });
        } else if let Ok(r) = serde_json::from_value::<Record>(v) {
            latest.insert((r.host.clone(), r.seq, r.task.clone()), r);
        }
    }
    Ok(st.map(|mut s| {
        let mut records: Vec<Record> = latest.into_values().collect();
        records.sort_by(|a, b| (&a.host, a.seq).cmp(&(&b.host, b.seq)));
        s.records = records;
        s
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(run: &str, host: &str, outcome: &str) -> Record {
        Record {
            run: run.into(),
            at: 1,
            host: host.into(),
            task: "r/t".into(),
            seq: 0,
            input: "h".into(),
            outcome: outcome.into(),
            reason: String::new(),
        }
    }

    /// A journal whose one run failed on host a and finished host b.
    fn first_run() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.yaml");
        let j = Journal::open(&inv, "apply", "node-prep").unwrap();
        j.record(&rec(&j.run, "a", "failed"));
        j.record(&rec(&j.run, "b", "ok"));
        (dir, inv)
    }

    #[test]
    fn last_run_survives_a_torn_line() {
        let (_dir, inv) = first_run();
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(path(&inv)).unwrap();
        f.write_all(b"{\"run\": \"x\", \"host\": \"c\", \"outc")
            .unwrap();
        let last = state(&inv).unwrap().unwrap();
        assert_eq!(last.command, "apply");
        assert_eq!(last.records.len(), 2);
        assert!(
            !last.get("a", 0, "r/t").unwrap().succeeded()
                && last.get("b", 0, "r/t").unwrap().succeeded()
        );
    }

    #[test]
    fn the_latest_record_of_each_node_wins_across_runs() {
        let (_dir, inv) = first_run();
        let j2 = Journal::open(&inv, "apply --retry-failed", "node-prep").unwrap();
        j2.record(&rec(&j2.run, "a", "changed"));
        j2.close();
        let last = state(&inv).unwrap().unwrap();
        assert_eq!(last.run, j2.run);
        assert_eq!(last.command, "apply --retry-failed");
        // The retry's record for a, and the first run's for b.
        assert_eq!(last.get("a", 0, "r/t").unwrap().outcome, "changed");
        assert_ne!(last.get("b", 0, "r/t").unwrap().run, j2.run);
    }
}
