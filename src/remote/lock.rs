//! Host locks: two applies against one host must not interleave. The lock is
//! a file in /run (cleared by a reboot) holding the owner; its mtime is the
//! heartbeat, touched every few seconds while the run holds it. A lock whose
//! heartbeat is older than the stale limit is taken over; `gantry unlock`
//! removes one by hand.

use std::sync::Arc;
use std::time::Duration;

use super::script::quote;
use super::ssh::{Conn, ConnError};

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

/// Create the lock with noclobber (atomic), or take it over when stale;
/// once it is held, run `then` (another `Scope::Own` script, facts say) in
/// the same round trip. Ok has what `then` printed.
pub async fn acquire(
    conn: &Conn,
    run: &str,
    stale: Duration,
    then: &str,
) -> Result<(Acquired, String), LockError> {
    let script = acquire_script(PATH, &owner(run), stale, then).map_err(LockError::Held)?;
    let out = conn
        .run_own(&script, &[], None)
        .await
        .map_err(LockError::Conn)?;
    let (line, rest) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
    match line {
        "fresh" => Ok((Acquired::Fresh, rest.to_string())),
        l if l.starts_with("took ") => Ok((
            Acquired::TookOver(l.trim_start_matches("took ").to_string()),
            rest.to_string(),
        )),
        l => Err(LockError::Held(l.trim_start_matches("held ").to_string())),
    }
}

/// The script of `acquire` for the owner line `me`: prints `fresh`, `took
/// OLD...` or `held BY...` on its first line, then runs `then` if it holds
/// the lock.
fn acquire_script(path: &str, me: &str, stale: Duration, then: &str) -> Result<String, String> {
    let me = quote(me)?;
    // Builtins but for the stale path. `printf`, not `:`, makes the file: a
    // failed redirection of a special builtin would end the host's shell.
    Ok(format!(
        r#"local l={path} r age old ok
set -C; {{ printf '%s\n' {me} > "$l"; }} 2>/dev/null; r=$?; set +C
if [ $r -eq 0 ]; then echo fresh; ok=1
else
  age=$(( $(date +%s) - $(stat -c %Y "$l" 2>/dev/null || echo 0) ))
  if [ "$age" -ge {stale} ]; then
    old=$(cat "$l" 2>/dev/null)
    printf '%s\n' {me} > "$l.$$" && mv -f "$l.$$" "$l"
    # Two takers can race; the one whose line is in the file holds it.
    if [ "$(cat "$l")" = {me} ]; then echo "took $old (heartbeat ${{age}}s old)"; ok=1; fi
  fi
  [ "$ok" = 1 ] || {{ echo "held $(cat "$l" 2>/dev/null) (heartbeat ${{age}}s ago)"; return 1; }}
fi
{then}"#,
        stale = stale.as_secs(),
        path = quote(path)?,
    ))
}

/// `case` on the lock's one line holding the quoted `mine`, for the caller
/// to finish with `ACTION;; esac`: builtins only, so the check spawns no
/// process.
fn if_mine(mine: &str) -> String {
    format!("local l; IFS= read -r l < {PATH} && case $l in *{mine}*)")
}

/// Touch the lock every few seconds until the returned task is aborted.
pub fn heartbeat(conn: Arc<Conn>, run: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mine = quote(&format!("run={run} ")).unwrap_or_default();
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let _ = conn
                .run_own(
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
            .run_own(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock's script runs in the host's shell itself: taken, held or
    /// taken over, it leaves the shell as it found it, and runs what follows
    /// only while it holds the lock.
    #[test]
    fn the_lock_script_leaves_the_shell_as_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock").display().to_string();
        let run = |me: &str, stale: u64| {
            let script =
                acquire_script(&path, me, Duration::from_secs(stale), "echo then").unwrap();
            crate::remote::ssh::tests::shell_left_as_found(&script, &[]).unwrap()
        };
        assert_eq!(run("run=a", 60), "fresh\nthen\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "run=a\n");
        let held = run("run=b", 60);
        assert!(held.starts_with("held run=a (heartbeat "), "{held}");
        assert!(!held.contains("then"), "{held}");
        let took = run("run=b", 0);
        assert!(took.starts_with("took run=a (heartbeat "), "{took}");
        assert!(took.ends_with("\nthen\n"), "{took}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "run=b\n");
    }
}
