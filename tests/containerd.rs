//! Lab test of the `containerd` role with the real containerd 1.6.20 from
//! Debian (not a stand-in): the config gantry renders is the one
//! `containerd config dump` reports (SystemdCgroup, the pause image kubeadm
//! v1.34 wants, config_path mirrors); a second apply changes nothing and
//! does not restart containerd; the bundle's images for the host's
//! architecture are imported once; a drifted config shows in plan and is
//! repaired on that host alone.

mod common;

use common::{Lab, image_tarball, role_playbook, row, text};

fn pid(lab: &Lab, host: &str) -> String {
    lab.exec(host, "systemctl show -p MainPID --value containerd")
        .trim()
        .to_string()
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn containerd_is_configured_judged_by_itself_and_repaired() {
    let lab = Lab::up_with(
        "t-containerd",
        38,
        "master1:control-plane,worker1:worker,gpu1:worker+gpu",
    );
    let mut inv = std::fs::read_to_string(&lab.inventory).unwrap();
    inv = inv.replace(
        "vars:\n",
        "vars:\n  containerd_registry_mirrors:\n    docker.io: [\"https://mirror.lab.test:5000\"]\n",
    );
    let work = tempfile::tempdir().unwrap();
    // A bundle with kubeadm's pause image for amd64 (a one-file image made
    // here under that name) and an image for arm64, which no host is.
    let bundle = work.path().join("bundle");
    let mut manifest = String::from("artifacts:\n");
    for (reference, arch, file) in [
        (
            "registry.k8s.io/pause:3.10.1",
            "amd64",
            "images/amd64/registry.k8s.io_pause_3.10.1.tar",
        ),
        ("lab.gantry.test/arm:1", "arm64", "images/arm64/arm.tar"),
    ] {
        let made = image_tarball(work.path(), reference, arch, &format!("{arch}.tar"));
        std::fs::create_dir_all(bundle.join(file).parent().unwrap()).unwrap();
        std::fs::copy(&made, bundle.join(file)).unwrap();
        let data = std::fs::read(&made).unwrap();
        use sha2::Digest;
        let (name, version) = reference.rsplit_once(':').unwrap();
        manifest.push_str(&format!(
            "  - {{ name: {name}, kind: image, version: \"{version}\", arch: {arch}, os: linux, file: {file}, size: {}, sha256: {} }}\n",
            data.len(),
            hex::encode(sha2::Sha256::digest(&data))
        ));
    }
    std::fs::write(bundle.join("manifest.yaml"), manifest).unwrap();
    inv.push_str(&format!("bundle: {}\n", bundle.display()));
    std::fs::write(&lab.inventory, inv).unwrap();
    let pb = &role_playbook(work.path(), "containerd");

    // 1. From a host where containerd is installed and stopped.
    let out = lab.gantry(&[
        "apply",
        "--skip-preflight",
        "--accept-new-host-keys",
        "-p",
        pb,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    for h in ["master1", "worker1", "gpu1"] {
        assert_eq!(
            lab.exec(
                h,
                "systemctl is-active containerd; systemctl is-enabled containerd"
            ),
            "active\nenabled\n",
            "{h}"
        );
        // containerd's own reading of the file, not the file's text.
        let dump = lab.exec(h, "containerd config dump");
        for want in [
            "    sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n",
            "      snapshotter = \"native\"\n",
            "            SystemdCgroup = true\n",
            "      config_path = \"/etc/containerd/certs.d\"\n",
        ] {
            assert!(dump.contains(want), "{h}: {want:?} not in:\n{dump}");
        }
        // The GPU host's default runtime is NVIDIA's, with the systemd
        // cgroup driver too; the others run runc.
        nvidia_default(&dump, h == "gpu1", h);
        // The host's architecture's images, and only those, are in k8s.io.
        assert_eq!(
            lab.exec(h, "ctr -n k8s.io images ls -q | grep -v '^sha256:'"),
            "registry.k8s.io/pause:3.10.1\n",
            "{h}"
        );
        assert_eq!(
            lab.exec(h, "cat /etc/containerd/certs.d/docker.io/hosts.toml"),
            "# Written by gantry (role containerd): pulls of docker.io go to these\n# mirrors first, in order.\nserver = \"https://registry-1.docker.io\"\n\n[host.\"https://mirror.lab.test:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            "{h}"
        );
    }

    // 2. Again: nothing changes, containerd is not restarted.
    let pids = (pid(&lab, "master1"), pid(&lab, "worker1"));
    let again = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    for h in ["master1", "worker1", "gpu1"] {
        assert_eq!(row(&again, h)[1], 0, "{h}: {}", text(&again.stdout));
    }
    assert_eq!((pid(&lab, "master1"), pid(&lab, "worker1")), pids);

    // 3. SystemdCgroup flipped on worker1: plan shows it there and only
    // there; apply repairs it and restarts containerd on worker1 alone.
    lab.exec(
        "worker1",
        "sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' /etc/containerd/config.toml",
    );
    let plan = lab.gantry(&["plan", "-p", pb]);
    let p = text(&plan.stdout);
    assert!(
        p.contains("\n    -        SystemdCgroup = false\n    +        SystemdCgroup = true\n"),
        "{p}"
    );
    assert_eq!(row(&plan, "master1")[1], 0, "{p}");
    assert!(
        p.contains("would change worker1 containerd/restart containerd after a config change: restart requested\n"),
        "{p}"
    );
    let fix = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(row(&fix, "master1")[1], 0, "{}", text(&fix.stdout));
    assert_eq!(row(&fix, "worker1")[1], 2, "{}", text(&fix.stdout));
    assert_eq!(pid(&lab, "master1"), pids.0);
    assert_ne!(pid(&lab, "worker1"), pids.1);
    assert!(
        lab.exec("worker1", "containerd config dump")
            .contains("            SystemdCgroup = true\n")
    );

    // 4. A config containerd cannot read (a quote in a value breaks the
    // TOML): refused by the real `containerd config dump` before it goes
    // live; the live file and the running daemon are left as they were.
    let live = lab.exec("worker1", "sha256sum /etc/containerd/config.toml");
    let running = pid(&lab, "worker1");
    let inv = std::fs::read_to_string(&lab.inventory).unwrap();
    std::fs::write(
        &lab.inventory,
        inv.replace(
            "containerd_snapshotter: native",
            "containerd_snapshotter: 'native\"x'",
        ),
    )
    .unwrap();
    let bad = lab.gantry(&["apply", "--skip-preflight", "-p", pb, "--limit", "worker1"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));
    assert!(
        text(&bad.stdout)
            .contains("FAILED worker1 containerd/containerd configuration: command failed\n")
            && text(&bad.stdout).contains("stderr: containerd: failed to load TOML: "),
        "{}",
        text(&bad.stdout)
    );
    assert_eq!(
        lab.exec("worker1", "sha256sum /etc/containerd/config.toml"),
        live
    );
    assert_eq!(pid(&lab, "worker1"), running);

    // 5. The pause image changed in the inventory after the GPU runtime is
    // set (the change an nvidia-ctk drop-in would shadow on containerd
    // 1.6): plan shows it on every host, and after apply the GPU host's
    // containerd reports the new image and still nvidia as its default.
    std::fs::write(
        &lab.inventory,
        inv.replace(
            "vars:\n",
            "vars:\n  containerd_sandbox_image: registry.k8s.io/pause:3.10.2\n",
        ),
    )
    .unwrap();
    let plan = lab.gantry(&["plan", "-p", pb]);
    let p = text(&plan.stdout);
    assert!(
        p.contains("    -  sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n    +  sandbox_image = \"registry.k8s.io/pause:3.10.2\"\n"),
        "{p}"
    );
    let moved = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(moved.status.code(), Some(0), "{}", text(&moved.stdout));
    let dump = lab.exec("gpu1", "containerd config dump");
    assert!(
        dump.contains("    sandbox_image = \"registry.k8s.io/pause:3.10.2\"\n"),
        "{dump}"
    );
    nvidia_default(&dump, true, "gpu1");

    // The lab's NVIDIA runtime is a STAND-IN that says so and hands its
    // arguments to the real runc, which refuses what it refuses.
    assert!(
        lab.exec("gpu1", "nvidia-container-runtime --version")
            .contains("lab-stand-in")
    );
    let (ok, _) = lab.try_exec("gpu1", "nvidia-container-runtime --no-such-flag 2>&1");
    assert!(!ok, "runc took an unknown flag");

    // 6. A GPU host without NVIDIA's runtime fails, saying what to do,
    // before its containerd is told to use it.
    lab.exec("gpu1", "mv /usr/bin/nvidia-container-runtime /root/ncr");
    let before = lab.exec("gpu1", "sha256sum /etc/containerd/config.toml");
    std::fs::write(&lab.inventory, &inv).unwrap();
    let missing = lab.gantry(&["apply", "--skip-preflight", "-p", pb, "--limit", "gpu1"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing.stdout));
    assert!(
        text(&missing.stdout).contains("stderr: /usr/bin/nvidia-container-runtime is not there: install the NVIDIA container toolkit (nvidia_toolkit_packages_dir), or set containerd_nvidia_runtime: false"),
        "{}",
        text(&missing.stdout)
    );
    assert_eq!(
        lab.exec("gpu1", "sha256sum /etc/containerd/config.toml"),
        before
    );
}

/// Whether containerd's own dump names NVIDIA's runtime as the default,
/// with its binary and the systemd cgroup driver.
fn nvidia_default(dump: &str, gpu: bool, h: &str) {
    let want = if gpu { "nvidia" } else { "runc" };
    assert!(
        dump.contains(&format!("      default_runtime_name = \"{want}\"\n")),
        "{h}: default runtime {want}:\n{dump}"
    );
    let nvidia = "          [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\n            BinaryName = \"/usr/bin/nvidia-container-runtime\"\n";
    assert_eq!(dump.contains(nvidia), gpu, "{h}:\n{dump}");
    if gpu {
        let options = &dump[dump.find(nvidia).unwrap()..];
        let block: String = options
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(block.contains("SystemdCgroup = true"), "{h}: {block}");
    }
}
