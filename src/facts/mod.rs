//! Host facts: one registry of what gantry reads about a host, each fact a
//! shell snippet and (in its file here) the parser of what it prints. The
//! run's facts script and `gantry check`'s gather script are both built
//! from it, so os-release, /proc/swaps or the hostname are read one way.
//! Snippets use builtins where they can (the host pays for every process,
//! on every run); a fact that costs processes is read only where something
//! names it: a task's `facts.NAME`, or a check that reads it.
//!
//! Scripts run in the host's shell itself (`Scope::Own`), so each snippet
//! assigns only the variables in `LOCALS`, which the script declares.

pub mod gpu;
pub mod hardware;
pub mod kernel;
pub mod network;
pub mod os;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Value as Json, json};

use crate::plan::graph::Dag;
use crate::plan::inputs::referenced;
use crate::plan::template::Templates;

/// One fact: what a script prints under `@@NAME`.
pub struct Fact {
    pub name: &'static str,
    pub snippet: &'static str,
    /// Reading it spawns processes.
    pub costly: bool,
    /// Templates and `when:` see it as `facts.…` (see `template_facts`).
    pub template: bool,
}

/// The variables snippets assign (and kernel's keyed snippets: `v`).
pub const LOCALS: &str = "k v n r";

const fn fact(name: &'static str, costly: bool, template: bool, snippet: &'static str) -> Fact {
    Fact {
        name,
        snippet,
        costly,
        template,
    }
}

/// Every fact gantry reads.
pub const FACTS: &[Fact] = &[
    // /etc/os-release line by line, not sourced into the shell.
    fact(
        "os",
        false,
        true,
        r#"while IFS='=' read -r k v; do v=${v#[\"\']}; v=${v%[\"\']}; case $k in ID|VERSION_ID|ID_LIKE|PRETTY_NAME) echo "$k=$v" ;; esac; done < /etc/os-release 2>/dev/null"#,
    ),
    fact(
        "kernel",
        false,
        true,
        r#"read -r v < /proc/sys/kernel/osrelease; echo "$v""#,
    ),
    fact(
        "arch",
        false,
        true,
        r#"{ read -r v < /proc/sys/kernel/arch; } 2>/dev/null || v=$(uname -m); echo "$v""#,
    ),
    fact(
        "hostname",
        false,
        true,
        r#"read -r v < /proc/sys/kernel/hostname; echo "$v""#,
    ),
    // Each swap device's name, the header line skipped.
    fact(
        "swaps",
        false,
        true,
        r#"{ read -r k; while read -r v k; do echo "$v"; done; } < /proc/swaps 2>/dev/null"#,
    ),
    fact(
        "init",
        false,
        true,
        r#"read -r v < /proc/1/comm; echo "$v""#,
    ),
    fact(
        "nft",
        false,
        true,
        r#"command -v nft >/dev/null && echo true || echo false"#,
    ),
    fact(
        "firewalld",
        true,
        true,
        r#"[ -d /run/systemd/system ] && systemctl is-active firewalld 2>/dev/null"#,
    ),
    fact(
        "nft_gantry_table",
        true,
        true,
        r#"nft list table inet gantry >/dev/null 2>&1 && echo true || echo false"#,
    ),
    fact(
        "ipv4",
        true,
        true,
        r#"ip -o -4 addr show 2>/dev/null | while read -r _ k _ v _; do echo "$k $v"; done"#,
    ),
    // Read by `gantry check` only.
    fact("lscpu", true, false, "lscpu 2>/dev/null"),
    fact("nproc", true, false, "nproc 2>/dev/null"),
    fact("meminfo", true, false, "cat /proc/meminfo"),
    fact(
        "rootdisk",
        true,
        false,
        "df -B1 --output=size / 2>/dev/null | tail -n 1",
    ),
    fact(
        "kubelet",
        true,
        false,
        "systemctl is-active kubelet 2>/dev/null",
    ),
    fact(
        "adminconf",
        false,
        false,
        "test -e /etc/kubernetes/admin.conf && echo present",
    ),
    fact(
        "listen",
        true,
        false,
        "ss -Hltn 2>/dev/null; ss -Hlun 2>/dev/null",
    ),
    fact(
        "cgroup",
        true,
        false,
        "stat -fc %T /sys/fs/cgroup 2>/dev/null",
    ),
    fact("selinux", true, false, "getenforce 2>/dev/null"),
    fact(
        "apparmor",
        false,
        false,
        "{ read -r v < /sys/module/apparmor/parameters/enabled; } 2>/dev/null && echo \"$v\"",
    ),
    fact(
        "ntp",
        true,
        false,
        "timedatectl show -p NTPSynchronized --value 2>/dev/null",
    ),
    fact(
        "timeservices",
        true,
        false,
        "systemctl is-active chronyd chrony ntpd ntp systemd-timesyncd 2>/dev/null | grep -c '^active$'",
    ),
    fact(
        "resolv",
        true,
        false,
        "grep -c '^nameserver' /etc/resolv.conf 2>/dev/null",
    ),
    fact("lspci", true, false, "lspci 2>/dev/null | grep -ci nvidia"),
    fact(
        "nvidiasmi",
        true,
        false,
        "command -v nvidia-smi >/dev/null && nvidia-smi 2>&1",
    ),
    fact(
        "nvidiactk",
        true,
        false,
        "command -v nvidia-ctk >/dev/null && nvidia-ctk --version 2>/dev/null | head -n 1",
    ),
];

