//! Secrets kept out of everything gantry shows or journals: every occurrence
//! of a registered value is replaced by `********`.

use std::sync::RwLock;

/// Values that must never be printed: registered with `no_log`, or marked
/// secret by the inventory.
#[derive(Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    pub fn add(&self, s: &str) {
        for part in std::iter::once(s.trim()).chain(s.lines().map(str::trim)) {
            // Very short values would redact ordinary words; a secret is longer.
            if part.len() >= 6 {
                let mut w = self.secrets.write().unwrap();
                if !w.iter().any(|x| x == part) {
                    w.push(part.to_string());
                    w.sort_by_key(|x| std::cmp::Reverse(x.len()));
                }
            }
        }
    }

    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for secret in self.secrets.read().unwrap().iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "********");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence() {
        let r = Redactor::default();
        r.add("kubeadm join 1.2.3.4:6443 --token abcdef.0123456789abcdef\n");
        assert_eq!(
            r.redact("out: kubeadm join 1.2.3.4:6443 --token abcdef.0123456789abcdef! again: kubeadm join 1.2.3.4:6443 --token abcdef.0123456789abcdef"),
            "out: ********! again: ********"
        );
        // A multi-line secret: each line on its own, as a diff shows them.
        r.add("line one of a key\nline two of a key\n");
        assert_eq!(
            r.redact("+line one of a key\n+line two of a key\n context\n"),
            "+********\n+********\n context\n"
        );
        // Shorter than 6 characters: not redacted (it would hide ordinary
        // words); the README says so.
        r.add("abc12");
        assert_eq!(r.redact("abc12"), "abc12");
    }
}
