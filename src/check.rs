//! `gantry check`: every requirement of the seeds, per host, before anything
//! changes. One read-only script per host gathers the facts, pure functions
//! parse them and judge each check (pass / warn / fail, measured, required,
//! fix), and a fleet stage compares hosts (unique names, clock offsets) and
//! tests ports host to host. The only write is the etcd-disk fsync probe's
//! temp file under /var/lib, removed when the probe ends.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value as Json;

use crate::inventory::{HostSpec, Inventory};
use crate::remote::script::quote;
use crate::remote::ssh::Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub measured: String,
    pub required: String,
    pub fix: String,
}

fn finding(
    check: &'static str,
    level: Level,
    measured: impl Into<String>,
    required: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        check,
        level,
        measured: measured.into(),
        required: required.into(),
        fix: fix.into(),
    }
}

/// The order checks are shown in.
pub const CHECKS: &[&str] = &[
    "cpu",
    "memory",
    "disk",
    "os",
    "arch",
    "hostname",
    "no-kubernetes",
    "ports-free",
    "swap",
    "cgroup",
    "selinux/apparmor",
    "time-sync",
    "clock-offset",
    "dns",
    "ports-reachable",
    "gpu",
    "gpu-driver",
    "gpu-toolkit",
    "etcd-fsync",
    "sysctl",
    "modules",
];

// ---------- parsers: real command output in, values out ----------

/// MemTotal from /proc/meminfo, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The logical CPU count from `lscpu`.
pub fn parse_lscpu(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("CPU(s):"))
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, Clone, PartialEq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty: String,
}

pub fn parse_os_release(text: &str) -> OsRelease {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    OsRelease {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        pretty: get("PRETTY_NAME"),
    }
}

/// The supported table (llmos-requirements.zh.md): the minimum version per
/// distribution id, or None.
pub fn os_minimum(id: &str) -> Option<&'static str> {
    Some(match id {
        "ubuntu" => "20.04",
        "rhel" | "rocky" | "almalinux" | "centos-stream" => "8.5",
        "sles" | "opensuse-leap" | "opensuse" => "15.3",
        "debian" => "11",
        "fedora" => "37",
        _ => return None,
    })
}

