//! The run journal: one JSON line per finished (host, task) node, appended
//! and fsynced as the run goes, in `.gantry/journal.jsonl` beside the
//! inventory. A crash or SIGKILL of gantry keeps every line written before it;
//! a torn line is ignored on reading, and costs no other. `--retry-failed` and `gantry status`
//! read the last run from it. Secrets never reach it: reasons pass through the
//! redactor, and registered output is not stored.

pub mod retry;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
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
    /// ok, changed, failed, skipped, blocked, unreachable, stopped;
    /// interrupted (read back only: begun by a run that left no record)
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
/// A SIGKILL loses at most the records of the last moments. Before a host's
/// first task runs, its `begin` line (the tasks this run will run there) is
/// on disk: a task begun whose record was lost is then known as interrupted,
/// and never passes for an older run's success.
pub struct Journal {
    tx: Mutex<Option<mpsc::Sender<Line>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The first write that failed, if any.
    failed: std::sync::Arc<Mutex<Option<String>>>,
    pub run: String,
}

enum Line {
    Record(String),
    /// A line whose writer is told once it is on disk.
    Synced(String, tokio::sync::oneshot::Sender<()>),
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
            .read(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        // The file's name in its directory survives a power loss.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
        // A line torn by a crash ends here, so the header below starts a
        // line of its own.
        let torn = {
            use std::io::{Read, Seek, SeekFrom};
            let len = file.seek(SeekFrom::End(0)).map_err(|e| Error::io(&p, e))?;
            let mut last = [b'\n'];
            if len > 0 {
                file.seek(SeekFrom::Start(len - 1))
                    .and_then(|_| file.read_exact(&mut last))
                    .map_err(|e| Error::io(&p, e))?;
            }
            last[0] != b'\n'
        };
        // Time and pid name the run for people; the random part keeps two
        // runs of one process in the same second apart.
        let salt = crate::secrets::random_hex(3).unwrap_or_default();
        let run = format!("{}-{}-{salt}", now(), std::process::id());
        // A run header, so `status` can say when and how the last run started.
        let header =
            serde_json::json!({"run": run, "at": now(), "start": command, "playbook": playbook});
        writeln!(file, "{}{header}", if torn { "\n" } else { "" })
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&p, e))?;
        let failed = std::sync::Arc::new(Mutex::new(None));
        let failed_w = failed.clone();
        let (tx, rx) = mpsc::channel::<Line>();
        let writer = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                // Each batch is one write of whole lines, so a crash tears
                // at most the last line.
                let mut batch = String::new();
                let mut acks = Vec::new();
                let mut take = |l: Line| match l {
                    Line::Record(s) => batch.push_str(&s),
                    Line::Synced(s, ack) => {
                        batch.push_str(&s);
                        acks.push(ack);
                    }
                };
                take(first);
                while let Ok(more) = rx.try_recv() {
                    take(more);
                }
                match file
                    .write_all(batch.as_bytes())
                    .and_then(|_| file.sync_data())
                {
                    Ok(()) => acks.into_iter().for_each(|a| {
                        let _ = a.send(());
                    }),
                    // The acks are dropped: whoever waits learns it failed.
                    Err(e) => {
                        failed_w
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| e.to_string());
                    }
                }
            }
        });
        Ok(Journal {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            failed,
            run,
        })
    }

    pub fn record(&self, r: &Record) {
        let mut line = serde_json::to_string(r).expect("records serialize");
        line.push('\n');
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(Line::Record(line));
        }
    }

    /// The tasks (by their place in the host's order) this run is about to
    /// run on `host`; `ack` is told once the line is on disk.
    pub fn begin(&self, host: &str, seqs: &[usize], ack: tokio::sync::oneshot::Sender<()>) {
        let line = serde_json::json!({"run": self.run, "at": now(), "host": host, "begin": seqs})
            .to_string()
            + "\n";
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(Line::Synced(line, ack));
        }
    }

    /// Write and fsync every record sent so far, and stop the writer. The
    /// first write that failed, if one did: then records of this run may be
    /// missing.
    pub fn close(&self) -> Option<String> {
        drop(self.tx.lock().unwrap().take());
        if let Some(w) = self.writer.lock().unwrap().take() {
            let _ = w.join();
        }
        self.failed.lock().unwrap().clone()
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
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&p, e)),
    };
    Ok(read_state(&bytes))
}

