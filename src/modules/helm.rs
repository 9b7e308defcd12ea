//! `helm`: a Helm release from a chart archive on the host, installed or
//! upgraded only when its inputs changed, run on a control plane with the
//! cluster's admin kubeconfig.
//!
//! Inputs are the chart archive (by its sha256, so a re-packed chart of the
//! same version counts) and the values. Their fingerprint is stamped on the
//! release as the storage label `gantry.io/inputs` (Helm >= 3.14's
//! `--labels`), so a release that is as wanted costs one query: `helm list
//! --selector gantry.io/inputs=FP` answering with a `deployed` entry. Any
//! other answer reads the release's state and chart (`helm list --all`)
//! and its values (`helm get values`) for the reason and the values' diff.
//!
//! What is done about each state (the stated policy):
//! - none: `helm upgrade --install`;
//! - `deployed` with other inputs: upgraded;
//! - `failed` (a timed-out or refused revision): upgraded again, with the
//!   same command, which Helm allows from a failed release;
//! - `pending-install`, `pending-upgrade`, `pending-rollback`: a helm that
//!   was killed mid-way (gantry's lock keeps two gantry runs apart) leaves
//!   these, and Helm then refuses every upgrade ("another operation is in
//!   progress", helm#5513). With `on_pending: recover` (the default) a
//!   pending install is uninstalled and installed again, a pending upgrade
//!   or rollback is rolled back to the revision before it, then upgraded;
//!   `on_pending: fail` stops with the state for an operator to look at.
//!
//! Values go to helm in a 0600 file in a 0700 directory made for the call
//! and removed after it; they reach the host on the command's stdin, never
//! a command line. Every install is `--atomic` (a failed first install is
//! uninstalled, a failed upgrade rolled back), `--wait`, with a bounded
//! history, under the release's own name (never `--generate-name`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::{Action, Answers, Change, Decision, Doc, Module, Probes};
use crate::remote::script::{command, quote};

/// The release label that carries the inputs' fingerprint.
pub const LABEL: &str = "gantry.io/inputs";


#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPending {
    /// Uninstall a pending install, roll back a pending upgrade or rollback,
    /// then install or upgrade.
    #[default]
    Recover,
    /// Stop with the release's state.
    Fail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Helm {
    /// The release's name.
    pub release: String,
    /// The chart archive (.tgz) on the host.
    pub chart: String,
    /// The archive's sha256 (the bundle manifest's): checked on the host
    /// before helm reads it, and part of the fingerprint.
    pub chart_sha256: String,
    pub namespace: String,
    /// The values (a mapping), laid over the chart's own by helm.
    #[serde(default = "empty")]
    pub values: Json,
    /// Labels the namespace must carry before the chart's pods start
    /// (`pod-security.kubernetes.io/enforce: privileged`).
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, String>,
    #[serde(default = "super::admin_kubeconfig")]
    pub kubeconfig: String,
    /// The helm program: a path, or a name found on PATH.
    #[serde(default = "helm_program")]
    pub binary: String,
    /// helm's `--timeout` (Go duration: 90s, 15m, 1h).
    #[serde(default = "fifteen_minutes")]
    pub timeout: String,
    #[serde(default)]
    pub on_pending: OnPending,
    /// helm's `--history-max`: revisions kept.
    #[serde(default = "five")]
    pub history_max: u32,
}

fn empty() -> Json {
    Json::Object(Default::default())
}
fn helm_program() -> String {
    "helm".into()
}
fn fifteen_minutes() -> String {
    "15m".into()
}
fn five() -> u32 {
    5
}

/// A DNS label (release and namespace names, label values' keys aside).
fn dns_label(what: &str, s: &str, max: usize) -> Result<(), String> {
    if !crate::inventory::is_dns_label(s, max) {
        return Err(format!(
            "helm: {what} {s:?} must be lowercase letters, digits and '-', at most {max} characters"
        ));
    }
    Ok(())
}

