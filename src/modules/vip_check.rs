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
        let v = quote(&self.vip)?;
        Ok(Probes::new()
            .script("held here", format!("ip -o addr show | grep -qw -- {v}"))
            .script("answers", format!("ping -c 1 -W 1 -- {v} >/dev/null 2>&1"))
            .script("managed", format!("test -e {}", quote(&self.managed_by)?))
            .script("neighbours", {
                // Each peer asked once, so its MAC is in the table.
                let mut s = String::new();
                for p in self.peers.split_whitespace() {
                    s.push_str(&format!("ping -c 1 -W 1 -- {} >/dev/null 2>&1\n", quote(p)?));
                }
                s.push_str("ip neigh show");
                s
            }))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let vip = &self.vip;
        let neigh = a.script("neighbours")?.out.as_str();
        Ok(match (a.ok("held here")?, a.ok("answers")?, a.ok("managed")?) {
            (true, _, _) => Decision::unchanged(format!("{vip} is held by this host")),
            (_, false, _) => Decision::unchanged(format!("{vip} is free")),
            (_, true, true) => Decision::unchanged(format!(
                "{vip} answers, held by another control plane of this cluster"
            )),
            (_, true, false)
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
            (_, true, false) => {
                return Err(format!(
                    "VIP {vip} already answers on the network and gantry does not manage keepalived here yet: another host holds it. Pick a free address for control_plane_endpoint.vip, or set control_plane_endpoint.external: true if it is your own load balancer"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{decide, module, out, refused, unchanged};

    #[test]
    fn vip_check_tells_a_free_vip_ours_and_a_strangers() {
        let m: VipCheck = module(
            json!({"vip": "10.0.0.100", "managed_by": "/etc/keepalived/check_haproxy.sh"}),
        );
        let rc = |held: i32, answers: i32, managed: i32| {
            vec![out(held, ""), out(answers, ""), out(managed, ""), out(0, "")]
        };
        assert_eq!(unchanged(decide(&m, rc(1, 1, 1)).unwrap()), "10.0.0.100 is free");
        assert_eq!(
            unchanged(decide(&m, rc(0, 0, 0)).unwrap()),
            "10.0.0.100 is held by this host"
        );
        assert_eq!(
            unchanged(decide(&m, rc(1, 0, 0)).unwrap()),
            "10.0.0.100 answers, held by another control plane of this cluster"
        );
        assert!(
            decide(&m, rc(1, 0, 1))
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
        let ans = |n: String| vec![out(1, ""), out(0, ""), out(1, ""), out(0, &n)];
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
}
