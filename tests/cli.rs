//! The command line: exact messages and exit codes, no hosts needed.

use std::process::{Command, Output};

fn gantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_inventory_reports_every_problem_with_location() {
    let out = gantry(&["validate", "-i", "tests/fixtures/bad-inventory.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let expected = r#"tests/fixtures/bad-inventory.yaml:3:29: error: cluster.control_plane_endpoint.vip: VIP 55.192.1.1 and control-plane host master1 (55.192.0.125) are not both in subnet 55.192.0.0/24 (assumed; set networking.host_cidr); keepalived can only move the VIP within one L2 segment
tests/fixtures/bad-inventory.yaml:3:29: error: cluster.control_plane_endpoint.vip: VIP 55.192.1.1 and control-plane host Master_2 (55.192.0.125) are not both in subnet 55.192.0.0/24 (assumed; set networking.host_cidr); keepalived can only move the VIP within one L2 segment
tests/fixtures/bad-inventory.yaml:4:42: error: cluster.networking.service_cidr: 10.244.128.0/17 overlaps cluster.networking.pod_cidr (10.244.0.0/16)
tests/fixtures/bad-inventory.yaml:5:20: error: ssh.port: invalid type: string "twenty-two", expected u16
tests/fixtures/bad-inventory.yaml:6:1: warning: hosts: 2 control-plane hosts: an even count adds no etcd fault tolerance over 1; use an odd number
tests/fixtures/bad-inventory.yaml:8:7: error: hosts[1].name: "Master_2" is not an RFC 1123 host name (lowercase letters, digits and '-', dot-separated, at most 63 per label)
tests/fixtures/bad-inventory.yaml:8:23: error: hosts[1].address: duplicate address "55.192.0.125", also hosts[0] (master1)
tests/fixtures/bad-inventory.yaml:9:7: error: hosts[2].name: duplicate host name "master1", also hosts[0]
tests/fixtures/bad-inventory.yaml:9:22: error: hosts[2].address: "a;touch pwned" is neither an IP address nor a name that resolves
tests/fixtures/bad-inventory.yaml:9:56: error: hosts[2].roles[0]: role "controlplane" is not used by any play of the playbook (known: control-plane, gpu, worker)
tests/fixtures/bad-inventory.yaml:10:19: error: hosts[3].adress: unknown field `adress`, expected one of `name`, `address`, `roles`, `ssh`, `vars`, `arch`
10 error(s); nothing was changed on any host
"#;
    assert_eq!(text(&out.stderr), expected);
}

#[test]
fn networks_that_collide_with_the_hosts_are_refused() {
    let out = gantry(&["validate", "-i", "tests/fixtures/bad-networks.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let f = "tests/fixtures/bad-networks.yaml";
    assert_eq!(
        text(&out.stderr),
        format!(
            "{f}:5:29: error: cluster.control_plane_endpoint.vip: VIP 10.1.0.11 is the address of host master1; it must be a free address
{f}:5:29: error: cluster.control_plane_endpoint.vip: VIP 10.1.0.11 lies inside cluster.networking.pod_cidr (10.1.0.0/16)
{f}:6:17: error: cluster.networking.pod_cidr: 10.1.0.0/16 overlaps the host network 10.1.0.0/24
{f}:6:17: error: cluster.networking.pod_cidr: 10.1.0.0/16 contains the address of host master1 (10.1.0.11); pod and service networks must not overlap the host network
{f}:6:40: error: cluster.networking.service_cidr: 10.2.0.0/16 contains the address of host worker1 (10.2.0.12); pod and service networks must not overlap the host network
5 error(s); nothing was changed on any host
"
        )
    );
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("inv.yaml");
    std::fs::write(&p, "cluster:\n  name: [x\nhosts: []\n").unwrap();
    let out = gantry(&["validate", "-i", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{}:3:", p.display())), "{err}");
    assert!(err.contains("not valid YAML"), "{err}");
}

#[test]
fn example_inventories_validate() {
    for inv in [
        "inventory/single-master.yaml",
        "inventory/ha-3-masters.yaml",
    ] {
        let out = gantry(&["validate", "-i", inv]);
        assert_eq!(out.status.code(), Some(0), "{inv}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("ok: "),
            "{}",
            text(&out.stdout)
        );
    }
}

/// Every example's commands that need no hosts: validate (with its own
/// playbook where it has one), graph, and bundle list for the offline one.
#[test]
fn every_example_validates() {
    let mut seen = 0;
    for entry in
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .unwrap()
    {
        let dir = entry.unwrap().path();
        let inv = dir.join("inventory.yaml");
        if !inv.is_file() {
            continue;
        }
        seen += 1;
        let inv = inv.to_str().unwrap();
        let mut args = vec!["validate", "-i", inv];
        if dir.join("playbooks/site.yaml").is_file() {
            args.extend(["-p", "site"]);
        }
        let out = gantry(&args);
        assert_eq!(out.status.code(), Some(0), "{inv}: {}", text(&out.stderr));
        let out = gantry(&["bundle", "list", "-i", inv]);
        assert_eq!(out.status.code(), Some(0), "{inv}: {}", text(&out.stderr));
    }
    assert_eq!(seen, 4, "every example has an inventory.yaml");
    // The custom role's cross-host edge: each host's site facts wait for
    // the control plane's registered id.
    let out = gantry(&[
        "graph",
        "-i",
        "examples/custom-role/inventory.yaml",
        "-p",
        "site",
    ]);
    let dot = text(&out.stdout);
    assert!(
        dot.contains("label=\"site-facts/write the site facts\""),
        "{dot}"
    );
    assert_eq!(dot.matches("label=\"wait_for\"").count(), 3, "{dot}");
    // The offline example's bundle: Kubernetes for both architectures.
    let out = gantry(&["bundle", "list", "-i", "examples/offline/inventory.yaml"]);
    let list = text(&out.stdout);
    assert!(list.contains("arm64") && list.contains("amd64"), "{list}");
}

#[test]
fn cycle_names_the_tasks() {
    let out = gantry(&[
        "validate",
        "-i",
        "tests/fixtures/small.yaml",
        "-p",
        "tests/fixtures/playbooks/cycle.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("dependency cycle between tasks: "), "{err}");
    assert!(
        err.contains("master1:cycle-a/first") && err.contains("master1:cycle-b/second"),
        "{err}"
    );
}

#[test]
fn role_errors_are_located_and_all_reported() {
    let out = gantry(&[
        "validate",
        "-i",
        "tests/fixtures/small.yaml",
        "-p",
        "tests/fixtures/playbooks/badrole.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let f = "tests/fixtures/roles/badrole/tasks.yaml";
    assert!(err.contains(&format!("{f}:2:3: error: [0].copy: unknown parameter `contents` for `copy`, expected one of dest, content, src, mode, owner, group, validate")), "{err}");
    assert!(err.contains(&format!("{f}:5:3: error: [1].file: task \"two modules\" has more than one module or unknown keyword: copy, file")), "{err}");
    assert!(
        err.contains(&format!(
            "{f}:7:21: error: [2].copy.content: template does not parse"
        )),
        "{err}"
    );
    assert!(
        err.ends_with("3 error(s); nothing was changed on any host\n"),
        "{err}"
    );
}

#[test]
fn graph_shows_order_and_cross_host_edges() {
    let out = gantry(&[
        "graph",
        "-i",
        "tests/fixtures/small.yaml",
        "-p",
        "tests/fixtures/playbooks/cross-host.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph gantry {"));
    for node in [
        "n0 [label=\"init/make a join token\"];",
        "n1 [label=\"init/print join command\"];",
        "n2 [label=\"join/keep the join command\"];",
        "n3 [label=\"join/keep the join command\"];",
    ] {
        assert!(dot.contains(node), "{node} not in {dot}");
    }
    // master1's two tasks in order; each worker waits for master1's print.
    assert_eq!(dot.matches("label=\"wait_for\"").count(), 2, "{dot}");
    assert!(dot.contains("n0 -> n1;"), "{dot}");
    assert!(
        dot.contains("n1 -> n2 [style=bold, color=red, label=\"wait_for\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("n1 -> n3 [style=bold, color=red, label=\"wait_for\"];"),
        "{dot}"
    );
}

#[test]
fn unknown_limit_host_is_bad_input() {
    let out = gantry(&["plan", "-i", "tests/fixtures/small.yaml", "--limit", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "--limit: no host named \"nope\" in tests/fixtures/small.yaml\n"
    );
}

/// `--limit` patterns pick hosts by name, in inventory order, each once:
/// how one fleet is split across controllers.
#[test]
fn limit_patterns_pick_hosts_by_name() {
    let out = gantry(&[
        "reset",
        "-i",
        "inventory/ha-3-masters.yaml",
        "--limit",
        "gpu?,node*,gpu1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "reset removes Kubernetes from node1, node2, gpu1, gpu2: pass --yes to do it without a terminal to ask on\n"
    );
    let out = gantry(&[
        "reset",
        "-i",
        "inventory/ha-3-masters.yaml",
        "--limit",
        "rack9-*",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("--limit: no host named \"rack9-*\""));
}

#[test]
fn help_teaches_the_flow_and_exit_codes() {
    let out = gantry(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("gantry plan") && help.contains("Exit codes: 0 all ok, 1 some host failed"),
        "{help}"
    );
}

#[test]
fn module_parameters_are_typed_before_any_host() {
    let out = gantry(&[
        "validate",
        "-i",
        "tests/fixtures/small.yaml",
        "-p",
        "tests/fixtures/playbooks/badparams.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let f = "tests/fixtures/roles/badparams/tasks.yaml";
    assert_eq!(
        text(&out.stderr),
        format!(
            "{f}:3:41: error: [0].copy.mode: mode \"0999\" is not octal digits like \"0644\"
{f}:5:31: error: [1].lineinfile.regexp: \"(\" does not compile: unclosed group
{f}:7:29: error: [2].service.state: unknown variant `running`, expected one of `started`, `stopped`, `restarted`, `reloaded`
{f}:12:3: error: wait_for: task badparams/waits for nothing that exists waits for \"badparams/no such task\", which is no task of this playbook (write it as role/task name)
4 error(s); nothing was changed on any host
"
        )
    );
}

#[test]
fn an_unknown_host_key_does_not_hide_the_hosts_other_problems() {
    let out = gantry(&["validate", "-i", "tests/fixtures/bad-host-and-net.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let f = "tests/fixtures/bad-host-and-net.yaml";
    assert_eq!(
        text(&out.stderr),
        format!(
            "{f}:5:17: error: cluster.networking.pod_cidr: \"10.244.0.0/33\" is not a CIDR like 10.244.0.0/16
{f}:8:17: error: hosts[1].address: duplicate address \"10.9.0.1\", also hosts[0] (m1)
{f}:8:53: error: hosts[1].colour: unknown field `colour`, expected one of `name`, `address`, `roles`, `ssh`, `vars`, `arch`
3 error(s); nothing was changed on any host
"
        )
    );
}

#[test]
fn readme_module_table_is_the_registry() {
    let out = gantry(&["modules", "--markdown"]);
    assert_eq!(out.status.code(), Some(0));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("<!-- gantry modules --markdown -->\n")
        .nth(1)
        .and_then(|rest| {
            rest.split("<!-- end of gantry modules --markdown -->")
                .next()
        })
        .expect("the README marks its module table");
    assert_eq!(
        table,
        text(&out.stdout),
        "README.md's module table is not `gantry modules --markdown`: paste it in"
    );
    let page = gantry(&["modules", "copy"]);
    assert!(
        text(&page.stdout).starts_with("copy: "),
        "{}",
        text(&page.stdout)
    );
    let none = gantry(&["modules", "nope"]);
    assert_eq!(none.status.code(), Some(2));
}

#[test]
fn readme_check_table_is_the_registry() {
    let out = gantry(&["check", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("<!-- gantry check --list -->\n")
        .nth(1)
        .and_then(|rest| rest.split("<!-- end of gantry check --list -->").next())
        .expect("the README marks its check table");
    assert_eq!(
        table,
        text(&out.stdout),
        "README.md's check table is not `gantry check --list`: paste it in"
    );
}

/// A bundle and its manifest: what verify says of a good one, and every
/// problem of a bad one at once (a flipped byte, a short file, a missing
/// file, a file nobody listed, a link), each at its manifest line.
#[test]
fn bundle_verify_finds_every_problem_before_any_host_is_touched() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path();
    let files: [(&str, &[u8]); 4] = [
        ("bin/runc", b"runc binary"),
        ("images/pause.tar", b"pause image"),
        ("charts/gpu-operator.tgz", b"a chart"),
        ("packages/conntrack.deb", b"a package"),
    ];
    let mut m = String::from("artifacts:\n");
    for (f, data) in files {
        std::fs::create_dir_all(b.join(f).parent().unwrap()).unwrap();
        std::fs::write(b.join(f), data).unwrap();
        m.push_str(&format!(
            "  - name: {}\n    kind: binary\n    version: \"1\"\n    arch: amd64\n    os: linux\n    file: {f}\n    size: {}\n    sha256: {}\n",
            f.split('/').nth(1).unwrap(),
            data.len(),
            hex::encode(sha2::Sha256::digest(data))
        ));
    }
    std::fs::write(b.join("manifest.yaml"), &m).unwrap();
    let dir_s = b.to_str().unwrap();
    let ok = gantry(&["bundle", "verify", dir_s]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(
        text(&ok.stdout),
        format!("ok: 4 artifacts, 38 bytes, every size and sha256 as {dir_s}/manifest.yaml says\n")
    );
    // One byte flipped (same size), one cut short, one gone, one extra,
    // one swapped for a link to a good copy.
    std::fs::write(b.join("bin/runc"), b"runc binarY").unwrap();
    std::fs::write(b.join("images/pause.tar"), b"pause").unwrap();
    std::fs::remove_file(b.join("charts/gpu-operator.tgz")).unwrap();
    std::fs::write(b.join("bin/stray"), b"x").unwrap();
    std::fs::write(b.join("conntrack.deb"), b"a package").unwrap();
    std::fs::remove_file(b.join("packages/conntrack.deb")).unwrap();
    std::os::unix::fs::symlink(b.join("conntrack.deb"), b.join("packages/conntrack.deb")).unwrap();
    let bad = gantry(&["bundle", "verify", dir_s]);
    assert_eq!(bad.status.code(), Some(2));
    let mf = format!("{dir_s}/manifest.yaml");
    assert_eq!(
        text(&bad.stderr),
        format!(
            "{mf}:9:5: error: artifacts[0].sha256: bin/runc has sha256 {}; the manifest says {}
{mf}:16:5: error: artifacts[1].size: images/pause.tar is 5 bytes; the manifest says 11
{mf}:23:5: error: artifacts[2].file: charts/gpu-operator.tgz is missing from the bundle
{mf}:31:5: error: artifacts[3].file: packages/conntrack.deb is not a plain file (a link, a directory or a device); the bundle holds plain files
error: {dir_s}/bin/stray is in the bundle but not in its manifest
error: {dir_s}/conntrack.deb is in the bundle but not in its manifest
6 error(s); nothing was changed on any host
",
            hex::encode(sha2::Sha256::digest(b"runc binarY")),
            hex::encode(sha2::Sha256::digest(b"runc binary")),
        )
    );
    // A manifest that names a path outside the bundle is refused as input.
    std::fs::write(
        b.join("manifest.yaml"),
        m.replace("file: bin/runc", "file: ../../etc/shadow"),
    )
    .unwrap();
    let out = gantry(&["bundle", "verify", dir_s]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{mf}:7:5: error: artifacts[0].file: \"../../etc/shadow\" must be a relative path inside the bundle (no `..`, `.`, leading `/` or empty part)\n1 error(s); nothing was changed on any host\n"
        )
    );
}

/// An inventory that names a bundle has the manifest checked with it, at
/// the manifest's lines; a missing manifest is named.
#[test]
fn the_inventorys_bundle_manifest_is_checked_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    let base = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/single-master.yaml"),
    )
    .unwrap();
    std::fs::write(&inv, format!("{base}bundle: b\n")).unwrap();
    let inv_s = inv.to_str().unwrap();
    let out = gantry(&["validate", "-i", inv_s]);
    assert_eq!(out.status.code(), Some(2));
    let mf = dir.path().join("b/manifest.yaml");
    assert!(
        text(&out.stderr).contains(&format!(
            "error: bundle: the bundle's manifest: {}: No such file or directory",
            mf.display()
        )),
        "{}",
        text(&out.stderr)
    );
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(
        &mf,
        "artifacts:\n  - { name: runc, kind: binary, version: \"1\", arch: amd64, os: linux, file: runc, size: 1, sha256: abc }\n",
    )
    .unwrap();
    let out = gantry(&["validate", "-i", inv_s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!(
            "{}:2:92: error: artifacts[0].sha256: \"abc\" is not a sha256 (64 lowercase hex digits)",
            mf.display()
        )),
        "{}",
        text(&out.stderr)
    );
}

fn small_inventory(dir: &std::path::Path, edit: impl Fn(String) -> String) -> String {
    let base = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/single-master.yaml"),
    )
    .unwrap();
    let inv = dir.join("inventory.yaml");
    std::fs::write(&inv, edit(base)).unwrap();
    inv.to_str().unwrap().to_string()
}

/// `bundle list` derives the bundle from the inventory: every architecture
/// its hosts have, the kubeadm image set of its Kubernetes version (pause
/// 3.10.1 for v1.34, not containerd 1.6's 3.6).
#[test]
fn bundle_list_derives_what_each_architecture_needs() {
    let dir = tempfile::tempdir().unwrap();
    let inv = small_inventory(dir.path(), |s| {
        s.replace(
            "    roles: [worker, gpu]\n",
            "    roles: [worker, gpu]\n    arch: arm64\n",
        )
    });
    let out = gantry(&["bundle", "list", "-i", &inv, "--yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let y = text(&out.stdout);
    // 18 per architecture, and the one Calico manifest.
    assert_eq!(y.matches("\n- name: ").count(), 37, "{y}");
    for arch in ["amd64", "arm64"] {
        for want in [
            format!(
                "  source: https://dl.k8s.io/release/v1.34.3/bin/linux/{arch}/kubeadm\n  sha256_url: https://dl.k8s.io/release/v1.34.3/bin/linux/{arch}/kubeadm.sha256\n"
            ),
            format!(
                "  file: images/{arch}/registry.k8s.io_pause_3.10.1.tar\n  source: docker://registry.k8s.io/pause:3.10.1\n"
            ),
            format!("  file: images/{arch}/registry.k8s.io_etcd_3.6.4-0.tar\n"),
            format!("  file: bin/{arch}/containerd-1.6.32-linux-{arch}.tar.gz\n"),
        ] {
            assert!(y.contains(&want), "{want} not in:\n{y}");
        }
    }
    assert!(y.contains("  for: 'arm64 hosts: gpu1'\n"), "{y}");
    assert!(
        y.contains("  for: 'amd64 hosts: master1, node1, node2'\n"),
        "{y}"
    );
    let table = gantry(&["bundle", "list", "-i", &inv]);
    let t = text(&table.stdout);
    assert!(t.starts_with("KIND      NAME  "), "{t}");
    assert!(
        t.ends_with(&format!(
            "37 artifacts; `gantry bundle fetch DIR -i {inv}` downloads them\n"
        )),
        "{t}"
    );
}

/// A Kubernetes version whose image set gantry does not know is refused at
/// its line, before anything else happens.
#[test]
fn an_unsupported_kubernetes_version_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let inv = small_inventory(dir.path(), |s| s.replace("v1.34.3", "v1.29.0"));
    for args in [
        vec!["validate", "-i", &inv],
        vec!["bundle", "list", "-i", &inv],
    ] {
        let out = gantry(&args);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            text(&out.stderr),
            format!(
                "{inv}:5:3: error: cluster.kubernetes_version: \"v1.29.0\" is not a Kubernetes version gantry supports (v1.34.x; the guide's is v1.34.3)\n1 error(s); nothing was changed on any host\n"
            )
        );
    }
}

/// `bundle verify --inventory` also names what the inventory needs and the
/// bundle lacks, with the bundle's own problems, in one run.
#[test]
fn bundle_verify_names_what_the_inventory_needs_and_the_bundle_lacks() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let inv = small_inventory(dir.path(), |s| s);
    let b = dir.path().join("bundle");
    std::fs::create_dir_all(b.join("bin")).unwrap();
    std::fs::write(b.join("bin/runc"), b"runc").unwrap();
    std::fs::write(
        b.join("manifest.yaml"),
        format!(
            "artifacts:\n  - {{ name: runc, kind: binary, version: v1.1.12, arch: amd64, os: linux, file: bin/runc, size: 4, sha256: {} }}\n  - {{ name: gone, kind: binary, version: \"1\", arch: amd64, os: linux, file: bin/gone, size: 1, sha256: {} }}\n",
            hex::encode(sha2::Sha256::digest(b"runc")),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = gantry(&["bundle", "verify", b.to_str().unwrap(), "-i", &inv]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.starts_with(&format!(
            "{}:3:71: error: artifacts[1].file: bin/gone is missing from the bundle\n\
             error: {inv}: the bundle lacks binary kubeadm v1.34.3 (amd64), which the inventory needs for amd64 hosts: master1, node1, node2, gpu1\n",
            b.join("manifest.yaml").display()
        )),
        "{e}"
    );
    // Everything but runc: 17 of the 18, one missing file.
    assert!(
        e.ends_with("19 error(s); nothing was changed on any host\n"),
        "{e}"
    );
    assert!(!e.contains("lacks binary runc"), "{e}");
}

/// Inventories the cluster roles cannot build are refused at their lines: a
/// VIP endpoint on the API server's own port (haproxy would listen where
/// the API server does), and no control plane at all.
#[test]
fn an_endpoint_on_the_api_servers_port_and_no_control_plane_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/ha-3-masters.yaml"),
    )
    .unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(
        &inv,
        base.replace("    port: 6553", "    port: 6443")
            .replace("roles: [control-plane]", "roles: [worker]"),
    )
    .unwrap();
    let inv_s = inv.to_str().unwrap();
    let out = gantry(&["validate", "-i", inv_s]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains(&format!("{inv_s}:10:5: error: cluster.control_plane_endpoint.port: port 6443 is the API server's own on every control plane, where haproxy would listen for the VIP; use another (the guide's is 6553), or set external: true for a load balancer of your own\n")),
        "{e}"
    );
    assert!(
        e.contains("error: hosts: no host has the control-plane role: a cluster needs one (kubeadm init runs there)\n"),
        "{e}"
    );
    // With a load balancer of the operator's own, 6443 is theirs to use.
    std::fs::write(
        &inv,
        base.replace("    port: 6553", "    port: 6443\n    external: true"),
    )
    .unwrap();
    let ok = gantry(&["validate", "-i", inv_s]);
    assert!(
        !text(&ok.stderr).contains("control_plane_endpoint.port"),
        "{}",
        text(&ok.stderr)
    );
}

/// `gantry init` writes an inventory that validates as it is, for both of
/// the guide's topologies, and never overwrites a file.
#[test]
fn init_writes_a_valid_inventory_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    for (topology, hosts) in [("single", 4), ("ha", 7)] {
        let path = dir.path().join(format!("{topology}.yaml"));
        let p = path.to_str().unwrap();
        let out = gantry(&["init", "--topology", topology, "-o", p]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            written.starts_with(&format!("# Written by `gantry init --topology {topology}`")),
            "{written}"
        );
        assert!(written.contains("\n# bundle: bundle/\n"), "{written}");
        let v = gantry(&["validate", "-i", p, "-p", "cluster"]);
        assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
        assert!(
            text(&v.stdout).contains(&format!("{hosts} hosts")),
            "{}",
            text(&v.stdout)
        );
        // A second init to the same file is refused and leaves it as it was.
        std::fs::write(&path, "mine\n").unwrap();
        let again = gantry(&["init", "--topology", topology, "-o", p]);
        assert_eq!(again.status.code(), Some(2));
        assert!(
            text(&again.stderr).contains("exists: gantry init never overwrites a file"),
            "{}",
            text(&again.stderr)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n");
    }
}

/// An installed gantry (the binary copied into a prefix of its own) run
/// from a directory outside the repository, with a HOME of its own: the
/// built-in playbooks and roles come from the binary, and a role beside the
/// inventory overrides the built-in one of its name.
#[test]
fn an_installed_gantry_works_from_any_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (bin, work, home) = (
        tmp.path().join("bin"),
        tmp.path().join("site"),
        tmp.path().join("home"),
    );
    for d in [&bin, &work, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    let exe = bin.join("gantry");
    std::fs::copy(env!("CARGO_BIN_EXE_gantry"), &exe).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/ha-3-masters.yaml"),
        work.join("inventory.yaml"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(&exe)
            .args(args)
            .current_dir(&work)
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("GANTRY_INVENTORY")
            .output()
            .unwrap()
    };
    let out = run(&["validate", "-i", "inventory.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["validate", "-i", "inventory.yaml", "-p", "cluster"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["graph", "-i", "inventory.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("label=\"hostname/set the host name\""));
    // Unpacked into the user's own cache, 0700.
    use std::os::unix::fs::PermissionsExt;
    let cache = home.join(".cache/gantry");
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // roles/hostname beside the inventory wins over the built-in role.
    std::fs::create_dir_all(work.join("roles/hostname")).unwrap();
    std::fs::write(
        work.join("roles/hostname/tasks.yaml"),
        "- name: the site's own naming\n  command: { argv: [\"true\"] }\n",
    )
    .unwrap();
    let out = run(&["graph", "-i", "inventory.yaml"]);
    let dot = text(&out.stdout);
    assert!(
        dot.contains("label=\"hostname/the site's own naming\""),
        "{dot}"
    );
    assert!(!dot.contains("hostname/set the host name"), "{dot}");
    let out = run(&["plan", "-i", "inventory.yaml", "-p", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "no playbook named \"nope\": none in playbooks/ beside the inventory or in the working directory, and gantry has none built in by that name (built in: cluster, node-prep, reset)\n"
    );
    let out = run(&["roles"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout)
            .contains("kubeadm  (cluster)\n    Kubernetes on the cluster's hosts with kubeadm"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    let out = gantry(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let bash = text(&out.stdout);
    assert!(bash.contains("complete -F _gantry"), "{bash}");
    assert!(
        bash.contains("--ask-become-pass"),
        "every flag is completed"
    );
    let out = gantry(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let man = text(&out.stdout);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &man[..80.min(man.len())]
    );
    assert!(man.contains(".TH gantry 1"), "roff with a title line");
}

/// The inventory's addons and node labels are checked at validate, each
/// problem at its line: an unknown addon, a namespace that is not a DNS
/// label, addons with no bundle to install them from, a label value the
/// API server would refuse.
#[test]
fn bad_addons_and_node_labels_are_refused_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let inv = small_inventory(dir.path(), |s| {
        s.replace(
            "    roles: [worker, gpu]\n",
            "    roles: [worker, gpu]\n    vars: { node_labels: { gpu: \"o n\" } }\n",
        ) + "addons:\n  hami: { namespace: Hami_System }\n  grafana: {}\n"
    });
    let written = std::fs::read_to_string(&inv).unwrap();
    let line = |needle: &str| {
        written
            .lines()
            .position(|l| !l.starts_with('#') && l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in the inventory"))
            + 1
    };
    let out = gantry(&["validate", "-i", &inv]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for (needle, want) in [
        (
            "node_labels",
            "error: hosts[3].vars.node_labels.gpu: label gpu: \"o n\" is not a label value",
        ),
        (
            "Hami_System",
            "error: addons.hami.namespace: \"Hami_System\" is not a namespace name",
        ),
        (
            "  hami:",
            "error: addons.hami: addons are installed from the bundle's chart archives: name the bundle (`bundle: DIR`)",
        ),
        (
            "grafana",
            "error: addons.grafana: unknown addon `grafana`, expected one of `kube-prometheus-stack`, `gpu-operator`, `hami`, `kubernetes-dashboard`",
        ),
    ] {
        let at = format!("{inv}:{}:", line(needle));
        assert!(
            err.lines().any(|l| l.starts_with(&at) && l.contains(want)),
            "{want:?} at {at} not in:\n{err}"
        );
    }
    assert!(
        err.ends_with("4 error(s); nothing was changed on any host\n"),
        "{err}"
    );
}
