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
    /// A registered value (`no_log` output): the whole of it, and each of
    /// its lines as a diff shows them. Lines shorter than 6 characters are
    /// not added on their own: they would redact ordinary words (`}`, `ok`).
    pub fn add(&self, s: &str) {
        self.insert(s.trim());
        for part in s.lines().map(str::trim) {
            if part.len() >= 6 {
                self.insert(part);
            }
        }
    }

    /// A declared secret (the inventory's `secrets:`, generated ones): every
    /// scalar in it, whatever its type and length: a number is a secret as
    /// much as a string.
    pub fn add_secret(&self, v: &serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                self.insert(s);
                self.add(s);
            }
            serde_json::Value::Number(n) => self.insert(&n.to_string()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| self.add_secret(v)),
            serde_json::Value::Object(m) => m.values().for_each(|v| self.add_secret(v)),
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    /// The value as it is, and as Rust's `{:?}` and JSON escape it (a secret
    /// with a quote, a backslash or a newline in an error message).
    fn insert(&self, part: &str) {
        if part.is_empty() {
            return;
        }
        let debug = format!("{part:?}");
        let json = serde_json::to_string(part).unwrap_or_default();
        let mut w = self.secrets.write().unwrap();
        for form in [
            part,
            &debug[1..debug.len() - 1],
            json.get(1..json.len().saturating_sub(1)).unwrap_or(""),
        ] {
            if !form.is_empty() && !w.iter().any(|x| x == form) {
                w.push(form.to_string());
            }
        }
        // The longest first, so a secret inside another is not cut in two.
        w.sort_by_key(|x| std::cmp::Reverse(x.len()));
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
        // A line of registered output shorter than 6 characters is not
        // redacted on its own (it would hide ordinary words).
        r.add("ok\nabc12\n");
        assert_eq!(r.redact("abc12 ok"), "abc12 ok");
    }

    /// Review finding 8: a declared secret is redacted whatever its type
    /// and length, and in its escaped forms.
    #[test]
    fn declared_secrets_of_any_type_and_length_are_redacted() {
        let r = Redactor::default();
        r.add_secret(&serde_json::json!({
            "vrrp": 12345678,
            "short": "vrrp1",
            "nested": {"list": ["tab\there", "quote\"d"]},
        }));
        assert_eq!(r.redact("auth_pass 12345678"), "auth_pass ********");
        assert_eq!(r.redact("auth_pass vrrp1;"), "auth_pass ********;");
        assert_eq!(r.redact("tab\there"), "********");
        // As `{:?}` and JSON print them.
        assert_eq!(r.redact(&format!("{:?}", "x tab\there")), "\"x ********\"");
        assert_eq!(
            r.redact(&serde_json::to_string("quote\"d").unwrap()),
            "\"********\""
        );
    }
}
