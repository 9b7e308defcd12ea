//! `image`: a container image imported into containerd from a tarball on
//! the host (`docker save`, an artifact of the bundle), only when it is not
//! there from that tarball already. Offline hosts cannot pull, so the
//! kubelet's pause image and the control plane's images come this way
//! (`ctr -n k8s.io images import`, the namespace the CRI reads).
//!
//! What "there" means: the reference is in the namespace and carries the
//! label `gantry.bundle.sha256` with the tarball's sha256, set right after
//! the import. A reference imported from another tarball (an older build
//! of the same tag) or by hand is imported again, once. Before an import
//! the tarball's sha256 is checked on the host.

use serde::Deserialize;

use super::{Action, Answers, Change, Decision, Doc, Module, Probes};
use crate::remote::script::{command, quote};

/// The label that says which tarball an image came from.
pub const LABEL: &str = "gantry.bundle.sha256";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The tarball on the host.
    pub src: String,
    /// The reference the tarball holds, as containerd names it
    /// (`registry.k8s.io/pause:3.10.1`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// The tarball's sha256 (the bundle manifest's).
    pub sha256: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The snapshotter to unpack into; containerd's default when unset.
    pub snapshotter: Option<String>,
}

fn default_namespace() -> String {
    "k8s.io".into()
}

