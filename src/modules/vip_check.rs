//! `vip_check`: a preflight, not a change. The VIP must not already answer
//! for a host gantry does not manage: two hosts holding one address is an
//! outage that no later task can explain.

use serde::Deserialize;

use super::{Answers, Decision, Doc, Module, Probes};
use crate::remote::script::quote;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipCheck {
    pub vip: String,
    /// A file that exists once gantry manages the VIP on this host; then an
    /// answering VIP is ours.
    pub managed_by: String,
    /// The cluster's control planes' addresses, space-separated: a VIP that
    /// answers from one of their MAC addresses is this cluster's (a control
    /// plane added to a running cluster finds it held by another).
    #[serde(default)]
    pub peers: String,
}

/// The MAC `ip neigh show` gives for `ip`, if any.
fn mac_of<'a>(neigh: &'a str, ip: &str) -> Option<&'a str> {
    neigh.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "lladdr")?;
        (w.first() == Some(&ip)).then(|| w.get(at + 1).copied()).flatten()
    })
}

impl Module for VipCheck {
    const NAME: &'static str = "vip_check";
    const DOC: Doc = Doc {
        summary: "preflight: fails when the VIP answers for a host gantry does not manage",
        params: &[
            ("vip", "the address, an IP"),
            ("managed_by", "a file that exists where gantry already manages the VIP"),
            ("peers", "the cluster's control planes' addresses, space-separated: the VIP answering from one of their MACs is this cluster's"),
        ],
        example: "- name: the VIP is free\n  vip_check:\n    vip: 10.0.0.100\n    managed_by: /etc/keepalived/check_haproxy.sh\n",
    };

