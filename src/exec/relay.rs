//! Fan-out of uploads: which host a file comes from. The first hosts to
//! need a file get it from the controller (at most `SEEDS` at once per
//! file); every host that then holds a verified copy serves it to up to
//! `FANOUT` others at a time, over the cluster network
//! (`remote::relay`). A host waits for a copy rather than taking the
//! controller's link while another host is getting one; a relay that fails
//! (the hosts cannot reach each other) marks that pair, and the file comes
//! from the controller instead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::remote::ssh::Conn;

/// Transfers from the controller at once, per file.
pub(crate) const SEEDS: usize = 1;
/// Transfers a host serves at once.
pub(crate) const FANOUT: usize = 2;
/// Holders of a file that stay to serve it after their own tasks are done,
/// until every host of the run is: enough to keep the fan-out going
/// without every finished host keeping its connection and lock.
pub(crate) const LINGER: usize = 4;
/// Transfers from the controller at once, all files and hosts together:
/// more only share its link thinner, and a host whose share is too thin
/// loses its lock's heartbeat behind its own upload (seen at 20 hosts on
/// 100 Mbit/s: 72 s without a heartbeat).
pub(crate) const CONTROLLER_UPLOADS: usize = 4;

/// Where one host's copy of a file comes from.
pub(crate) enum Source {
    Controller,
    /// A host holding a verified copy: its connection and the path there.
    Peer {
        host: usize,
        conn: Arc<Conn>,
        path: String,
    },
}

#[derive(Default)]
struct State {
    /// By sha256: the hosts holding a verified copy, and where.
    holders: HashMap<String, Vec<(usize, String)>>,
    /// By sha256: transfers from the controller in flight.
    seeding: HashMap<String, usize>,
    /// By sha256: transfers of any kind in flight.
    moving: HashMap<String, usize>,
    /// Transfers each host is serving.
    serving: HashMap<usize, usize>,
    /// Open connections of hosts that may serve, by host.
    conns: HashMap<usize, Arc<Conn>>,
    /// Hosts done with their own tasks (or gone): when all of the run's
    /// hosts are, no transfer can be asked for any more.
    finished: HashSet<usize>,
    /// (source, target) pairs that failed: not tried again this run.
    failed: HashSet<(usize, usize)>,
}

impl State {
    /// `h` holds a verified copy of `sha` at `path`: it may serve it, if it
    /// can serve at all (it joined).
    fn add_holder(&mut self, sha: &str, h: usize, path: &str) {
        if self.conns.contains_key(&h) {
            self.holders
                .entry(sha.to_string())
                .or_default()
                .push((h, path.to_string()));
        }
    }
}

pub(crate) struct Relay {
    state: Mutex<State>,
    changed: Notify,
    /// The run's ephemeral key pair (private, public), made on first use.
    key: Mutex<Option<(String, String)>>,
    /// Off for plan, one host, or `--no-fan-out`.
    pub(crate) enabled: bool,
    /// The hosts of the run.
    hosts: usize,
    /// Bounds the transfers from the controller (`CONTROLLER_UPLOADS`).
    pub(crate) controller: tokio::sync::Semaphore,
}

