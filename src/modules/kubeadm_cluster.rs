//! `kubeadm_cluster`: what joins need from the cluster, made again when the
//! cluster no longer has it. The bootstrap token lives 24 h and the
//! uploaded certificates (the `kubeadm-certs` Secret) 2 h; a node added
//! later needs both. Run on the first control plane with kubeadm's init
//! config, which holds the token and the certificate key: the probe reads
//! only the token's public ID from it, and kubeadm reads the secrets from
//! the file, so neither reaches a command line or gantry's output.

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes};
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
        // One script for both kinds, asking for both Secrets in one
        // kubectl call: the token task and the certs task of a role share
        // its answer (identical probes are read once), so a rerun asks the
        // API once. Only the token's ID (its public half) is read from the
        // file; absent Secrets print nothing (`--ignore-not-found`).
        let get = command(&[
            "kubectl",
            "--kubeconfig",
            ADMIN,
            "--request-timeout=10s",
            "-n",
            "kube-system",
            "get",
            "secret",
        ])?;
        Ok(Probes::new().script(
            "state",
            format!(
                "if [ -e {ADMIN} ]; then\n\
                 v=$(sed -n 's/^ *- token: \"\\{{0,1\\}}\\([a-z0-9]\\{{6\\}}\\)\\..*/\\1/p' {} | head -n 1)\n\
                 echo \"id $v\"\n\
                 {get} ${{v:+\"bootstrap-token-$v\"}} kubeadm-certs -o name --ignore-not-found 2>&1; echo kubectl-rc $?\n\
                 else echo no-cluster; fi",
                quote(&self.config)?
            ),
        ))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let out = &a.script("state")?.out;
        if out.trim() == "no-cluster" {
            return Ok(Decision::unchanged(
                "no cluster yet: kubeadm init makes it",
            ));
        }
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("id "))
            .unwrap_or("")
            .trim();
        let (what, secret) = match self.ensure {
            Ensure::Token => {
                if id.is_empty() {
                    return Err(format!(
                        "kubeadm_cluster: no bootstrap token in {}",
                        self.config
                    ));
                }
                (
                    format!("the bootstrap token {id}"),
                    format!("secret/bootstrap-token-{id}"),
                )
            }
            Ensure::Certs => (
                "the kubeadm-certs Secret".to_string(),
                "secret/kubeadm-certs".to_string(),
            ),
        };
        let rc = out
            .lines()
            .find_map(|l| l.strip_prefix("kubectl-rc "))
            .and_then(|r| r.trim().parse::<i32>().ok());
        let said: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with("id ") && !l.starts_with("kubectl-rc "))
            .collect();
        match rc {
            Some(0) if said.iter().any(|l| l.trim() == secret) => {
                Ok(Decision::unchanged(format!("{what} is in the cluster")))
            }
            Some(0) => {
                let line = self.run_line()?;
                Ok(Decision::Change(Change::new(
                    format!("{what} is not in the cluster (expired, or never made)"),
                    Action::script(line.clone(), line),
                )))
            }
            _ => Err(format!(
                "cannot tell whether {what} is in the cluster: {}",
                said.join("\n").trim()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, unchanged};

    const CFG: &str = "/etc/kubernetes/gantry/kubeadm-init.yaml";

    #[test]
    fn makes_again_only_what_the_cluster_lost_and_never_prints_the_token() {
        let token: KubeadmCluster = module(json!({"ensure": "token", "config": CFG}));
        assert_eq!(
            unchanged(decide(&token, vec![out(0, "no-cluster\n")]).unwrap()),
            "no cluster yet: kubeadm init makes it"
        );
        let there = "id abcdef\nsecret/bootstrap-token-abcdef\nkubectl-rc 0\n";
        let certs: KubeadmCluster = module(json!({"ensure": "certs", "config": CFG}));
        // One probe for both: the tasks share its answer.
        assert_eq!(
            token.probes().unwrap().list().next().unwrap().script(),
            certs.probes().unwrap().list().next().unwrap().script()
        );
        assert_eq!(
            unchanged(decide(&token, vec![out(0, there)]).unwrap()),
            "the bootstrap token abcdef is in the cluster"
        );
        // The certificates expired (2 h), the token not (24 h).
        assert_eq!(
            change(decide(&certs, vec![out(0, there)]).unwrap()).reason,
            "the kubeadm-certs Secret is not in the cluster (expired, or never made)"
        );
        let gone = "id abcdef\nkubectl-rc 0\n";
        let c = change(decide(&token, vec![out(0, gone)]).unwrap());
        assert_eq!(
            c.reason,
            "the bootstrap token abcdef is not in the cluster (expired, or never made)"
        );
        assert!(matches!(&c.actions()[0], Action::Run { script, .. }
            if script == "kubeadm token create --config /etc/kubernetes/gantry/kubeadm-init.yaml >/dev/null"));
        let e = decide(&token, vec![out(0, "id \nkubectl-rc 1\n")]).unwrap_err();
        assert!(e.contains("no bootstrap token in"), "{e}");
        // The script reads the ID with sed; it is the token's public half.
        let p = token.probes().unwrap();
        let script = p.list().next().unwrap().script().unwrap();
        assert!(script.contains("sed -n"), "{script}");

        let both = "id abcdef\nsecret/bootstrap-token-abcdef\nsecret/kubeadm-certs\nkubectl-rc 0\n";
        unchanged(decide(&certs, vec![out(0, both)]).unwrap());
        unchanged(decide(&token, vec![out(0, both)]).unwrap());
        let c = change(decide(&certs, vec![out(0, gone)]).unwrap());
        assert!(matches!(&c.actions()[0], Action::Run { script, .. }
            if script == "kubeadm init phase upload-certs --upload-certs --config /etc/kubernetes/gantry/kubeadm-init.yaml --skip-certificate-key-print"));
        let e = decide(&certs, vec![out(0, "The connection to the server 10.0.0.1:6553 was refused\nkubectl-rc 1\n")]).unwrap_err();
        assert!(e.starts_with("cannot tell whether the kubeadm-certs Secret is in the cluster"), "{e}");
    }
}
