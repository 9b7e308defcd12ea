//! Host locks: two applies against one host must not interleave. The lock is
//! a file in /run (cleared by a reboot) holding the owner; its mtime is the
//! heartbeat, touched every few seconds while the run holds it. A lock whose
//! heartbeat is older than the stale limit is taken over; `gantry unlock`
//! removes one by hand.

use std::sync::Arc;
use std::time::Duration;

use crate::shell::quote;
use crate::ssh::{Conn, ConnError};

pub const PATH: &str = "/run/gantry.lock";
const HEARTBEAT: Duration = Duration::from_secs(5);

pub enum Acquired {
    Fresh,
    /// Taken over from a run whose heartbeat stopped; says whose.
    TookOver(String),
}

pub enum LockError {
    /// Held by a live run: its owner line.
    Held(String),
    Conn(ConnError),
}

fn controller() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn owner(run: &str) -> String {
    format!(
        "run={run} controller={} pid={} user={}",
        controller(),
        std::process::id(),
        std::env::var("USER").unwrap_or_default()
    )
}

/// A lock left by a gantry process on this same controller that no longer
/// runs: its owner is gone for sure, no need to wait for the heartbeat.
pub fn owner_is_gone(held_by: &str) -> bool {
    let field = |k: &str| {
        held_by
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    match (
        field("controller="),
        field("pid=").and_then(|p| p.parse::<u32>().ok()),
    ) {
        (Some(c), Some(pid)) => {
            c == controller()
                && pid != std::process::id()
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// Create the lock with noclobber (atomic), or take it over when stale.
pub async fn acquire(conn: &Conn, run: &str, stale: Duration) -> Result<Acquired, LockError> {
    let me = quote(&owner(run)).map_err(|e| LockError::Held(e))?;
    let script = format!(
        r#"l={PATH}
if ( set -C; printf '%s\n' {me} > "$l" ) 2>/dev/null; then echo fresh; exit 0; fi
age=$(( $(date +%s) - $(stat -c %Y "$l" 2>/dev/null || echo 0) ))
if [ "$age" -ge {stale} ]; then
  old=$(cat "$l" 2>/dev/null)
  printf '%s\n' {me} > "$l.$$" && mv -f "$l.$$" "$l"
  # Two takers can race; the one whose line is in the file holds it.
  if [ "$(cat "$l")" = {me} ]; then echo "took $old (heartbeat ${{age}}s old)"; exit 0; fi
fi
echo "held $(cat "$l" 2>/dev/null) (heartbeat ${{age}}s ago)"
exit 1"#,
        stale = stale.as_secs()
    );
    let out = conn
        .run(&script, &[], None)
        .await
        .map_err(LockError::Conn)?;
    let line = out.stdout.trim();
    match (out.rc, line) {
        (0, "fresh") => Ok(Acquired::Fresh),
        (0, l) => Ok(Acquired::TookOver(
            l.trim_start_matches("took ").to_string(),
        )),
        (_, l) => Err(LockError::Held(l.trim_start_matches("held ").to_string())),
    }
}

/// `case` on the lock's one line holding the quoted `mine`, for the caller
/// to finish with `ACTION;; esac`: builtins only, so the check spawns no
/// process.
fn if_mine(mine: &str) -> String {
    format!("IFS= read -r l < {PATH} && case $l in *{mine}*)")
}

/// Touch the lock every few seconds until the returned task is aborted.
pub fn heartbeat(conn: Arc<Conn>, run: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mine = quote(&format!("run={run} ")).unwrap_or_default();
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let _ = conn
                .run(
                    &format!("{} touch {PATH};; esac", if_mine(&mine)),
                    &[],
                    Some(HEARTBEAT),
                )
                .await;
        }
    })
}

/// Remove the lock if this run holds it.
pub async fn release(conn: &Conn, run: &str) {
    if let Ok(mine) = quote(&format!("run={run} ")) {
        let _ = conn
            .run(
                &format!("{} rm -f {PATH};; esac", if_mine(&mine)),
                &[],
                None,
            )
            .await;
    }
}

/// `gantry unlock`: remove whatever lock the host has; returns its owner.
pub async fn force_release(conn: &Conn) -> Result<Option<String>, ConnError> {
    let out = conn
        .run(
            &format!("cat {PATH} 2>/dev/null && rm -f {PATH}"),
            &[],
            None,
        )
        .await?;
    Ok((out.rc == 0).then(|| out.stdout.trim().to_string()))
}
