//! `kubeadm_cluster`: what joins need from the cluster, made again when the
//! cluster no longer has it. The bootstrap token lives 24 h and the
//! uploaded certificates (the `kubeadm-certs` Secret) 2 h; a node added
//! later needs both. Run on the first control plane with kubeadm's init
//! config, which holds the token and the certificate key: the probe reads
//! only the token's public ID from it, and kubeadm reads the secrets from
//! the file, so neither reaches a command line or gantry's output.

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes, cluster};
use crate::remote::script::{command, quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ensure {
    /// The config's bootstrap token is in the cluster (`kubeadm token create`).
    Token,
    /// The `kubeadm-certs` Secret is there (`kubeadm init phase upload-certs`).
    Certs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeadmCluster {
    pub ensure: Ensure,
    /// kubeadm's init config on the host (0600).
    pub config: String,
}

use super::ADMIN_KUBECONFIG as ADMIN;

impl KubeadmCluster {
    fn run_line(&self) -> Result<String, String> {
        Ok(match self.ensure {
            // It prints the token: never into gantry's hands.
            Ensure::Token => format!(
                "{} >/dev/null",
                command(&["kubeadm", "token", "create", "--config", &self.config])?
            ),
            Ensure::Certs => command(&[
                "kubeadm",
                "init",
                "phase",
                "upload-certs",
                "--upload-certs",
                "--config",
                &self.config,
                "--skip-certificate-key-print",
            ])?,
        })
    }
}

impl Module for KubeadmCluster {
    const NAME: &'static str = "kubeadm_cluster";
    const DOC: Doc = Doc {
        summary: "on the first control plane: the bootstrap token (`ensure: token`) or the uploaded certificates (`ensure: certs`) made again from kubeadm's 0600 init config when the cluster no longer has them (they expire after 24 h and 2 h); nothing before kubeadm init",
        params: &[
            ("ensure", "token or certs"),
            ("config", "kubeadm's init config on the host, which holds the token and the certificate key"),
        ],
        example: "- name: the bootstrap token in the cluster\n  kubeadm_cluster:\n    ensure: token\n    config: /etc/kubernetes/gantry/kubeadm-init.yaml\n",
    };

    fn validate(&self) -> Result<(), String> {
        if !self.config.starts_with('/') {
            return Err(format!(
                "kubeadm_cluster: config {:?} must be an absolute path on the host",
                self.config
            ));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        // Only the token's ID (its public half) is read from the file. The
        // Secrets come from the cluster probe every API question of a
        // round trip shares (`cluster`): the token task and the certs task,
        // kubeadm's and node_label's, one kubectl call for all.
        Ok(Probes::new()
            .script(
                "id",
                // The first `- token:` line's ID, by the shell's own
                // reading and patterns (no process): six lowercase letters
                // or digits before the dot, or nothing.
                format!(
                    "v=; while IFS= read -r l; do case $l in *'- token: '*) l=${{l#*- token: }}; l=${{l#\\\"}}; v=${{l%%.*}}; break;; esac; done < {} 2>/dev/null\n\
                     case $v in [a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9]) ;; *) v=;; esac\n\
                     echo \"id $v\"",
                    quote(&self.config)?
                ),
            )
            .query("cluster", cluster::probe(ADMIN)?))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let secrets = match cluster::read(&a.script("cluster")?.out) {
            cluster::Read::NoKubeconfig => {
                return Ok(Decision::unchanged(
                    "no cluster yet: kubeadm init makes it",
                ));
            }
            cluster::Read::Failed(why) => Err(why),
            cluster::Read::View(v) => Ok(v.secrets),
        };
        let id = a
            .script("id")?
            .out
            .lines()
            .find_map(|l| l.strip_prefix("id "))
            .unwrap_or("")
            .trim()
            .to_string();
        let (what, secret) = match self.ensure {
            Ensure::Token if id.is_empty() => {
                return Err(format!(
                    "kubeadm_cluster: no bootstrap token in {}",
                    self.config
                ));
            }
            Ensure::Token => (
                format!("the bootstrap token {id}"),
                format!("bootstrap-token-{id}"),
            ),
            Ensure::Certs => (
                "the kubeadm-certs Secret".to_string(),
                "kubeadm-certs".to_string(),
            ),
        };
        match secrets {
            Ok(s) if s.contains(&secret) => {
                Ok(Decision::unchanged(format!("{what} is in the cluster")))
            }
            Ok(_) => {
                let line = self.run_line()?;
                Ok(Decision::Change(Change::new(
                    format!("{what} is not in the cluster (expired, or never made)"),
                    Action::script(line.clone(), line),
                )))
            }
            Err(why) => Err(format!(
                "cannot tell whether {what} is in the cluster: {why}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::ProbeOut;
    use crate::modules::testing::{change, decide, module, out, unchanged};

    const CFG: &str = "/etc/kubernetes/gantry/kubeadm-init.yaml";

    /// The cluster probe's answer with these kube-system Secrets.
    fn cluster(secrets: &[&str]) -> ProbeOut {
        let lines: String = secrets.iter().map(|s| format!("Secret\t{s}\t\n")).collect();
        out(0, &format!("Node\tmaster1\t{{}}\n{lines}\nkubectl-rc 0\n"))
    }

    #[test]
    fn makes_again_only_what_the_cluster_lost_and_never_prints_the_token() {
        let token: KubeadmCluster = module(json!({"ensure": "token", "config": CFG}));
        let id = || out(0, "id abcdef\n");
        assert_eq!(
            unchanged(decide(&token, vec![out(0, "id \n"), out(0, "no-cluster\n")]).unwrap()),
            "no cluster yet: kubeadm init makes it"
        );
        let certs: KubeadmCluster = module(json!({"ensure": "certs", "config": CFG}));
        // The same probes for both: the tasks share their answers, and the
        // cluster's is the one every API question of a round trip shares.
        assert_eq!(token.probes().unwrap(), certs.probes().unwrap());
        let asked: Vec<String> = token.probes().unwrap().list().map(|p| p.script().unwrap()).collect();
        assert_eq!(asked[1], cluster::probe(ADMIN).unwrap());
        let there = || cluster(&["bootstrap-token-abcdef"]);
        assert_eq!(
            unchanged(decide(&token, vec![id(), there()]).unwrap()),
            "the bootstrap token abcdef is in the cluster"
        );
        // The certificates expired (2 h), the token not (24 h).
        assert_eq!(
            change(decide(&certs, vec![id(), there()]).unwrap()).reason,
            "the kubeadm-certs Secret is not in the cluster (expired, or never made)"
        );
        // Another token's Secret is not this one.
        let c = change(decide(&token, vec![id(), cluster(&["bootstrap-token-zzzzzz"])]).unwrap());
        assert_eq!(
            c.reason,
            "the bootstrap token abcdef is not in the cluster (expired, or never made)"
        );
        assert!(matches!(&c.actions()[0], Action::Run { script, .. }
            if script == "kubeadm token create --config /etc/kubernetes/gantry/kubeadm-init.yaml >/dev/null"));
        let e = decide(&token, vec![out(0, "id \n"), cluster(&[])]).unwrap_err();
        assert!(e.contains("no bootstrap token in"), "{e}");

        let both = || cluster(&["bootstrap-token-abcdef", "kubeadm-certs"]);
        unchanged(decide(&certs, vec![id(), both()]).unwrap());
        unchanged(decide(&token, vec![id(), both()]).unwrap());
        let c = change(decide(&certs, vec![id(), cluster(&[])]).unwrap());
        assert!(matches!(&c.actions()[0], Action::Run { script, .. }
            if script == "kubeadm init phase upload-certs --upload-certs --config /etc/kubernetes/gantry/kubeadm-init.yaml --skip-certificate-key-print"));
        let e = decide(&certs, vec![id(), out(0, "The connection to the server 10.0.0.1:6553 was refused\n\nkubectl-rc 1\n")]).unwrap_err();
        assert!(e.starts_with("cannot tell whether the kubeadm-certs Secret is in the cluster: The connection"), "{e}");
    }

    /// The ID is read from a real init config by the probe, run by a real
    /// sh: the token's first six characters, never its secret half; a
    /// token that is not kubeadm's form gives no ID.
    #[test]
    fn the_probe_reads_the_token_id_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("kubeadm-init.yaml");
        std::fs::write(
            &cfg,
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n  - token: \"abcdef.0123456789abcdef\"\n    ttl: 24h0m0s\n",
        )
        .unwrap();
        let m: KubeadmCluster =
            module(json!({"ensure": "token", "config": cfg.display().to_string()}));
        let id = m.probes().unwrap().list().next().unwrap().script().unwrap();
        let said = || {
            let o = std::process::Command::new("sh").args(["-c", &id]).output().unwrap();
            String::from_utf8(o.stdout).unwrap()
        };
        assert_eq!(said(), "id abcdef\n");
        for (line, want) in [
            ("  - token: abcdef.0123456789abcdef\n", "id abcdef\n"),
            ("  - token: \"ABCDEF.0123456789abcdef\"\n", "id \n"),
            ("  - token: abc.0123456789abcdef\n", "id \n"),
            ("nodeRegistration: {}\n", "id \n"),
        ] {
            std::fs::write(&cfg, format!("bootstrapTokens:\n{line}")).unwrap();
            assert_eq!(said(), want, "{line}");
        }
        std::fs::remove_file(&cfg).unwrap();
        assert_eq!(said(), "id \n");
    }
}
