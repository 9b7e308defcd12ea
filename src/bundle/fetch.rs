//! `gantry bundle fetch`: download a bundle's artifacts on a machine with
//! internet access, into a directory with its manifest.
//!
//! Each artifact is streamed into `.NAME.gantry-part` beside its place,
//! resumed with an HTTP range request from what arrived when the connection
//! drops (or when an earlier fetch was killed), checked against its pinned
//! sha256, and only then renamed into place. A file already there with the
//! right hash is not downloaded again. Several artifacts download at once,
//! with a progress bar each and one for the total when stderr is a terminal.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::wanted::Wanted;
use super::{Artifact, check_sha256, sha256_file};

pub struct Options {
    pub dir: PathBuf,
    /// Artifacts downloading at once.
    pub jobs: usize,
    /// Accept an artifact with no pinned sha256 and no published checksum:
    /// the hash of what arrived is recorded (trust on first fetch).
    pub trust_first_fetch: bool,
    /// Tries in a row that receive nothing before an artifact fails.
    pub attempts: u32,
    /// How long a read may wait for the next byte.
    pub read_timeout: Duration,
}

/// What became of one artifact.
#[derive(Debug)]
pub enum Outcome {
    /// Already in the directory with its sha256: nothing downloaded.
    Present(Artifact),
    /// Downloaded (`bytes` this run; less than the size when resumed).
    Fetched {
        artifact: Artifact,
        bytes: u64,
        resumed_at: u64,
        trusted: bool,
    },
    /// Not an http(s) source: gantry cannot fetch it.
    NotHttp(String),
    Failed(String),
}

/// Fetch every artifact of `list`, `opts.jobs` at a time. The outcomes come
/// back in the list's order.
pub fn fetch(list: &[Wanted], opts: &Options) -> Vec<Outcome> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(opts.read_timeout))
        .user_agent(format!("gantry/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let style =
        ProgressStyle::with_template("{msg:>16} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template");
    let bars = MultiProgress::new();
    let total = bars.add(ProgressBar::new(0).with_style(style.clone()));
    total.set_message("total");
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Outcome>>> =
        list.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(list.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(w) = list.get(i) else { break };
                    let bar =
                        bars.insert_before(&total, ProgressBar::new(0).with_style(style.clone()));
                    bar.set_message(w.name.rsplit('/').next().unwrap_or("").to_string());
                    let o = one(&agent, w, opts, &bar, &total);
                    bar.finish_and_clear();
                    bars.remove(&bar);
                    *slots[i].lock().expect("not poisoned") = Some(o);
                }
            });
        }
    });
    total.finish_and_clear();
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("not poisoned")
                .expect("every artifact was taken")
        })
        .collect()
}

/// A try that went wrong: worth another (a dropped connection, a 5xx) or not.
enum Trouble {
    Again(String),
    Fatal(String),
}