/// A fact by name.
pub fn fact_named(name: &str) -> Option<&'static Fact> {
    FACTS.iter().find(|f| f.name == name)
}

/// The start of a facts script: its variables, local to the script.
pub fn script_head() -> String {
    format!("local {LOCALS}\n")
}

/// One section of a script: `@@NAME`, then what `snippet` prints.
pub fn section(name: &str, snippet: &str) -> String {
    format!("echo @@{name}\n{snippet}\n")
}

/// A script that reads these facts, each under `@@NAME`.
pub fn script<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = script_head();
    for n in names {
        if let Some(f) = fact_named(n) {
            s.push_str(&section(f.name, f.snippet));
        }
    }
    s
}

/// What a facts script printed, by section.
#[derive(Debug, Default, Clone)]
pub struct Sections(HashMap<String, String>);

impl Sections {
    pub fn parse(out: &str) -> Sections {
        let mut m: HashMap<String, String> = HashMap::new();
        let mut cur = String::new();
        for line in out.lines() {
            if let Some(name) = line.strip_prefix("@@") {
                cur = name.to_string();
                m.entry(cur.clone()).or_default();
            } else if !cur.is_empty() {
                let e = m.entry(cur.clone()).or_default();
                e.push_str(line);
                e.push('\n');
            }
        }
        Sections(m)
    }

    /// A section's text, trimmed; empty where the script did not read it.
    pub fn get(&self, name: &str) -> String {
        self.0
            .get(name)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// A section's text as printed, if the script read it.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn insert(&mut self, name: &str, text: &str) {
        self.0.insert(name.to_string(), text.to_string());
    }
}

/// What templates and `when:` see as `facts`, from the run's facts script.
pub fn template_facts(s: &Sections) -> Json {
    let os = os::parse_os_release(&s.get("os"));
    let mut m = serde_json::Map::new();
    m.insert(
        "os_id".into(),
        json!(if os.id.is_empty() { "unknown" } else { &os.id }),
    );
    m.insert("os_version".into(), json!(os.version_id));
    m.insert("os_like".into(), json!(os.like));
    m.insert("kernel".into(), json!(s.get("kernel")));
    m.insert("arch".into(), json!(s.get("arch")));
    m.insert("hostname".into(), json!(s.get("hostname")));
    m.insert(
        "swap_devices".into(),
        json!(s.get("swaps").lines().filter(|l| !l.is_empty()).count()),
    );
    m.insert("init".into(), json!(s.get("init")));
    m.insert("has_nft".into(), json!(s.get("nft") == "true"));
    if s.raw("firewalld").is_some() {
        m.insert("firewalld".into(), json!(s.get("firewalld")));
    }
    if s.raw("nft_gantry_table").is_some() {
        m.insert(
            "nft_gantry_table".into(),
            json!(s.get("nft_gantry_table") == "true"),
        );
    }
    m.insert("ipv4".into(), network::parse_ipv4(&s.get("ipv4")));
    Json::Object(m)
}

/// The facts script for a run: the cheap template facts, and each costly
/// one that a task of the run names as `facts.NAME`. A task that reads
/// `facts` whole, by a computed key, or through `hostvars` gets them all.
pub fn run_script(templates: &Templates, dag: &Dag) -> String {
    let mut names = BTreeSet::new();
    let mut seen = HashSet::new();
    for n in dag.graph.node_indices() {
        let t = &dag.graph[n].task;
        if seen.insert((&t.id, &t.source)) {
            names.extend(referenced(templates, t, true));
        }
    }
    run_script_for(&names)
}

