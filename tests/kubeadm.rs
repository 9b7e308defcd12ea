//! Lab test of the `kubeadm` role so far: the bundle's kubeadm carried to
//! the hosts, and the init config on the first control plane, checked by
//! that kubeadm before it is written. kubeadm here is the lab's STAND-IN
//! (`lab/standin/kubeadm`, strict `config validate`), carried in the lab
//! bundle as the real binary would be; everything else is real (sshd,
//! systemd, file modes). The token and certificate key gantry made appear in
//! the 0600 file and nowhere in gantry's output or journal.

mod common;

use common::{Lab, role_playbook, row, text};

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn kubeadm_init_config_is_validated_by_kubeadm_and_its_secrets_stay_private() {
    use sha2::Digest;
    let lab = Lab::up_with("t-kubeadm", 39, "master1:control-plane,worker1:worker");
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(bundle.join("bin/amd64")).unwrap();
    let kubeadm = std::fs::read(common::root().join("lab/standin/kubeadm")).unwrap();
    std::fs::write(bundle.join("bin/amd64/kubeadm-v1.34.3"), &kubeadm).unwrap();
    std::fs::write(
        bundle.join("manifest.yaml"),
        format!(
            "artifacts:\n  - {{ name: kubeadm, kind: binary, version: v1.34.3, arch: amd64, os: linux, file: bin/amd64/kubeadm-v1.34.3, size: {}, sha256: {} }}\n",
            kubeadm.len(),
            hex::encode(sha2::Sha256::digest(&kubeadm))
        ),
    )
    .unwrap();
    let inv = std::fs::read_to_string(&lab.inventory).unwrap().replace(
        "vars:\n",
        "vars:\n  # Only kubeadm has a stand-in so far.\n  kubeadm_binaries: [kubeadm]\n",
    ) + &format!("bundle: {}\n", bundle.display());
    std::fs::write(&lab.inventory, &inv).unwrap();
    let pb = &role_playbook(work.path(), "kubeadm");
    let cfg = "/etc/kubernetes/gantry/kubeadm-init.yaml";

    // 1. The binary on every host; the config on master1 alone, root's, 0600.
    let out = lab.gantry(&[
        "apply",
        "--skip-preflight",
        "--accept-new-host-keys",
        "-p",
        pb,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    for h in ["master1", "worker1"] {
        assert_eq!(
            lab.exec(
                h,
                "stat -c '%U %a' /usr/local/bin/kubeadm; kubeadm version -o short"
            ),
            "root 755\nv1.34.3\n",
            "{h}"
        );
    }
    assert_eq!(
        lab.exec(
            "master1",
            &format!("stat -c '%U %a' {cfg} $(dirname {cfg})")
        ),
        "root 600\nroot 700\n"
    );
    assert!(!lab.try_exec("worker1", &format!("test -e {cfg}")).0);
    // The host's kubeadm reads it back as valid.
    assert_eq!(
        lab.exec(
            "master1",
            &format!("kubeadm config validate --config {cfg}")
        ),
        "ok\n"
    );

    // 2. The secrets gantry made are in the file, and nowhere in what gantry
    // printed or journaled.
    let store = lab.inventory.parent().unwrap().join(".gantry");
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("secrets.json")).unwrap()).unwrap();
    let token = secrets["kubeadm_token"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let key = secrets["kubeadm_certificate_key"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let file = lab.exec("master1", &format!("cat {cfg}"));
    assert!(
        file.contains(&format!("  - token: \"{token}\"\n")),
        "{file}"
    );
    assert!(
        file.contains(&format!("certificateKey: \"{key}\"\n")),
        "{file}"
    );
    let journal = std::fs::read_to_string(store.join("journal.jsonl")).unwrap();
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for (what, v) in [("token", &token), ("certificate key", &key)] {
        assert!(!printed.contains(v.as_str()), "the {what} was printed");
        assert!(!journal.contains(v.as_str()), "the {what} was journaled");
    }

    // 3. Again: nothing changes.
    let again = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(row(&again, "master1")[1], 0, "{}", text(&again.stdout));
    assert_eq!(row(&again, "worker1")[1], 0, "{}", text(&again.stdout));

    // 4. A renewed certificate key (the old one's 2 h are up): plan shows
    // the 0600 file changes without showing either key.
    let mut renewed = secrets.clone();
    renewed["kubeadm_certificate_key"]["created"] = 0.into();
    std::fs::write(
        store.join("secrets.json"),
        serde_json::to_vec(&renewed).unwrap(),
    )
    .unwrap();
    let plan = lab.gantry(&["plan", "-p", pb]);
    let shown = format!("{}{}", text(&plan.stdout), text(&plan.stderr));
    assert!(
        shown.contains("(content hidden: the file is not world-readable; 1 line(s) removed, 1 added; --show-secret-diffs shows it)"),
        "{shown}"
    );
    let now: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("secrets.json")).unwrap()).unwrap();
    let key2 = now["kubeadm_certificate_key"]["value"].as_str().unwrap();
    assert_ne!(key2, key);
    assert!(!shown.contains(&key) && !shown.contains(key2), "{shown}");

    // 5. The config is kubeadm's to judge: with no kubeadm on the host the
    // write is refused and no config goes live.
    std::fs::write(
        &lab.inventory,
        inv.replace("kubeadm_binaries: [kubeadm]", "kubeadm_binaries: []"),
    )
    .unwrap();
    lab.exec(
        "master1",
        &format!("rm -f /usr/local/bin/kubeadm /usr/local/bin/.kubeadm.gantry-sha256 {cfg}"),
    );
    let bad = lab.gantry(&["apply", "--skip-preflight", "-p", pb, "--limit", "master1"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));
    assert!(
        text(&bad.stdout).contains("FAILED master1 kubeadm/kubeadm init config: command failed\n"),
        "{}",
        text(&bad.stdout)
    );
    assert!(!lab.try_exec("master1", &format!("test -e {cfg}")).0);
}