fn one(
    agent: &ureq::Agent,
    w: &Wanted,
    opts: &Options,
    bar: &ProgressBar,
    total: &ProgressBar,
) -> Outcome {
    if !(w.source.starts_with("https://") || w.source.starts_with("http://")) {
        return Outcome::NotHttp(format!(
            "{} is not an http(s) source: save it with `docker save` or `skopeo copy` into {} and list it in the manifest",
            w.source, w.file
        ));
    }
    let dest = opts.dir.join(&w.file);
    let pinned = match expected_sha256(agent, w) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    if pinned.is_none() && !opts.trust_first_fetch {
        return Outcome::Failed(format!(
            "no sha256 is pinned for {} and its project publishes no checksum file: pin it with `sha256:` in the list, or pass --trust-first-fetch",
            w.file
        ));
    }
    if let Some(sha) = &pinned
        && let Ok((have, size)) = sha256_file(&dest)
        && &have == sha
    {
        return Outcome::Present(artifact(w, sha.clone(), size));
    }
    let part = part_path(&dest);
    if let Some(p) = dest.parent()
        && let Err(e) = std::fs::create_dir_all(p)
    {
        return Outcome::Failed(format!("creating {}: {e}", p.display()));
    }
    let resumed_at = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut bytes = 0u64;
    // A resumed download that does not match is fetched once more from
    // byte 0: the piece kept from before may be what was wrong.
    for from_scratch in [false, true] {
        if from_scratch {
            if resumed_at == 0 {
                break;
            }
            let _ = std::fs::remove_file(&part);
        }
        match download(agent, &w.source, &part, opts, bar, total) {
            Ok(n) => bytes += n,
            Err(e) => return Outcome::Failed(e),
        }
        let (got, size) = match sha256_file(&part) {
            Ok(x) => x,
            Err(e) => return Outcome::Failed(format!("reading {}: {e}", part.display())),
        };
        match &pinned {
            Some(sha) if &got != sha => {
                if from_scratch || resumed_at == 0 {
                    let _ = std::fs::remove_file(&part);
                    return Outcome::Failed(format!(
                        "{} served {size} bytes with sha256 {got}, but {sha} is pinned: nothing was kept",
                        w.source
                    ));
                }
                continue;
            }
            _ => {}
        }
        if let Err(e) = File::open(&part)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&part, &dest))
        {
            return Outcome::Failed(format!("moving {} into place: {e}", dest.display()));
        }
        return Outcome::Fetched {
            artifact: artifact(w, got, size),
            bytes,
            resumed_at: if from_scratch { 0 } else { resumed_at },
            trusted: pinned.is_none(),
        };
    }
    unreachable!("the second pass returns")
}

fn artifact(w: &Wanted, sha256: String, size: u64) -> Artifact {
    Artifact {
        name: w.name.clone(),
        kind: w.kind,
        version: w.version.clone(),
        arch: w.arch.clone(),
        os: w.os.clone(),
        file: w.file.clone(),
        size,
        sha256,
        source: w.source.clone(),
    }
}

/// `.NAME.gantry-part` beside `dest`, as the `upload` module names its
/// partial files.
fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.gantry-part"))
}

/// The sha256 to check against: the pinned one, else the one in the
/// project's checksum file, else none.
fn expected_sha256(agent: &ureq::Agent, w: &Wanted) -> Result<Option<String>, String> {
    if let Some(s) = &w.sha256 {
        return Ok(Some(s.clone()));
    }
    let Some(url) = &w.sha256_url else {
        return Ok(None);
    };
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("fetching the checksum file {url}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!(
            "fetching the checksum file {url}: HTTP {}",
            resp.status()
        ));
    }
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| format!("reading the checksum file {url}: {e}"))?;
    let name = w
        .source
        .split(['?', '#'])
        .next()
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or("");
    checksum_for(&text, name)
        .map(Some)
        .ok_or_else(|| format!("the checksum file {url} has no sha256 for {name}"))
}

/// The sha256 for `name` in a checksum file: a line `HASH  NAME` (or
/// `HASH *NAME`), or the one hash of a file that holds only that.
pub fn checksum_for(text: &str, name: &str) -> Option<String> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect();
    let hash = |t: &str| {
        let t = t.to_ascii_lowercase();
        check_sha256(&t).is_ok().then_some(t)
    };
    if let [only] = lines.as_slice()
        && (only.len() == 1 || only.get(1).map(|n| n.trim_start_matches('*')) == Some(name))
    {
        return hash(only[0]);
    }
    lines
        .iter()
        .find(|t| t.len() == 2 && t[1].trim_start_matches('*') == name)
        .and_then(|t| hash(t[0]))
}

