//! The lab, as tests use it: start one with lab/up.sh, run gantry against
//! it, read the hosts back with `docker exec`, remove it on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

impl Lab {
    pub fn up(name: &str, net: u8) -> Lab {
        Self::up_with(
            name,
            net,
            "master1:control-plane,worker1:worker,gpu1:worker+gpu",
        )
    }

    pub fn up_with(name: &str, net: u8, hosts: &str) -> Lab {
        let out = Command::new(root().join("lab/up.sh"))
            .args([name, hosts, &net.to_string()])
            .output()
            .unwrap();
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
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-i", self.inventory.to_str().unwrap()]);
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(&a)
            .current_dir(root())
            .output()
            .unwrap();
        println!(
            "$ gantry {}\n{}{}",
            a.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    pub fn container(&self, host: &str) -> String {
        format!("gantry-lab-{}-{host}", self.name)
    }

    pub fn exec(&self, host: &str, script: &str) -> String {
        let out = Command::new("docker")
            .args(["exec", &self.container(host), "sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "on {host}: {script}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Run a script on a host; its output whether it succeeds or not.
    pub fn try_exec(&self, host: &str, script: &str) -> (bool, String) {
        let out = Command::new("docker")
            .args(["exec", &self.container(host), "sh", "-c", script])
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout))
    }

    /// A fingerprint of everything under /etc: paths, modes, owners, sizes,
    /// modification times and contents.
    pub fn etc_state(&self, host: &str) -> String {
        // The listing itself, not its hash, so that a failed comparison
        // names the paths that changed.
        self.exec(host, "find /etc -xdev \\( -type f -o -type d -o -type l \\) -printf '%p %m %U %G %s %T@\\n' | sort; find /etc -xdev -type f -print0 | sort -z | xargs -0 cat | sha256sum")
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
        let _ = Command::new(root().join("lab/down.sh"))
            .arg(&self.name)
            .output();
    }
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
