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
}

impl Module for VipCheck {
    const NAME: &'static str = "vip_check";
    const DOC: Doc = Doc {
        summary: "preflight: fails when the VIP answers for a host gantry does not manage",
        params: &[
            ("vip", "the address, an IP"),
            ("managed_by", "a file that exists where gantry already manages the VIP"),
        ],
        example: "- name: the VIP is free\n  vip_check:\n    vip: 10.0.0.100\n    managed_by: /etc/keepalived/check_haproxy.sh\n",
    };

    fn validate(&self) -> Result<(), String> {
        self.vip
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("vip_check: {:?} is not an IP address", self.vip))
    }

    fn probes(&self) -> Result<Probes, String> {
        let v = quote(&self.vip)?;
        Ok(Probes::new()
            .script("held here", format!("ip -o addr show | grep -qw -- {v}"))
            .script("answers", format!("ping -c 1 -W 1 -- {v} >/dev/null 2>&1"))
            .script("managed", format!("test -e {}", quote(&self.managed_by)?)))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let vip = &self.vip;
        Ok(match (a.ok("held here")?, a.ok("answers")?, a.ok("managed")?) {
            (true, _, _) => Decision::unchanged(format!("{vip} is held by this host")),
            (_, false, _) => Decision::unchanged(format!("{vip} is free")),
            (_, true, true) => Decision::unchanged(format!(
                "{vip} answers, held by another control plane of this cluster"
            )),
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
            vec![out(held, ""), out(answers, ""), out(managed, "")]
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
        assert_eq!(
            refused::<VipCheck>(json!({"vip": "10.0.0", "managed_by": "/x"})),
            "vip_check: \"10.0.0\" is not an IP address"
        );
    }
}