impl Relay {
    pub(crate) fn new(enabled: bool, hosts: usize) -> Relay {
        Relay {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            key: Mutex::new(None),
            enabled,
            hosts,
            controller: tokio::sync::Semaphore::new(CONTROLLER_UPLOADS),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A host that can serve: gantry logs into it as root (the relay
    /// scripts run as root) and its connection verified a host key.
    pub(crate) fn join(&self, h: usize, conn: Arc<Conn>) {
        tracing::debug!(target: "gantry::relay", host = %conn.host, enabled = self.enabled, user = %conn.user, key = !conn.host_key.is_empty(), "join");
        if self.enabled && conn.user == "root" && !conn.host_key.is_empty() {
            self.state().conns.insert(h, conn);
        }
    }

    /// The run's key pair.
    pub(crate) fn key(&self) -> Result<(String, String), String> {
        let mut k = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if k.is_none() {
            *k = Some(crate::remote::relay::ephemeral_key()?);
        }
        Ok(k.clone().unwrap_or_default())
    }

    /// Where host `h`'s copy of `sha` comes from: a holder with room, else
    /// the controller when fewer than `SEEDS` transfers from it are in
    /// flight or nothing is moving at all, else wait for a copy to land.
    pub(crate) async fn source(&self, sha: &str, h: usize) -> Source {
        loop {
            let wait = self.changed.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            {
                let mut st = self.state();
                let can_receive = self.enabled && st.conns.contains_key(&h);
                let peer = can_receive
                    .then(|| {
                        st.holders.get(sha).and_then(|hs| {
                            hs.iter()
                                .find(|(p, _)| {
                                    !st.failed.contains(&(*p, h))
                                        && st.serving.get(p).copied().unwrap_or(0) < FANOUT
                                        && st.conns.contains_key(p)
                                })
                                .cloned()
                        })
                    })
                    .flatten();
                if let Some((p, path)) = peer {
                    *st.serving.entry(p).or_default() += 1;
                    *st.moving.entry(sha.to_string()).or_default() += 1;
                    let conn = st.conns[&p].clone();
                    return Source::Peer {
                        host: p,
                        conn,
                        path,
                    };
                }
                // A holder that is busy now will have room soon: wait for it
                // rather than take the controller's link.
                let busy_holder = st.holders.get(sha).is_some_and(|hs| {
                    hs.iter()
                        .any(|(p, _)| !st.failed.contains(&(*p, h)) && st.conns.contains_key(p))
                });
                let seeding = st.seeding.get(sha).copied().unwrap_or(0);
                let moving = st.moving.get(sha).copied().unwrap_or(0);
                if !can_receive || (!busy_holder && (seeding < SEEDS || moving == 0)) {
                    *st.seeding.entry(sha.to_string()).or_default() += 1;
                    *st.moving.entry(sha.to_string()).or_default() += 1;
                    return Source::Controller;
                }
            }
            wait.await;
        }
    }

    /// Host `h` was found to hold a verified copy of `sha` at `path`.
    pub(crate) fn hold(&self, sha: &str, h: usize, path: &str) {
        if self.enabled {
            self.state().add_holder(sha, h, path);
            self.changed.notify_waiters();
        }
    }

    /// A transfer ended. `landed`: `h` now holds a verified copy at `dest`.
    /// `pair_failed`: the relay from that peer failed before any byte
    /// could land; the pair is not tried again.
    pub(crate) fn done(
        &self,
        sha: &str,
        h: usize,
        dest: &str,
        from: &Source,
        landed: bool,
        pair_failed: bool,
    ) {
        let mut st = self.state();
        match from {
            Source::Controller => {
                if let Some(n) = st.seeding.get_mut(sha) {
                    *n = n.saturating_sub(1);
                }
            }
            Source::Peer { host, .. } => {
                if let Some(n) = st.serving.get_mut(host) {
                    *n = n.saturating_sub(1);
                }
                if pair_failed {
                    st.failed.insert((*host, h));
                }
            }
        }
        if let Some(n) = st.moving.get_mut(sha) {
            *n = n.saturating_sub(1);
        }
        if landed {
            st.add_holder(sha, h, dest);
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Host `h` is done with its own tasks. Its lock and connection are
    /// about to go, unless others may still need a file from it: it stays
    /// (serving, its lock held) while a file it holds has fewer than
    /// `LINGER` other holders able to serve and some host of the run is
    /// not done. A host that holds nothing leaves at once, so a run without
    /// uploads keeps no more connections open than before.
    pub(crate) async fn retire(&self, h: usize) {
        loop {
            let wait = self.changed.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            {
                let mut st = self.state();
                if st.finished.insert(h) {
                    self.changed.notify_waiters();
                }
                let all_done = st.finished.len() >= self.hosts;
                let needed = !all_done
                    && st.holders.values().any(|hs| {
                        hs.iter().any(|(p, _)| *p == h)
                            && hs
                                .iter()
                                .filter(|(p, _)| *p != h && st.conns.contains_key(p))
                                .count()
                                < LINGER
                    });
                if !needed && st.serving.get(&h).copied().unwrap_or(0) == 0 {
                    st.conns.remove(&h);
                    drop(st);
                    self.changed.notify_waiters();
                    return;
                }
            }
            wait.await;
        }
    }

    /// A host's worker is running: when it ends, on any path, the host
    /// counts as finished and serves no more.
    pub(crate) fn enter(&self, h: usize) -> Presence<'_> {
        Presence { relay: self, h }
    }
}

/// See `Relay::enter`.
pub(crate) struct Presence<'a> {
    relay: &'a Relay,
    h: usize,
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        let mut st = self.relay.state();
        st.finished.insert(self.h);
        st.conns.remove(&self.h);
        for hs in st.holders.values_mut() {
            hs.retain(|(p, _)| *p != self.h);
        }
        drop(st);
        self.relay.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A host that holds nothing leaves at once (a run without uploads
    /// keeps no connection open longer); one that holds a file others may
    /// still need stays until every host of the run is done.
    #[tokio::test]
    async fn a_holder_stays_until_the_run_is_done_and_no_one_else_does() {
        let r = Relay::new(true, 3);
        tokio::time::timeout(Duration::from_millis(100), r.retire(2))
            .await
            .expect("a host holding nothing leaves at once");
        r.state()
            .holders
            .insert("s".into(), vec![(0, "/b/f".into())]);
        let stays = tokio::time::timeout(Duration::from_millis(200), r.retire(0)).await;
        assert!(
            stays.is_err(),
            "left while host 1 may still ask for the file"
        );
        // Host 1 ends (any path): now every host is done.
        drop(r.enter(1));
        tokio::time::timeout(Duration::from_millis(100), r.retire(0))
            .await
            .expect("leaves once every host is done");
    }
}
