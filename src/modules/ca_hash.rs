//! `ca_hash`: the pin of a CA certificate on the host, as kubeadm's
//! discovery takes it (`sha256:` and the hex sha256 of the certificate's
//! DER SubjectPublicKeyInfo), read and never changed. `register` keeps it
//! as `stdout`, for the joining nodes' config. It is read by a file probe,
//! so plan reads it too; a CA that is not there yet (kubeadm init has still
//! to run) reads as "(known after apply)".

use serde::Deserialize;
use x509_cert::der::{DecodePem, Encode};
use sha2::Digest;

use super::{Answers, Decision, Doc, Module, Probes};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaHash {
    /// The CA certificate (PEM) on the host.
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/etc/kubernetes/pki/ca.crt".into()
}

/// The pin of a PEM certificate: `sha256:` + hex of its SPKI's DER.
pub fn pin(pem: &str) -> Result<String, String> {
    let cert = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    Ok(format!("sha256:{}", hex::encode(sha2::Sha256::digest(spki))))
}

impl Module for CaHash {
    const NAME: &'static str = "ca_hash";
    const DOC: Doc = Doc {
        summary: "reads a CA certificate on the host and registers its pin (sha256 of its public key, kubeadm's discovery-token-ca-cert-hash form) as stdout; changes nothing, and plan reads it too",
        params: &[(
            "path",
            "the CA certificate, PEM (default /etc/kubernetes/pki/ca.crt)",
        )],
        example: "- name: the cluster CA's pin\n  ca_hash:\n    path: /etc/kubernetes/pki/ca.crt\n  register: ca_pin\n",
    };

    fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') {
            return Err(format!(
                "ca_hash: path {:?} must be an absolute path on the host",
                self.path
            ));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        Ok(Probes::new().file("ca", &self.path))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let f = a.file("ca")?;
        if !f.exists {
            return Ok(Decision::Read {
                reason: format!("{} is not there yet", self.path),
                output: crate::exec::KNOWN_AFTER_APPLY.to_string(),
            });
        }
        let pin = pin(&f.content).map_err(|e| format!("ca_hash: {}: {e}", self.path))?;
        Ok(Decision::Read {
            reason: format!("{} pins {pin}", self.path),
            output: pin,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{absent, decide, file, module};

    /// A CA made by `openssl req -x509 -newkey rsa:2048`, and its pin as
    /// `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`
    /// gives it (kubeadm's documented way).
    const CA: &str = include_str!("../../tests/fixtures/ca.crt");
    const PIN: &str = include_str!("../../tests/fixtures/ca.crt.pin");

    #[test]
    fn pins_the_public_key_as_kubeadm_does() {
        let m: CaHash = module(json!({}));
        let d = decide(&m, vec![file("644", CA)]).unwrap();
        assert_eq!(
            d,
            Decision::Read {
                reason: format!("/etc/kubernetes/pki/ca.crt pins {}", PIN.trim()),
                output: PIN.trim().to_string()
            }
        );
        let d = decide(&m, vec![absent()]).unwrap();
        assert!(matches!(d, Decision::Read { output, .. } if output == "(known after apply)"));
        let e = decide(&m, vec![file("644", "hello\n")]).unwrap_err();
        assert!(e.starts_with("ca_hash: /etc/kubernetes/pki/ca.crt: not a PEM certificate"), "{e}");
    }
}