/// A Go duration as helm's `--timeout` takes it, in whole units.
fn check_duration(s: &str) -> Result<(), String> {
    let ok = regex::Regex::new(r"^([0-9]+(h|m|s))+$").expect("a valid pattern").is_match(s);
    if !ok || s.chars().all(|c| c == '0' || c.is_ascii_alphabetic()) {
        return Err(format!(
            "helm: timeout {s:?} is not a duration like 90s, 15m or 1h30m"
        ));
    }
    Ok(())
}

impl Helm {
    /// The inputs' fingerprint: the chart archive's sha256, the values as
    /// canonical JSON (keys sorted) and the namespace's labels, hashed; 40
    /// hex digits fit a label.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.chart_sha256.as_bytes());
        h.update(b"\n");
        h.update(self.values.to_string().as_bytes());
        if !self.namespace_labels.is_empty() {
            h.update(b"\n");
            h.update(serde_json::to_string(&self.namespace_labels).expect("labels").as_bytes());
        }
        hex::encode(h.finalize())[..40].to_string()
    }

    fn helm(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec![self.binary.as_str(), "--kubeconfig", &self.kubeconfig];
        argv.extend(args);
        command(&argv)
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["kubectl", "--kubeconfig", &self.kubeconfig];
        argv.extend(args);
        command(&argv)
    }

    /// The values file's text: JSON is YAML, and helm reads it as such.
    fn values_text(&self) -> String {
        format!("{}\n", serde_json::to_string_pretty(&self.values).expect("JSON values"))
    }

    fn values_yaml(v: &Json) -> String {
        match v {
            Json::Object(m) if m.is_empty() => String::new(),
            v => crate::loader::to_yaml(v),
        }
    }

    /// The script that makes the release as wanted; `recover` runs first.
    fn apply_script(&self, recover: Option<String>) -> Result<(String, String), String> {
        let (ns, rel) = (&self.namespace, &self.release);
        let label = format!("{LABEL}={}", self.fingerprint());
        let history = self.history_max.to_string();
        // Values always from the file (--reset-values): without it, an
        // upgrade with no values keeps the last release's.
        let head = self.helm(&[
            "upgrade", "--install", rel, &self.chart, "--namespace", ns, "--create-namespace",
            "--reset-values", "--values",
        ])?;
        let tail = command(&[
            "--labels", &label, "--atomic", "--wait", "--timeout", &self.timeout,
            "--history-max", &history,
        ])?;
        let upgrade = format!("{head} \"$d/values.yaml\" {tail}");
        let chart = quote(&self.chart)?;
        let mut s = String::new();
        // Helm >= 3.14: release labels (--labels, list --selector) came then.
        s.push_str(&format!(
            "v=$({} 2>/dev/null) || {{ echo \"helm version --short failed\" >&2; exit 1; }}\n\
             n=${{v#v}}; a=${{n%%.*}}; n=${{n#*.}}; b=${{n%%.*}}\n\
             case \"$a$b\" in *[!0-9]*|'') echo \"cannot read helm's version from: $v\" >&2; exit 1;; esac\n\
             if [ \"$a\" -ne 3 ] || [ \"$b\" -lt 14 ]; then echo \"helm $v is not Helm 3 from 3.14 on, which gantry needs (release labels; Helm 4 is not yet supported)\" >&2; exit 1; fi\n",
            command(&[self.binary.as_str(), "version", "--short"])?
        ));
        s.push_str(&format!(
            "printf '%s  %s\\n' {} {chart} | sha256sum -c --status || {{ echo {} >&2; exit 1; }}\n",
            self.chart_sha256,
            quote(&format!("{} does not have sha256 {}; not installed", self.chart, self.chart_sha256))?
        ));
        if let Some(r) = &recover {
            s.push_str(r);
            s.push('\n');
        }
        if !self.namespace_labels.is_empty() {
            // The namespace with its labels, made or updated in one apply
            // (JSON, which every API server reads).
            let ns_object = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": self.namespace_labels},
            });
            s.push_str(&format!(
                "printf '%s\\n' {} | {} >&2 || exit 1\n",
                quote(&ns_object.to_string())?,
                self.kubectl(&["apply", "-f", "-"])?
            ));
        }
        s.push_str(&format!(
            "d=$(umask 077 && mktemp -d) || exit 1\n\
             trap 'rm -rf \"$d\"' EXIT HUP INT TERM\n\
             (umask 077 && cat > \"$d/values.yaml\") || exit 1\n\
             {upgrade} >&2"
        ));
        let mut show = Vec::new();
        if let Some(r) = &recover {
            show.push(r.lines().next().unwrap_or_default().to_string());
        }
        show.push(upgrade.replace("\"$d/values.yaml\"", "VALUES(0600)"));
        Ok((s, show.join(" && ")))
    }

    fn change(&self, reason: String, recover: Option<String>, diff: Option<String>) -> Result<Decision, String> {
        let (script, show) = self.apply_script(recover)?;
        Ok(Decision::Change(
            Change::new(
                reason,
                Action::Run {
                    script,
                    show,
                    stdin: Some(self.values_text()),
                    touches: super::Touches::All,
                    own: false,
                },
            )
            .with_diff(diff),
        ))
    }

    fn values_diff(&self, old: &Json) -> Option<String> {
        let (a, b) = (Self::values_yaml(old), Self::values_yaml(&self.values));
        (a != b).then(|| {
            super::file_edit::unified_diff(&format!("/{}/{}/values", self.namespace, self.release), &a, &b)
        })
    }
}