/// Stream `url` into `part`, from its current length when it has one.
/// Returns the bytes received this call. A dropped connection is retried
/// from where it stopped, up to `opts.attempts` tries in a row that receive
/// nothing.
fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    opts: &Options,
    bar: &ProgressBar,
    total: &ProgressBar,
) -> Result<u64, String> {
    let mut received = 0u64;
    let mut idle_tries = 0u32;
    loop {
        let offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        match try_once(agent, url, part, offset, bar, total) {
            Ok(n) => return Ok(received + n),
            Err((_, Trouble::Fatal(e))) => return Err(e),
            Err((n, Trouble::Again(e))) => {
                received += n;
                idle_tries = if n > 0 { 0 } else { idle_tries + 1 };
                if idle_tries >= opts.attempts {
                    return Err(format!(
                        "{e} ({} tries in a row received nothing; {} bytes are kept in {} for the next fetch to resume from)",
                        opts.attempts,
                        std::fs::metadata(part).map(|m| m.len()).unwrap_or(0),
                        part.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(200 * u64::from(idle_tries)));
            }
        }
    }
}

fn try_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    offset: u64,
    bar: &ProgressBar,
    total: &ProgressBar,
) -> Result<u64, (u64, Trouble)> {
    let mut req = agent.get(url);
    if offset > 0 {
        req = req.header("Range", format!("bytes={offset}-"));
    }
    let resp = req
        .call()
        .map_err(|e| (0, Trouble::Again(format!("{url}: {e}"))))?;
    let status = resp.status().as_u16();
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let mut file = match status {
        206 => {
            // `bytes START-END/TOTAL`: it must start where the part ends.
            let range = header("content-range").unwrap_or_default();
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err((
                    0,
                    Trouble::Fatal(format!(
                        "{url}: asked for bytes from {offset}, got the range {range:?}"
                    )),
                ));
            }
            OpenOptions::new().append(true).open(part)
        }
        200 => File::create(part),
        // The part already holds the whole file; its hash decides.
        416 if offset > 0 => return Ok(0),
        s => {
            let e = format!("{url}: HTTP {s}");
            return Err((
                0,
                if s >= 500 || s == 429 {
                    Trouble::Again(e)
                } else {
                    Trouble::Fatal(e)
                },
            ));
        }
    }
    .map_err(|e| {
        (
            0,
            Trouble::Fatal(format!("opening {}: {e}", part.display())),
        )
    })?;
    let start = if status == 206 { offset } else { 0 };
    bar.set_length(start + length.unwrap_or(0));
    bar.set_position(start);
    if let Some(l) = length {
        total.inc_length(l);
    }
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                file.write_all(&buf[..k]).map_err(|e| {
                    (
                        n,
                        Trouble::Fatal(format!("writing {}: {e}", part.display())),
                    )
                })?;
                n += k as u64;
                bar.inc(k as u64);
                total.inc(k as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = file.flush();
                return Err((
                    n,
                    Trouble::Again(format!("{url}: the transfer broke after {n} bytes: {e}")),
                ));
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_in_the_formats_projects_publish() {
        let h = "a".repeat(64);
        let g = "b".repeat(64);
        // dl.k8s.io: the bare hash.
        assert_eq!(checksum_for(&format!("{h}\n"), "kubeadm"), Some(h.clone()));
        // containerd, helm: one `HASH  NAME` line.
        assert_eq!(
            checksum_for(&format!("{h}  containerd.tgz\n"), "containerd.tgz"),
            Some(h.clone())
        );
        // runc: one line per file, binary mode marked with `*`.
        let runc = format!("{g}  runc.arm64\n{h} *runc.amd64\n");
        assert_eq!(checksum_for(&runc, "runc.amd64"), Some(h.clone()));
        assert_eq!(checksum_for(&runc, "runc.s390x"), None);
        // One line for another file is not this file's hash.
        assert_eq!(checksum_for(&format!("{h}  other\n"), "mine"), None);
        assert_eq!(checksum_for("not a hash\n", "x"), None);
        // Upper-case hex is taken as the same hash.
        assert_eq!(checksum_for(&h.to_uppercase(), "x"), Some(h));
    }
}
