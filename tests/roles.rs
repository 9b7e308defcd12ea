//! The node-prep templates rendered with the seeds' full tables, offline.
//! Global kernel keys (vm.*, fs.*) are tested here, never in the lab.

use std::path::Path;

use gantry::inventory::Inventory;
use gantry::loader;
use gantry::plan::{render_template, render_template_with};
use gantry::playbook::Playbook;

fn load(inv: &str) -> (Inventory, Playbook) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pb =
        loader::load_playbook(&root.join("playbooks/cluster.yaml"), &[root.join("roles")]).unwrap();
    let (inv, _) = loader::load_inventory(&root.join(inv), |i| pb.known_host_roles(i)).unwrap();
    (inv, pb)
}

fn facts() -> serde_json::Value {
    serde_json::json!({"firewalld": "inactive", "init": "systemd", "swap_devices": 0})
}

#[test]
fn sysctl_file_has_the_checklist_table_with_inventory_overrides() {
    let (inv, pb) = load("inventory/single-master.yaml");
    let out = render_template(&inv, &pb, "master1", "sysctl", "sysctl.conf.j2", facts()).unwrap();
    assert_eq!(
        out,
        "# Managed by gantry (role sysctl). Local changes are overwritten.
fs.file-max = 1000000
fs.inotify.max_user_watches = 524288
net.bridge.bridge-nf-call-ip6tables = 1
net.bridge.bridge-nf-call-iptables = 1
net.core.somaxconn = 65536
net.ipv4.ip_forward = 1
net.ipv4.tcp_fin_timeout = 30
net.ipv4.tcp_max_syn_backlog = 65536
net.ipv4.tcp_tw_reuse = 1
net.netfilter.nf_conntrack_max = 2097152
vm.overcommit_memory = 1
vm.swappiness = 0
"
    );
}

#[test]
fn firewall_rules_follow_the_port_table_per_role() {
    let (inv, pb) = load("inventory/ha-3-masters.yaml");
    let master =
        render_template(&inv, &pb, "master2", "firewall", "firewall.nft.j2", facts()).unwrap();
    let gpu = render_template(&inv, &pb, "gpu1", "firewall", "firewall.nft.j2", facts()).unwrap();
    let cp_set = "elements = { 55.192.0.125, 55.192.0.126, 55.192.0.127 }";
    assert!(master.contains(cp_set), "{master}");
    // etcd only from control planes, and only on control planes.
    assert!(
        master.contains("ip saddr @control_planes tcp dport { 2379-2380 } accept"),
        "{master}"
    );
    assert!(master.contains("tcp dport { 2379-2380 } drop"), "{master}");
    assert!(!gpu.contains("2379"), "{gpu}");
    // VXLAN only from cluster hosts, on every host.
    for f in [&master, &gpu] {
        assert!(
            f.contains("ip saddr @cluster_hosts udp dport { 8472 } accept"),
            "{f}"
        );
        assert!(f.contains("udp dport { 8472 } drop"), "{f}");
        assert!(
            f.contains("tcp dport { 30000-32767 } accept comment \"NodePort range\""),
            "{f}"
        );
    }
    // The VIP's frontend and VRRP on control planes only.
    assert!(master.contains("tcp dport 6553 accept"), "{master}");
    assert!(
        master.contains("ip protocol 112 ip saddr @control_planes accept"),
        "{master}"
    );
    assert!(!gpu.contains("6553") && !gpu.contains("112"), "{gpu}");
    // It replaces only its own table.
    assert!(
        master.contains("table inet gantry {}\ndelete table inet gantry\n"),
        "{master}"
    );
}