impl Module for Helm {
    const NAME: &'static str = "helm";
    const DOC: Doc = Doc {
        summary: "a Helm release from a chart archive on the host (helm >= 3.14, with the admin kubeconfig): installed or upgraded only when the chart archive or the values changed (a fingerprint stamped on the release as a label, read back in one query); a failed release is upgraded again, a pending one left by a killed helm is recovered (`on_pending`); values go in a 0600 file, never on a command line",
        params: &[
            ("release", "the release's name (never generated)"),
            ("chart", "the chart archive (.tgz) on the host, put there by `upload`"),
            ("chart_sha256", "the archive's sha256 (the bundle manifest's), checked before helm reads it"),
            ("namespace", "the release's namespace, made when missing"),
            ("values", "a mapping of values laid over the chart's (default none)"),
            ("namespace_labels", "labels the namespace gets before the install (pod security)"),
            ("kubeconfig", "default /etc/kubernetes/admin.conf"),
            ("binary", "the helm program (default helm, from PATH)"),
            ("timeout", "helm's --timeout for --atomic --wait (default 15m)"),
            ("on_pending", "recover (default: uninstall a pending install, roll back a pending upgrade, then go on) or fail"),
            ("history_max", "revisions kept (default 5)"),
        ],
        example: "- name: the dashboard\n  helm:\n    release: kubernetes-dashboard\n    chart: /var/lib/gantry/bundle/charts/kubernetes-dashboard-7.14.0.tgz\n    chart_sha256: \"{{ bundle.files['charts/kubernetes-dashboard-7.14.0.tgz'].sha256 }}\"\n    namespace: kubernetes-dashboard\n    values: { app: { scheduling: { nodeSelector: { gpu: \"off\" } } } }\n",
    };

