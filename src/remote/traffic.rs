//! What one connection carries: requests (round trips) and bytes each way,
//! counted by `ssh::Conn` as it goes. The run report takes the difference
//! across each task.

use std::sync::atomic::{AtomicU64, Ordering};

/// Requests made and bytes carried by one connection: the run report takes
/// the difference across each task (round trips and bytes per task).
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// A snapshot of `Stats`; `after - before` is what happened between.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub round_trips: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, o: Traffic) -> Traffic {
        Traffic {
            round_trips: self.round_trips.saturating_sub(o.round_trips),
            bytes_sent: self.bytes_sent.saturating_sub(o.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(o.bytes_received),
        }
    }
}

impl Stats {
    /// One request and its bytes each way.
    pub fn count(&self, sent: usize, received: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.received.fetch_add(received as u64, Ordering::Relaxed);
    }

    /// Bytes sent outside a request (an upload's file).
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn now(&self) -> Traffic {
        Traffic {
            round_trips: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
        }
    }
}