#[test]
fn firewalld_policy_opens_each_row_to_its_sources_with_ipsets_of_the_hosts() {
    let (inv, pb) = load("inventory/ha-3-masters.yaml");
    let policy = |host: &str| {
        render_template(&inv, &pb, host, "firewall", "gantry-policy.xml.j2", facts()).unwrap()
    };
    let master = policy("master1");
    assert!(master.contains("<ingress-zone name=\"ANY\"/>"), "{master}");
    // etcd: accepted from the control planes' set, rejected for the rest.
    assert!(
        master.contains("<source ipset=\"gantry-control-planes\"/>\n    <port protocol=\"tcp\" port=\"2379-2380\"/>\n    <accept/>"),
        "{master}"
    );
    assert!(
        master.contains("<source ipset=\"gantry-control-planes\" invert=\"True\"/>\n    <port protocol=\"tcp\" port=\"2379-2380\"/>\n    <reject type=\"icmp-admin-prohibited\"/>"),
        "{master}"
    );
    // Open to any source: the API, NodePorts, the endpoint on the VIP.
    for p in ["6443", "30000-32767", "6553"] {
        assert!(
            master.contains(&format!("  <port protocol=\"tcp\" port=\"{p}\"/>\n")),
            "{p}: {master}"
        );
    }
    assert!(master.contains("<protocol value=\"vrrp\"/>"), "{master}");
    // A worker serves neither etcd, the API nor the VIP.
    let worker = policy("node1");
    for p in ["2379-2380", "6443", "6553"] {
        assert!(!worker.contains(&format!("port=\"{p}\"")), "{p}: {worker}");
    }
    assert!(!worker.contains("vrrp"), "{worker}");
    // The control planes' set holds their addresses, and no other.
    let mut mine = serde_json::Map::new();
    mine.insert(
        "item".into(),
        serde_json::json!({"name": "gantry-control-planes", "role": "control-plane", "what": "the control planes"}),
    );
    let set = render_template_with(
        &inv,
        &pb,
        "node1",
        "firewall",
        "gantry-ipset.xml.j2",
        facts(),
        mine,
    )
    .unwrap();
    assert!(
        set.contains("<short>gantry-control-planes</short>"),
        "{set}"
    );
    assert_eq!(set.matches("<entry>").count(), 3, "{set}");
    assert!(set.contains("<entry>55.192.0.125</entry>"), "{set}");
    assert!(!set.contains("55.192.0.135"), "{set}");
}

/// The pin of tests/fixtures/ca.crt.
const CA_PIN: &str = include_str!("fixtures/ca.crt.pin");

#[test]
fn every_role_template_renders_for_every_example_host() {
    for inv_file in [
        "inventory/single-master.yaml",
        "inventory/ha-3-masters.yaml",
    ] {
        let (mut inv, pb) = load(inv_file);
        inv.secrets
            .insert("keepalived_auth_pass".into(), "s3cretPW".into());
        inv.secrets
            .insert("kubeadm_token".into(), "abcdef.0123456789abcdef".into());
        inv.secrets
            .insert("kubeadm_certificate_key".into(), "0".repeat(64).into());
        inv.bundle = Some(calico_bundle());
        for h in &inv.hosts {
            for role in pb.roles.values() {
                // The load balancer roles run only where there is a VIP.
                if ["haproxy", "keepalived"].contains(&role.name.as_str())
                    && inv.template_view()["cluster"]["api_lb"] != true
                {
                    continue;
                }
                for t in role.templates.keys() {
                    let mut f = facts();
                    f["ipv4"] =
                        serde_json::json!({ h.address.clone(): {"iface": "eth0", "prefix": 24} });
                    // A template rendered in a loop gets an item as its task
                    // would, the join config the CA pin its role registered.
                    let mut mine = serde_json::Map::new();
                    mine.insert(
                        "item".into(),
                        if t == "gantry-ipset.xml.j2" {
                            serde_json::json!({"name": "gantry-control-planes", "role": "control-plane", "what": "the control planes"})
                        } else {
                            serde_json::json!(["docker.io", ["https://mirror.example:5000"]])
                        },
                    );
                    mine.insert(
                        "kubeadm_ca_hash_here".into(),
                        serde_json::json!({"stdout": CA_PIN}),
                    );
                    render_template_with(&inv, &pb, &h.name, &role.name, t, f, mine)
                        .unwrap_or_else(|e| panic!("{inv_file} {} {}/{t}: {e}", h.name, role.name));
                }
            }
        }
    }
}