    fn validate(&self) -> Result<(), String> {
        dns_label("release", &self.release, 53)?;
        dns_label("namespace", &self.namespace, 63)?;
        if !self.chart.starts_with('/') || self.chart.contains('\n') {
            return Err(format!("helm: chart {:?} must be an absolute path on the host", self.chart));
        }
        if self.binary.is_empty() || self.binary.contains(['\n', ' ']) {
            return Err(format!("helm: binary {:?} is not a program's name or path", self.binary));
        }
        if !self.kubeconfig.starts_with('/') {
            return Err(format!("helm: kubeconfig {:?} must be an absolute path on the host", self.kubeconfig));
        }
        crate::bundle::check_sha256(&self.chart_sha256).map_err(|e| format!("helm: chart_sha256 {e}"))?;
        if !self.values.is_object() {
            return Err("helm: values must be a mapping".into());
        }
        check_duration(&self.timeout)?;
        for (k, v) in &self.namespace_labels {
            crate::inventory::check_label(k, v).map_err(|e| format!("helm: namespace_labels: {e}"))?;
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        let (ns, rel) = (&self.namespace, &self.release);
        let filter = format!("^{rel}$");
        let selector = format!("{LABEL}={}", self.fingerprint());
        let list = self.helm(&[
            "list", "--namespace", ns, "--all", "--output", "json", "--filter", &filter,
        ])?;
        let stamped = format!("{list} --selector {}", quote(&selector)?);
        let values = self.helm(&["get", "values", rel, "--namespace", ns, "--output", "json"])?;
        // One query when the release is as wanted: a deployed entry with
        // these inputs' stamp. Otherwise the release's state and chart
        // (`list`: `status -o json` leaves the chart out) and its values.
        // No kubeconfig or no helm: no cluster yet (plan on new hosts).
        // The host's shell runs this in itself: no `exit`.
        Ok(Probes::new().script(
            "release",
            format!(
                "if [ ! -e {k} ]; then echo no-cluster
                 elif ! command -v {b} >/dev/null 2>&1; then echo no-helm
                 elif ! l=$({stamped} 2>&1); then printf 'list-failed\n%s\n' \"$l\"
                 else case $l in
                 *'\"status\":\"deployed\"'*) echo as-wanted; printf '%s\n' \"$l\";;
                 *) echo release; {list} 2>&1; echo \"{MARK} list $?\"; {values} 2>&1; echo \"{MARK} values $?\";;
                 esac; fi",
                k = quote(&self.kubeconfig)?,
                b = quote(&self.binary)?
            ),
        ))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let out = &a.script("release")?.out;
        let (first, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
        let rel = &self.release;
        let fresh_diff = self.values_diff(&empty());
        match first.trim() {
            "as-wanted" => {
                let entry: Vec<Json> = serde_json::from_str(json_line(rest)).unwrap_or_default();
                let rev = entry.first().and_then(|e| e["revision"].as_str()).unwrap_or("?");
                let chart = entry.first().and_then(|e| e["chart"].as_str()).unwrap_or("?");
                Ok(Decision::unchanged(format!(
                    "{rel}: {chart} deployed at revision {rev} from these inputs"
                )))
            }
            "no-cluster" => self.change(
                format!("{rel} is not installed: no cluster yet ({} is not there)", self.kubeconfig),
                None,
                fresh_diff,
            ),
            "no-helm" => self.change(
                format!("{rel} is not installed: helm is not on the host yet"),
                None,
                fresh_diff,
            ),
            "list-failed" => Err(format!(
                "cannot list release {rel} in {}: {}",
                self.namespace,
                rest.trim()
            )),
            "release" => {
                let (list, values) = sections(rest)
                    .ok_or_else(|| format!("release {rel}: unexpected answer {:?}", rest.trim()))?;
                let list = list.map_err(|e| format!("cannot list release {rel}: {e}"))?;
                let entries: Vec<Json> = serde_json::from_str(json_line(&list))
                    .map_err(|e| format!("release {rel}: helm list said no JSON ({e}): {}", list.trim()))?;
                let Some(entry) = entries.iter().find(|e| e["name"] == rel.as_str()) else {
                    return self.change(
                        format!("{rel} is not installed in {}", self.namespace),
                        None,
                        fresh_diff,
                    );
                };
                let values = values.map_err(|e| format!("cannot read release {rel}'s values: {e}"))?;
                // No values given is `null` (helm drops an empty config).
                let config: Json = serde_json::from_str(json_line(&values))
                    .map_err(|e| format!("release {rel}: helm get values said no JSON ({e}): {}", values.trim()))?;
                self.decide_existing(entry, &config)
            }
            other => Err(format!("release {rel}: unexpected answer {other:?}")),
        }
    }
}