/// The journal's state from its bytes. Each line stands alone: one torn by
/// a crash (even inside a UTF-8 character) does not parse and is skipped,
/// and costs no other line.
pub fn read_state(bytes: &[u8]) -> Option<State> {
    let mut st: Option<State> = None;
    let mut latest: HashMap<(String, usize, String), Record> = Default::default();
    // (host, seq) a run began and has not yet recorded: by run.
    let mut begun: HashMap<(String, usize), (String, u64)> = Default::default();
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
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
        } else if let Some(seqs) = v.get("begin").and_then(|b| b.as_array()) {
            let (run, host) = (
                v["run"].as_str().unwrap_or(""),
                v["host"].as_str().unwrap_or(""),
            );
            for seq in seqs.iter().filter_map(|s| s.as_u64()) {
                begun.insert(
                    (host.to_string(), seq as usize),
                    (run.to_string(), v["at"].as_u64().unwrap_or(0)),
                );
            }
        } else if let Ok(r) = serde_json::from_value::<Record>(v) {
            if begun
                .get(&(r.host.clone(), r.seq))
                .is_some_and(|(run, _)| *run == r.run)
            {
                begun.remove(&(r.host.clone(), r.seq));
            }
            latest.insert((r.host.clone(), r.seq, r.task.clone()), r);
        }
    }
    // Begun, never recorded: whatever an older run recorded for that place
    // no longer holds.
    for ((host, seq), (run, at)) in begun {
        for r in latest.values_mut() {
            if r.host == host && r.seq == seq && r.run != run {
                *r = Record {
                    run: run.clone(),
                    at,
                    outcome: "interrupted".into(),
                    reason: format!("run {run} began it and left no record of how it ended"),
                    ..r.clone()
                };
            }
        }
    }
    st.map(|mut s| {
        let mut records: Vec<Record> = latest.into_values().collect();
        records.sort_by(|a, b| (&a.host, a.seq).cmp(&(&b.host, b.seq)));
        s.records = records;
        s
    })
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

    /// Review finding 9: a line torn inside a UTF-8 character, then the
    /// next run's header and records: the next run is still read, and the
    /// torn line is all that is lost.
    #[test]
    fn a_line_torn_inside_a_character_loses_only_itself() {
        let (_dir, inv) = first_run();
        let mut f = OpenOptions::new().append(true).open(path(&inv)).unwrap();
        let torn = "{\"run\": \"x\", \"reason\": \"caf\u{e9}".as_bytes();
        f.write_all(&torn[..torn.len() - 1]).unwrap();
        drop(f);
        let j2 = Journal::open(&inv, "apply --retry-failed", "node-prep").unwrap();
        j2.record(&rec(&j2.run, "a", "changed"));
        assert_eq!(j2.close(), None);
        let bytes = std::fs::read(path(&inv)).unwrap();
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "the tear is not inside a character"
        );
        let last = state(&inv).unwrap().unwrap();
        assert_eq!(last.run, j2.run);
        assert_eq!(last.command, "apply --retry-failed");
        assert_eq!(last.get("a", 0, "r/t").unwrap().outcome, "changed");
    }

    /// Review finding 10: host b succeeded in run 1; run 2 began it again
    /// and died before its record was written. b's success no longer
    /// stands, so a retry reruns it.
    #[test]
    fn a_task_begun_without_a_record_is_interrupted_not_done() {
        let (_dir, inv) = first_run();
        let j2 = Journal::open(&inv, "apply", "node-prep").unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        j2.begin("b", &[0], tx);
        assert_eq!(j2.close(), None);
        assert!(
            rx.blocking_recv().is_ok(),
            "the begin line was not acknowledged"
        );
        let last = state(&inv).unwrap().unwrap();
        let b = last.get("b", 0, "r/t").unwrap();
        assert_eq!(b.outcome, "interrupted");
        assert!(!b.succeeded());
        // A begun task that was recorded is what its record says.
        let j3 = Journal::open(&inv, "apply", "node-prep").unwrap();
        let (tx, _rx) = tokio::sync::oneshot::channel();
        j3.begin("b", &[0], tx);
        j3.record(&rec(&j3.run, "b", "ok"));
        j3.close();
        assert!(
            state(&inv)
                .unwrap()
                .unwrap()
                .get("b", 0, "r/t")
                .unwrap()
                .succeeded()
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
