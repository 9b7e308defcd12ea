use std::collections::HashMap;

use super::*;
use crate::facts::gpu::parse_nvidia_smi;
use crate::facts::hardware::{parse_lscpu, parse_meminfo};
use crate::facts::network::parse_listening;
use crate::facts::os::parse_os_release;
use host::etcd_fsync::p99;
use host::os::os_minimum;
use host::version_at_least;

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
        arch: Default::default(),
    }
}

fn wanted() -> Policy {
    Policy {
        profile: "minimum".into(),
        minimums_override: None,
        driver_min: "575".into(),
        clock_bound: 2.0,
        fsync_probe: true,
        sets_hostname: true,
    }
}

fn targets() -> Targets {
    Targets {
        sysctl: [("net.core.somaxconn".to_string(), "65536".to_string())].into(),
        modules: vec!["overlay".into(), "br_netfilter".into()],
        ports: vec![super::wanted::PortRow {
            proto: "tcp".into(),
            port: 10250,
            what: "kubelet".into(),
            control_planes_only: false,
        }],
        no_port_table: false,
    }
}

/// What the gather script printed, as sections.
fn sections(m: &HashMap<String, String>) -> Sections {
    let mut s = Sections::default();
    for (k, v) in m {
        s.insert(k, v);
    }
    s
}

/// `check::judge` with the fixtures' targets.
fn judge(host: &HostSpec, sec: &HashMap<String, String>, p: &Policy) -> Vec<Finding> {
    super::judge(host, &sections(sec), p, &targets())
}

/// What the gather script prints on a healthy 16-core, 64 GiB Ubuntu
/// 22.04 GPU host (real outputs where the repository has them).
fn healthy() -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("lscpu", "CPU(s):                16\n"),
        ("meminfo", "MemTotal:       65536000 kB\n"),
        (
            "os",
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
        ("sysctl", "/proc/sys/net/core/somaxconn:65536\n"),
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
    let rec = Policy {
        profile: "recommended".into(),
        ..wanted()
    };
    let f = judge(&gpu, &healthy(), &rec);
    assert_eq!(level(&f, "cpu").0, Level::Fail);
    assert_eq!(level(&f, "memory").0, Level::Fail);
    let f = judge(&worker, &with("lscpu", "CPU(s): 16\n"), &rec);
    assert_eq!(level(&f, "cpu").0, Level::Pass);
    // vars.check_minimums replaces the profile for every host.
    let small = Policy {
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
    let f = judge(
        &worker,
        &with("sysctl", "/proc/sys/net/core/somaxconn:4096\n"),
        &w,
    );
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
        &with("os", "ID=ubuntu\nVERSION_ID=\"18.04\"\n"),
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
    fleet::fleet(&mut r, &wanted());
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
    fleet::fleet(
        &mut r,
        &Policy {
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
        fleet::fleet(
            &mut r,
            &Policy {
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

/// The gather script runs in the host's shell itself: it leaves the shell as
/// found (the fsync probe, which writes under /var/lib, aside).
#[test]
fn gather_script_leaves_the_shell_as_found() {
    let p = Policy {
        fsync_probe: false,
        ..wanted()
    };
    let script =
        run::gather_script(&host("m1", &["control-plane", "gpu"]), &p, &targets()).unwrap();
    let out = crate::remote::ssh::tests::shell_left_as_found(&script, &[]).unwrap();
    let sec = Sections::parse(&out);
    assert!(!sec.get("hostname").is_empty(), "{out}");
    assert!(sec.raw("fsync").is_none(), "{out}");
    // The one key of the targets, read (this machine has it).
    assert!(
        sec.raw("sysctl")
            .is_some_and(|s| s.starts_with("/proc/sys/net/core/somaxconn:")),
        "{out}"
    );
}

/// Each check's facts exist, and the table lists every check once.
#[test]
fn the_registry_is_whole() {
    let mut names = std::collections::HashSet::new();
    for c in CHECKS {
        assert!(names.insert(c.name), "{} twice", c.name);
        for r in c.reads {
            assert!(
                crate::facts::fact_named(r).is_some() || ["sysctl", "modules", "fsync"].contains(r),
                "{} reads {r}",
                c.name
            );
        }
    }
    assert_eq!(markdown_table().lines().count(), CHECKS.len() + 2);
}