/// The facts script for tasks that refer to `names` (nested paths).
pub fn run_script_for(names: &BTreeSet<String>) -> String {
    let all = names
        .iter()
        .any(|n| n == "facts" || n == "hostvars" || n.starts_with("hostvars."));
    let named = |f: &Fact| {
        names.contains(&format!("facts.{}", f.name))
            || names
                .iter()
                .any(|n| n.starts_with(&format!("facts.{}.", f.name)))
    };
    script(
        FACTS
            .iter()
            .filter(|f| f.template && (!f.costly || all || named(f)))
            .map(|f| f.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Playbook;

    /// The facts script runs in the host's shell itself: it reads
    /// /etc/os-release as sourcing it would, and leaves the shell as found.
    #[test]
    fn facts_leave_the_shell_as_found() {
        let all: BTreeSet<String> = ["facts".to_string()].into();
        let out =
            crate::remote::ssh::tests::shell_left_as_found(&run_script_for(&all), &[]).unwrap();
        let facts = template_facts(&Sections::parse(&out));
        let sourced = std::process::Command::new("sh")
            .arg("-c")
            .arg(". /etc/os-release; printf '%s|%s|%s' \"${ID:-unknown}\" \"$VERSION_ID\" \"${ID_LIKE:-$ID}\"")
            .output()
            .unwrap();
        assert_eq!(
            format!(
                "{}|{}|{}",
                facts["os_id"], facts["os_version"], facts["os_like"]
            )
            .replace('"', ""),
            String::from_utf8_lossy(&sourced.stdout)
        );
        assert!(
            facts["kernel"].as_str().is_some_and(|k| !k.is_empty()),
            "{facts}"
        );
        assert!(
            facts.get("swap_devices").is_some_and(|n| n.is_u64()),
            "{facts}"
        );
    }

    /// A costly fact is read where a task names it, and all of them where a
    /// task reads facts in a way that cannot be followed.
    #[test]
    fn costly_facts_are_read_only_where_a_task_names_them() {
        let t = Templates::new(&Playbook {
            path: Default::default(),
            plays: Vec::new(),
            roles: Default::default(),
        });
        let script = |srcs: &[&str]| {
            run_script_for(&srcs.iter().flat_map(|s| t.referenced_in(s, true)).collect())
        };
        let none = script(&["{{ inventory_hostname }}", "{{ facts.os_id }}"]);
        assert!(
            !none.contains("nft list") && !none.contains("ip -o") && !none.contains("systemctl"),
            "{none}"
        );
        let ipv4 = script(&["{% set a = facts.ipv4[host.ip] %}{{ a.iface }}"]);
        assert!(
            ipv4.contains("ip -o") && !ipv4.contains("nft list"),
            "{ipv4}"
        );
        let fw = script(&["{{ facts.firewalld != 'active' and not facts.nft_gantry_table }}"]);
        assert!(
            fw.contains("systemctl") && fw.contains("nft list") && !fw.contains("ip -o"),
            "{fw}"
        );
        for whole in [
            "{{ facts['ipv4'] }}",
            "{{ facts }}",
            "{{ hostvars[h].facts.ipv4 }}",
        ] {
            let all = script(&[whole]);
            assert!(
                all.contains("systemctl") && all.contains("nft list") && all.contains("ip -o"),
                "{whole}: {all}"
            );
        }
        // Facts that only `gantry check` reads are never in a run's script.
        assert!(!script(&["{{ facts }}"]).contains("lscpu"));
    }

    /// Every fact's snippet leaves the host's shell as found.
    #[test]
    fn every_snippet_leaves_the_shell_as_found() {
        let all = script(FACTS.iter().map(|f| f.name));
        crate::remote::ssh::tests::shell_left_as_found(&all, &[]).unwrap();
        let keyed = format!(
            "{}{}{}",
            script_head(),
            kernel::sysctl_snippet(["kernel.pid_max", "no.such.key"]).unwrap(),
            kernel::modules_snippet(["no_such_module"]).unwrap()
        );
        let out = crate::remote::ssh::tests::shell_left_as_found(&keyed, &[]).unwrap();
        let values = kernel::sysctl_values(&out, ["kernel.pid_max", "no.such.key"]);
        assert!(
            values[0]
                .1
                .as_deref()
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{out}"
        );
        assert_eq!(values[1].1, None);
    }
}