/// A bundle that holds only Calico's manifest: the lab's copy of upstream's.
fn calico_bundle() -> gantry::inventory::BundleRef {
    use gantry::bundle::{Artifact, Kind, Manifest};
    gantry::inventory::BundleRef {
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("lab"),
        manifest: Manifest {
            artifacts: vec![Artifact {
                name: "calico".into(),
                kind: Kind::Manifest,
                version: "v3.28.0".into(),
                arch: "all".into(),
                os: "linux".into(),
                file: "calico.yaml".into(),
                size: 0,
                sha256: "0".repeat(64),
                source: String::new(),
            }],
        },
    }
}

#[test]
fn calico_manifest_gets_the_pod_cidr_and_needs_a_bundle() {
    let (mut inv, pb) = load("inventory/single-master.yaml");
    let err = render_template(&inv, &pb, "master1", "calico", "calico.yaml.j2", facts())
        .expect_err("no bundle, no manifest");
    assert!(err.contains("set `bundle:` in the inventory"), "{err}");
    inv.bundle = Some(calico_bundle());
    let out = render_template(&inv, &pb, "master1", "calico", "calico.yaml.j2", facts()).unwrap();
    let cidr = &inv.cluster.networking.pod_cidr;
    assert!(
        out.contains(&format!(
            "            - name: CALICO_IPV4POOL_CIDR\n              value: \"{cidr}\""
        )),
        "{out}"
    );
    assert!(
        !out.contains("192.168.0.0/16"),
        "the upstream default is left"
    );
}

#[test]
fn keepalived_priorities_follow_host_order_and_the_interface_comes_from_facts() {
    let (mut inv, pb) = load("inventory/ha-3-masters.yaml");
    inv.secrets
        .insert("keepalived_auth_pass".into(), "s3cretPW".into());
    let facts = |ip: &str| serde_json::json!({"firewalld": "inactive", "init": "systemd", "ipv4": {ip: {"iface": "ens192", "prefix": 24}}});
    let m1 = render_template(
        &inv,
        &pb,
        "master1",
        "keepalived",
        "keepalived.conf.j2",
        facts("55.192.0.125"),
    )
    .unwrap();
    let m3 = render_template(
        &inv,
        &pb,
        "master3",
        "keepalived",
        "keepalived.conf.j2",
        facts("55.192.0.127"),
    )
    .unwrap();
    assert!(
        m1.contains("    priority 150\n") && m3.contains("    priority 148\n"),
        "{m1}\n{m3}"
    );
    assert!(m1.contains("    interface ens192\n"), "{m1}");
    assert!(m1.contains("        55.192.0.1/24 dev ens192\n"), "{m1}");
    // sha256("prod-gpu")[0] = 167; 167 % 254 + 1 = 168 (computed apart from
    // gantry, with Python's hashlib).
    assert!(m1.contains("    virtual_router_id 168\n"), "{m1}");
    assert!(m1.contains("        auth_pass s3cretPW\n"), "{m1}");
    assert!(!m1.contains("nopreempt"), "{m1}");
    let check = render_template(
        &inv,
        &pb,
        "master1",
        "keepalived",
        "check_haproxy.sh.j2",
        facts("55.192.0.125"),
    )
    .unwrap();
    assert!(
        check.contains("</dev/tcp/127.0.0.1/6553"),
        "the check is the local haproxy frontend: {check}"
    );
    let hap = render_template(
        &inv,
        &pb,
        "master2",
        "haproxy",
        "haproxy.cfg.j2",
        facts("55.192.0.126"),
    )
    .unwrap();
    assert!(hap.contains("    bind *:6553\n"), "{hap}");
    for (n, ip) in [("master1", "125"), ("master2", "126"), ("master3", "127")] {
        assert!(
            hap.contains(&format!("    server {n} 55.192.0.{ip}:6443\n")),
            "{hap}"
        );
    }
    // The health check is kube-apiserver's /healthz over TLS, answering 200
    // (no ssl-hello-chk, which would replace it with a TLS hello).
    assert!(hap.contains("    option httpchk GET /healthz\n"), "{hap}");
    assert!(hap.contains("    http-check expect status 200\n"), "{hap}");
    assert!(
        hap.contains("    default-server check check-ssl verify none inter 2s fall 2 rise 2\n"),
        "{hap}"
    );
    assert!(
        !hap.lines()
            .any(|l| l.trim_start().starts_with("option ssl-hello-chk")),
        "{hap}"
    );
}