    fn validate(&self) -> Result<(), String> {
        for ip in std::iter::once(self.vip.as_str()).chain(self.peers.split_whitespace()) {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| format!("vip_check: {ip:?} is not an IP address"))?;
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        // One script that stops at the first answer: held here, free, or
        // managed needs no more; only a VIP answering for a host gantry
        // does not manage yet asks each peer once, so its MAC is in the
        // neighbour table.
        let v = quote(&self.vip)?;
        let mut s = format!(
            "if ip -o addr show | grep -qwF -- {v}; then echo held\nelif ! ping -c 1 -W 1 -- {v} >/dev/null 2>&1; then echo free\nelif test -e {}; then echo managed\nelse\n",
            quote(&self.managed_by)?
        );
        for p in self.peers.split_whitespace() {
            s.push_str(&format!("ping -c 1 -W 1 -- {} >/dev/null 2>&1\n", quote(p)?));
        }
        s.push_str("echo answers; ip neigh show\nfi");
        Ok(Probes::new().script("vip", s))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let vip = &self.vip;
        let out = a.script("vip")?.out.as_str();
        let (first, neigh) = out.split_once('\n').unwrap_or((out, ""));
        Ok(match first.trim() {
            "held" => Decision::unchanged(format!("{vip} is held by this host")),
            "free" => Decision::unchanged(format!("{vip} is free")),
            "managed" => Decision::unchanged(format!(
                "{vip} answers, held by another control plane of this cluster"
            )),
            "answers"
                if mac_of(neigh, vip).is_some_and(|m| {
                    self.peers
                        .split_whitespace()
                        .any(|p| mac_of(neigh, p) == Some(m))
                }) =>
            {
                Decision::unchanged(format!(
                    "{vip} answers from the MAC of another control plane of this cluster"
                ))
            }
            "answers" => {
                return Err(format!(
                    "VIP {vip} already answers on the network and gantry does not manage keepalived here yet: another host holds it. Pick a free address for control_plane_endpoint.vip, or set control_plane_endpoint.external: true if it is your own load balancer"
                ));
            }
            other => return Err(format!("vip_check: could not read whether {vip} answers ({other:?})")),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{decide, executable, module, out, refused, unchanged};

    #[test]
    fn vip_check_tells_a_free_vip_ours_and_a_strangers() {
        let m: VipCheck = module(
            json!({"vip": "10.0.0.100", "managed_by": "/etc/keepalived/check_haproxy.sh"}),
        );
        let said = |first: &str| vec![out(0, &format!("{first}\n"))];
        assert_eq!(unchanged(decide(&m, said("free")).unwrap()), "10.0.0.100 is free");
        assert_eq!(
            unchanged(decide(&m, said("held")).unwrap()),
            "10.0.0.100 is held by this host"
        );
        assert_eq!(
            unchanged(decide(&m, said("managed")).unwrap()),
            "10.0.0.100 answers, held by another control plane of this cluster"
        );
        assert!(decide(&m, said("")).is_err());
        assert!(
            decide(&m, said("answers"))
                .unwrap_err()
                .starts_with("VIP 10.0.0.100 already answers on the network and gantry does not manage keepalived here yet")
        );
        // A control plane added to a running cluster: the VIP answers from
        // the MAC of one of the cluster's control planes.
        let m: VipCheck = module(
            json!({"vip": "10.0.0.100", "managed_by": "/m", "peers": "10.0.0.11 10.0.0.12"}),
        );
        let neigh = |vip_mac: &str| {
            format!("10.0.0.11 dev eth0 lladdr 02:42:ac:1d:27:0b REACHABLE\n10.0.0.12 dev eth0 lladdr 02:42:ac:1d:27:0c STALE\n10.0.0.100 dev eth0 lladdr {vip_mac} REACHABLE\n")
        };
        let ans = |n: String| vec![out(0, &format!("answers\n{n}"))];
        assert_eq!(
            unchanged(decide(&m, ans(neigh("02:42:ac:1d:27:0b"))).unwrap()),
            "10.0.0.100 answers from the MAC of another control plane of this cluster"
        );
        assert!(decide(&m, ans(neigh("02:42:ac:1d:99:99"))).is_err());
        assert_eq!(
            refused::<VipCheck>(json!({"vip": "10.0.0", "managed_by": "/x"})),
            "vip_check: \"10.0.0\" is not an IP address"
        );
    }

    /// The real script under sh, with recording stand-ins for `ip` and
    /// `ping`: it stops at the first answer, so a held, free or managed VIP
    /// never pings the peers.
    #[test]
    fn vip_check_asks_no_more_than_it_needs() {
        let vip = |managed_by: &str| {
            let m: VipCheck = module(
                json!({"vip": "10.0.0.100", "managed_by": managed_by, "peers": "10.0.0.11 10.0.0.12"}),
            );
            m.probes().unwrap().list().next().unwrap().script().unwrap()
        };
        let run = |script: &str, held: bool, answers: &str| {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("log");
            let fake = |name: &str, body: &str| {
                executable(&dir.path().join(name), &format!("echo {name} \"$*\" >> {}\n{body}", log.display()));
            };
            let addr = if held { "10.0.0.100/24" } else { "10.0.0.11/24" };
            fake("ip", &format!("case $1 in -o) echo \"2: eth0    inet {addr} brd 10.0.0.255 scope global eth0\";; *) echo '10.0.0.100 dev eth0 lladdr 02:42:ac:1d:27:0b REACHABLE';; esac"));
            fake("ping", &format!("case \"$*\" in *{answers}*) exit 0;; *) exit 1;; esac"));
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
            (said, std::fs::read_to_string(&log).unwrap_or_default())
        };
        let unmanaged = vip("/nonexistent/managed");
        let (said, calls) = run(&unmanaged, true, "10.0.0.100");
        assert_eq!((said.as_str(), calls.matches("ping").count()), ("held", 0), "{calls}");
        let (said, calls) = run(&unmanaged, false, "nothing");
        assert_eq!((said.as_str(), calls.matches("ping").count()), ("free", 1), "{calls}");
        let (said, calls) = run(&vip("/"), false, "10.0.0.");
        assert_eq!((said.as_str(), calls.matches("ping").count()), ("managed", 1), "{calls}");
        let (said, calls) = run(&unmanaged, false, "10.0.0.");
        assert_eq!(said, "answers");
        assert!(calls.contains("ping -c 1 -W 1 -- 10.0.0.11") && calls.contains("ping -c 1 -W 1 -- 10.0.0.12") && calls.contains("ip neigh show"), "{calls}");
    }
}
