//! `gantry bundle fetch` against a local HTTP server this test starts on
//! 127.0.0.1: real client code over real sockets, real range requests, a
//! server that drops the connection midway, one that ignores ranges, and
//! one that serves other bytes than the pinned hash. No host is needed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// How the server answers one path.
#[derive(Clone)]
enum Serve {
    /// The bytes, honouring `Range: bytes=N-` with a 206.
    Plain(Vec<u8>),
    /// Like `Plain`, but the first response is cut after this many bytes
    /// of the body (the connection is closed under the client).
    DropOnceAfter(Vec<u8>, usize),
    /// The bytes with a 200, whatever range was asked for.
    IgnoreRange(Vec<u8>),
}

struct Server {
    port: u16,
    /// Every request: (path, the Range header or "").
    log: Arc<Mutex<Vec<(String, String)>>>,
}

impl Server {
    fn start(routes: HashMap<String, Serve>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(Mutex::new(routes));
        let (l2, r2) = (log.clone(), routes.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (log, routes) = (l2.clone(), r2.clone());
                std::thread::spawn(move || answer(conn, &log, &routes));
            }
        });
        Server { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }
}

fn answer(
    mut conn: TcpStream,
    log: &Mutex<Vec<(String, String)>>,
    routes: &Mutex<HashMap<String, Serve>>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = v.trim().to_string();
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let serve = routes.lock().unwrap().get(&path).cloned();
    let (body, cut, honour) = match serve {
        None => {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Some(Serve::Plain(b)) => (b, None, true),
        Some(Serve::IgnoreRange(b)) => (b, None, false),
        Some(Serve::DropOnceAfter(b, n)) => {
            // Only the first answer is cut.
            routes
                .lock()
                .unwrap()
                .insert(path.clone(), Serve::Plain(b.clone()));
            (b, Some(n), true)
        }
    };
    let from = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| honour);
    let head = match from {
        Some(f) if f >= body.len() => {
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            return;
        }
        Some(f) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {f}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len() - 1,
            body.len(),
            body.len() - f
        ),
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
    };
    let part = &body[from.unwrap_or(0)..];
    let part = match cut {
        Some(n) => &part[..n.min(part.len())],
        None => part,
    };
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(part);
    let _ = conn.flush();
    // Closing here cuts a response whose Content-Length says more.
    let _ = conn.shutdown(std::net::Shutdown::Both);
    let _ = reader.read(&mut [0u8; 1]);
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Bytes that differ at every offset, so a resume from the wrong place shows.
fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn gantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A list entry as `bundle list --yaml` prints them.
fn entry(file: &str, source: &str, pin: &str) -> String {
    format!(
        "- name: {file}\n  kind: binary\n  version: v1\n  arch: amd64\n  os: linux\n  file: {file}\n  source: {source}\n{pin}"
    )
}

fn write_list(dir: &Path, entries: &[String]) -> String {
    let p = dir.join("wanted.yaml");
    std::fs::write(&p, format!("artifacts:\n{}", entries.concat())).unwrap();
    p.display().to_string()
}

fn fetch(bundle: &Path, list: &str, extra: &[&str]) -> Output {
    let mut args = vec!["bundle", "fetch", bundle.to_str().unwrap(), "--list", list];
    args.extend_from_slice(extra);
    gantry(&args)
}

