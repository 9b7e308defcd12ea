//! known_hosts as OpenSSH reads it, for the host-key check: the user's file
//! and the system's (`/etc/ssh/ssh_known_hosts`), host patterns with `*`,
//! `?`, `!` and hashed `|1|` names, `[host]:port`, several keys for one host,
//! and the `@revoked` and `@cert-authority` markers. russh's reader knows
//! neither marker nor wildcard, takes a key of another algorithm for an
//! unknown host (so trust on first use would learn a man in the middle's
//! ECDSA key beside a recorded ed25519 one), and stops at the first key of
//! the offered algorithm that differs (security review findings 11 and 12).

use std::path::{Path, PathBuf};

use russh::keys::{Algorithm, Certificate, EcdsaCurve, HashAlg, PublicKey};

/// The system-wide file OpenSSH also reads.
pub const SYSTEM_FILE: &str = "/etc/ssh/ssh_known_hosts";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Plain,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    patterns: String,
    key: PublicKey,
}

/// Where a line is: file and line number, as an operator finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

/// What the files say of a key a host offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for the host holds this key (or its certificate is signed by
    /// a trusted authority, for this host, and valid now).
    Known,
    /// No line for the host at all, of any algorithm: only here may trust
    /// on first use learn it.
    Unknown,
    /// The host has keys, and this is none of them: every line for it.
    Changed(Vec<Place>),
    /// The key (or the authority that signed it) is marked `@revoked`.
    Revoked(Place),
    /// A certificate an authority line covers, refused: why.
    BadCertificate(String),
}

/// The entries of every file that exists, in order: the user's first.
#[derive(Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Read `files`; a missing one is empty. A line that does not parse is
    /// skipped, as OpenSSH does.
    pub fn load(files: &[&Path]) -> Result<KnownHosts, String> {
        let mut entries = Vec::new();
        for file in files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
            };
            for (i, line) in text.lines().enumerate() {
                if let Some((marker, patterns, key)) = parse_line(line) {
                    entries.push(Entry {
                        file: file.to_path_buf(),
                        line: i + 1,
                        marker,
                        patterns,
                        key,
                    });
                }
            }
        }
        Ok(KnownHosts { entries })
    }

    fn for_host<'a>(&'a self, host: &'a str, port: u16) -> impl Iterator<Item = &'a Entry> + 'a {
        let name = host_port(host, port);
        self.entries
            .iter()
            .filter(move |e| matches_patterns(&name, &e.patterns))
    }

    /// The algorithms of the keys recorded for the host, to ask for first:
    /// a host recorded with its ECDSA key is asked for that key, not told it
    /// changed because it also has an ed25519 one.
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self
            .for_host(host, port)
            .filter(|e| e.marker == Marker::Plain)
        {
            let algs = match e.key.algorithm() {
                // An RSA key signs with SHA-2 (rsa-sha2-512/256).
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                a => vec![a],
            };
            for a in algs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Whether an `@cert-authority` line covers the host: then its
    /// certificate is asked for.
    pub fn has_authority(&self, host: &str, port: u16) -> bool {
        self.for_host(host, port)
            .any(|e| e.marker == Marker::CertAuthority)
    }

    /// The verdict on `key` offered by `host` (`cert` when it came as a
    /// certificate).
    pub fn verify(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
        cert: Option<&Certificate>,
    ) -> Verdict {
        let lines: Vec<&Entry> = self.for_host(host, port).collect();
        let revoked = |k: &russh::keys::ssh_key::public::KeyData| {
            lines
                .iter()
                .find(|e| e.marker == Marker::Revoked && e.key.key_data() == k)
                .map(|e| Place {
                    file: e.file.clone(),
                    line: e.line,
                })
        };
        if let Some(p) = revoked(key.key_data()) {
            return Verdict::Revoked(p);
        }
        if let Some(c) = cert {
            if let Some(p) = revoked(c.signature_key()) {
                return Verdict::Revoked(p);
            }
            let authorities: Vec<_> = lines
                .iter()
                .filter(|e| e.marker == Marker::CertAuthority)
                .map(|e| e.key.fingerprint(HashAlg::Sha256))
                .collect();
            if authorities.is_empty() {
                return Verdict::BadCertificate(
                    "it offered a certificate, and no @cert-authority line covers it".into(),
                );
            }
            if c.cert_type() != russh::keys::ssh_key::certificate::CertType::Host {
                return Verdict::BadCertificate("its certificate is not a host certificate".into());
            }
            if !c.valid_principals().iter().any(|p| p == host) {
                return Verdict::BadCertificate(format!(
                    "its certificate is not for {host} (principals: {})",
                    c.valid_principals().join(", ")
                ));
            }
            if !c.critical_options().is_empty() {
                return Verdict::BadCertificate(
                    "its certificate has critical options, which a host certificate must not"
                        .into(),
                );
            }
            return match c.validate(authorities.iter()) {
                Ok(()) => Verdict::Known,
                Err(e) => Verdict::BadCertificate(format!(
                    "its certificate does not validate against the @cert-authority keys (signature, or validity period): {e}"
                )),
            };
        }
        let plain: Vec<&&Entry> = lines.iter().filter(|e| e.marker == Marker::Plain).collect();
        if plain.iter().any(|e| e.key.key_data() == key.key_data()) {
            return Verdict::Known;
        }
        if plain.is_empty() {
            return Verdict::Unknown;
        }
        Verdict::Changed(
            plain
                .iter()
                .map(|e| Place {
                    file: e.file.clone(),
                    line: e.line,
                })
                .collect(),
        )
    }
}

