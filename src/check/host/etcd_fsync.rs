//! etcd-fsync: the disk under /var/lib/etcd answers fdatasync fast enough
//! for etcd (p99 under 10 ms), measured like fio's etcd test.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::inventory::HostSpec;

/// The probe: small writes, each followed by fdatasync, timed one by one;
/// at most 200 writes or 3 seconds, in a temp file removed afterwards.
pub const SNIPPET: &str = r#"d=/var/lib; [ -d /var/lib/etcd ] && d=/var/lib/etcd
f=$(mktemp "$d/.gantry-fsync-probe.XXXXXX") && {
  end=$(( $(date +%s) + 3 )); i=0
  while [ $i -lt 200 ] && [ "$(date +%s)" -lt $end ]; do
    a=$(date +%s%N); dd if=/dev/zero of="$f" bs=2300 count=1 seek=$i oflag=dsync conv=notrunc 2>/dev/null; b=$(date +%s%N)
    echo $((b - a)); i=$((i + 1))
  done
  rm -f "$f"
}"#;

/// The variables the probe assigns, declared local by the gather script.
pub const LOCALS: &str = "d f end i a b";

pub const ETCD_FSYNC: Check = Check {
    name: "etcd-fsync",
    stage: Stage::Always,
    roles: &["control-plane"],
    reads: &["fsync"],
    judge: Judge::Host(etcd_fsync),
    requires: "warn when p99 >= 10 ms: timed `dd oflag=dsync` writes of 2300 bytes, like fio's etcd test, at most 200 or 3 s, in a temp file removed afterwards (`--no-fsync-probe` skips it). It counts process start-up, so it overstates latency",
    source: "checklist",
};

/// The 99th percentile of fsync write latencies in nanoseconds.
pub fn p99(mut samples: Vec<u64>) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let idx = ((samples.len() as f64) * 0.99).ceil() as usize;
    Some(samples[idx.saturating_sub(1).min(samples.len() - 1)])
}

fn etcd_fsync(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    // No probe ran (`--no-fsync-probe`, or apply's preflight): no finding.
    let fs = sec.raw("fsync")?;
    let samples: Vec<u64> = fs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let n = samples.len();
    Some(match p99(samples) {
        Some(p) => {
            let ms = p as f64 / 1e6;
            finding(
                "etcd-fsync",
                if ms < 10.0 { Level::Pass } else { Level::Warn },
                format!("p99 {ms:.1} ms over {n} writes (includes process start-up per write)"),
                "p99 < 10 ms",
                "a dedicated NVMe/SSD for /var/lib/etcd",
            )
        }
        None => finding(
            "etcd-fsync",
            Level::Warn,
            "probe could not write under /var/lib",
            "p99 < 10 ms",
            "check /var/lib is writable",
        ),
    })
}
