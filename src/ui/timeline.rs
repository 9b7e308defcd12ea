//! The run report: where an apply's minutes went. Every apply writes
//! `.gantry/runs/<run id>/report.json` (schema `gantry.report/1`: per host
//! and task, start, end, time spent waiting on other hosts, outcome,
//! reason, round trips and bytes) and `report.html`, one self-contained
//! page (no script, no network: inline CSS and SVG) with a lane per host,
//! a bar per task coloured by outcome, the reason on hover, and the
//! slowest tasks and hosts at the top. The sink feeds it; every text in it
//! has been redacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use petgraph::graph::NodeIndex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::exec::Timing;

/// The version of report.json; removing or renaming a field is a new one.
pub const REPORT_SCHEMA: &str = "gantry.report/1";

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub task: String,
    /// Milliseconds since the run began.
    pub start_ms: u64,
    pub end_ms: u64,
    /// Spent before `start_ms` waiting on other hosts' tasks.
    pub wait_ms: u64,
    pub outcome: &'static str,
    pub reason: String,
    pub round_trips: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    /// When its last task ended, in milliseconds since the run began.
    pub end_ms: u64,
    /// The sum of its tasks' running time (waits left out).
    pub busy_ms: u64,
    pub tasks: Vec<Entry>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub run: String,
    pub command: String,
    pub playbook: String,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    pub hosts: Vec<HostReport>,
    /// The ten longest-running tasks, slowest first: (host, task, ms).
    pub slowest_tasks: Vec<Slow>,
    /// The ten hosts that finished last, slowest first.
    pub slowest_hosts: Vec<Slow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Slow {
    pub host: String,
    pub task: Option<String>,
    pub ms: u64,
}

/// What the sink collects as a run goes.
pub struct Timeline {
    started: SystemTime,
    /// Hosts in inventory order, each with its entries as they finished.
    hosts: Vec<(String, Vec<Entry>)>,
    /// Timings of tasks whose result has not arrived yet.
    pending: HashMap<NodeIndex, Timing>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Timeline {
    pub fn new(hosts: &[String]) -> Timeline {
        Timeline {
            started: SystemTime::now(),
            hosts: hosts.iter().map(|h| (h.clone(), Vec::new())).collect(),
            pending: HashMap::new(),
        }
    }

    fn since_start(&self, t: SystemTime) -> u64 {
        ms(t.duration_since(self.started).unwrap_or_default())
    }

    pub fn timed(&mut self, node: NodeIndex, timing: Timing) {
        self.pending.insert(node, timing);
    }

    /// A task's result (`reason` already redacted). One run without a
    /// timing (finished by a write-ahead, or never run) is a point at the
    /// moment it was reported.
    pub fn done(
        &mut self,
        host: &str,
        node: Option<NodeIndex>,
        task: &str,
        outcome: &'static str,
        reason: String,
    ) {
        let timing = node.and_then(|n| self.pending.remove(&n));
        let (start_ms, end_ms, wait_ms, t) = match timing {
            Some(t) => {
                let start = self.since_start(t.started);
                (start, start + ms(t.ran), ms(t.waited), t.traffic)
            }
            None => {
                let now = self.since_start(SystemTime::now());
                (now, now, 0, Default::default())
            }
        };
        let entry = Entry {
            task: task.to_string(),
            start_ms,
            end_ms,
            wait_ms,
            outcome,
            reason,
            round_trips: t.round_trips,
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
        };
        match self.hosts.iter_mut().find(|(h, _)| h == host) {
            Some((_, e)) => e.push(entry),
            None => self.hosts.push((host.to_string(), vec![entry])),
        }
    }

    pub fn report(&self, run: &str, command: &str, playbook: &str) -> Report {
        let hosts: Vec<HostReport> = self
            .hosts
            .iter()
            .map(|(name, tasks)| HostReport {
                name: name.clone(),
                end_ms: tasks.iter().map(|e| e.end_ms).max().unwrap_or(0),
                busy_ms: tasks.iter().map(|e| e.end_ms - e.start_ms).sum(),
                tasks: tasks.clone(),
            })
            .collect();
        let mut slowest_tasks: Vec<Slow> = hosts
            .iter()
            .flat_map(|h| {
                h.tasks.iter().map(|e| Slow {
                    host: h.name.clone(),
                    task: Some(e.task.clone()),
                    ms: e.end_ms - e.start_ms,
                })
            })
            .collect();
        slowest_tasks.sort_by_key(|s| std::cmp::Reverse(s.ms));
        slowest_tasks.truncate(10);
        let mut slowest_hosts: Vec<Slow> = hosts
            .iter()
            .map(|h| Slow {
                host: h.name.clone(),
                task: None,
                ms: h.end_ms,
            })
            .collect();
        slowest_hosts.sort_by_key(|s| std::cmp::Reverse(s.ms));
        slowest_hosts.truncate(10);
        Report {
            schema: REPORT_SCHEMA,
            run: run.to_string(),
            command: command.to_string(),
            playbook: playbook.to_string(),
            started_unix_ms: ms(self.started.duration_since(UNIX_EPOCH).unwrap_or_default()),
            duration_ms: self.since_start(SystemTime::now()),
            hosts,
            slowest_tasks,
            slowest_hosts,
        }
    }
}

/// An apply's report as it is collected, and where it goes.
pub struct RunReport {
    pub timeline: Timeline,
    pub dir: PathBuf,
    pub run: String,
    pub command: String,
    pub playbook: String,
}

impl RunReport {
    /// Write it; says where on stderr, or why it could not.
    pub fn write(&self) {
        let r = self
            .timeline
            .report(&self.run, &self.command, &self.playbook);
        match write(&r, &self.dir) {
            Ok(p) => eprintln!("run report: {}", p.display()),
            Err(e) => eprintln!("warning: the run report was not written: {e}"),
        }
    }
}

/// The run's folder beside the journal: `.gantry/runs/<run id>/`.
pub fn dir(inventory: &Path, run: &str) -> PathBuf {
    crate::journal::path(inventory)
        .with_file_name("runs")
        .join(run)
}

/// Write report.json and report.html into `dir` (0700; files 0600, like
/// the journal beside it). Returns the page's path.
pub fn write(report: &Report, dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::Other(format!("the run report: {e}")))?;
    let html = html(report)?;
    for (name, text) in [("report.json", json), ("report.html", html)] {
        let p = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| Error::io(&p, e))?;
    }
    Ok(dir.join("report.html"))
}