/// Whether any task of these roles would run on `host`: each `when:` is
/// evaluated in order as the run would, with what a skipped task registers.
fn tasks_that_would_run(inv: &Inventory, pb: &Playbook, roles: &[&str]) -> Vec<String> {
    let templates = gantry::plan::template::Templates::new(pb);
    let mut ctx = inv.template_map();
    let mut ran = Vec::new();
    for r in roles {
        for t in &pb.roles[*r].tasks {
            let runs = match &t.when {
                Some(w) => templates
                    .truthy(w, &minijinja::Value::from(minijinja::value::Serde(&ctx)))
                    .unwrap_or_else(|e| panic!("{r}/{}: {e}", t.name)),
                None => true,
            };
            // A first apply: what runs changes something.
            if let Some(reg) = &t.register {
                ctx.insert(
                    reg.clone(),
                    serde_json::json!({"changed": runs, "skipped": !runs}),
                );
            }
            if runs {
                ran.push(format!("{r}/{}", t.name));
            }
        }
    }
    ran
}

#[test]
fn load_balancer_tasks_are_gated_on_api_lb() {
    let lb = ["vip-check", "haproxy", "keepalived"];
    let (single, pb) = load("inventory/single-master.yaml");
    assert_eq!(
        tasks_that_would_run(&single, &pb, &lb),
        Vec::<String>::new(),
        "no VIP: no load balancer task runs"
    );
    let (ha, pb) = load("inventory/ha-3-masters.yaml");
    let mut ext = ha.clone();
    ext.cluster
        .control_plane_endpoint
        .as_mut()
        .unwrap()
        .external = true;
    assert_eq!(
        tasks_that_would_run(&ext, &pb, &lb),
        Vec::<String>::new(),
        "an external load balancer: gantry installs none"
    );
    let all: usize = lb.iter().map(|r| pb.roles[*r].tasks.len()).sum();
    assert_eq!(
        tasks_that_would_run(&ha, &pb, &lb).len(),
        all,
        "with a VIP every load balancer task runs"
    );
}

#[test]
fn load_balancer_roles_run_only_with_a_vip_and_no_external_lb() {
    let (inv, _) = load("inventory/ha-3-masters.yaml");
    assert_eq!(inv.template_view()["cluster"]["api_lb"], true);
    let (single, _) = load("inventory/single-master.yaml");
    assert_eq!(
        single.template_view()["cluster"]["api_lb"],
        false,
        "no VIP: no keepalived/haproxy"
    );
    let mut ext = inv.clone();
    ext.cluster
        .control_plane_endpoint
        .as_mut()
        .unwrap()
        .external = true;
    assert_eq!(
        ext.template_view()["cluster"]["api_lb"],
        false,
        "external LB: gantry installs none"
    );
}

/// containerd's config takes the pause image kubeadm of the cluster's
/// version wants (not containerd 1.6's 3.6) unless the inventory names one.
#[test]
fn containerd_config_uses_kubeadms_pause_image_and_the_systemd_cgroup_driver() {
    let (mut inv, pb) = load("inventory/single-master.yaml");
    let cfg = render_template(&inv, &pb, "node1", "containerd", "config.toml.j2", facts()).unwrap();
    assert!(
        cfg.contains("  sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n"),
        "{cfg}"
    );
    assert!(cfg.contains("        SystemdCgroup = true\n"), "{cfg}");
    assert!(cfg.contains("    snapshotter = \"overlayfs\"\n"), "{cfg}");
    inv.vars.insert(
        "containerd_sandbox_image".into(),
        "registry.local/pause:3.10.1".into(),
    );
    let cfg = render_template(&inv, &pb, "node1", "containerd", "config.toml.j2", facts()).unwrap();
    assert!(
        cfg.contains("  sandbox_image = \"registry.local/pause:3.10.1\"\n"),
        "{cfg}"
    );
}

