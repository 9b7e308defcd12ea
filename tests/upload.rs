//! Lab test of the `upload` module, the bundle's transfer: real hosts, real
//! sshd, a 256 MiB artifact of random bytes. A transfer cut midway (the
//! host's receiving `cat` stopped, the task's timeout reached) resumes from
//! what arrived; a host that holds the file gets 0 bytes; a tampered copy is
//! sent again; wrong bytes land nowhere and leave no temp file.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Lab, image_tarball, role_playbook, row, text};

const SIZE: usize = 256 << 20;

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A playbook with one upload task, in its own directory beside its role.
fn playbook(
    dir: &std::path::Path,
    name: &str,
    src: &str,
    sha: &str,
    timeout: Option<u64>,
) -> String {
    let role = dir.join(format!("roles/{name}"));
    std::fs::create_dir_all(&role).unwrap();
    let t = timeout.map_or(String::new(), |t| format!("  timeout: {t}\n"));
    std::fs::write(
        role.join("tasks.yaml"),
        format!(
            "- name: the artifact\n  upload:\n    src: {src}\n    dest: /var/lib/gantry-test/bundle/artifact.bin\n    sha256: {sha}\n{t}"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    let pb = dir.join(format!("playbooks/{name}.yaml"));
    std::fs::write(
        &pb,
        format!("- name: upload\n  hosts: all\n  roles: [{name}]\n"),
    )
    .unwrap();
    pb.to_str().unwrap().to_string()
}

#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn uploads_resume_skip_what_is_there_and_refuse_wrong_bytes() {
    let lab = Lab::up_with("t-upload", 35, "master1:control-plane,worker1:worker");
    let work = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; SIZE];
    getrandom::fill(&mut data).unwrap();
    // The artifact in a bundle the inventory names: the tasks take its
    // path and sha256 from the manifest (`bundle.files`).
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(bundle.join("bin")).unwrap();
    let src = bundle.join("bin/artifact.bin");
    std::fs::write(&src, &data).unwrap();
    let sha = sha256_hex(&data);
    std::fs::write(
        bundle.join("manifest.yaml"),
        format!("artifacts:\n  - {{ name: artifact, kind: binary, version: \"1\", arch: all, os: linux, file: bin/artifact.bin, size: {SIZE}, sha256: {sha} }}\n"),
    )
    .unwrap();
    let mut inv = std::fs::read_to_string(&lab.inventory).unwrap();
    inv.push_str(&format!("bundle: {}\n", bundle.display()));
    std::fs::write(&lab.inventory, inv).unwrap();
    let src_s = "\"{{ bundle.files['bin/artifact.bin'].path }}\"";
    let sha_t = "\"{{ bundle.files['bin/artifact.bin'].sha256 }}\"";
    let dest = "/var/lib/gantry-test/bundle/artifact.bin";
    let part = "/var/lib/gantry-test/bundle/.artifact.bin.gantry-part";
    let host_sha = |h: &str| {
        lab.exec(h, &format!("sha256sum < {dest} | cut -c1-64"))
            .trim()
            .to_string()
    };

    // 1. Cut midway: master1's receiving `cat` is stopped once bytes have
    // arrived, and the task's 3 s timeout ends the transfer.
    let cut_pb = playbook(work.path(), "cut", src_s, sha_t, Some(3));
    let stopper = Command::new("docker")
        .args([
            "exec",
            &lab.container("master1"),
            "sh",
            "-c",
            &format!("i=0; while [ $i -lt 3000 ]; do s=$(stat -c %s {part} 2>/dev/null || echo 0); if [ \"$s\" -gt 0 ] && pkill -STOP -x cat; then echo stopped; exit 0; fi; i=$((i+1)); sleep 0.01; done; exit 1"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cut = lab.gantry_within(
        &[
            "apply",
            "--accept-new-host-keys",
            "-p",
            &cut_pb,
            "--limit",
            "master1",
        ],
        Duration::from_secs(120),
    );
    let stopped = stopper.wait_with_output().unwrap();
    assert_eq!(text(&stopped.stdout), "stopped\n");
    lab.exec("master1", "pkill -CONT -x cat || true; sleep 1");
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut.stdout));
    assert!(
        text(&cut.stdout).contains(
            "the upload did not finish within 3s (the task's timeout); the next run resumes it"
        ),
        "{}",
        text(&cut.stdout)
    );
    let arrived: usize = lab
        .exec("master1", &format!("stat -c %s {part}"))
        .trim()
        .parse()
        .unwrap();
    assert!(arrived > 0 && arrived < SIZE, "{arrived} bytes arrived");
    assert!(!lab.try_exec("master1", &format!("test -e {dest}")).0);

    // 2. Without the timeout: master1 resumes from what arrived, worker1
    // gets the whole file; both end with the right bytes, root's, 0644,
    // and no partial file.
    let pb = playbook(work.path(), "whole", src_s, sha_t, None);
    let out = lab.gantry_within(
        &[
            "apply",
            "--skip-preflight",
            "--accept-new-host-keys",
            "-p",
            &pb,
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("changed master1 whole/the artifact: {dest} does not exist; {arrived} of {SIZE} bytes arrived earlier, the rest is sent\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "changed worker1 whole/the artifact: {dest} does not exist; {SIZE} bytes are sent\n"
        )),
        "{stdout}"
    );
    for h in ["master1", "worker1"] {
        assert_eq!(host_sha(h), sha, "{h}");
        assert_eq!(
            lab.exec(h, &format!("stat -c '%u %g %a' {dest} $(dirname {dest})")),
            "0 0 644\n0 0 755\n",
            "{h}"
        );
        assert!(!lab.try_exec(h, &format!("test -e {part}")).0, "{h}");
    }

    // 3. A rerun sends nothing: both ok, the files untouched (same inode
    // and change time).
    let before = lab.exec("master1", &format!("stat -c '%i %z' {dest}"));
    let again = lab.gantry(&["apply", "--skip-preflight", "-p", &pb]);
    assert_eq!(row(&again, "master1"), [1, 0, 0, 0, 0]);
    assert_eq!(row(&again, "worker1"), [1, 0, 0, 0, 0]);
    assert_eq!(
        lab.exec("master1", &format!("stat -c '%i %z' {dest}")),
        before
    );

    // 4. One byte of worker1's copy changed (same size): sent again there,
    // and only there.
    lab.exec(
        "worker1",
        &format!("printf 'X' | dd of={dest} bs=1 seek=1000 conv=notrunc status=none"),
    );
    let tampered = lab.gantry(&["apply", "--skip-preflight", "-p", &pb]);
    assert_eq!(row(&tampered, "master1"), [1, 0, 0, 0, 0]);
    assert_eq!(row(&tampered, "worker1"), [0, 1, 0, 0, 0]);
    assert!(
        text(&tampered.stdout).contains(&format!(", not {sha}; {SIZE} bytes are sent\n")),
        "{}",
        text(&tampered.stdout)
    );
    assert_eq!(host_sha("worker1"), sha);

    // 5. Bytes that do not hash to the pinned sha256 (the controller's file
    // changed under the manifest): refused on the host, the live file kept,
    // no partial file left.
    let wrong = sha256_hex(b"another file");
    let bad_pb = playbook(work.path(), "bad", src_s, &wrong, None);
    let bad = lab.gantry(&[
        "apply",
        "--skip-preflight",
        "-p",
        &bad_pb,
        "--limit",
        "worker1",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stdout).contains(&format!(
            "gantry upload: what arrived has sha256 {sha}, not {wrong}; nothing was put in place"
        )),
        "{}",
        text(&bad.stdout)
    );
    assert_eq!(host_sha("worker1"), sha);
    assert!(!lab.try_exec("worker1", &format!("test -e {part}")).0);

    // 6. A directory others may write is refused before a byte is kept.
    lab.exec(
        "worker1",
        &format!("rm {dest}; chmod 0777 $(dirname {dest})"),
    );
    let open = lab.gantry(&["apply", "--skip-preflight", "-p", &pb, "--limit", "worker1"]);
    assert_eq!(open.status.code(), Some(1));
    assert!(
        text(&open.stdout).contains("/var/lib/gantry-test/bundle is writable by group or others; make it 0755 (or tighter), root's"),
        "{}",
        text(&open.stdout)
    );
    assert!(
        !lab.try_exec("worker1", &format!("test -e {part} || test -e {dest}"))
            .0
    );

    // 7. A byte of the controller's bundle changed: apply refuses it at
    // once (exit 2), before logging into any host.
    let logins = lab.logins("master1");
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        f.seek(std::io::SeekFrom::Start(4096)).unwrap();
        f.write_all(&[!data[4096]]).unwrap();
    }
    let refused = lab.gantry(&["apply", "--skip-preflight", "-p", &pb]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("error: artifacts[0].sha256: bin/artifact.bin has sha256 "),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        text(&refused.stderr).ends_with("1 error(s); nothing was changed on any host\n"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(lab.logins("master1"), logins);
}

/// Fan-out: the controller sends the file once; the other hosts get it
/// from hosts that hold it, over their own OpenSSH with a key that lives
/// for one transfer. A host the others cannot reach gets it from the
/// controller. Nothing is left behind: no authorized_keys line, no key, no
/// script, no process.
#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn fan_out_sends_once_and_leaves_nothing_behind() {
    let lab = Lab::up_with(
        "t-fanout",
        36,
        "master1:control-plane,worker1:worker,worker2:worker,worker3:worker",
    );
    let work = tempfile::tempdir().unwrap();
    let size = 64usize << 20;
    let mut data = vec![0u8; size];
    getrandom::fill(&mut data).unwrap();
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("a.bin"), &data).unwrap();
    let sha = sha256_hex(&data);
    std::fs::write(
        bundle.join("manifest.yaml"),
        format!("artifacts:\n  - {{ name: a, kind: binary, version: \"1\", arch: all, os: linux, file: a.bin, size: {size}, sha256: {sha} }}\n"),
    )
    .unwrap();
    let mut inv = std::fs::read_to_string(&lab.inventory).unwrap();
    inv.push_str(&format!("bundle: {}\n", bundle.display()));
    std::fs::write(&lab.inventory, inv).unwrap();
    let pb = playbook(
        work.path(),
        "fan",
        "\"{{ bundle.files['a.bin'].path }}\"",
        "\"{{ bundle.files['a.bin'].sha256 }}\"",
        None,
    );
    // worker3 takes SSH only from the controller (the lab's gateway).
    let controller = format!("172.29.{}.1", lab.net);
    lab.exec(
        "worker3",
        &format!("nft add table inet t; nft add chain inet t in '{{ type filter hook input priority -10; }}'; nft add rule inet t in ip saddr != {controller} tcp dport 22 drop"),
    );
    let peers = |h: &str| -> usize {
        lab.exec(
            h,
            &format!("journalctl -u ssh -o cat --no-pager | grep '^Accepted publickey for root from ' | grep -vc ' from {controller} ' || true"),
        )
        .trim()
        .parse()
        .unwrap()
    };
    let out = lab.gantry_env(
        &[
            "apply",
            "--skip-preflight",
            "--accept-new-host-keys",
            "-p",
            &pb,
        ],
        &[("GANTRY_LOG", "gantry::relay=info")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let dest = "/var/lib/gantry-test/bundle/artifact.bin";
    let from_peers: Vec<usize> = lab.hosts.iter().map(|h| peers(h)).collect();
    for h in &lab.hosts {
        assert_eq!(
            lab.exec(h, &format!("sha256sum < {dest} | cut -c1-64"))
                .trim(),
            sha,
            "{h}"
        );
        nothing_left(&lab, h);
    }
    // One host got the file from the controller (the seed), the others
    // from hosts holding it, except worker3, which no host can reach: it
    // was either the seed or, after a relay to it failed, sent the file
    // from the controller.
    let log = text(&out.stderr).replace('\u{1b}', "");
    let worker3_failed_over = log.contains("relay failed, sending from the controller: exit 255");
    assert_eq!(from_peers[3], 0, "worker3 took a login from a peer");
    assert_eq!(
        from_peers.iter().sum::<usize>(),
        if worker3_failed_over { 2 } else { 3 },
        "logins from peers by host: {from_peers:?}\n{log}"
    );
    assert_eq!(
        log.matches("relay failed").count(),
        usize::from(worker3_failed_over),
        "{log}"
    );

    // worker3 loses its copy; the others hold one (found in place), so it
    // is sent from one of them, which cannot reach it: after ssh's 10 s
    // connect timeout it comes from the controller instead.
    lab.exec("worker3", &format!("rm {dest}"));
    // worker3 asks last, once the others have found their copies.
    let late = playbook(
        work.path(),
        "late",
        "\"{{ bundle.files['a.bin'].path }}\"",
        "\"{{ bundle.files['a.bin'].sha256 }}\"",
        None,
    );
    let tasks = work.path().join("roles/late/tasks.yaml");
    let upload = std::fs::read_to_string(&tasks).unwrap();
    std::fs::write(
        &tasks,
        format!("- name: wait\n  command: {{ argv: [sleep, \"3\"] }}\n  when: inventory_hostname == 'worker3'\n{upload}"),
    )
    .unwrap();
    let again = lab.gantry_env(
        &["apply", "--skip-preflight", "-p", &late],
        &[("GANTRY_LOG", "gantry::relay=info")],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert_eq!(row(&again, "worker3"), [0, 2, 0, 0, 0]);
    assert_eq!(row(&again, "master1"), [1, 0, 0, 1, 0]);
    let log = text(&again.stderr);
    assert!(
        log.contains("relay failed, sending from the controller: exit 255"),
        "{log}"
    );
    assert_eq!(
        lab.exec("worker3", &format!("sha256sum < {dest} | cut -c1-64"))
            .trim(),
        sha
    );
    assert_eq!(peers("worker3"), 0);
    for h in &lab.hosts {
        nothing_left(&lab, h);
    }
}

/// Nothing of a relay left on a host: the authorized_keys line, the
/// scripts, the keys, a running `ssh`.
fn nothing_left(lab: &Lab, h: &str) {
    assert_eq!(
        lab.exec(h, "grep -c gantry-relay /root/.ssh/authorized_keys || true")
            .trim(),
        "0",
        "{h}"
    );
    assert_eq!(
        lab.exec(h, "ls -A /var/lib/gantry/relay 2>/dev/null || true"),
        "",
        "{h}"
    );
    assert!(
        !lab.try_exec(h, "pgrep -x ssh").0,
        "{h}: an ssh client is left running"
    );
}

/// The bundle's images reach containerd (real containerd 1.6.20 and ctr
/// from Debian, not a stand-in): uploaded, checked, imported into k8s.io
/// once; a second run imports nothing; another tarball of the same
/// reference is imported again; a tampered tarball on the host is refused.
#[test]
#[ignore = "lab test: needs Docker and the lab image; run ./test.sh"]
fn bundle_images_are_imported_once_and_only_from_their_tarball() {
    let lab = Lab::up_with("t-images", 37, "master1:control-plane");
    let work = tempfile::tempdir().unwrap();
    let reference = "lab.gantry.test/tiny:1";
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(bundle.join("images")).unwrap();
    let one = image_tarball(work.path(), reference, "one", "one.tar");
    let two = image_tarball(work.path(), reference, "two", "two.tar");
    std::fs::copy(&one, bundle.join("images/tiny.tar")).unwrap();
    let manifest = |tar: &str| {
        let data = std::fs::read(tar).unwrap();
        std::fs::write(
            bundle.join("manifest.yaml"),
            format!(
                "artifacts:\n  - {{ name: {reference}, kind: image, version: \"1\", arch: amd64, os: linux, file: images/tiny.tar, size: {}, sha256: {} }}\n",
                data.len(),
                sha256_hex(&data)
            ),
        )
        .unwrap();
        std::fs::copy(tar, bundle.join("images/tiny.tar")).unwrap();
        sha256_hex(&data)
    };
    let sha_one = manifest(&one);
    let mut inv = std::fs::read_to_string(&lab.inventory).unwrap();
    inv.push_str(&format!("bundle: {}\n", bundle.display()));
    std::fs::write(&lab.inventory, inv).unwrap();
    let dest = "/var/lib/gantry/bundle/images/tiny.tar";
    let role = work.path().join("roles/images");
    std::fs::create_dir_all(&role).unwrap();
    std::fs::write(
        role.join("tasks.yaml"),
        format!(
            "- name: containerd runs\n  service: {{ name: containerd, state: started }}\n\
             - name: the tarball\n  upload:\n    src: \"{{{{ bundle.files['images/tiny.tar'].path }}}}\"\n    dest: {dest}\n    sha256: \"{{{{ bundle.files['images/tiny.tar'].sha256 }}}}\"\n\
             - name: the image\n  image:\n    src: {dest}\n    ref: {reference}\n    sha256: \"{{{{ bundle.files['images/tiny.tar'].sha256 }}}}\"\n    snapshotter: native\n"
        ),
    )
    .unwrap();
    let pb = &role_playbook(work.path(), "images");
    let labels = || {
        lab.exec(
            "master1",
            &format!("ctr -n k8s.io images ls | awk '$1 == \"{reference}\" {{ print $NF }}'"),
        )
    };

    // 1. Imported, labelled with the tarball's sha256.
    let out = lab.gantry(&[
        "apply",
        "--skip-preflight",
        "--accept-new-host-keys",
        "-p",
        pb,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!(
            "changed master1 images/the image: {reference} is not in containerd's k8s.io namespace\n"
        )),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        labels(),
        format!("gantry.bundle.sha256={sha_one},io.cri-containerd.image=managed\n")
    );

    // 2. Again: nothing imported, nothing uploaded.
    let again = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(
        row(&again, "master1"),
        [3, 0, 0, 0, 0],
        "{}",
        text(&again.stdout)
    );

    // 3. Another tarball of the same reference: uploaded and imported again.
    let sha_two = manifest(&two);
    let out = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(
        row(&out, "master1"),
        [1, 2, 0, 0, 0],
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains(&format!(
            "changed master1 images/the image: {reference} is in k8s.io from another tarball (sha256 {sha_one})\n"
        )),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        labels(),
        format!("gantry.bundle.sha256={sha_two},io.cri-containerd.image=managed\n")
    );

    // 4. The image gone and the host's tarball changed under it: the image
    // task alone refuses to import it (the upload task is left out).
    std::fs::write(
        role.join("tasks.yaml"),
        format!(
            "- name: the image\n  image:\n    src: {dest}\n    ref: {reference}\n    sha256: {sha_two}\n    snapshotter: native\n"
        ),
    )
    .unwrap();
    lab.exec(
        "master1",
        &format!("ctr -n k8s.io images rm {reference} >/dev/null; cp {dest} /root/tiny.good; printf 'X' | dd of={dest} bs=1 seek=100 conv=notrunc status=none"),
    );
    let bad = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));
    assert!(
        text(&bad.stdout).contains(&format!(
            "{dest} does not have sha256 {sha_two}; not imported"
        )),
        "{}",
        text(&bad.stdout)
    );
    assert_eq!(labels(), "");

    // 5. containerd stopped (the good tarball back): plan says the image
    // is imported once containerd runs (on a fresh host the runtime play
    // starts it first); apply, with nothing here to start it, fails with
    // ctr's own words and imports nothing.
    lab.exec(
        "master1",
        &format!("cp /root/tiny.good {dest} && systemctl stop containerd"),
    );
    let plan = lab.gantry(&["plan", "-p", pb]);
    assert!(
        text(&plan.stdout).contains(&format!(
            "containerd is not running yet: {reference} is imported once it runs"
        )),
        "{}",
        text(&plan.stdout)
    );
    let down = lab.gantry(&["apply", "--skip-preflight", "-p", pb]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down.stdout));
    assert!(
        text(&down.stdout).contains("FAILED master1 images/the image")
            && text(&down.stdout).contains("containerd.sock"),
        "{}",
        text(&down.stdout)
    );
    lab.exec("master1", "systemctl start containerd");
    assert_eq!(labels(), "");
}
