//! Checks judged from one host's facts, one file per concern.

pub mod cgroup;
pub mod dns;
pub mod etcd_fsync;
pub mod gpu;
pub mod hardware;
pub mod kubernetes;
pub mod lsm;
pub mod modules;
pub mod os;
pub mod swap;
pub mod sysctl;
pub mod time;

/// `have` is at least `want`, part by part (`575.64.03` >= `575`).
pub fn version_at_least(have: &str, want: &str) -> bool {
    let parse = |s: &str| {
        s.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (h, w) = (parse(have), parse(want));
    for i in 0..h.len().max(w.len()) {
        let (a, b) = (
            h.get(i).copied().unwrap_or(0),
            w.get(i).copied().unwrap_or(0),
        );
        if a != b {
            return a > b;
        }
    }
    true
}