/// On a `gpu` host NVIDIA's runtime is containerd's default, in gantry's
/// own config (with the systemd cgroup driver); other hosts keep runc, and
/// `containerd_nvidia_runtime: false` turns it off.
#[test]
fn containerd_config_makes_nvidia_the_default_runtime_on_gpu_hosts() {
    let (mut inv, pb) = load("inventory/ha-3-masters.yaml");
    let nvidia = "    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n      runtime_type = \"io.containerd.runc.v2\"\n      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\n        BinaryName = \"/usr/bin/nvidia-container-runtime\"\n        SystemdCgroup = true\n";
    let gpu = render_template(&inv, &pb, "gpu1", "containerd", "config.toml.j2", facts()).unwrap();
    assert!(
        gpu.contains("    default_runtime_name = \"nvidia\"\n"),
        "{gpu}"
    );
    assert!(gpu.contains(nvidia), "{gpu}");
    let worker =
        render_template(&inv, &pb, "node1", "containerd", "config.toml.j2", facts()).unwrap();
    assert!(
        worker.contains("    default_runtime_name = \"runc\"\n"),
        "{worker}"
    );
    assert!(!worker.contains("runtimes.nvidia"), "{worker}");
    inv.vars
        .insert("containerd_nvidia_runtime".into(), false.into());
    let off = render_template(&inv, &pb, "gpu1", "containerd", "config.toml.j2", facts()).unwrap();
    assert_eq!(off, worker);
}

/// The kubeadm init config gantry renders passes kubeadm's strict v1beta4
/// reading (the lab's kubeadm stand-in, `lab/standin/kubeadm`, which refuses
/// what the real one refuses), for the guide's HA topology behind the VIP
/// and for a single master.
#[test]
fn kubeadm_init_config_passes_kubeadms_strict_validation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let pb_path = work.path().join("kubeadm.yaml");
    std::fs::write(
        &pb_path,
        "- name: kubeadm\n  hosts: control-plane\n  roles: [kubeadm]\n",
    )
    .unwrap();
    let pb = loader::load_playbook(&pb_path, &[root.join("roles")]).unwrap();
    let token = "abcdef.0123456789abcdef";
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for (inv_file, endpoint, sans) in [
        (
            "inventory/ha-3-masters.yaml",
            "controlPlaneEndpoint: \"55.192.0.1:6553\"\n",
            "  certSANs:\n    - \"55.192.0.1\"\n    - \"apiserver.prod-gpu.local\"\n    - \"55.192.0.125\"\n    - \"master1\"\n    - \"55.192.0.126\"\n    - \"master2\"\n    - \"55.192.0.127\"\n    - \"master3\"\n",
        ),
        (
            "inventory/single-master.yaml",
            "controlPlaneEndpoint: \"55.192.0.125:6443\"\n",
            "  certSANs:\n    - \"55.192.0.125\"\n    - \"master1\"\n",
        ),
    ] {
        let (mut inv, _) =
            loader::load_inventory(&root.join(inv_file), |i| pb.known_host_roles(i)).unwrap();
        inv.secrets.insert("kubeadm_token".into(), token.into());
        inv.secrets
            .insert("kubeadm_certificate_key".into(), key.into());
        let cfg = render_template(
            &inv,
            &pb,
            "master1",
            "kubeadm",
            "kubeadm-init.yaml.j2",
            facts(),
        )
        .unwrap();
        for want in [
            endpoint,
            sans,
            "kubernetesVersion: \"v1.34.3\"\n",
            "  podSubnet: \"10.244.0.0/16\"\n",
            "cgroupDriver: systemd\n",
            &format!("  - token: \"{token}\"\n"),
            &format!("certificateKey: \"{key}\"\n"),
        ] {
            assert!(cfg.contains(want), "{inv_file}: {want:?} not in:\n{cfg}");
        }
        let f = work.path().join("kubeadm-init.yaml");
        std::fs::write(&f, &cfg).unwrap();
        let out = std::process::Command::new("python3")
            .arg(root.join("lab/standin/kubeadm"))
            .args(["config", "validate", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned()
            ),
            (Some(0), "ok\n".to_string()),
            "{inv_file}: {}\n{cfg}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
