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
    // Compiled once a run: every image of every host is checked, twice.
    static REFERENCE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$",
        )
        .expect("a valid pattern")
    });
    let ok = REFERENCE.is_match(r);
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
        // One script for every image of a round trip (`Probe::Batch`, a
        // filter per image). First the references there from their tarball
        // (`ls -q`: containerd's metadata store alone, 10 ms), then `--`,
        // then, only where some are not, those references with their
        // labels (a full `ls`, filtered to them: it reads each listed
        // image's manifest for its size and platforms, 70 ms for 30 images
        // in the lab, so a rerun lists none). No socket, no daemon: said
        // at once, in ctr's words; ctr itself would spend its 10 s dial
        // timeout on it, and a fresh host's read-ahead asks before the
        // runtime play has started containerd (the lab's bring-up lost 10 s
        // per round trip to it).
        let mut ls = self.ctr();
        ls.extend(["images", "ls"]);
        let ls = command(&ls)?;
        let script = format!(
            "if [ ! -S {SOCKET} ]; then echo 'ctr: failed to dial \"{SOCKET}\": no such socket (containerd is not running)'; false\n\
             elif v=$({ls} -q \"$@\" 2>&1); then\n\
             printf '%s\\n--\\n' \"$v\"; k=$#\n\
             for f; do l=${{f#name==\\\"}}; l=${{l%%\\\"*}}; case \"\n$v\n\" in *\"\n$l\n\"*) ;; *) set -- \"$@\" \"${{f%==\\\"*}}!=\\\"${{f##*==\\\"}}\";; esac; done\n\
             shift $k; [ $# -eq 0 ] || {ls} \"$@\" 2>&1\n\
             else printf '%s\\n' \"$v\"; false; fi"
        );
        Ok(Probes::new().batch(
            "images",
            script,
            format!(
                "name==\"{}\",labels.\"{LABEL}\"==\"{}\"",
                self.reference, self.sha256
            ),
        ))
    }

    fn decide(&self, a: &Answers) -> Result<Decision, String> {
        let p = a.script("images")?;
        // Not running yet: on a fresh host plan reads it before the
        // container runtime play has started it. Apply starts it first; if
        // it is still down then, the import fails with ctr's own words.
        let down = p.rc != 0 && p.out.contains("failed to dial");
        let cut = match p.out.strip_prefix("--\n") {
            Some(rest) => Some(("", rest)),
            None => p.out.split_once("\n--\n"),
        };
        if (p.rc != 0 || cut.is_none()) && !down {
            return Err(format!(
                "`ctr -n {} images ls` failed (exit {}): {}; containerd must run before images are imported",
                self.namespace,
                p.rc,
                p.out.trim()
            ));
        }
        let (labelled, other) = cut.unwrap_or(("", ""));
        let r = self.reference.as_str();
        if !down && labelled.lines().any(|l| l.trim() == r) {
            return Ok(Decision::Unchanged(format!(
                "{r} is in {} from this tarball",
                self.namespace
            )));
        }
        // REF TYPE DIGEST SIZE PLATFORMS LABELS: the reference first, the
        // labels (`k=v,k=v` or `-`) last.
        let listed = if down { "" } else { other };
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

    /// The probe's answer: `ls -q`'s references, `--`, then `ctr images
    /// ls` as containerd 1.6 prints it with pause's labels (no listing at
    /// all when `labels` is None and `listed` is false).
    fn answer(quiet: &[&str], labels: Option<&str>) -> ProbeOut {
        let mut s: String = quiet.iter().map(|r| format!("{r}\n")).collect();
        s.push_str("--\n");
        if let Some(labels) = labels {
            s.push_str("REF                          TYPE                                                 DIGEST                                                                  SIZE      PLATFORMS   LABELS\n");
            s.push_str(&format!("registry.k8s.io/pause:3.10.1 application/vnd.docker.distribution.manifest.v2+json sha256:bbbb 311.0 KiB linux/amd64 {labels}\n"));
        }
        out(0, &s)
    }

    #[test]
    fn imports_only_what_is_not_there_from_this_tarball() {
        let m = pause();
        let pause = "registry.k8s.io/pause:3.10.1";
        let d = change(decide(&m, vec![answer(&["docker.io/library/x:1"], None)]).unwrap());
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
                vec![answer(&[], Some(&format!("io.cri-containerd.image=managed,{LABEL}={other}")))],
            )
            .unwrap(),
        );
        assert_eq!(
            d.reason,
            format!("registry.k8s.io/pause:3.10.1 is in k8s.io from another tarball (sha256 {other})")
        );
        let d = change(decide(&m, vec![answer(&[], Some("-"))]).unwrap());
        assert_eq!(
            d.reason,
            "registry.k8s.io/pause:3.10.1 is in k8s.io but not from this bundle"
        );
        assert_eq!(
            unchanged(decide(&m, vec![answer(&["docker.io/library/x:1", pause], None)]).unwrap()),
            "registry.k8s.io/pause:3.10.1 is in k8s.io from this tarball"
        );
        // containerd not running yet (plan on a fresh host): an import.
        let dial = out(1, "ctr: failed to dial \"/run/containerd/containerd.sock\": connection refused\n");
        assert_eq!(
            change(decide(&m, vec![dial]).unwrap()).reason,
            "containerd is not running yet: registry.k8s.io/pause:3.10.1 is imported once it runs"
        );
        assert_eq!(
            decide(&m, vec![out(1, "ctr: permission denied\n")]).unwrap_err(),
            "`ctr -n k8s.io images ls` failed (exit 1): ctr: permission denied; containerd must run before images are imported"
        );
    }

    /// The one script for every image of a round trip, run by a real sh
    /// against a recording fake ctr: one `ls -q` with every image's filter;
    /// a full `ls` only of the images not there from their tarball, with
    /// `!=` filters; none at all when every image is.
    #[test]
    fn one_ctr_call_for_all_images_and_a_listing_only_of_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sock = d.join("containerd.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // The fake's images: REF SHA a line.
        std::fs::write(d.join("images"), format!("registry.k8s.io/pause:3.10.1 {SHA}\nregistry.k8s.io/etcd:3.6.4-0 {}\n", "3".repeat(64))).unwrap();
        std::fs::write(
            d.join("ctr"),
            format!(
                "#!/usr/bin/env python3\nimport sys, re\nopen('{calls}', 'a').write(' '.join(sys.argv[1:]) + '\\n')\nhave = dict(l.split() for l in open('{images}'))\nargs = sys.argv[1:]\nquiet = '-q' in args\nfilters = [a for a in args[4:] if a != '-q']\nrows = []\nfor f in filters:\n    m = re.fullmatch(r'name==\"(.*)\",labels\\.\"gantry\\.bundle\\.sha256\"(==|!=)\"(.*)\"', f)\n    ref, op, sha = m.groups()\n    if ref in have and (have[ref] == sha) == (op == '=='):\n        rows.append(ref)\nif quiet:\n    print(''.join(r + '\\n' for r in rows), end='')\nelse:\n    print('REF TYPE DIGEST SIZE PLATFORMS LABELS')\n    for r in rows: print(f'{{r}} t d 1KiB linux/amd64 gantry.bundle.sha256={{have[r]}}')\n",
                calls = d.join("calls").display(),
                images = d.join("images").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("ctr"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let image = |r: &str| -> Image {
            module(json!({"src": "/x.tar", "ref": r, "sha256": SHA}))
        };
        let run = |ms: &[Image]| {
            let _ = std::fs::remove_file(d.join("calls"));
            let probes: Vec<Probe> = ms.iter().flat_map(|m| m.probes().unwrap().list().cloned().collect::<Vec<_>>()).collect();
            let script = crate::exec::probe_script(&probes, "M").unwrap().replace(SOCKET, sock.to_str().unwrap());
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::remote::script::own_call(&script).unwrap())
                .env("PATH", format!("{}:/usr/bin:/bin", d.display()))
                .output()
                .unwrap();
            let said = String::from_utf8(o.stdout).unwrap();
            let answers = crate::exec::read_answers(&probes, &said, "M").unwrap_or_else(|| panic!("{said:?}"));
            let calls = std::fs::read_to_string(d.join("calls")).unwrap();
            let decided: Vec<String> = ms.iter().zip(answers).map(|(m, a)| decide(m, vec![a]).unwrap().reason().to_string()).collect();
            (calls, decided)
        };
        let pause = image("registry.k8s.io/pause:3.10.1");
        let f = |r: &str, op: &str| format!("name==\"{r}\",labels.\"gantry.bundle.sha256\"{op}\"{SHA}\"");
        // All there from their tarball: one call.
        let (calls, decided) = run(std::slice::from_ref(&pause));
        assert_eq!(calls, format!("-n k8s.io images ls -q {}\n", f("registry.k8s.io/pause:3.10.1", "==")));
        assert_eq!(decided, ["registry.k8s.io/pause:3.10.1 is in k8s.io from this tarball"]);
        // Another tarball's etcd and a missing coredns: listed, with != filters.
        let (calls, decided) = run(&[pause.clone(), image("registry.k8s.io/etcd:3.6.4-0"), image("registry.k8s.io/coredns:v1.12.1")]);
        assert_eq!(
            calls,
            format!(
                "-n k8s.io images ls -q {} {} {}\n-n k8s.io images ls {} {}\n",
                f("registry.k8s.io/pause:3.10.1", "=="),
                f("registry.k8s.io/etcd:3.6.4-0", "=="),
                f("registry.k8s.io/coredns:v1.12.1", "=="),
                f("registry.k8s.io/etcd:3.6.4-0", "!="),
                f("registry.k8s.io/coredns:v1.12.1", "!="),
            )
        );
        assert_eq!(
            decided,
            [
                "registry.k8s.io/pause:3.10.1 is in k8s.io from this tarball".to_string(),
                format!("registry.k8s.io/etcd:3.6.4-0 is in k8s.io from another tarball (sha256 {})", "3".repeat(64)),
                "registry.k8s.io/coredns:v1.12.1 is not in containerd's k8s.io namespace".to_string(),
            ]
        );
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