fn plain_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(format!(
            "image: {what} {s:?} must be lowercase letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// An image reference: `[host[:port]/]path[:tag][@sha256:…]`, nothing a
/// shell or ctr's filter syntax would read otherwise.
fn check_reference(r: &str) -> Result<(), String> {
    let ok = regex::Regex::new(
        r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$",
    )
    .expect("a valid pattern")
    .is_match(r);
    if !ok || !r.contains([':', '@']) {
        return Err(format!(
            "image: ref {r:?} is not an image reference with a tag or digest, like registry.k8s.io/pause:3.10.1"
        ));
    }
    Ok(())
}

impl Image {
    fn ctr(&self) -> Vec<&str> {
        vec!["ctr", "-n", &self.namespace]
    }
}

/// containerd's socket, where ctr dials by default.
const SOCKET: &str = "/run/containerd/containerd.sock";

impl Module for Image {
    const NAME: &'static str = "image";
    const DOC: Doc = Doc {
        summary: "a container image imported into containerd from a tarball on the host (`ctr -n k8s.io images import`), only when it is not there from that tarball already; the tarball's sha256 is checked first",
        params: &[
            ("src", "the tarball on the host (`docker save` output), put there by `upload`"),
            ("ref", "the image reference it holds, like registry.k8s.io/pause:3.10.1"),
            ("sha256", "the tarball's sha256, from the bundle's manifest"),
            ("namespace", "containerd's namespace (default k8s.io, the one the kubelet's CRI reads)"),
            ("snapshotter", "the snapshotter to unpack into (default containerd's own)"),
        ],
        example: "- name: the pause image\n  image:\n    src: /var/lib/gantry/bundle/images/pause.tar\n    ref: registry.k8s.io/pause:3.10.1\n    sha256: \"{{ bundle.files['images/pause.tar'].sha256 }}\"\n",
    };

    fn validate(&self) -> Result<(), String> {
        if !self.src.starts_with('/') || self.src.contains('\n') {
            return Err(format!(
                "image: src {:?} must be an absolute path on the host",
                self.src
            ));
        }
        check_reference(&self.reference)?;
        crate::bundle::check_sha256(&self.sha256).map_err(|e| format!("image: sha256 {e}"))?;
        plain_name("namespace", &self.namespace)?;
        if let Some(s) = &self.snapshotter {
            plain_name("snapshotter", s)?;
        }
        Ok(())
    }

    fn probes(&self) -> Result<Probes, String> {
        // Two lists, each one ctr call for every image of a round trip
        // (`Probe::Batch`, a filter per image): the references there from
        // their tarball (`-q`: the metadata store alone), and, with their
        // labels, those there otherwise. A full `ctr images ls` reads every
        // image's manifest from the content store for its size and
        // platforms (70 ms for 30 images in the lab); here only images to
        // import again are read, and a rerun reads none (10 ms a list). No
        // socket, no daemon: said at once, in ctr's words; ctr itself would
        // spend its 10 s dial timeout on it, and a fresh host's read-ahead
        // asks before the runtime play has started containerd (the lab's
        // bring-up lost 10 s per round trip to it).
        let list = |quiet: bool| -> Result<String, String> {
            let mut ls = self.ctr();
            ls.extend(["images", "ls"]);
            if quiet {
                ls.push("-q");
            }
            Ok(format!(
                "if [ -S {SOCKET} ]; then {} \"$@\" 2>&1; else echo 'ctr: failed to dial \"{SOCKET}\": no such socket (containerd is not running)'; false; fi",
                command(&ls)?
            ))
        };
        let filter = |op: &str| {
            format!(
                "name==\"{}\",labels.\"{LABEL}\"{op}\"{}\"",
                self.reference, self.sha256
            )
        };
        Ok(Probes::new()
            .batch("labelled", list(true)?, filter("=="))
            .batch("other", list(false)?, filter("!=")))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let (labelled, other) = (a.script("labelled")?, a.script("other")?);
        // Not running yet: on a fresh host plan reads it before the
        // container runtime play has started it. Apply starts it first; if
        // it is still down then, the import fails with ctr's own words.
        let down = labelled.rc != 0 && labelled.out.contains("failed to dial");
        for p in [labelled, other] {
            if p.rc != 0 && !down {
                return Err(format!(
                    "`ctr -n {} images ls` failed (exit {}): {}; containerd must run before images are imported",
                    self.namespace,
                    p.rc,
                    p.out.trim()
                ));
            }
        }
        let r = self.reference.as_str();
        if !down && labelled.out.lines().any(|l| l.trim() == r) {
            return Ok(Decision::Unchanged(format!(
                "{r} is in {} from this tarball",
                self.namespace
            )));
        }
        // REF TYPE DIGEST SIZE PLATFORMS LABELS: the reference first, the
        // labels (`k=v,k=v` or `-`) last.
        let listed = if down { "" } else { other.out.as_str() };
        let labels = listed
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|t| t.first() == Some(&r))
            .map(|t| t.last().copied().unwrap_or("-").to_string());
        let want = format!("{LABEL}={}", self.sha256);
        let why = match &labels {
            Some(l) => match l.split(',').find_map(|kv| kv.strip_prefix(LABEL)) {
                Some(other) => format!(
                    "{r} is in {} from another tarball (sha256 {})",
                    self.namespace,
                    other.trim_start_matches('=')
                ),
                None => format!("{r} is in {} but not from this bundle", self.namespace),
            },
            None if down => format!(
                "containerd is not running yet: {r} is imported once it runs"
            ),
            None => format!("{r} is not in containerd's {} namespace", self.namespace),
        };
        let src = quote(&self.src)?;
        let check = format!(
            "printf '%s  %s\\n' {} {src} | sha256sum -c --status || {{ echo {} >&2; exit 1; }}",
            self.sha256,
            quote(&format!(
                "{} does not have sha256 {}; not imported",
                self.src, self.sha256
            ))?
        );
        let mut import = self.ctr();
        import.extend(["images", "import"]);
        if let Some(s) = &self.snapshotter {
            import.extend(["--snapshotter", s]);
        }
        import.push(&self.src);
        let mut label = self.ctr();
        label.extend(["images", "label", r, &want]);
        let script = format!(
            "{check}\n{} >&2\n{} >/dev/null",
            command(&import)?,
            command(&label)?
        );
        let show = format!("{} && {}", command(&import)?, command(&label)?);
        Ok(Decision::Change(Change::new(why, Action::script(script, show))))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::modules::testing::{change, decide, module, out, refused, unchanged};
    use crate::modules::{Probe, ProbeOut};

    const SHA: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn pause() -> Image {
        module(json!({
            "src": "/var/lib/gantry/bundle/images/pause.tar",
            "ref": "registry.k8s.io/pause:3.10.1",
            "sha256": SHA,
            "snapshotter": "native",
        }))
    }

    /// `ctr images ls -q` as containerd 1.6 prints it: a reference a line.
    fn quiet(refs: &[&str]) -> ProbeOut {
        out(0, &refs.iter().map(|r| format!("{r}\n")).collect::<String>())
    }

    /// `ctr images ls` as containerd 1.6 prints it, with pause's labels
    /// (or no pause row).
    fn ls(labels: Option<&str>) -> ProbeOut {
        let mut s = "REF                          TYPE                                                 DIGEST                                                                  SIZE      PLATFORMS   LABELS\n\
             docker.io/library/x:1        application/vnd.docker.distribution.manifest.v2+json sha256:aaaa 1.0 KiB linux/amd64 -\n".to_string();
        if let Some(labels) = labels {
            s.push_str(&format!("registry.k8s.io/pause:3.10.1 application/vnd.docker.distribution.manifest.v2+json sha256:bbbb 311.0 KiB linux/amd64 {labels}\n"));
        }
        out(0, &s)
    }

    #[test]
    fn imports_only_what_is_not_there_from_this_tarball() {
        let m = pause();
        let pause = "registry.k8s.io/pause:3.10.1";
        let d = change(decide(&m, vec![quiet(&["docker.io/library/x:1"]), ls(None)]).unwrap());
        assert_eq!(
            d.reason,
            "registry.k8s.io/pause:3.10.1 is not in containerd's k8s.io namespace"
        );
        match &d.actions()[0] {
            Action::Run { script, show, .. } => {
                assert_eq!(
                    show,
                    &format!("ctr -n k8s.io images import --snapshotter native /var/lib/gantry/bundle/images/pause.tar && ctr -n k8s.io images label registry.k8s.io/pause:3.10.1 'gantry.bundle.sha256={SHA}'")
                );
                assert!(script.starts_with(&format!("printf '%s  %s\\n' {SHA} /var/lib/gantry/bundle/images/pause.tar | sha256sum -c --status || ")), "{script}");
            }
            a => panic!("{a:?}"),
        }
        let other = "2".repeat(64);
        let d = change(
            decide(
                &m,
                vec![quiet(&[]), ls(Some(&format!("io.cri-containerd.image=managed,{LABEL}={other}")))],
            )
            .unwrap(),
        );
        assert_eq!(
            d.reason,
            format!("registry.k8s.io/pause:3.10.1 is in k8s.io from another tarball (sha256 {other})")
        );
        let d = change(decide(&m, vec![quiet(&[]), ls(Some("-"))]).unwrap());
        assert_eq!(
            d.reason,
            "registry.k8s.io/pause:3.10.1 is in k8s.io but not from this bundle"
        );
        // The labelled list answers for every image of the round trip: only
        // this reference's line counts.
        let d = change(decide(&m, vec![quiet(&["docker.io/library/x:1"]), ls(None)]).unwrap());
        assert!(d.reason.ends_with("is not in containerd's k8s.io namespace"), "{}", d.reason);
        assert_eq!(
            unchanged(decide(&m, vec![quiet(&["docker.io/library/x:1", pause]), ls(None)]).unwrap()),
            "registry.k8s.io/pause:3.10.1 is in k8s.io from this tarball"
        );
        // containerd not running yet (plan on a fresh host): an import.
        let dial = out(1, "ctr: failed to dial \"/run/containerd/containerd.sock\": connection refused\n");
        assert_eq!(
            change(decide(&m, vec![dial.clone(), dial]).unwrap()).reason,
            "containerd is not running yet: registry.k8s.io/pause:3.10.1 is imported once it runs"
        );
        assert_eq!(
            decide(&m, vec![out(1, "ctr: permission denied\n"), ls(None)]).unwrap_err(),
            "`ctr -n k8s.io images ls` failed (exit 1): ctr: permission denied; containerd must run before images are imported"
        );
    }

    /// Each image adds its own filters to the two lists (one ctr call each
    /// for all images): its reference with its tarball's label, and with
    /// any other.
    #[test]
    fn each_image_adds_its_own_filter_to_one_list() {
        let p = pause().probes().unwrap();
        let probes: Vec<&Probe> = p.list().collect();
        let want = [
            ("ctr -n k8s.io images ls -q \"$@\"", "=="),
            ("ctr -n k8s.io images ls \"$@\"", "!="),
        ];
        for (p, (ls, op)) in probes.iter().zip(want) {
            match p {
                Probe::Batch { script, arg } => {
                    assert!(script.contains(ls), "{script}");
                    assert_eq!(
                        arg,
                        &format!("name==\"registry.k8s.io/pause:3.10.1\",labels.\"gantry.bundle.sha256\"{op}\"{SHA}\"")
                    );
                }
                p => panic!("{p:?}"),
            }
        }
    }

    /// Where containerd's socket is missing, the probe answers at once
    /// (run by a local sh: this machine's containerd, if any, is not at a
    /// path the test controls, so only the no-socket branch is run), and
    /// the decision is to import once containerd runs.
    #[test]
    fn no_socket_is_said_at_once_without_ctr() {
        let m = pause();
        let mut said = Vec::new();
        for p in m.probes().unwrap().list() {
            let script = p.script().unwrap().replace(SOCKET, "/nonexistent/containerd.sock");
            let started = std::time::Instant::now();
            let o = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
            assert_eq!(o.status.code(), Some(1));
            let out_ = String::from_utf8(o.stdout).unwrap();
            assert!(out_.contains("failed to dial"), "{out_}");
            said.push(out(1, &out_));
        }
        let d = change(decide(&m, said).unwrap());
        assert!(d.reason.starts_with("containerd is not running yet"), "{}", d.reason);
    }

    #[test]
    fn refuses_what_is_not_a_reference_or_a_path() {
        let base = json!({"src": "/x.tar", "ref": "registry.k8s.io/pause:3.10.1", "sha256": SHA});
        let with = |k: &str, v: &str| {
            let mut j = base.clone();
            j[k] = json!(v);
            refused::<Image>(j)
        };
        assert!(with("ref", "pause").contains("is not an image reference with a tag or digest"));
        assert!(with("ref", "x:1 name==y").contains("is not an image reference"));
        assert!(with("ref", "x:1;rm -rf /").contains("is not an image reference"));
        assert!(with("src", "x.tar").contains("must be an absolute path on the host"));
        assert!(with("namespace", "K8s io").contains("namespace"));
        assert!(with("sha256", "abc").contains("is not a sha256"));
    }
}