/// The host-key algorithms to offer the host, the recorded ones first;
/// never `ssh-rsa` with SHA-1 signatures (OpenSSH refuses it since 8.8).
pub fn preferred_order(recorded: &[Algorithm]) -> Vec<Algorithm> {
    let all = [
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
    ];
    let mut out: Vec<Algorithm> = all
        .iter()
        .filter(|a| recorded.contains(a))
        .cloned()
        .collect();
    out.extend(all.iter().filter(|a| !recorded.contains(a)).cloned());
    out
}

/// As known_hosts names a host: `[host]:port` but on port 22.
fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// One line: an optional marker, the host patterns, the key type and the
/// key. Fields are split on any run of blanks.
fn parse_line(line: &str) -> Option<(Marker, String, PublicKey)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::Plain,
    };
    if marker != Marker::Plain {
        first = fields.next()?;
    }
    let (kind, b64) = (fields.next()?, fields.next()?);
    let key = PublicKey::from_openssh(&format!("{kind} {b64}")).ok()?;
    Some((marker, first.to_string(), key))
}

/// Whether `name` matches the comma-separated patterns: one positive match
/// and no negated one (`!pattern`), as OpenSSH's match_hostname.
fn matches_patterns(name: &str, patterns: &str) -> bool {
    let mut hit = false;
    for p in patterns.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p),
        };
        let m = if p.starts_with("|1|") {
            hashed_match(name, p)
        } else {
            glob(&p.to_ascii_lowercase(), &name.to_ascii_lowercase())
        };
        if m && negated {
            return false;
        }
        hit |= m;
    }
    hit
}