#[test]
fn fetch_checks_every_hash_and_a_second_fetch_downloads_nothing() {
    let a = payload(700_000, 1);
    let b = payload(500_000, 2);
    let c = payload(300_000, 3);
    let server = Server::start(HashMap::from([
        ("/a".to_string(), Serve::Plain(a.clone())),
        ("/b".to_string(), Serve::Plain(b.clone())),
        // dl.k8s.io's form: the bare hash.
        ("/b.sha256".to_string(), Serve::Plain(sha(&b).into_bytes())),
        ("/rel/c.amd64".to_string(), Serve::Plain(c.clone())),
        // runc's form: one `HASH  NAME` line per file.
        (
            "/rel/sums".to_string(),
            Serve::Plain(format!("{}  c.arm64\n{}  c.amd64\n", sha(&a), sha(&c)).into_bytes()),
        ),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let list = write_list(
        tmp.path(),
        &[
            entry(
                "bin/a",
                &server.url("/a"),
                &format!("  sha256: {}\n", sha(&a)),
            ),
            entry(
                "bin/b",
                &server.url("/b"),
                &format!("  sha256_url: {}\n", server.url("/b.sha256")),
            ),
            entry(
                "bin/c",
                &server.url("/rel/c.amd64"),
                &format!("  sha256_url: {}\n", server.url("/rel/sums")),
            ),
        ],
    );
    let out = fetch(&bundle, &list, &["--jobs", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mf = bundle.join("manifest.yaml");
    assert_eq!(
        text(&out),
        format!(
            "fetched bin/a (700000 bytes)\nfetched bin/b (500000 bytes)\nfetched bin/c (300000 bytes)\n3 artifacts: 3 fetched (1500000 bytes), 0 already there, 0 missing; {} lists 3\n",
            mf.display()
        )
    );
    assert_eq!(std::fs::read(bundle.join("bin/a")).unwrap(), a);
    assert_eq!(std::fs::read(bundle.join("bin/c")).unwrap(), c);
    let manifest = std::fs::read_to_string(&mf).unwrap();
    for (f, x) in [("bin/a", &a), ("bin/b", &b), ("bin/c", &c)] {
        assert!(
            manifest.contains(&format!(
                "file: {f}\n  size: {}\n  sha256: {}\n",
                x.len(),
                sha(x)
            )),
            "{manifest}"
        );
    }
    // What fetch wrote, verify accepts.
    let v = gantry(&["bundle", "verify", bundle.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // Again: only the checksum files are read; no payload moves.
    let before = server.requests().len();
    let again = fetch(&bundle, &list, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).ends_with(&format!(
            "3 artifacts: 0 fetched (0 bytes), 3 already there, 0 missing; {} lists 3\n",
            mf.display()
        )),
        "{}",
        text(&again)
    );
    let mut second: Vec<String> = server.requests()[before..]
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    second.sort();
    assert_eq!(second, ["/b.sha256", "/rel/sums"]);
    // No temp file is left behind.
    let mut names: Vec<String> = walk(&bundle);
    names.sort();
    assert_eq!(names, ["bin/a", "bin/b", "bin/c", "manifest.yaml"]);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()).into_iter().map(|n| format!("{name}/{n}")));
        } else {
            out.push(name);
        }
    }
    out
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let a = payload(1_000_000, 4);
    let server = Server::start(HashMap::from([(
        "/a".to_string(),
        Serve::DropOnceAfter(a.clone(), 300_000),
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let list = write_list(
        tmp.path(),
        &[entry(
            "a",
            &server.url("/a"),
            &format!("  sha256: {}\n", sha(&a)),
        )],
    );
    let out = fetch(&bundle, &list, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with("fetched a (1000000 bytes)\n"),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.requests(),
        [
            ("/a".to_string(), String::new()),
            ("/a".to_string(), "bytes=300000-".to_string())
        ]
    );
    assert_eq!(std::fs::read(bundle.join("a")).unwrap(), a);
}

#[test]
fn an_interrupted_fetch_resumes_from_what_arrived() {
    let a = payload(800_000, 5);
    let server = Server::start(HashMap::from([("/a".to_string(), Serve::Plain(a.clone()))]));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    // What a killed fetch leaves: the first bytes in the part file.
    std::fs::write(bundle.join(".a.gantry-part"), &a[..450_000]).unwrap();
    let list = write_list(
        tmp.path(),
        &[entry(
            "a",
            &server.url("/a"),
            &format!("  sha256: {}\n", sha(&a)),
        )],
    );
    let out = fetch(&bundle, &list, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with("fetched a (350000 bytes, resumed at byte 450000)\n"),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.requests(),
        [("/a".to_string(), "bytes=450000-".to_string())]
    );
    assert_eq!(std::fs::read(bundle.join("a")).unwrap(), a);
    assert!(!bundle.join(".a.gantry-part").exists());
}

#[test]
fn a_stale_part_or_a_server_that_ignores_ranges_still_ends_right() {
    let a = payload(600_000, 6);
    let b = payload(400_000, 7);
    let server = Server::start(HashMap::from([
        ("/a".to_string(), Serve::Plain(a.clone())),
        ("/b".to_string(), Serve::IgnoreRange(b.clone())),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    // A part of other bytes (an earlier version of the file): the resumed
    // file fails its hash, so it is fetched once more from byte 0.
    std::fs::write(bundle.join(".a.gantry-part"), payload(200_000, 99)).unwrap();
    // A server that answers a range with the whole file (200).
    std::fs::write(bundle.join(".b.gantry-part"), &b[..100_000]).unwrap();
    let list = write_list(
        tmp.path(),
        &[
            entry("a", &server.url("/a"), &format!("  sha256: {}\n", sha(&a))),
            entry("b", &server.url("/b"), &format!("  sha256: {}\n", sha(&b))),
        ],
    );
    let out = fetch(&bundle, &list, &["--jobs", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(bundle.join("a")).unwrap(), a);
    assert_eq!(std::fs::read(bundle.join("b")).unwrap(), b);
    assert_eq!(
        server.requests(),
        [
            ("/a".to_string(), "bytes=200000-".to_string()),
            ("/a".to_string(), String::new()),
            ("/b".to_string(), "bytes=100000-".to_string()),
        ]
    );
}

#[test]
fn wrong_bytes_are_refused_and_nothing_is_kept() {
    let a = payload(500_000, 8);
    let server = Server::start(HashMap::from([("/a".to_string(), Serve::Plain(a.clone()))]));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let pinned = sha(b"what the list pins");
    let list = write_list(
        tmp.path(),
        &[entry(
            "bin/a",
            &server.url("/a"),
            &format!("  sha256: {pinned}\n"),
        )],
    );
    let out = fetch(&bundle, &list, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mf = bundle.join("manifest.yaml");
    assert_eq!(
        text(&out),
        format!(
            "FAILED bin/a: {} served 500000 bytes with sha256 {}, but {pinned} is pinned: nothing was kept\n1 artifacts: 0 fetched (0 bytes), 0 already there, 1 missing; {} lists 0\n",
            server.url("/a"),
            sha(&a),
            mf.display()
        )
    );
    let mut names = walk(&bundle);
    names.sort();
    // The directory for it was made; no file, part or temp file is left.
    assert_eq!(names, ["manifest.yaml"]);
    assert!(bundle.join("bin").is_dir());
}

#[test]
fn an_artifact_nothing_pins_is_refused_unless_trusted_on_first_fetch() {
    let a = payload(100_000, 9);
    let server = Server::start(HashMap::from([("/a".to_string(), Serve::Plain(a.clone()))]));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let list = write_list(
        tmp.path(),
        &[
            entry("a", &server.url("/a"), ""),
            entry("img.tar", "docker://registry.k8s.io/pause:3.10.1", ""),
        ],
    );
    let out = fetch(&bundle, &list, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).starts_with(
            "FAILED a: no sha256 is pinned for a and its project publishes no checksum file: pin it with `sha256:` in the list, or pass --trust-first-fetch\n\
             not fetched img.tar: docker://registry.k8s.io/pause:3.10.1 is not an http(s) source: save it with `docker save` or `skopeo copy` into img.tar and list it in the manifest\n"
        ),
        "{}",
        text(&out)
    );
    assert!(server.requests().is_empty());
    let out = fetch(&bundle, &list, &["--trust-first-fetch"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).starts_with(&format!(
            "fetched a (100000 bytes; nothing pinned its sha256: {} recorded as it arrived)\n",
            sha(&a)
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn a_list_with_bad_entries_is_refused_at_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let list = write_list(
        tmp.path(),
        &[
            entry("../x", "http://127.0.0.1:9/x", "  sha256: abc\n"),
            entry("y", "''", ""),
        ],
    );
    let out = fetch(&tmp.path().join("b"), &list, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        text(&out),
        format!(
            "{list}:7:3: error: artifacts[0].file: \"../x\" must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)\n\
             {list}:9:3: error: artifacts[0].sha256: \"abc\" is not a sha256 (64 lowercase hex digits)\n\
             {list}:16:3: error: artifacts[1].source: must not be empty\n\
             3 error(s); nothing was changed on any host\n"
        )
    );
    assert!(!tmp.path().join("b").exists());
}
