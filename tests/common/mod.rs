//! The lab, as tests use it: start one with lab/up.sh, run gantry against
//! it, read the hosts back with `docker exec`, remove it on drop.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Lab {
    pub name: String,
    pub inventory: PathBuf,
    pub hosts: Vec<String>,
    pub net: u8,
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How long a lab step may take before the test fails instead of hanging:
/// gantry runs, `docker exec`, a lab coming up.
pub const GANTRY_LIMIT: Duration = Duration::from_secs(240);
pub const EXEC_LIMIT: Duration = Duration::from_secs(60);
pub const UP_LIMIT: Duration = Duration::from_secs(600);
/// A docker command (kill, start, exec -d, cp, rm): past this, Docker itself
/// is stuck, and the test says so rather than hanging the suite.
pub const DOCKER_LIMIT: Duration = Duration::from_secs(90);

/// `docker ARGS`, which must succeed within DOCKER_LIMIT.
pub fn docker(args: &[&str]) -> Output {
    let what = format!("docker {}", args.join(" "));
    let out = run_within(Command::new("docker").args(args), DOCKER_LIMIT, &what);
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Fail at once when the Docker daemon does not answer: a lab test would
/// otherwise wait out every one of its limits in turn.
fn docker_answers() {
    let out = run_within(
        Command::new("docker").args(["ps", "-q"]),
        Duration::from_secs(30),
        "docker ps (is the Docker daemon answering?)",
    );
    assert!(
        out.status.success(),
        "the Docker daemon does not answer `docker ps`: {}",
        text(&out.stderr)
    );
}

/// Wait for a child with a deadline. Its output is read as it comes (a full
/// pipe must not stall it); past the deadline it is killed and the test
/// fails, saying what it was waiting for and what the child printed.
pub fn wait_within(mut child: Child, limit: Duration, what: &str) -> Output {
    fn drain(p: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut b);
            }
            b
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for a child") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "timed out after {}s waiting for {what}; it printed:\n{}{}",
                limit.as_secs(),
                text(&o),
                text(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Run a command to its end, or fail the test past `limit`.
pub fn run_within(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    wait_within(child, limit, what)
}

impl Lab {
    pub fn up(name: &str, net: u8) -> Lab {
        Self::up_with(
            name,
            net,
            "master1:control-plane,worker1:worker,gpu1:worker+gpu",
        )
    }

    pub fn up_with(name: &str, net: u8, hosts: &str) -> Lab {
        docker_answers();
        let out = run_within(
            Command::new(root().join("lab/up.sh")).args([name, hosts, &net.to_string()]),
            UP_LIMIT,
            &format!("lab/up.sh {name}"),
        );
        assert!(
            out.status.success(),
            "lab/up.sh failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let inventory = PathBuf::from(text(&out.stdout).lines().last().unwrap().trim());
        let hosts = hosts
            .split(',')
            .map(|s| s.split(':').next().unwrap().to_string())
            .collect();
        Lab {
            name: name.into(),
            inventory,
            hosts,
            net,
        }
    }

    pub fn gantry(&self, args: &[&str]) -> Output {
        self.run_gantry(args, &[], GANTRY_LIMIT)
    }

    /// `gantry ARGS -i INVENTORY`, failing the test if it runs past `limit`.
    pub fn gantry_within(&self, args: &[&str], limit: Duration) -> Output {
        self.run_gantry(args, &[], limit)
    }

    /// `gantry ARGS` with these environment variables set.
    pub fn gantry_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run_gantry(args, env, GANTRY_LIMIT)
    }

    /// `gantry ARGS -i INVENTORY` for another inventory of the lab's hosts
    /// (a part of them, say).
    pub fn gantry_for(&self, inventory: &Path, args: &[&str]) -> Output {
        run_gantry_on(inventory, args, &[], GANTRY_LIMIT)
    }

    fn run_gantry(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
        run_gantry_on(&self.inventory, args, env, limit)
    }
}

/// `gantry ARGS -i INVENTORY`, failing the test if it runs past `limit`;
/// what it printed is echoed for the test's log.
fn run_gantry_on(inventory: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["-i", inventory.to_str().unwrap()]);
    let out = run_within(
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(&a)
            .envs(env.iter().copied())
            .current_dir(root()),
        limit,
        &format!("gantry {}", a.join(" ")),
    );
    println!(
        "$ gantry {}\n{}{}",
        a.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

impl Lab {
    pub fn container(&self, host: &str) -> String {
        format!("gantry-lab-{}-{host}", self.name)
    }

    /// `docker VERB CONTAINER ARGS...` on one host's container (kill,
    /// start, `exec -d`, ...), which must succeed within DOCKER_LIMIT.
    pub fn docker(&self, verb: &[&str], host: &str, rest: &[&str]) -> Output {
        let c = self.container(host);
        let mut a: Vec<&str> = verb.to_vec();
        a.push(&c);
        a.extend_from_slice(rest);
        docker(&a)
    }

    /// Cut a host off the network (`heal: false`) or bring it back: its
    /// own interface goes down or up (lab/cut.sh), within DOCKER_LIMIT.
    pub fn cut(&self, host: &str, heal: bool) {
        let mut a = vec![self.name.as_str(), host];
        if heal {
            a.push("heal");
        }
        let out = run_within(
            Command::new(root().join("lab/cut.sh")).args(&a),
            DOCKER_LIMIT,
            &format!("lab/cut.sh {}", a.join(" ")),
        );
        assert!(out.status.success(), "lab/cut.sh: {}", text(&out.stderr));
    }

    fn docker_exec(&self, host: &str, script: &str) -> Output {
        run_within(
            Command::new("docker").args(["exec", &self.container(host), "sh", "-c", script]),
            EXEC_LIMIT,
            &format!("on {host}: {script}"),
        )
    }

    pub fn exec(&self, host: &str, script: &str) -> String {
        let out = self.docker_exec(host, script);
        assert!(
            out.status.success(),
            "on {host}: {script}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Run a script on a host; its output whether it succeeds or not.
    pub fn try_exec(&self, host: &str, script: &str) -> (bool, String) {
        let out = self.docker_exec(host, script);
        (out.status.success(), text(&out.stdout))
    }

    /// A fingerprint of everything under /etc: paths, modes, owners, sizes,
    /// modification times and contents. /etc's own modification time is
    /// left out: in CI it moved on idle lab hosts (by 16-150 ms, around
    /// the snapshot itself, with no entry added, removed or changed), from
    /// a process on the host not yet identified. Every entry's time, size
    /// and content is still compared, so a write by gantry (a rename over
    /// a file) is still seen; only a file created and removed again in
    /// /etc itself would not be.
    pub fn etc_state(&self, host: &str) -> String {
        // The listing itself, not its hash, so that a failed comparison
        // names the paths that changed.
        self.exec(host, "stat -c '%n %a %u %g' /etc; find /etc -xdev -mindepth 1 \\( -type f -o -type d -o -type l \\) -printf '%p %m %U %G %s %T@\\n' | sort; find /etc -xdev -type f -print0 | sort -z | xargs -0 cat | sha256sum")
    }

    /// How many SSH logins the host's sshd has accepted so far (its
    /// journal): a host that a run did not contact shows no new one.
    pub fn logins(&self, host: &str) -> usize {
        self.exec(
            host,
            "journalctl -u ssh -o cat --no-pager | grep -c '^Accepted publickey' || true",
        )
        .trim()
        .parse()
        .unwrap()
    }

    pub fn ip(&self, i: usize) -> String {
        format!("172.29.{}.{}", self.net, 11 + i)
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.inventory.parent().unwrap().join("known_hosts")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Never panics (it may run while a test unwinds), never hangs:
        // down.sh bounds each docker command with a timeout of its own.
        if let Ok(out) = Command::new(root().join("lab/down.sh"))
            .arg(&self.name)
            .output()
            && !out.status.success()
        {
            eprintln!("lab/down.sh {}: {}", self.name, text(&out.stderr));
        }
    }
}

/// A host's row of the run's table: ok, changed, failed, skipped, unreachable.
pub fn row(out: &Output, host: &str) -> [usize; 5] {
    let t = text(&out.stdout);
    let line = t
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host) && l.split_whitespace().count() == 6)
        .unwrap_or_else(|| panic!("no table row for {host}:\n{t}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .skip(1)
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("not a count in {line:?}"))
        })
        .collect();
    [n[0], n[1], n[2], n[3], n[4]]
}

pub fn summary(out: &Output) -> String {
    text(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.contains(" hosts: ok="))
        .unwrap_or_default()
        .to_string()
}

/// Fail naming the /etc entries (path, mode, owner, size, mtime) that differ
/// between two `etc_state` snapshots of the same hosts.
pub fn assert_same_etc(before: &[String], after: &[String], what: &str) {
    let mut changed = Vec::new();
    for (b, a) in before.iter().zip(after) {
        let (bl, al): (
            std::collections::BTreeSet<&str>,
            std::collections::BTreeSet<&str>,
        ) = (b.lines().collect(), a.lines().collect());
        changed.extend(bl.symmetric_difference(&al).map(|l| l.to_string()));
    }
    assert!(changed.is_empty(), "{what}: {changed:#?}");
}

/// A `docker save` tarball of a one-file image, made here (no registry):
/// `content` sets the image's bytes, so two calls give two tarballs of the
/// same reference.
pub fn image_tarball(dir: &std::path::Path, reference: &str, content: &str, out: &str) -> String {
    let root = dir.join(format!("rootfs-{out}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello"), content).unwrap();
    let path = dir.join(out);
    let script = format!(
        "tar -C {r} -c . | docker import - {reference} >/dev/null && docker save {reference} -o {p} && docker rmi {reference} >/dev/null",
        r = root.display(),
        p = path.display()
    );
    let made = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    path.display().to_string()
}

/// A playbook of one play running `role` on every host, written under
/// `dir/playbooks/` (roles are found beside it, then in the repo's roles/).
pub fn role_playbook(dir: &Path, role: &str) -> String {
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    let pb = dir.join(format!("playbooks/{role}.yaml"));
    std::fs::write(
        &pb,
        format!("- name: {role}\n  hosts: all\n  roles: [{role}]\n"),
    )
    .unwrap();
    pb.to_str().unwrap().to_string()
}

/// Open a page in a real headless browser (Debian's chromium, which
/// ./test.sh installs through lab/ensure-browser.sh), with no network: in
/// a network namespace of its own where this machine allows one, and with
/// every name unresolvable and every proxy dead besides. Returns the DOM
/// as the browser built it; a screenshot goes to `png`.
pub fn browser(page: &Path, png: &Path) -> String {
    let chromium = ["chromium", "/usr/bin/chromium"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("chromium is not installed: ./test.sh installs it (lab/ensure-browser.sh)");
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let flags = |extra: &str| -> Vec<String> {
        [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            extra,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("--user-data-dir={}", profile.path().display()),
            url.clone(),
        ])
        .collect()
    };
    let run = |extra: &str| {
        let mut cmd = if isolated {
            let mut c = Command::new("unshare");
            c.args(["-n", chromium]);
            c
        } else {
            Command::new(chromium)
        };
        cmd.args(flags(extra));
        let out = run_within(&mut cmd, Duration::from_secs(120), "chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            text(&out.stderr)
        );
        out
    };
    let dom = text(&run("--dump-dom").stdout);
    run(&format!("--screenshot={}", png.display()));
    assert!(
        std::fs::metadata(png).is_ok_and(|m| m.len() > 0),
        "no screenshot at {}",
        png.display()
    );
    dom
}

/// Where tests keep what a person may want to look at afterwards.
pub fn artifacts() -> PathBuf {
    let d = root().join("target/test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Check a document against its published schema, `schema/gantry.NAME.v1.json`
/// (what the README promises scripts), naming every violation.
pub fn assert_schema(doc: &serde_json::Value, name: &str) {
    let path = root().join(format!("schema/gantry.{name}.v1.json"));
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{}: not a valid schema: {e}", path.display()));
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the document does not match {}:\n{}\n{doc:#}",
        path.display(),
        errors.join("\n")
    );
}

/// The lab bundle (lab/bundle.sh) in `dir`, named in the lab's inventory.
pub fn with_lab_bundle(lab: &Lab, dir: &std::path::Path) {
    let out = run_within(
        Command::new(root().join("lab/bundle.sh")).arg(dir),
        UP_LIMIT,
        "lab/bundle.sh",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inv =
        std::fs::read_to_string(&lab.inventory).unwrap() + &format!("bundle: {}\n", dir.display());
    std::fs::write(&lab.inventory, inv).unwrap();
}