/// `|1|salt|hash`: HMAC-SHA1 of the name under the salt, both base64.
fn hashed_match(name: &str, p: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let mut parts = p.split('|').skip(2);
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let b64 = data_encoding::BASE64;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt.as_bytes()), b64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` any run of characters, `?` any one: the two wildcards known_hosts
/// has (no classes, no escapes).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Greedy with one backtrack point, the classic wildcard match.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A fresh key pair of `kind` made by ssh-keygen: its public line.
    fn keygen(dir: &Path, name: &str, kind: &str) -> String {
        let path = dir.join(name);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", kind, "-C", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap()
    }

    #[test]
    fn patterns_as_openssh_matches_them() {
        assert!(matches_patterns("node1", "node1"));
        assert!(matches_patterns("node1.dc1.example", "*.dc1.example"));
        assert!(matches_patterns("node7", "node?"));
        assert!(!matches_patterns("node17", "node?"));
        assert!(matches_patterns("[10.0.0.5]:2222", "[10.0.0.5]:2222"));
        assert!(!matches_patterns("10.0.0.5", "[10.0.0.5]:2222"));
        assert!(!matches_patterns(
            "bad.dc1.example",
            "*.dc1.example,!bad.dc1.example"
        ));
        assert!(matches_patterns("NODE1", "node1"));
    }

    /// A file hashed by `ssh-keygen -H` still names its hosts.
    #[test]
    fn hashed_names_match_their_host_only() {
        let dir = tempfile::tempdir().unwrap();
        let ed = keygen(dir.path(), "ed", "ed25519");
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, format!("node1 {ed}\n[10.0.0.5]:2222 {ed}\n")).unwrap();
        let st = Command::new("ssh-keygen")
            .args(["-q", "-H", "-f"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(st.success());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("|1|") && !text.contains("node1"), "{text}");
        let kh = KnownHosts::load(&[&file]).unwrap();
        assert_eq!(kh.verify("node1", 22, &key(&ed), None), Verdict::Known);
        assert_eq!(kh.verify("10.0.0.5", 2222, &key(&ed), None), Verdict::Known);
        assert_eq!(kh.verify("node2", 22, &key(&ed), None), Verdict::Unknown);
    }

    /// Review findings 11 and 12, with keys ssh-keygen made: a host
    /// recorded with one key that offers another, of any algorithm, has
    /// changed; `@revoked` keys are refused even where a plain line lists
    /// them; several keys for one host all pass; the system file counts;
    /// blanks of any width separate fields.
    #[test]
    fn every_key_of_a_host_counts_whatever_its_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let ed = keygen(dir.path(), "ed", "ed25519");
        let ec = keygen(dir.path(), "ec", "ecdsa");
        let other = keygen(dir.path(), "other", "ed25519");
        let user = dir.path().join("known_hosts");
        let system = dir.path().join("ssh_known_hosts");
        std::fs::write(
            &user,
            format!("# comment\nnode1\t{ed}\n\nnode2,node3  {other}\nnode2 {ed}\n"),
        )
        .unwrap();
        std::fs::write(&system, format!("*.dc1.example {ec}\n@revoked * {other}\n")).unwrap();
        let kh = KnownHosts::load(&[&user, &system]).unwrap();
        assert_eq!(kh.verify("node1", 22, &key(&ed), None), Verdict::Known);
        // Another algorithm than the recorded one is a change, not unknown.
        assert_eq!(
            kh.verify("node1", 22, &key(&ec), None),
            Verdict::Changed(vec![Place {
                file: user.clone(),
                line: 2
            }])
        );
        assert_eq!(kh.verify("node9", 22, &key(&ec), None), Verdict::Unknown);
        assert_eq!(kh.verify("node1", 2222, &key(&ed), None), Verdict::Unknown);
        // Two keys for node2: the second matches. But `other` is revoked.
        assert_eq!(kh.verify("node2", 22, &key(&ed), None), Verdict::Known);
        assert_eq!(
            kh.verify("node2", 22, &key(&other), None),
            Verdict::Revoked(Place {
                file: system.clone(),
                line: 2
            })
        );
        assert_eq!(
            kh.verify("n1.dc1.example", 22, &key(&ec), None),
            Verdict::Known
        );
        assert_eq!(
            kh.recorded_algorithms("node1", 22),
            vec![Algorithm::Ed25519]
        );
        assert_eq!(
            preferred_order(&kh.recorded_algorithms("n1.dc1.example", 22))[0],
            key(&ec).algorithm()
        );
        assert!(!preferred_order(&[]).contains(&Algorithm::Rsa { hash: None }));
    }

    #[test]
    fn a_host_certificate_is_trusted_only_from_its_authority() {
        let dir = tempfile::tempdir().unwrap();
        let ca = keygen(dir.path(), "ca", "ed25519");
        let _host = keygen(dir.path(), "host", "ed25519");
        let sign = |principals: &str, host_cert: bool| {
            let mut c = Command::new("ssh-keygen");
            c.args(["-q", "-s"])
                .arg(dir.path().join("ca"))
                .args(["-I", "test", "-n", principals]);
            if host_cert {
                c.arg("-h");
            }
            let st = c.arg(dir.path().join("host.pub")).status().unwrap();
            assert!(st.success());
            let text = std::fs::read_to_string(dir.path().join("host-cert.pub")).unwrap();
            Certificate::from_openssh(text.trim()).unwrap()
        };
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, format!("@cert-authority *.dc1.example {ca}\n")).unwrap();
        let kh = KnownHosts::load(&[&file]).unwrap();
        assert!(kh.has_authority("n1.dc1.example", 22));
        assert!(!kh.has_authority("elsewhere", 22));
        let cert = sign("n1.dc1.example", true);
        let bare = PublicKey::from(cert.public_key().clone());
        assert_eq!(
            kh.verify("n1.dc1.example", 22, &bare, Some(&cert)),
            Verdict::Known
        );
        assert!(matches!(
            kh.verify("n2.dc1.example", 22, &bare, Some(&cert)),
            Verdict::BadCertificate(m) if m.contains("not for n2.dc1.example")
        ));
        let user_cert = sign("n1.dc1.example", false);
        assert!(matches!(
            kh.verify("n1.dc1.example", 22, &bare, Some(&user_cert)),
            Verdict::BadCertificate(m) if m.contains("not a host certificate")
        ));
        // Signed by another authority.
        std::fs::write(
            &file,
            format!(
                "@cert-authority *.dc1.example {}\n",
                keygen(dir.path(), "ca2", "ed25519")
            ),
        )
        .unwrap();
        let kh = KnownHosts::load(&[&file]).unwrap();
        assert!(matches!(
            kh.verify("n1.dc1.example", 22, &bare, Some(&cert)),
            Verdict::BadCertificate(m) if m.contains("does not validate")
        ));
    }
}