/// Geometry of the timeline's SVG.
const WIDTH: f64 = 1000.0;
const LANE: f64 = 22.0;
const LABEL: f64 = 160.0;

fn colour(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "#4caf50",
        "changed" => "#ff9800",
        "failed" => "#e53935",
        "unreachable" => "#8e24aa",
        "skipped" => "#9e9e9e",
        _ => "#607d8b",
    }
}

/// The page, rendered by minijinja with HTML auto-escaping (every host
/// name, task and reason is escaped).
fn html(r: &Report) -> Result<String> {
    let total = r.duration_ms.max(1) as f64;
    let x = |t: u64| LABEL + (t as f64 / total) * (WIDTH - LABEL);
    let mut lanes = Vec::new();
    for (i, h) in r.hosts.iter().enumerate() {
        let y = i as f64 * LANE;
        let bars: Vec<serde_json::Value> = h
            .tasks
            .iter()
            .map(|e| {
                let (x0, x1) = (x(e.start_ms), x(e.end_ms));
                serde_json::json!({
                    "x": format!("{x0:.1}"),
                    "w": format!("{:.1}", (x1 - x0).max(1.5)),
                    "wait_x": format!("{:.1}", x(e.start_ms.saturating_sub(e.wait_ms))),
                    "wait_w": format!("{:.1}", x0 - x(e.start_ms.saturating_sub(e.wait_ms))),
                    "fill": colour(e.outcome),
                    "title": format!(
                        "{} {}: {} in {} ms (waited {} ms), {} round trip(s), {} B sent, {} B received{}",
                        h.name, e.task, e.outcome, e.end_ms - e.start_ms, e.wait_ms,
                        e.round_trips, e.bytes_sent, e.bytes_received,
                        if e.reason.is_empty() { String::new() } else { format!("\n{}", e.reason) }
                    ),
                })
            })
            .collect();
        lanes.push(
            serde_json::json!({ "name": h.name, "y": y, "ty": y + LANE * 0.7, "bars": bars }),
        );
    }
    let ticks: Vec<serde_json::Value> = (0..=10)
        .map(|k| {
            let t = total * k as f64 / 10.0;
            serde_json::json!({ "x": format!("{:.1}", x(t as u64)), "label": format!("{:.1}s", t / 1000.0) })
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", PAGE)
        .map_err(|e| Error::Other(format!("the run report's template: {e}")))?;
    env.get_template("report.html")
        .and_then(|t| {
            use minijinja::Value as V;
            let legend: Vec<serde_json::Value> = [
                "ok",
                "changed",
                "failed",
                "unreachable",
                "skipped",
                "blocked",
            ]
            .iter()
            .map(|o| serde_json::json!({"name": o, "fill": colour(o)}))
            .collect();
            t.render(minijinja::context! {
                r => V::from(minijinja::value::Serde(r)),
                lanes => V::from(minijinja::value::Serde(&lanes)),
                ticks => V::from(minijinja::value::Serde(&ticks)),
                width => WIDTH + 40.0,
                height => r.hosts.len() as f64 * LANE + 30.0,
                axis => r.hosts.len() as f64 * LANE + 16.0,
                label => LABEL,
                legend => V::from(minijinja::value::Serde(&legend)),
                seconds => format!("{:.1}", total / 1000.0),
            })
        })
        .map_err(|e| Error::Other(format!("the run report's page: {e}")))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>gantry run {{ r.run }}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin-right: 2em; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #ccc; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.top { display: flex; flex-wrap: wrap; } .legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
svg text { font: 12px system-ui, sans-serif; } rect.bar:hover { stroke: #000; stroke-width: 1; }
</style></head><body>
<h1>gantry run {{ r.run }}</h1>
<p id="summary">{{ r.command }} &middot; playbook {{ r.playbook }} &middot; {{ r.hosts|length }} host(s) &middot; {{ seconds }} s</p>
<div class="top">
<div><h2>Slowest tasks</h2><table id="slowest-tasks"><tr><th>host</th><th>task</th><th>ms</th></tr>
{% for s in r.slowest_tasks %}<tr><td>{{ s.host }}</td><td>{{ s.task }}</td><td class="n">{{ s.ms }}</td></tr>
{% endfor %}</table></div>
<div><h2>Slowest hosts</h2><table id="slowest-hosts"><tr><th>host</th><th>done at (ms)</th></tr>
{% for s in r.slowest_hosts %}<tr><td>{{ s.host }}</td><td class="n">{{ s.ms }}</td></tr>
{% endfor %}</table></div>
</div>
<h2>Timeline</h2>
<p class="legend">{% for o in legend %}<span><i style="background: {{ o.fill }}"></i>{{ o.name }}</span>{% endfor %}<span><i style="background: #ddd"></i>waiting on other hosts</span> (hover a bar for the task, its times and its reason)</p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}" viewBox="0 0 {{ width }} {{ height }}">
{% for t in ticks %}<line x1="{{ t.x }}" x2="{{ t.x }}" y1="0" y2="{{ axis - 12 }}" stroke="#eee"/><text x="{{ t.x }}" y="{{ axis }}" text-anchor="middle">{{ t.label }}</text>
{% endfor %}{% for l in lanes %}<g class="lane" data-host="{{ l.name }}"><text x="4" y="{{ l.ty }}">{{ l.name }}</text>
{% for b in l.bars %}<rect x="{{ b.wait_x }}" y="{{ l.y + 8 }}" width="{{ b.wait_w }}" height="4" fill="#ddd"/><rect class="bar" x="{{ b.x }}" y="{{ l.y + 3 }}" width="{{ b.w }}" height="14" fill="{{ b.fill }}"><title>{{ b.title }}</title></rect>
{% endfor %}</g>
{% endfor %}</svg>
</body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(at_ms: u64, ran: u64, start: SystemTime) -> Timing {
        Timing {
            started: start + Duration::from_millis(at_ms),
            waited: Duration::from_millis(5),
            ran: Duration::from_millis(ran),
            traffic: crate::remote::traffic::Traffic {
                round_trips: 2,
                bytes_sent: 100,
                bytes_received: 40,
            },
        }
    }

    #[test]
    fn the_report_holds_each_task_with_its_times_and_escapes_the_page() {
        let mut t = Timeline::new(&["a".into(), "<b>".into()]);
        let s = t.started;
        t.timed(NodeIndex::new(0), timing(10, 300, s));
        t.done(
            "a",
            Some(NodeIndex::new(0)),
            "role/slow",
            "changed",
            "wrote it".into(),
        );
        t.timed(NodeIndex::new(1), timing(20, 50, s));
        t.done(
            "<b>",
            Some(NodeIndex::new(1)),
            "role/<fast>",
            "failed",
            "x < y & z".into(),
        );
        // No timing: a point where it was reported.
        t.done("a", None, "role/after", "skipped", String::new());
        let r = t.report("run-1", "apply", "cluster");
        assert_eq!(r.hosts.len(), 2);
        let e = &r.hosts[0].tasks[0];
        assert_eq!((e.start_ms, e.end_ms, e.wait_ms), (10, 310, 5));
        assert_eq!(
            (e.round_trips, e.bytes_sent, e.bytes_received),
            (2, 100, 40)
        );
        assert_eq!(r.hosts[0].tasks[1].start_ms, r.hosts[0].tasks[1].end_ms);
        assert_eq!(r.slowest_tasks[0].task.as_deref(), Some("role/slow"));
        assert_eq!(r.slowest_hosts[0].host, "a");
        let page = html(&r).unwrap();
        assert!(page.contains("&lt;b&gt;"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("x &lt; y &amp; z"));
        assert!(
            !page.contains("<script"),
            "no script: the page works offline and inert"
        );
        assert!(
            !page.contains("http://") || page.matches("http://").count() == 1,
            "only the SVG namespace"
        );
    }
}