/// The JSON line of helm's output: helm writes warnings (a group-readable
/// kubeconfig) to stderr, which the probe keeps beside stdout for errors.
fn json_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(['[', '{']) || *l == "null")
        .unwrap_or(text.trim())
}

/// The marker after each command of the probe's second part, with its
/// exit status.
const MARK: &str = "gantry-helm-rc";

/// The probe's second part: the list's text and the values' text, each an
/// error (helm's words) when its command failed.
#[allow(clippy::type_complexity)]
fn sections(rest: &str) -> Option<(Result<String, String>, Result<String, String>)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    for line in rest.lines() {
        if let Some(tail) = line.strip_prefix(MARK) {
            let rc: i32 = tail.split_whitespace().nth(1)?.parse().ok()?;
            let text = std::mem::take(&mut cur);
            parts.push(if rc == 0 { Ok(text) } else { Err(text.trim().to_string()) });
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    let mut it = parts.into_iter();
    Some((it.next()?, it.next()?))
}

impl Helm {
    fn decide_existing(&self, entry: &Json, config: &Json) -> Result<Decision, String> {
        let rel = &self.release;
        let state = entry["status"].as_str().unwrap_or("unknown");
        let revision = entry["revision"].as_str().unwrap_or("?");
        let chart = entry["chart"].as_str().unwrap_or("?").to_string();
        let old = if config.is_object() { config.clone() } else { empty() };
        let diff = self.values_diff(&old);
        let ns = &self.namespace;
        match state {
            "pending-install" | "pending-upgrade" | "pending-rollback" => {
                if self.on_pending == OnPending::Fail {
                    return Err(format!(
                        "release {rel} in {ns} is {state} at revision {revision} (a helm killed mid-way, or one still running); \
                         with on_pending: fail gantry leaves it: see `helm history {rel} -n {ns}`, then roll it back or uninstall it"
                    ));
                }
                let (how, line) = if state == "pending-install" {
                    (
                        "uninstalled, then installed again",
                        self.helm(&["uninstall", rel, "--namespace", ns, "--wait", "--timeout", &self.timeout])?,
                    )
                } else {
                    (
                        "rolled back to the revision before, then upgraded",
                        self.helm(&["rollback", rel, "--namespace", ns, "--wait", "--timeout", &self.timeout])?,
                    )
                };
                self.change(
                    format!("{rel} was left {state} at revision {revision} (a helm killed mid-way): {how}"),
                    Some(format!("{line} >&2 || exit 1")),
                    diff,
                )
            }
            "failed" => self.change(
                format!("{rel} revision {revision} ({chart}) failed: upgraded again"),
                None,
                diff,
            ),
            "deployed" => {
                let mut why = Vec::new();
                let archive = chart_file_name(&self.chart).trim_end_matches(".tgz");
                if chart != archive {
                    why.push(format!("chart {chart} -> {archive}"));
                }
                if diff.is_some() {
                    why.push("values changed".to_string());
                }
                if why.is_empty() {
                    why.push("the chart archive or the inputs' stamp differ".to_string());
                }
                self.change(format!("{rel} (revision {revision}): {}", why.join(", ")), None, diff)
            }
            other => self.change(
                format!("{rel} is {other} at revision {revision}: installed again"),
                None,
                diff,
            ),
        }
    }
}

/// The archive's file name (`hami-2.6.1.tgz`).
fn chart_file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, executable, module, out, unchanged};

    const SHA: &str = "0d5e3c8a0d5e3c8a0d5e3c8a0d5e3c8a0d5e3c8a0d5e3c8a0d5e3c8a0d5e3c8a";

    fn hami(values: Json) -> Helm {
        module(json!({
            "release": "hami",
            "chart": "/var/lib/gantry/bundle/charts/hami-2.6.1.tgz",
            "chart_sha256": SHA,
            "namespace": "hami-system",
            "values": values,
        }))
    }

    /// The probe's answer for a release in this state, with these values.
    fn status(state: &str, rev: i64, config: Json) -> String {
        let entry = json!([{
            "name": "hami", "namespace": "hami-system", "revision": rev.to_string(),
            "updated": "2026-11-24 10:00:03.123456789 +0000 UTC", "status": state,
            "chart": "hami-2.6.1", "app_version": "v2.6.1",
        }]);
        format!("release\n{entry}\ngantry-helm-rc list 0\n{config}\ngantry-helm-rc values 0\n")
    }

    #[test]
    fn the_fingerprint_follows_the_chart_archive_and_the_values_only() {
        let a = hami(json!({"scheduler": {"kubeScheduler": {"imageTag": "v1.34.3"}}, "b": 1}));
        let same = hami(json!({"b": 1, "scheduler": {"kubeScheduler": {"imageTag": "v1.34.3"}}}));
        assert_eq!(a.fingerprint(), same.fingerprint(), "key order is not an input");
        assert_eq!(a.fingerprint().len(), 40);
        let other = hami(json!({"b": 2, "scheduler": {"kubeScheduler": {"imageTag": "v1.34.3"}}}));
        assert_ne!(a.fingerprint(), other.fingerprint());
        let mut repacked = a.clone();
        repacked.chart_sha256 = SHA.replace('0', "1");
        assert_ne!(a.fingerprint(), repacked.fingerprint());
        // The probe asks for a deployed release stamped with it, in one query.
        let p = a.probes().unwrap();
        let script = p.list().next().unwrap().script().unwrap();
        assert!(
            script.contains(&format!(
                "helm --kubeconfig /etc/kubernetes/admin.conf list --namespace hami-system --all --output json --filter '^hami$' --selector 'gantry.io/inputs={}'",
                a.fingerprint()
            )),
            "{script}"
        );
    }

    #[test]
    fn each_release_state_has_its_stated_answer() {
        let m = hami(json!({"devicePlugin": {"serviceMonitor": {"enabled": true}}}));
        let listed = r#"[{"name":"hami","namespace":"hami-system","revision":"3","updated":"2026-11-24 10:00:03.123456789 +0000 UTC","status":"deployed","chart":"hami-2.6.1","app_version":"v2.6.1"}]"#;
        assert_eq!(
            unchanged(decide(&m, vec![out(0, &format!("as-wanted\n{listed}\n"))]).unwrap()),
            "hami: hami-2.6.1 deployed at revision 3 from these inputs"
        );
        // helm's warnings on stderr do not hide its JSON.
        let warned = format!(
            "as-wanted\nWARNING: Kubernetes configuration file is group-readable. This is insecure. Location: /etc/kubernetes/admin.conf\n{listed}\n"
        );
        assert_eq!(
            unchanged(decide(&m, vec![out(0, &warned)]).unwrap()),
            "hami: hami-2.6.1 deployed at revision 3 from these inputs"
        );
        // Plan on new hosts: no cluster, no helm yet; the values shown.
        let c = change(decide(&m, vec![out(0, "no-cluster\n")]).unwrap());
        assert!(c.reason.contains("no cluster yet"), "{}", c.reason);
        assert!(c.diff.as_deref().unwrap().contains("+    enabled: true"), "{:?}", c.diff);
        let c = change(decide(&m, vec![out(0, "no-helm\n")]).unwrap());
        assert!(c.reason.contains("helm is not on the host yet"), "{}", c.reason);
        let c = change(
            decide(
                &m,
                vec![out(0, "release\n[]\ngantry-helm-rc list 0\nError: release: not found\ngantry-helm-rc values 1\n")],
            )
            .unwrap(),
        );
        assert_eq!(c.reason, "hami is not installed in hami-system");
        // Installed with no values: helm says null.
        let c = change(decide(&m, vec![out(0, &status("deployed", 1, Json::Null))]).unwrap());
        assert!(c.diff.as_deref().unwrap().contains("+    enabled: true"), "{:?}", c.diff);
        // Deployed from other values: the diff is the values'.
        let c = change(
            decide(&m, vec![out(0, &status("deployed", 3, json!({"devicePlugin": {"serviceMonitor": {"enabled": false}}})))]).unwrap(),
        );
        assert_eq!(c.reason, "hami (revision 3): values changed");
        let d = c.diff.unwrap();
        assert!(d.contains("-    enabled: false") && d.contains("+    enabled: true"), "{d}");
        // Same values, other archive (re-packed): still upgraded.
        let c = change(decide(&m, vec![out(0, &status("deployed", 3, m.values.clone()))]).unwrap());
        assert_eq!(c.reason, "hami (revision 3): the chart archive or the inputs' stamp differ");
        assert_eq!(c.diff, None);
        // Failed: upgraded again.
        let c = change(decide(&m, vec![out(0, &status("failed", 4, m.values.clone()))]).unwrap());
        assert_eq!(c.reason, "hami revision 4 (hami-2.6.1) failed: upgraded again");
        // Pending: recovered by policy, or refused.
        let c = change(decide(&m, vec![out(0, &status("pending-install", 1, json!({})))]).unwrap());
        assert!(c.reason.contains("left pending-install at revision 1"), "{}", c.reason);
        let Action::Run { script, show, .. } = &c.actions()[0] else { panic!() };
        assert!(show.starts_with("helm --kubeconfig /etc/kubernetes/admin.conf uninstall hami --namespace hami-system --wait"), "{show}");
        assert!(script.contains("uninstall hami"), "{script}");
        let c = change(decide(&m, vec![out(0, &status("pending-upgrade", 5, json!({})))]).unwrap());
        let Action::Run { show, .. } = &c.actions()[0] else { panic!() };
        assert!(show.contains(" rollback hami "), "{show}");
        let mut strict = m.clone();
        strict.on_pending = OnPending::Fail;
        let e = decide(&strict, vec![out(0, &status("pending-upgrade", 5, json!({})))]).unwrap_err();
        assert!(e.contains("is pending-upgrade at revision 5") && e.contains("on_pending: fail"), "{e}");
        // helm's own failure to list is the task's.
        let e = decide(&m, vec![out(0, "list-failed\nError: Kubernetes cluster unreachable\n")]).unwrap_err();
        assert!(e.contains("Kubernetes cluster unreachable"), "{e}");
    }

    #[test]
    fn refuses_bad_parameters() {
        use crate::modules::testing::refused;
        let base = json!({"release": "hami", "chart": "/c/hami-2.6.1.tgz", "chart_sha256": SHA, "namespace": "hami-system"});
        let with = |k: &str, v: Json| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert!(refused::<Helm>(with("release", json!("Hami"))).contains("release"));
        assert!(refused::<Helm>(with("chart", json!("charts/x.tgz"))).contains("absolute path"));
        assert!(refused::<Helm>(with("values", json!([1]))).contains("mapping"));
        assert!(refused::<Helm>(with("timeout", json!("15 minutes"))).contains("duration"));
        assert!(refused::<Helm>(with("timeout", json!("0s"))).contains("duration"));
        assert!(refused::<Helm>(with("on_pending", json!("ignore"))).contains("on_pending"));
        assert!(refused::<Helm>(with("namespace_labels", json!({"a b": "x"}))).contains("label key"));
    }

    /// The change runs in a real shell against a fake helm and kubectl that
    /// record what they were given: the values reach helm in a 0600 file
    /// that is gone afterwards, never on a command line; the archive's
    /// sha256 and helm's version are checked first.
    #[test]
    fn the_change_hands_helm_a_private_values_file_and_checks_the_archive_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("log");
        let fake = |name: &str, body: &str| executable(&bin.join(name), body);
        fake(
            "helm",
            &format!(
                "echo \"helm $*\" >> {log}\n\
                 [ \"$1\" = version ] && {{ echo \"${{HELM_VERSION:-v3.14.4+g81c902a}}\"; exit 0; }}\n\
                 while [ $# -gt 0 ]; do if [ \"$1\" = --values ]; then stat -c 'mode %a' \"$2\" >> {log}; cat \"$2\" >> {log}; fi; shift; done",
                log = log.display()
            ),
        );
        fake("kubectl", &format!("echo \"kubectl $*\" >> {0}; cat >> {0}", log.display()));
        let chart = dir.path().join("hami-2.6.1.tgz");
        std::fs::write(&chart, b"chart").unwrap();
        let sha = hex::encode(Sha256::digest(b"chart"));
        let m: Helm = module(json!({
            "release": "hami", "chart": chart.to_str().unwrap(), "chart_sha256": sha,
            "namespace": "hami-system", "values": {"secretish": "s3cr3t"},
            "namespace_labels": {"pod-security.kubernetes.io/enforce": "privileged"},
        }));
        let run = |m: &Helm, version: &str| {
            let c = change(decide(m, vec![out(0, "no-cluster\n")]).unwrap());
            let Action::Run { script, show, stdin, .. } = c.actions()[0].clone() else { panic!() };
            assert!(!script.contains("s3cr3t") && !show.contains("s3cr3t"));
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .env("HELM_VERSION", version)
                .env("TMPDIR", dir.path())
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(stdin.unwrap().as_bytes()).unwrap();
            let o = child.wait_with_output().unwrap();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), text)
        };
        let (rc, err, text) = run(&m, "v3.14.4+g81c902a");
        assert_eq!(rc, Some(0), "{err}");
        assert!(text.contains("kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -\n{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce\":\"privileged\"},\"name\":\"hami-system\"}}"), "{text}");
        let up = text.lines().find(|l| l.contains(" upgrade ")).unwrap();
        assert!(up.contains(&format!("--labels gantry.io/inputs={} --atomic --wait --timeout 15m --history-max 5", m.fingerprint())), "{up}");
        assert!(!up.contains("s3cr3t"), "{up}");
        // Values only from gantry's file: an upgrade without them would keep
        // the last release's.
        assert!(up.contains(" --reset-values --values "), "{up}");
        assert!(text.contains("mode 600") && text.contains("\"secretish\": \"s3cr3t\""), "{text}");
        // The directory made for the values is gone.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        // An older helm is refused before anything is done.
        let (rc, err, text) = run(&m, "v3.13.3+gc8b9489");
        assert_eq!(rc, Some(1));
        assert!(err.contains("helm v3.13.3+gc8b9489 is not Helm 3 from 3.14 on"), "{err}");
        assert!(!text.contains(" upgrade "), "{text}");
        // An archive that is not the bundle's is refused too.
        std::fs::write(&chart, b"other").unwrap();
        let (rc, err, _) = run(&m, "v3.14.4+g81c902a");
        assert_eq!(rc, Some(1));
        assert!(err.contains("does not have sha256"), "{err}");
        // The probe runs in the host's own shell ({ ...; }): it must not end
        // it, whatever it finds.
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(&kubeconfig, "").unwrap();
        let mut probed = m.clone();
        probed.kubeconfig = kubeconfig.to_str().unwrap().into();
        let script = probed.probes().unwrap().list().next().unwrap().script().unwrap();
        for listed in ["[]", r#"[{"name":"hami","status":"deployed","revision":"1","chart":"hami-2.6.1"}]"#] {
            fake("helm", &format!("case \"$3\" in list) echo '{listed}';; get) echo null;; esac"));
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{{ {script}\n}}; echo still-here"))
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stdout);
            assert!(said.ends_with("still-here\n"), "{said}");
            let answer = said.trim_end_matches("still-here\n");
            let d = decide(&probed, vec![out(0, answer)]).unwrap();
            assert_eq!(d.is_change(), listed == "[]", "{answer}");
        }
    }
}
