//! ports-reachable: each host connects to the other hosts' TCP table ports
//! over their real addresses. A refused connection still proves the path
//! is open (nothing listens yet); a timeout means a firewall drops it, and
//! "No route to host" that one rejects it (firewalld's
//! `icmp-admin-prohibited`). UDP (8472) cannot be told
//! apart this way without a listener, so it is not tested.

use std::time::Duration;

use super::{Check, Finding, Judge, Level, Stage, finding};
use crate::remote::script::quote;
use crate::remote::ssh::Conn;

pub const PORTS_REACHABLE: Check = Check {
    name: "ports-reachable",
    stage: Stage::Always,
    roles: &[],
    reads: &[],
    judge: Judge::Reach,
    requires: "fail: a TCP port of another host's table does not answer (a timeout: a firewall drops it; \"No route to host\": one rejects it; a refusal proves the path is open), from the hosts the row admits (etcd's from control planes only). UDP 8472 cannot be told apart without a listener and is not tested",
    source: "requirements doc",
};

/// One port to try: (host name, address, port, what).
pub type Target = (String, String, u16, String);

/// The blocked targets, as "host (ip) port/tcp what", sorted.
pub async fn blocked(conn: &Conn, targets: &[Target]) -> Result<Vec<String>, String> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut s = String::new();
    for (i, (_, ip, port, _)) in targets.iter().enumerate() {
        s.push_str(&format!(
            "( if e=$(LC_ALL=C timeout 2 bash -c {} 2>&1); then echo {i} open; else r=$?; case $r:$e in 124:*|*'No route to host'*) echo {i} blocked;; *) echo {i} open;; esac; fi ) &\n",
            quote(&format!("</dev/tcp/{ip}/{port}"))?
        ));
    }
    s.push_str("wait\n");
    let out = conn
        .run(&s, &[], Some(Duration::from_secs(30)))
        .await
        .map_err(|e| e.message)?;
    let mut blocked = Vec::new();
    for line in out.stdout.lines() {
        if let Some((i, "blocked")) = line.split_once(' ')
            && let Some((host, ip, port, what)) =
                i.parse::<usize>().ok().and_then(|i| targets.get(i))
        {
            blocked.push(format!("{host} ({ip}) {port}/tcp {what}"));
        }
    }
    blocked.sort();
    Ok(blocked)
}

/// The finding, from what `blocked` found (or why it could not test).
pub fn judge(tried: usize, no_port_table: bool, result: Result<Vec<String>, String>) -> Finding {
    if no_port_table {
        return finding(
            "ports-reachable",
            Level::Warn,
            "not tested: no planned task renders a port table (firewall_rules)",
            "every table port reachable host to host",
            "run check with the playbook that holds the firewall role",
        );
    }
    match result {
        Ok(b) if b.is_empty() => finding(
            "ports-reachable",
            Level::Pass,
            format!("{tried} TCP port(s) on the other hosts reachable"),
            "every table port reachable host to host (UDP 8472 is not tested)",
            "",
        ),
        Ok(b) => finding(
            "ports-reachable",
            Level::Fail,
            format!("blocked: {}", b.join(", ")),
            "every table port reachable host to host",
            "open them between the cluster's hosts (gantry apply, role firewall, does it for its own table)",
        ),
        Err(e) => finding(
            "ports-reachable",
            Level::Warn,
            format!("not tested: {e}"),
            "",
            "",
        ),
    }
}