fn version_at_least(have: &str, want: &str) -> bool {
    let parse = |s: &str| {
        s.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (h, w) = (parse(have), parse(want));
    for i in 0..h.len().max(w.len()) {
        let (a, b) = (
            h.get(i).copied().unwrap_or(0),
            w.get(i).copied().unwrap_or(0),
        );
        if a != b {
            return a > b;
        }
    }
    true
}

/// Driver version and GPU count from plain `nvidia-smi` output.
pub fn parse_nvidia_smi(text: &str) -> Option<(String, usize)> {
    let header = text.lines().find(|l| l.contains("Driver Version:"))?;
    let version = header
        .split("Driver Version:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .to_string();
    // In the GPU table (before "Processes:"), each GPU's first row starts
    // with its index and name: "|   0  NVIDIA GeForce RTX 4090        Off |".
    // Its second row starts with fan or "N/A" ("|  0%   48C ..."), not a number.
    let gpus = text
        .lines()
        .take_while(|l| !l.contains("Processes:"))
        .filter_map(|l| l.strip_prefix('|')?.split('|').next())
        .filter(|cell| {
            let mut words = cell.split_whitespace();
            words.next().is_some_and(|w| w.parse::<u32>().is_ok()) && words.next().is_some()
        })
        .count();
    Some((version, gpus))
}

/// Local ports in LISTEN state from `ss -Hltn` / `ss -Hlun`.
pub fn parse_listening(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|addr| addr.rsplit(':').next())
        .filter_map(|p| p.parse().ok())
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// The 99th percentile of fsync write latencies in nanoseconds.
pub fn p99(mut samples: Vec<u64>) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let idx = ((samples.len() as f64) * 0.99).ceil() as usize;
    Some(samples[idx.saturating_sub(1).min(samples.len() - 1)])
}

// ---------- what one host reports ----------

/// Sections of the gather script's output, by name.
pub fn sections(out: &str) -> HashMap<String, String> {
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
    m
}

pub struct Wanted {
    /// `minimum` or `recommended`.
    pub profile: String,
    /// `vars.check_minimums`: replaces the profile's numbers for every host.
    pub minimums_override: Option<Minimums>,
    pub sysctl: BTreeMap<String, String>,
    pub modules: Vec<String>,
    /// (proto, first port, what) this host should have reachable, by role.
    pub ports_by_role: Vec<(Vec<String>, String, u16, String)>,
    pub driver_min: String,
    pub clock_bound: f64,
    pub fsync_probe: bool,
    /// The playbook names hosts itself (role hostname): a duplicate live
    /// name is then apply's to fix, a warning, not a failure.
    pub sets_hostname: bool,
}

impl Wanted {
    /// The hardware a host needs: the profile's row, raised for GPU nodes per
    /// the checklist (at least 16 cores; 256 GB recommended), unless the
    /// inventory sets its own numbers.
    pub fn minimums_for(&self, roles: &[String]) -> Minimums {
        if let Some(m) = self.minimums_override {
            return m;
        }
        let rec = self.profile == "recommended";
        let mut m = if rec {
            Minimums {
                cpus: 16,
                memory_gb: 32,
                disk_gb: 200,
            }
        } else {
            Minimums {
                cpus: 8,
                memory_gb: 16,
                disk_gb: 100,
            }
        };
        if roles.iter().any(|r| r == "gpu") {
            m.cpus = m.cpus.max(if rec { 32 } else { 16 });
            if rec {
                m.memory_gb = 256;
            }
        }
        m
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Minimums {
    pub cpus: u32,
    pub memory_gb: u64,
    pub disk_gb: u64,
}

fn gather_script(w: &Wanted, control_plane: bool) -> Result<String, String> {
    let mut s = String::from(
        r#"echo @@lscpu; lscpu 2>/dev/null
echo @@nproc; nproc 2>/dev/null
echo @@meminfo; cat /proc/meminfo
echo @@osrelease; cat /etc/os-release 2>/dev/null
echo @@arch; uname -m
echo @@hostname; hostname
echo @@rootdisk; df -B1 --output=size / 2>/dev/null | tail -n 1
echo @@kubelet; systemctl is-active kubelet 2>/dev/null
echo @@adminconf; test -e /etc/kubernetes/admin.conf && echo present
echo @@listen; ss -Hltn 2>/dev/null; ss -Hlun 2>/dev/null
echo @@swaps; tail -n +2 /proc/swaps 2>/dev/null
echo @@cgroup; stat -fc %T /sys/fs/cgroup 2>/dev/null
echo @@selinux; getenforce 2>/dev/null
echo @@apparmor; cat /sys/module/apparmor/parameters/enabled 2>/dev/null
echo @@ntp; timedatectl show -p NTPSynchronized --value 2>/dev/null
echo @@timeservices; systemctl is-active chronyd chrony ntpd ntp systemd-timesyncd 2>/dev/null | grep -c '^active$'
echo @@resolv; grep -c '^nameserver' /etc/resolv.conf 2>/dev/null
echo @@lspci; lspci 2>/dev/null | grep -ci nvidia
echo @@nvidiasmi; command -v nvidia-smi >/dev/null && nvidia-smi 2>&1
echo @@nvidiactk; command -v nvidia-ctk >/dev/null && nvidia-ctk --version 2>/dev/null | head -n 1
echo @@sysctl
"#,
    );
    for k in w.sysctl.keys() {
        let path = quote(&format!("/proc/sys/{}", k.replace('.', "/")))?;
        s.push_str(&format!(
            "printf '%s=%s\\n' {} \"$(cat {path} 2>/dev/null || echo '<absent>')\"\n",
            quote(k)?
        ));
    }
    s.push_str("echo @@modules\n");
    for m in &w.modules {
        s.push_str(&format!(
            "test -d {} && echo {}\n",
            quote(&format!("/sys/module/{}", m.replace('-', "_")))?,
            quote(m)?
        ));
    }
    if control_plane && w.fsync_probe {
        // Like fio's etcd test: small writes, each followed by fdatasync,
        // timed one by one; at most 200 writes or 3 seconds, then removed.
        s.push_str(
            r#"echo @@fsync
d=/var/lib; [ -d /var/lib/etcd ] && d=/var/lib/etcd
f=$(mktemp "$d/.gantry-fsync-probe.XXXXXX") && {
  end=$(( $(date +%s) + 3 )); i=0
  while [ $i -lt 200 ] && [ "$(date +%s)" -lt $end ]; do
    a=$(date +%s%N); dd if=/dev/zero of="$f" bs=2300 count=1 seek=$i oflag=dsync conv=notrunc 2>/dev/null; b=$(date +%s%N)
    echo $((b - a)); i=$((i + 1))
  done
  rm -f "$f"
}
"#,
        );
    }
    Ok(s)
}

/// A host's facts as the checks need them.
pub struct HostReport {
    pub host: String,
    pub findings: Vec<Finding>,
    pub live_hostname: String,
    /// Host clock minus controller clock, seconds (midpoint of the exec).
    pub clock_offset: Option<f64>,
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Judge one host from its gathered sections. Pure: tests feed it fixtures.
pub fn judge(host: &HostSpec, sec: &HashMap<String, String>, w: &Wanted) -> Vec<Finding> {
    use Level::*;
    let get = |k: &str| sec.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
    let mut out = Vec::new();
    let is = |r: &str| host.roles.iter().any(|x| x == r);
    let m = &w.minimums_for(&host.roles);

    let cpus = parse_lscpu(&get("lscpu"))
        .or_else(|| get("nproc").parse().ok())
        .unwrap_or(0);
    out.push(finding(
        "cpu",
        if cpus >= m.cpus { Pass } else { Fail },
        format!("{cpus} CPUs"),
        format!(">= {}", m.cpus),
        "a host with more cores, or lower vars.check_minimums.cpus if you accept the risk",
    ));
    let mem = parse_meminfo(&get("meminfo")).unwrap_or(0);
    // MemTotal excludes kernel-reserved memory: allow 5 % under the nominal size.
    let mem_ok = gib(mem) >= m.memory_gb as f64 * 0.95;
    out.push(finding(
        "memory",
        if mem_ok { Pass } else { Fail },
        format!("{:.1} GiB", gib(mem)),
        format!(">= {} GiB", m.memory_gb),
        "more memory",
    ));
    let disk: u64 = get("rootdisk").parse().unwrap_or(0);
    out.push(finding(
        "disk",
        if gib(disk) >= m.disk_gb as f64 * 0.95 {
            Pass
        } else {
            Fail
        },
        format!("{:.0} GiB system disk", gib(disk)),
        format!(">= {} GiB", m.disk_gb),
        "a larger system disk",
    ));

    let os = parse_os_release(&get("osrelease"));
    let os_level = match os_minimum(&os.id) {
        Some(min) if version_at_least(&os.version_id, min) => {
            (Pass, format!("{} {} or newer", os.id, min))
        }
        Some(min) => (Fail, format!("{} {} or newer", os.id, min)),
        None => (
            Fail,
            "Ubuntu >= 20.04, RHEL/Rocky >= 8.5, SLES/openSUSE >= 15.3, Debian >= 11, Fedora >= 37"
                .to_string(),
        ),
    };
    out.push(finding(
        "os",
        os_level.0,
        if os.pretty.is_empty() {
            format!("{} {}", os.id, os.version_id)
        } else {
            os.pretty.clone()
        },
        os_level.1,
        "a supported release",
    ));
    let arch = get("arch");
    out.push(finding(
        "arch",
        if arch == "x86_64" || arch == "aarch64" {
            Pass
        } else {
            Fail
        },
        arch.clone(),
        "x86_64 or aarch64",
        "a supported architecture",
    ));

    let kubelet = get("kubelet") == "active";
    let admin = get("adminconf") == "present";
    let listening = parse_listening(&get("listen"));
    let k8s_ports: Vec<u16> = [6443u16, 10250, 2379]
        .into_iter()
        .filter(|p| listening.contains(p))
        .collect();
    let existing: Vec<String> = [
        (kubelet, "kubelet is running".to_string()),
        (admin, "/etc/kubernetes/admin.conf exists".to_string()),
    ]
    .into_iter()
    .filter(|(b, _)| *b)
    .map(|(_, s)| s)
    .chain(
        k8s_ports
            .iter()
            .map(|p| format!("something listens on {p}")),
    )
    .collect();
    out.push(finding(
        "no-kubernetes",
        if existing.is_empty() { Pass } else { Fail },
        if existing.is_empty() {
            "none found".into()
        } else {
            existing.join("; ")
        },
        "no kubelet, nothing on 6443/10250/2379, no admin.conf",
        "run `kubeadm reset` and stop what holds the ports, or use a clean host",
    ));
    let needed: Vec<(String, u16, String)> = w
        .ports_by_role
        .iter()
        .filter(|(on, ..)| on.iter().any(|r| r == "all" || is(r)))
        .map(|(_, proto, port, what)| (proto.clone(), *port, what.clone()))
        .collect();
    let taken: Vec<String> = needed
        .iter()
        .filter(|(_, p, _)| listening.contains(p))
        .map(|(pr, p, what)| format!("{p}/{pr} ({what})"))
        .collect();
    out.push(finding(
        "ports-free",
        if taken.is_empty() { Pass } else { Fail },
        if taken.is_empty() {
            "all free".into()
        } else {
            format!("in use: {}", taken.join(", "))
        },
        "the port table's ports free",
        "stop the service that holds them",
    ));

    let swaps = get("swaps");
    out.push(finding(
        "swap",
        if swaps.is_empty() { Pass } else { Warn },
        if swaps.is_empty() {
            "off".into()
        } else {
            format!(
                "on: {}",
                swaps
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        "off",
        "apply's swap-off role turns it off",
    ));
    let cg = get("cgroup");
    out.push(finding(
        "cgroup",
        if cg == "cgroup2fs" { Pass } else { Warn },
        if cg == "cgroup2fs" {
            "v2".to_string()
        } else {
            format!("v1 ({cg})")
        },
        "v2 (Kubernetes 1.25+ recommends it)",
        "boot with systemd.unified_cgroup_hierarchy=1",
    ));
    let se = get("selinux");
    let aa = get("apparmor");
    let se_level = if se == "Enforcing" { Warn } else { Pass };
    out.push(finding(
        "selinux/apparmor",
        se_level,
        format!(
            "SELinux {}, AppArmor {}",
            if se.is_empty() { "absent" } else { &se },
            if aa == "Y" { "enabled" } else { "disabled" }
        ),
        "reported; SELinux enforcing needs policies for the runtime",
        "setenforce 0 or install container-selinux",
    ));
    let synced = get("ntp") == "yes" || get("timeservices").parse::<u32>().unwrap_or(0) > 0;
    out.push(finding(
        "time-sync",
        if synced { Pass } else { Warn },
        if synced {
            "active"
        } else {
            "no NTP client active"
        },
        "an NTP client (chrony, ntpd, timesyncd) active",
        "enable chronyd with the site's NTP server",
    ));
    let ns: u32 = get("resolv").parse().unwrap_or(0);
    out.push(finding(
        "dns",
        if ns > 0 { Pass } else { Warn },
        format!("{ns} nameserver(s)"),
        ">= 1 nameserver in /etc/resolv.conf",
        "add the site's DNS server to /etc/resolv.conf",
    ));

    if is("gpu") {
        let smi = get("nvidiasmi");
        let parsed = parse_nvidia_smi(&smi);
        let pci: u32 = get("lspci").parse().unwrap_or(0);
        let present = pci > 0 || parsed.as_ref().is_some_and(|(_, n)| *n > 0);
        out.push(finding(
            "gpu",
            if present { Pass } else { Fail },
            match &parsed {
                Some((_, n)) => format!("{n} NVIDIA GPU(s)"),
                None if pci > 0 => format!("{pci} NVIDIA PCI device(s)"),
                None => "no NVIDIA GPU found".into(),
            },
            "an NVIDIA GPU",
            "check the node's role, or the card's seating and BIOS",
        ));
        let (level, measured) = match &parsed {
            Some((v, _)) if version_at_least(v, &w.driver_min) => (Pass, format!("driver {v}")),
            Some((v, _)) => (Fail, format!("driver {v}")),
            None if smi.is_empty() => (Fail, "nvidia-smi not found: no driver".to_string()),
            None => (
                Fail,
                format!("nvidia-smi failed: {}", smi.lines().next().unwrap_or("")),
            ),
        };
        out.push(finding(
            "gpu-driver",
            level,
            measured,
            format!(">= {}", w.driver_min),
            format!("install NVIDIA driver {} or newer", w.driver_min),
        ));
        let ctk = get("nvidiactk");
        out.push(finding(
            "gpu-toolkit",
            if ctk.is_empty() { Warn } else { Pass },
            if ctk.is_empty() {
                "nvidia-ctk not found".to_string()
            } else {
                ctk
            },
            "NVIDIA container toolkit",
            "installed by the NVIDIA runtime role (or preinstall nvidia-container-toolkit)",
        ));
    }

    if let Some(fs) = sec.get("fsync") {
        let samples: Vec<u64> = fs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        let n = samples.len();
        match p99(samples) {
            Some(p) => {
                let ms = p as f64 / 1e6;
                out.push(finding(
                    "etcd-fsync",
                    if ms < 10.0 { Pass } else { Warn },
                    format!("p99 {ms:.1} ms over {n} writes (includes process start-up per write)"),
                    "p99 < 10 ms",
                    "a dedicated NVMe/SSD for /var/lib/etcd",
                ));
            }
            None => out.push(finding(
                "etcd-fsync",
                Warn,
                "probe could not write under /var/lib",
                "p99 < 10 ms",
                "check /var/lib is writable",
            )),
        }
    }

    let live: BTreeMap<String, String> = get("sysctl")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    let differ: Vec<String> = w
        .sysctl
        .iter()
        .filter(|(k, v)| live.get(*k).map(String::as_str) != Some(v.as_str()))
        .map(|(k, v)| {
            format!(
                "{k}: {} -> {v}",
                live.get(k).map(String::as_str).unwrap_or("<absent>")
            )
        })
        .collect();
    out.push(finding(
        "sysctl",
        if differ.is_empty() { Pass } else { Warn },
        if differ.is_empty() {
            format!("{} keys as wanted", w.sysctl.len())
        } else {
            format!("apply would set {}: {}", differ.len(), differ.join(", "))
        },
        "the tuning table",
        "gantry apply (role sysctl)",
    ));
    let loaded: Vec<String> = get("modules").lines().map(str::to_string).collect();
    let missing: Vec<&String> = w.modules.iter().filter(|m| !loaded.contains(m)).collect();
    out.push(finding(
        "modules",
        if missing.is_empty() { Pass } else { Warn },
        if missing.is_empty() {
            "all loaded".to_string()
        } else {
            format!(
                "apply would load: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        w.modules.join(", "),
        "gantry apply (role kernel-modules)",
    ));
    out
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Gather and judge one host.
pub async fn host_report(conn: &Conn, host: &HostSpec, w: &Wanted) -> Result<HostReport, String> {
    let cp = host
        .roles
        .iter()
        .any(|r| r == crate::inventory::ROLE_CONTROL_PLANE);
    let script = gather_script(w, cp)?;
    let out = conn
        .run(&script, &[], Some(Duration::from_secs(60)))
        .await
        .map_err(|e| e.message)?;
    let sec = sections(&out.stdout);
    // The clock alone, in its own short exec: the host read it between t0 and
    // t1, so the midpoint is the best guess, off by at most half the round trip.
    let t0 = now_secs();
    let clock = conn
        .run("date +%s.%N", &[], Some(Duration::from_secs(10)))
        .await
        .map_err(|e| e.message)?;
    let t1 = now_secs();
    let clock_offset = clock
        .stdout
        .trim()
        .parse::<f64>()
        .ok()
        .map(|h| h - (t0 + t1) / 2.0);
    Ok(HostReport {
        host: host.name.clone(),
        findings: judge(host, &sec, w),
        live_hostname: sec
            .get("hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        clock_offset,
    })
}

/// TCP reachability from one host to the others' table ports: a refused
/// connection still proves the path is open; a timeout means a firewall
/// drops it. UDP (8472) cannot be told apart this way without a listener,
/// so it is not tested here.
pub async fn reachability(
    conn: &Conn,
    targets: &[(String, String, u16, String)],
) -> Result<Vec<String>, String> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut s = String::new();
    for (i, (_, ip, port, _)) in targets.iter().enumerate() {
        s.push_str(&format!(
            "( if timeout 2 bash -c {} 2>/dev/null; then echo {i} open; else r=$?; [ $r -eq 124 ] && echo {i} blocked || echo {i} open; fi ) &\n",
            quote(&format!("</dev/tcp/{ip}/{port}"))?
        ));
    }
    s.push_str("wait\n");
    let out = conn
        .run(&s, &[], Some(Duration::from_secs(30)))
        .await
        .map_err(|e| e.message)?;
    let mut blocked = Vec::new();
    for line in out.stdout.lines() {
        if let Some((i, "blocked")) = line.split_once(' ')
            && let Some((host, ip, port, what)) =
                i.parse::<usize>().ok().and_then(|i| targets.get(i))
        {
            blocked.push(format!("{host} ({ip}) {port}/tcp {what}"));
        }
    }
    blocked.sort();
    Ok(blocked)
}

/// The fleet stage: unique live hostnames, clock offsets within the bound.
pub fn fleet(reports: &mut [HostReport], w: &Wanted) {
    let bound = w.clock_bound;
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for r in reports.iter() {
        by_name
            .entry(r.live_hostname.clone())
            .or_default()
            .push(r.host.clone());
    }
    let offsets: Vec<f64> = reports.iter().filter_map(|r| r.clock_offset).collect();
    let median = {
        let mut o = offsets.clone();
        o.sort_by(|a, b| a.partial_cmp(b).unwrap());
        o.get(o.len() / 2).copied().unwrap_or(0.0)
    };
    for r in reports.iter_mut() {
        let same = &by_name[&r.live_hostname];
        let dup = same.len() > 1;
        r.findings.push(finding(
            "hostname",
            match (dup, w.sets_hostname) {
                (false, _) => Level::Pass,
                (true, true) => Level::Warn,
                (true, false) => Level::Fail,
            },
            if dup { format!("{:?}, also reported by {}", r.live_hostname, same.iter().filter(|h| **h != r.host).cloned().collect::<Vec<_>>().join(", ")) } else { format!("{:?}", r.live_hostname) },
            "unique across the fleet",
            if w.sets_hostname { "apply names each host from the inventory (role hostname)" } else { "give each host a unique name (hostnamectl set-hostname), or run a playbook with the hostname role" },
        ));
        if let Some(o) = r.clock_offset {
            let d = o - median;
            r.findings.push(finding(
                "clock-offset",
                if d.abs() <= bound {
                    Level::Pass
                } else {
                    Level::Fail
                },
                format!("{d:+.2} s from the fleet's median"),
                format!("within ±{bound} s"),
                "sync the clock (chronyc makestep) and enable NTP",
            ));
        }
    }
}

/// What the inventory and roles want, for the sysctl/modules/ports checks.
pub fn wanted(inv: &Inventory, pb: &crate::playbook::Playbook, fsync_probe: bool) -> Wanted {
    let var = |k: &str| -> Option<Json> {
        inv.vars
            .get(k)
            .cloned()
            .or_else(|| pb.roles.values().find_map(|r| r.defaults.get(k).cloned()))
    };
    let mut sysctl: BTreeMap<String, String> = BTreeMap::new();
    for src in [var("sysctl_table"), var("sysctl")].into_iter().flatten() {
        if let Json::Object(m) = src {
            for (k, v) in m {
                sysctl.insert(
                    k,
                    match v {
                        Json::String(s) => s,
                        o => o.to_string(),
                    },
                );
            }
        }
    }
    let modules = var("kernel_modules")
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let ports_by_role = var("firewall_rules")
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let on = r
                .get("on")?
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            let first: u16 = r
                .get("ports")?
                .as_str()?
                .split(['-', ','])
                .next()?
                .trim()
                .parse()
                .ok()?;
            Some((
                on,
                r.get("proto")?.as_str()?.to_string(),
                first,
                r.get("what")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect();
    let profile = inv
        .vars
        .get("check_profile")
        .and_then(Json::as_str)
        .unwrap_or("minimum")
        .to_string();
    let minimums_override = inv.vars.get("check_minimums").map(|o| {
        let n = |k: &str, d: u64| o.get(k).and_then(Json::as_u64).unwrap_or(d);
        Minimums {
            cpus: n("cpus", 8) as u32,
            memory_gb: n("memory_gb", 16),
            disk_gb: n("disk_gb", 100),
        }
    });
    Wanted {
        profile,
        minimums_override,
        sysctl,
        modules,
        ports_by_role,
        driver_min: inv
            .vars
            .get("nvidia_driver_min")
            .and_then(Json::as_str)
            .unwrap_or("575")
            .to_string(),
        clock_bound: inv
            .vars
            .get("clock_offset_max_s")
            .and_then(Json::as_f64)
            .unwrap_or(2.0),
        fsync_probe,
        sets_hostname: pb.roles.contains_key("hostname"),
    }
}

pub struct RunOptions {
    pub fsync_probe: bool,
    pub reachability: bool,
    pub policy: crate::remote::ssh::HostKeyPolicy,
    pub forks: usize,
    /// Hand each checked host's connection back (to `Checked::conns`) for
    /// the apply that follows, rather than closing it: one login per host.
    pub keep: bool,
}

/// Each selected host's report, or why it could not be checked, and the
/// connections kept open (`RunOptions::keep`), by host index.
pub struct Checked {
    pub results: Vec<Result<HostReport, (String, String)>>,
    pub conns: HashMap<usize, crate::remote::ssh::Conn>,
}

pub async fn run(
    inv: std::sync::Arc<Inventory>,
    w: std::sync::Arc<Wanted>,
    selected: &[usize],
    o: &RunOptions,
) -> Checked {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(o.forks.max(1)));
    let mut tasks = Vec::new();
    for &h in selected {
        let (inv, w, sem) = (inv.clone(), w.clone(), sem.clone());
        let (policy, reach, keep) = (o.policy, o.reachability, o.keep);
        let all: Vec<usize> = selected.to_vec();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("open");
            let host = &inv.hosts[h];
            let conn = crate::remote::ssh::connect(&host.address, &inv.ssh_for(host), policy).await.map_err(|e| (host.name.clone(), e.message))?;
            let mut rep = host_report(&conn, host, &w).await.map_err(|e| (host.name.clone(), e))?;
            if reach {
                // Every other host's TCP table ports, as its roles need them.
                let targets: Vec<(String, String, u16, String)> = all
                    .iter()
                    .filter(|&&g| g != h)
                    .flat_map(|&g| {
                        let t = &inv.hosts[g];
                        let ip = t.ipv4().unwrap_or_else(|| t.address.clone());
                        w.ports_by_role
                            .iter()
                            .filter(|(on, proto, ..)| proto == "tcp" && on.iter().any(|r| r == "all" || t.roles.contains(r)))
                            .map(move |(_, _, port, what)| (t.name.clone(), ip.clone(), *port, what.clone()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let n = targets.len();
                match reachability(&conn, &targets).await {
                    Ok(blocked) if blocked.is_empty() => rep.findings.push(finding("ports-reachable", Level::Pass, format!("{n} TCP port(s) on the other hosts reachable"), "every table port reachable host to host (UDP 8472 is not tested)", "")),
                    Ok(blocked) => rep.findings.push(finding("ports-reachable", Level::Fail, format!("blocked: {}", blocked.join(", ")), "every table port reachable host to host", "open them between the cluster's hosts (gantry apply, role firewall, does it for its own table)")),
                    Err(e) => rep.findings.push(finding("ports-reachable", Level::Warn, format!("not tested: {e}"), "", "")),
                }
            }
            if keep {
                return Ok((rep, Some(conn)));
            }
            conn.close().await;
            Ok((rep, None))
        }));
    }
    let mut checked = Checked {
        results: Vec::new(),
        conns: HashMap::new(),
    };
    for (t, &h) in tasks.into_iter().zip(selected) {
        checked.results.push(match t.await {
            Ok(Ok((rep, conn))) => {
                if let Some(c) = conn {
                    checked.conns.insert(h, c);
                }
                Ok(rep)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(("?".into(), e.to_string())),
        });
    }
    checked
}

fn mark(l: Level) -> console::StyledObject<&'static str> {
    match l {
        Level::Pass => console::style("ok").green(),
        Level::Warn => console::style("WARN").yellow(),
        Level::Fail => console::style("FAIL").red().bold(),
    }
}

/// Checks as rows, hosts as columns, then every non-pass finding in full.
pub fn print_table(reports: &[HostReport], unreachable: &[(String, String)]) {
    let width = reports
        .iter()
        .map(|r| r.host.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    print!("{:<18}", "CHECK");
    for r in reports {
        print!(" {:>width$}", r.host);
    }
    println!();
    for c in CHECKS {
        if !reports
            .iter()
            .any(|r| r.findings.iter().any(|f| f.check == *c))
        {
            continue;
        }
        print!("{c:<18}");
        for r in reports {
            match r.findings.iter().find(|f| f.check == *c) {
                Some(f) => print!(" {:>width$}", mark(f.level).to_string()),
                None => print!(" {:>width$}", "-"),
            }
        }
        println!();
    }
    for r in reports {
        for f in r.findings.iter().filter(|f| f.level != Level::Pass) {
            println!(
                "{} {} {}: {} (required: {}); fix: {}",
                mark(f.level),
                r.host,
                f.check,
                f.measured,
                f.required,
                f.fix
            );
        }
    }
    for (h, why) in unreachable {
        println!("{} {h}: not checked, unreachable: {why}", mark(Level::Fail));
    }
}

pub fn json(reports: &[HostReport], unreachable: &[(String, String)]) -> Json {
    serde_json::json!({
        "hosts": reports.iter().map(|r| serde_json::json!({"host": r.host, "findings": r.findings})).collect::<Vec<_>>(),
        "unreachable": unreachable.iter().map(|(h, w)| serde_json::json!({"host": h, "reason": w})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/outputs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn host(name: &str, roles: &[&str]) -> HostSpec {
        HostSpec {
            name: name.into(),
            address: "10.0.0.1".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ssh: None,
            vars: Default::default(),
        }
    }

    fn wanted() -> Wanted {
        Wanted {
            profile: "minimum".into(),
            minimums_override: None,
            sysctl: [("net.core.somaxconn".to_string(), "65536".to_string())].into(),
            modules: vec!["overlay".into(), "br_netfilter".into()],
            ports_by_role: vec![(vec!["all".into()], "tcp".into(), 10250, "kubelet".into())],
            driver_min: "575".into(),
            clock_bound: 2.0,
            fsync_probe: true,
            sets_hostname: true,
        }
    }

    /// What the gather script prints on a healthy 16-core, 64 GiB Ubuntu
    /// 22.04 GPU host (real outputs where the repository has them).
    fn healthy() -> HashMap<String, String> {
        let mut m: HashMap<String, String> = [
            ("lscpu", "CPU(s):                16\n"),
            ("meminfo", "MemTotal:       65536000 kB\n"),
            (
                "osrelease",
                "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n",
            ),
            ("arch", "x86_64\n"),
            ("hostname", "gpu1\n"),
            ("rootdisk", "536870912000\n"),
            ("kubelet", "inactive\n"),
            ("adminconf", ""),
            ("listen", "LISTEN 0 4096 0.0.0.0:22 0.0.0.0:*\n"),
            ("swaps", ""),
            ("cgroup", "cgroup2fs\n"),
            ("selinux", ""),
            ("apparmor", "Y\n"),
            ("ntp", "yes\n"),
            ("timeservices", "1\n"),
            ("resolv", "2\n"),
            ("lspci", "1\n"),
            ("nvidiactk", "NVIDIA Container Toolkit CLI version 1.18.1\n"),
            ("sysctl", "net.core.somaxconn=65536\n"),
            ("modules", "overlay\nbr_netfilter\n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        m.insert("nvidiasmi".into(), fixture("nvidia-smi-575.64.03.txt"));
        m
    }

    fn level(f: &[Finding], check: &str) -> (Level, String) {
        let x = f
            .iter()
            .find(|x| x.check == check)
            .unwrap_or_else(|| panic!("no {check} finding in {f:?}"));
        (x.level, x.measured.clone())
    }

    #[test]
    fn a_healthy_gpu_host_passes_every_check() {
        let f = judge(&host("gpu1", &["worker", "gpu"]), &healthy(), &wanted());
        let names: Vec<&str> = f.iter().map(|x| x.check).collect();
        assert_eq!(
            names,
            [
                "cpu",
                "memory",
                "disk",
                "os",
                "arch",
                "no-kubernetes",
                "ports-free",
                "swap",
                "cgroup",
                "selinux/apparmor",
                "time-sync",
                "dns",
                "gpu",
                "gpu-driver",
                "gpu-toolkit",
                "sysctl",
                "modules"
            ]
        );
        for x in &f {
            assert_eq!(x.level, Level::Pass, "{x:?}");
        }
        assert_eq!(level(&f, "gpu-driver").1, "driver 575.64.03");
        assert_eq!(level(&f, "memory").1, "62.5 GiB");
    }

    #[test]
    fn judging_thresholds() {
        let w = wanted();
        let gpu = host("gpu1", &["worker", "gpu"]);
        let worker = host("w1", &["worker"]);
        let with = |k: &str, v: &str| {
            let mut m = healthy();
            m.insert(k.into(), v.into());
            m
        };
        // Swap on is a warning; apply's swap-off role turns it off.
        let f = judge(&worker, &with("swaps", "/swap.img file 4194300 0 -2\n"), &w);
        assert_eq!(level(&f, "swap"), (Level::Warn, "on: /swap.img".into()));
        // A GPU node needs 16 cores (the checklist), a plain worker 8.
        let f = judge(&gpu, &with("lscpu", "CPU(s): 15\n"), &w);
        assert_eq!(level(&f, "cpu"), (Level::Fail, "15 CPUs".into()));
        let f = judge(&worker, &with("lscpu", "CPU(s): 8\n"), &w);
        assert_eq!(level(&f, "cpu").0, Level::Pass);
        let f = judge(&worker, &with("lscpu", "CPU(s): 7\n"), &w);
        assert_eq!(level(&f, "cpu").0, Level::Fail);
        // Memory: 5 % under the nominal size passes (kernel-reserved), more fails.
        let f = judge(&worker, &with("meminfo", "MemTotal: 15938356 kB\n"), &w);
        assert_eq!(level(&f, "memory").0, Level::Pass);
        let f = judge(&worker, &with("meminfo", "MemTotal: 15938355 kB\n"), &w);
        assert_eq!(level(&f, "memory").0, Level::Fail);
        // The recommended profile raises the bar: 32 cores and 256 GiB on GPU nodes.
        let rec = Wanted {
            profile: "recommended".into(),
            ..wanted()
        };
        let f = judge(&gpu, &healthy(), &rec);
        assert_eq!(level(&f, "cpu").0, Level::Fail);
        assert_eq!(level(&f, "memory").0, Level::Fail);
        let f = judge(&worker, &with("lscpu", "CPU(s): 16\n"), &rec);
        assert_eq!(level(&f, "cpu").0, Level::Pass);
        // vars.check_minimums replaces the profile for every host.
        let small = Wanted {
            minimums_override: Some(Minimums {
                cpus: 1,
                memory_gb: 1,
                disk_gb: 1,
            }),
            ..rec
        };
        let f = judge(&gpu, &with("lscpu", "CPU(s): 2\n"), &small);
        assert_eq!(level(&f, "cpu").0, Level::Pass);
        // An old driver fails; a host without the driver says so.
        let f = judge(
            &gpu,
            &with("nvidiasmi", &fixture("nvidia-smi-550.144.03.txt")),
            &w,
        );
        assert_eq!(
            level(&f, "gpu-driver"),
            (Level::Fail, "driver 550.144.03".into())
        );
        let f = judge(&gpu, &with("nvidiasmi", ""), &w);
        assert_eq!(
            level(&f, "gpu-driver"),
            (Level::Fail, "nvidia-smi not found: no driver".into())
        );
        // No GPU checks on a host without the gpu role.
        assert!(
            judge(&worker, &healthy(), &w)
                .iter()
                .all(|x| !x.check.starts_with("gpu"))
        );
        // Kubernetes already there, and a port of the table taken.
        let f = judge(
            &worker,
            &with("listen", "LISTEN 0 4096 0.0.0.0:10250 0.0.0.0:*\n"),
            &w,
        );
        assert_eq!(
            level(&f, "no-kubernetes"),
            (Level::Fail, "something listens on 10250".into())
        );
        assert_eq!(
            level(&f, "ports-free"),
            (Level::Fail, "in use: 10250/tcp (kubelet)".into())
        );
        // etcd's disk: p99 under 10 ms passes, 10 ms warns.
        let fsync = |ms: u64| {
            let mut m = healthy();
            m.insert("fsync".into(), format!("{}\n", ms * 1_000_000).repeat(100));
            judge(&host("m1", &["control-plane"]), &m, &w)
        };
        assert_eq!(level(&fsync(9), "etcd-fsync").0, Level::Pass);
        assert_eq!(level(&fsync(10), "etcd-fsync").0, Level::Warn);
        // sysctl and modules that apply would change are warnings, named.
        let f = judge(&worker, &with("sysctl", "net.core.somaxconn=4096\n"), &w);
        assert_eq!(
            level(&f, "sysctl"),
            (
                Level::Warn,
                "apply would set 1: net.core.somaxconn: 4096 -> 65536".into()
            )
        );
        let f = judge(&worker, &with("modules", "overlay\n"), &w);
        assert_eq!(
            level(&f, "modules"),
            (Level::Warn, "apply would load: br_netfilter".into())
        );
        // SELinux enforcing is a warning; an unsupported OS fails.
        let f = judge(&worker, &with("selinux", "Enforcing\n"), &w);
        assert_eq!(level(&f, "selinux/apparmor").0, Level::Warn);
        let f = judge(
            &worker,
            &with("osrelease", "ID=ubuntu\nVERSION_ID=\"18.04\"\n"),
            &w,
        );
        assert_eq!(level(&f, "os").0, Level::Fail);
    }

    fn report(host: &str, live: &str, offset: Option<f64>) -> HostReport {
        HostReport {
            host: host.into(),
            findings: Vec::new(),
            live_hostname: live.into(),
            clock_offset: offset,
        }
    }

    #[test]
    fn fleet_compares_clocks_with_the_median_and_names_with_each_other() {
        let mut r = vec![
            report("a", "a", Some(0.0)),
            report("b", "b", Some(0.1)),
            report("c", "c", Some(2.5)),
            report("d", "d", Some(-1.8)),
        ];
        fleet(&mut r, &wanted());
        // The median is 0.1 (the upper middle of four): c is 2.4 s off, d 1.9 s.
        let clock: Vec<(Level, String)> = r
            .iter()
            .map(|x| level(&x.findings, "clock-offset"))
            .collect();
        assert_eq!(
            clock,
            [
                (Level::Pass, "-0.10 s from the fleet's median".into()),
                (Level::Pass, "+0.00 s from the fleet's median".into()),
                (Level::Fail, "+2.40 s from the fleet's median".into()),
                (Level::Pass, "-1.90 s from the fleet's median".into()),
            ]
        );
        assert!(
            r.iter()
                .all(|x| level(&x.findings, "hostname").0 == Level::Pass)
        );
        // The bound is the inventory's.
        let mut r = vec![
            report("a", "a", Some(0.0)),
            report("b", "b", Some(0.6)),
            report("c", "c", Some(0.0)),
        ];
        fleet(
            &mut r,
            &Wanted {
                clock_bound: 0.5,
                ..wanted()
            },
        );
        assert_eq!(level(&r[1].findings, "clock-offset").0, Level::Fail);
        // A duplicate live name fails, or warns when apply names the hosts.
        for (sets, lvl) in [(false, Level::Fail), (true, Level::Warn)] {
            let mut r = vec![
                report("a", "x", None),
                report("b", "x", None),
                report("c", "c", None),
            ];
            fleet(
                &mut r,
                &Wanted {
                    sets_hostname: sets,
                    ..wanted()
                },
            );
            assert_eq!(
                level(&r[0].findings, "hostname"),
                (lvl, "\"x\", also reported by b".into())
            );
            assert_eq!(level(&r[2].findings, "hostname").0, Level::Pass);
            assert!(
                r.iter()
                    .all(|x| x.findings.iter().all(|f| f.check != "clock-offset"))
            );
        }
    }

    #[test]
    fn meminfo_and_lscpu_from_this_machine() {
        let mem = parse_meminfo(&fixture("meminfo.txt")).unwrap();
        assert_eq!(mem, 24683656 * 1024);
        assert_eq!(
            parse_meminfo("MemTotal:       16318580 kB\n"),
            Some(16318580 * 1024)
        );
        assert_eq!(parse_lscpu(&fixture("lscpu.txt")), Some(2));
    }

    #[test]
    fn os_release_of_every_distribution_in_the_table() {
        let text = fixture("os-release.txt");
        let mut n = 0;
        for block in text.split("=== ").skip(1) {
            let (head, body) = block.split_once('\n').unwrap();
            let supported = head.ends_with(" supported");
            let os = parse_os_release(body);
            let ok = os_minimum(&os.id).is_some_and(|m| version_at_least(&os.version_id, m));
            assert_eq!(ok, supported, "{head}: {os:?}");
            n += 1;
        }
        assert_eq!(n, 12);
    }

    #[test]
    fn nvidia_smi_real_outputs() {
        // Each fixture is what the tool printed and nothing else: an optional
        // timestamp line, then box-drawn tables (the H200 one was captured
        // from a real machine, the others from the seeds).
        for f in [
            "nvidia-smi-575.64.03.txt",
            "nvidia-smi-550.144.03.txt",
            "nvidia-smi-580.159.04.txt",
        ] {
            let text = fixture(f);
            let mut lines = text.lines().peekable();
            if lines.peek().is_some_and(|l| !l.starts_with('+')) {
                lines.next();
            }
            for l in lines {
                assert!(
                    l.trim().is_empty() || l.starts_with('+') || l.starts_with('|'),
                    "{f}: not nvidia-smi output: {l:?}"
                );
            }
            assert!(text.ends_with("-+\n"), "{f}");
        }
        assert_eq!(
            parse_nvidia_smi(&fixture("nvidia-smi-580.159.04.txt")),
            Some(("580.159.04".into(), 1))
        );
        assert_eq!(
            parse_nvidia_smi(&fixture("nvidia-smi-575.64.03.txt")),
            Some(("575.64.03".into(), 1))
        );
        assert_eq!(
            parse_nvidia_smi(&fixture("nvidia-smi-550.144.03.txt")),
            Some(("550.144.03".into(), 1))
        );
        assert!(version_at_least("575.64.03", "575") && !version_at_least("550.144.03", "575"));
        assert_eq!(
            parse_nvidia_smi(
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
            ),
            None
        );
    }

    #[test]
    fn listening_ports_from_ss() {
        let ss = "LISTEN 0      4096         0.0.0.0:22        0.0.0.0:*\nLISTEN 0      128             [::]:6443           [::]:*\nUNCONN 0      0            0.0.0.0:8472      0.0.0.0:*\n";
        assert_eq!(parse_listening(ss), vec![22, 6443, 8472]);
    }

    #[test]
    fn p99_of_latencies() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(p99(v.clone()), Some(99_000_000));
        v.push(500_000_000);
        assert_eq!(p99(v), Some(100_000_000));
    }
}
