//! The node-prep templates rendered with the seeds' full tables, offline.
//! Global kernel keys (vm.*, fs.*) are tested here, never in the lab.

use std::path::Path;

use gantry::executor::render_template;
use gantry::inventory::Inventory;
use gantry::loader;
use gantry::playbook::Playbook;

fn load(inv: &str) -> (Inventory, Playbook) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pb = loader::load_playbook(&root.join("playbooks/node-prep.yaml"), &[root.join("roles")]).unwrap();
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
    let master = render_template(&inv, &pb, "master2", "firewall", "firewall.nft.j2", facts()).unwrap();
    let gpu = render_template(&inv, &pb, "gpu1", "firewall", "firewall.nft.j2", facts()).unwrap();
    let cp_set = "elements = { 55.192.0.125, 55.192.0.126, 55.192.0.127 }";
    assert!(master.contains(cp_set), "{master}");
    // etcd only from control planes, and only on control planes.
    assert!(master.contains("ip saddr @control_planes tcp dport { 2379-2380 } accept"), "{master}");
    assert!(master.contains("tcp dport { 2379-2380 } drop"), "{master}");
    assert!(!gpu.contains("2379"), "{gpu}");
    // VXLAN only from cluster hosts, on every host.
    for f in [&master, &gpu] {
        assert!(f.contains("ip saddr @cluster_hosts udp dport { 8472 } accept"), "{f}");
        assert!(f.contains("udp dport { 8472 } drop"), "{f}");
        assert!(f.contains("tcp dport { 30000-32767 } accept comment \"NodePort range\""), "{f}");
    }
    // The VIP's frontend and VRRP on control planes only.
    assert!(master.contains("tcp dport 6553 accept"), "{master}");
    assert!(master.contains("ip protocol 112 ip saddr @control_planes accept"), "{master}");
    assert!(!gpu.contains("6553") && !gpu.contains("112"), "{gpu}");
    // It replaces only its own table.
    assert!(master.contains("table inet gantry {}\ndelete table inet gantry\n"), "{master}");
}

#[test]
fn firewalld_zone_lists_cluster_sources_and_role_ports() {
    let (inv, pb) = load("inventory/ha-3-masters.yaml");
    let zone = render_template(&inv, &pb, "master1", "firewall", "gantry-cluster.xml.j2", facts()).unwrap();
    assert_eq!(zone.matches("<source address=").count(), 7, "{zone}");
    assert!(zone.contains("<port protocol=\"tcp\" port=\"2379-2380\"/>"), "{zone}");
    assert!(zone.contains("<protocol value=\"vrrp\"/>"), "{zone}");
}

#[test]
fn every_role_template_renders_for_every_example_host() {
    for inv_file in ["inventory/single-master.yaml", "inventory/ha-3-masters.yaml"] {
        let (inv, pb) = load(inv_file);
        for h in &inv.hosts {
            for role in pb.roles.values() {
                for t in role.templates.keys() {
                    render_template(&inv, &pb, &h.name, &role.name, t, facts()).unwrap_or_else(|e| panic!("{inv_file} {} {}/{t}: {e}", h.name, role.name));
                }
            }
        }
    }
}
