//! Host facts: what the facts script reads on every host when it connects,
//! parsed into the `facts` templates and `when:` see. Each fact is a shell
//! snippet that uses builtins where it can (the host pays for every
//! process, on every run); facts that cost processes are read only in runs
//! where a task names them.

use std::collections::HashSet;

use serde_json::{Value as Json, json};

use crate::plan::graph::Dag;
use crate::plan::inputs::referenced;
use crate::plan::template::Templates;

/// Shell builtins reading /proc: each process spawned here is paid on every
/// host of every run. It runs in the host's shell itself (`Scope::Own`), so
/// /etc/os-release is read line by line, not sourced into it.
pub(crate) const FACTS_SCRIPT: &str = r#"local k v n id ver like
while IFS='=' read -r k v; do
  v=${v#[\"\']}; v=${v%[\"\']}
  case $k in ID) id=$v ;; VERSION_ID) ver=$v ;; ID_LIKE) like=$v ;; esac
done < /etc/os-release 2>/dev/null
echo "os_id=${id:-unknown}"
echo "os_version=$ver"
echo "os_like=${like:-$id}"
read -r v < /proc/sys/kernel/osrelease; echo "kernel=$v"
{ read -r v < /proc/sys/kernel/arch; } 2>/dev/null || v=$(uname -m); echo "arch=$v"
read -r v < /proc/sys/kernel/hostname; echo "hostname=$v"
n=0; { read -r k; while read -r k; do n=$((n + 1)); done; } < /proc/swaps 2>/dev/null; echo "swap_devices=$n"
read -r v < /proc/1/comm; echo "init=$v"
command -v nft >/dev/null && echo "has_nft=true" || echo "has_nft=false"
"#;

/// Facts that cost processes to read: each is read only in runs where some
/// task refers to it (see `facts_script`).
pub(crate) const COSTLY_FACTS: [(&str, &str); 3] = [
    (
        "firewalld",
        r#"if [ -d /run/systemd/system ]; then echo "firewalld=$(systemctl is-active firewalld 2>/dev/null)"; else echo "firewalld="; fi"#,
    ),
    (
        "nft_gantry_table",
        r#"nft list table inet gantry >/dev/null 2>&1 && echo "nft_gantry_table=true" || echo "nft_gantry_table=false""#,
    ),
    (
        "ipv4",
        r#"ip -o -4 addr show 2>/dev/null | while read -r _ iface _ cidr _; do echo "ipv4=$iface $cidr"; done"#,
    ),
];

/// The facts script for a run: the cheap facts, and each costly one that a
/// task of the run names as `facts.NAME`. A task that reads `facts` whole,
/// by a computed key, or through `hostvars` gets them all.
pub(crate) fn facts_script(templates: &Templates, dag: &Dag) -> String {
    let mut names = std::collections::BTreeSet::new();
    let mut seen = HashSet::new();
    for n in dag.graph.node_indices() {
        let t = &dag.graph[n].task;
        if seen.insert((&t.id, &t.source)) {
            names.extend(referenced(templates, t, true));
        }
    }
    facts_script_for(&names)
}

/// The facts script for tasks that refer to `names` (nested paths).
pub(crate) fn facts_script_for(names: &std::collections::BTreeSet<String>) -> String {
    let all = names
        .iter()
        .any(|n| n == "facts" || n == "hostvars" || n.starts_with("hostvars."));
    let mut script = FACTS_SCRIPT.to_string();
    for (name, part) in COSTLY_FACTS {
        if all
            || names.contains(&format!("facts.{name}"))
            || names
                .iter()
                .any(|n| n.starts_with(&format!("facts.{name}.")))
        {
            script.push_str(part);
            script.push('\n');
        }
    }
    script
}

/// The host facts every template and `when:` can use, from what the facts
/// script printed.
pub(crate) fn parse_facts(stdout: &str) -> Json {
    let mut m = serde_json::Map::new();
    // Each IPv4 address the host has -> its interface and prefix, so roles can
    // find the interface that carries the host's inventory address.
    let mut ipv4 = serde_json::Map::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("ipv4=") {
            if let Some((iface, cidr)) = rest.split_once(' ') {
                let (ip, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
                ipv4.insert(
                    ip.to_string(),
                    json!({"iface": iface, "prefix": prefix.parse::<u8>().unwrap_or(32)}),
                );
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = match v {
                "true" => Json::Bool(true),
                "false" => Json::Bool(false),
                _ => v
                    .parse::<i64>()
                    .map(Json::from)
                    .unwrap_or_else(|_| Json::String(v.to_string())),
            };
            m.insert(k.to_string(), v);
        }
    }
    m.insert("ipv4".into(), Json::Object(ipv4));
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Playbook;

    /// The facts script runs in the host's shell itself: it reads
    /// /etc/os-release as sourcing it would, and leaves the shell as found.
    #[test]
    fn facts_leave_the_shell_as_found() {
        let all: std::collections::BTreeSet<String> = ["facts".to_string()].into();
        let out =
            crate::remote::ssh::tests::shell_left_as_found(&facts_script_for(&all), &[]).unwrap();
        let facts = parse_facts(&out);
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
            facts.get("swap_devices").is_some_and(|n| n.is_i64()),
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
            facts_script_for(&srcs.iter().flat_map(|s| t.referenced_in(s, true)).collect())
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
    }
}
