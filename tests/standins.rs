//! The lab's stand-ins refuse what the real tools refuse, with the real
//! tools' words (captured in tests/fixtures/outputs/), and say they are
//! stand-ins in their version. No lab needed: they run here.

use std::process::{Command, Output};

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/outputs/{name}", root())).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn nvidia_smi(args: &[&str], output: &str) -> Output {
    Command::new("sh")
        .arg(format!("{}/lab/standin/nvidia-smi", root()))
        .args(args)
        .env(
            "NVIDIA_SMI_STANDIN_OUTPUT",
            format!("{}/tests/fixtures/outputs/{output}", root()),
        )
        .output()
        .unwrap()
}

#[test]
fn nvidia_smi_stand_in_answers_as_the_real_tool() {
    let table = "nvidia-smi-580.159.04.txt";
    let out = nvidia_smi(&[], table);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), fixture(table));
    // --version: the real format, and the stand-in says what it is.
    let out = nvidia_smi(&["--version"], table);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).replacen(" (lab-stand-in)", "", 1),
        fixture("nvidia-smi-580.159.04--version.txt")
    );
    assert!(text(&out.stdout).contains("lab-stand-in"));
    // An option the real tool does not have: its words, its status.
    let out = nvidia_smi(&["--bogus-flag"], table);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        text(&out.stdout),
        fixture("nvidia-smi-580.159.04--bogus-flag.txt")
    );
    // A real option it does not serve: refused, never a made-up answer.
    let out = nvidia_smi(&["-q"], table);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    // No driver behind it.
    let out = nvidia_smi(&[], "no-such-file");
    assert_eq!(out.status.code(), Some(9));
    assert!(text(&out.stdout).starts_with(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    ));
}

#[test]
fn kube_apiserver_stand_in_refuses_unknown_flags() {
    let run = |args: &[&str]| {
        Command::new("python3")
            .arg(format!("{}/lab/standin/kube-apiserver", root()))
            .args(args)
            .output()
            .unwrap()
    };
    for (args, err) in [
        (
            &["--insecure-port=8080"][..],
            "Error: unknown flag: --insecure-port\n",
        ),
        (&["-x"], "Error: unknown shorthand flag: 'x' in -x\n"),
        (
            &["serve"],
            "Error: unknown command \"serve\" for \"kube-apiserver\"\n",
        ),
        (
            &["--secure-port"],
            "Error: flag needs an argument: --secure-port\n",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&out.stderr), err, "{args:?}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "Kubernetes v1.34.3 (lab-stand-in)\n");
}

fn kubeadm(args: &[&str], config: Option<&str>) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(c) = config {
        let p = dir.path().join("kubeadm.yaml");
        std::fs::write(&p, c).unwrap();
        a.push(p.display().to_string());
    }
    let out = Command::new("python3")
        .arg(format!("{}/lab/standin/kubeadm", root()))
        .args(&a)
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

const INIT: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: abcdef.0123456789abcdef
    ttl: 24h0m0s
nodeRegistration: { name: master1, kubeletExtraArgs: [{ name: node-ip, value: 10.0.0.1 }] }
certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.34.3
controlPlaneEndpoint: 10.0.0.100:6553
networking: { podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12 }
apiServer: { certSANs: [10.0.0.100] }
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
";

const TRAILER: &str = "To see the stack trace of this error execute with --v=5 or higher\n";

/// The kubeadm stand-in reads configs as strictly as kubeadm v1.34: a good
/// v1beta4 file passes; an unknown field, an unknown kind, a malformed
/// token, CA hash, endpoint or subnet, a join without a pinned CA, a
/// wrong flag and a wrong command are refused with kubeadm's text.
#[test]
fn kubeadm_stand_in_validates_configs_as_strictly_as_kubeadm() {
    let validate = |cfg: &str| kubeadm(&["config", "validate", "--config"], Some(cfg));
    assert_eq!(validate(INIT), (Some(0), "ok\n".into(), String::new()));
    let gvk = |kind: &str| {
        format!(
            "schema.GroupVersionKind{{Group:\"kubeadm.k8s.io\", Version:\"v1beta4\", Kind:\"{kind}\"}}"
        )
    };
    for (from, to, err) in [
        (
            "apiServer: { certSANs",
            "apiServer: { timeoutForControlPlane: 4m0s, certSANs",
            format!("error unmarshaling configuration {}: strict decoding error: unknown field \"apiServer.timeoutForControlPlane\"\n", gvk("ClusterConfiguration")),
        ),
        (
            "kind: InitConfiguration",
            "kind: InitConfig",
            "unknown configuration schema.GroupVersionKind{Group:\"kubeadm.k8s.io\", Version:\"v1beta4\", Kind:\"InitConfig\"}\n".to_string(),
        ),
        (
            "token: abcdef.0123456789abcdef",
            "token: ABCDEF.0123456789abcdef",
            "bootstrapTokens[0].token: Invalid value: \"\": the bootstrap token is invalid\n".to_string(),
        ),
        (
            "certificateKey: 0123",
            "certificateKey: 123",
            "certificateKey: Invalid value: \"\": certificate key size must be 32 bytes\n".to_string(),
        ),
        (
            "controlPlaneEndpoint: 10.0.0.100:6553",
            "controlPlaneEndpoint: 10.0.0.100:65536",
            "controlPlaneEndpoint: Invalid value: \"10.0.0.100:65536\": must be a host or host:port\n".to_string(),
        ),
        (
            "podSubnet: 10.244.0.0/16",
            "podSubnet: 10.244.0.1/16",
            "networking.podSubnet: Invalid value: \"10.244.0.1/16\": couldn't parse subnet\n".to_string(),
        ),
        (
            "ttl: 24h0m0s",
            "ttl: a day",
            format!("error unmarshaling configuration {}: bootstrapTokens[0].ttl: invalid value \"a day\" for a duration\n", gvk("InitConfiguration")),
        ),
    ] {
        let bad = INIT.replace(from, to);
        assert_ne!(bad, INIT, "{from}");
        assert_eq!(
            validate(&bad),
            (Some(1), String::new(), format!("{err}{TRAILER}")),
            "{to}"
        );
    }
    // A join must pin the CA: token discovery with no hash is refused.
    let join = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: 10.0.0.100:6553\n";
    let (code, _, err) = validate(join);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("discovery.bootstrapToken.caCertHashes: Invalid value: []: using token-based discovery without caCertHashes can be unsafe."), "{err}");
    let pinned = format!("{join}    caCertHashes: [\"sha256:{}\"]\n", "a".repeat(64));
    assert_eq!(validate(&pinned).0, Some(0));
    let (code, _, err) = validate(&format!("{join}    caCertHashes: [\"md5:abc\"]\n"));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("invalid public key hash, expected \"format:hex-value\""),
        "{err}"
    );
    // v1beta3 still reads, with kubeadm's deprecation warning.
    let (code, out, err) =
        validate("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n");
    assert_eq!((code, out.as_str()), (Some(0), "ok\n"));
    assert!(
        err.contains(
            "your configuration file uses a deprecated API spec: \"kubeadm.k8s.io/v1beta3\""
        ),
        "{err}"
    );
    // Flags and commands.
    assert_eq!(
        kubeadm(&["config", "validate", "--confg", "x"], None),
        (
            Some(1),
            String::new(),
            format!("unknown flag: --confg\n{TRAILER}")
        )
    );
    assert_eq!(
        kubeadm(&["inti"], None),
        (
            Some(1),
            String::new(),
            format!("unknown command \"inti\" for \"kubeadm\"\n{TRAILER}")
        )
    );
    // A real command the stand-in does not serve says so; it never fakes a
    // success.
    assert_eq!(
        kubeadm(&["upgrade", "plan"], None),
        (
            Some(2),
            String::new(),
            "lab-stand-in: kubeadm upgrade plan: not served by this stand-in yet\n".into()
        )
    );
    // Version and the image list.
    let (code, out, _) = kubeadm(&["version"], None);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("kubeadm version: &version.Info{Major:\"1\", Minor:\"34\", ")
            && out.contains("GitVersion:\"v1.34.3\", GitCommit:\"lab-stand-in\""),
        "{out}"
    );
    assert_eq!(kubeadm(&["version", "-o", "short"], None).1, "v1.34.3\n");
    assert_eq!(
        kubeadm(
            &[
                "config",
                "images",
                "list",
                "--kubernetes-version",
                "v1.34.3"
            ],
            None
        )
        .1,
        "registry.k8s.io/kube-apiserver:v1.34.3\nregistry.k8s.io/kube-controller-manager:v1.34.3\nregistry.k8s.io/kube-scheduler:v1.34.3\nregistry.k8s.io/kube-proxy:v1.34.3\nregistry.k8s.io/coredns/coredns:v1.12.1\nregistry.k8s.io/pause:3.10.1\nregistry.k8s.io/etcd:3.6.4-0\n"
    );
}

/// gantry's bundle list and kubeadm agree on kubeadm's images: the set
/// `gantry bundle list` derives for v1.34.3 is the one `kubeadm config
/// images list` prints (the stand-in's, taken from kubeadm v1.34).
#[test]
fn the_bundle_lists_the_images_kubeadm_pulls() {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["bundle", "list", "--yaml", "-i"])
        .arg(format!("{}/inventory/single-master.yaml", root()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut listed: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("  source: docker://registry.k8s.io/"))
        .map(|r| format!("registry.k8s.io/{r}"))
        .collect();
    listed.sort();
    let mut pulled: Vec<String> = kubeadm(&["config", "images", "list"], None)
        .1
        .lines()
        .map(str::to_string)
        .collect();
    pulled.sort();
    assert_eq!(listed, pulled);
}

/// init, join, token and reset refuse what kubeadm refuses, with its words,
/// before they touch anything: unknown flags, a config that does not pass
/// `config validate`, a join config with no CA pin.
#[test]
fn kubeadm_stand_in_refuses_bad_init_join_token_and_reset_calls() {
    for (args, err) in [
        (
            &["init", "--pod-network-cidr=10.0.0.0/8"][..],
            "unknown flag: --pod-network-cidr\n",
        ),
        (
            &["join", "--token", "abcdef.0123456789abcdef"],
            "unknown flag: --token\n",
        ),
        (
            &["token", "create", "--certificate-key", "00"],
            "cannot use --certificate-key without --print-join-command\n",
        ),
        (
            &["token", "create", "bad-token"],
            "the bootstrap token \"bad-token\" was not of the form",
        ),
        (&["reset", "--bogus"], "unknown flag: --bogus\n"),
    ] {
        let (code, _, stderr) = kubeadm(args, None);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(err), "{args:?}: {stderr}");
    }
    // A malformed config is refused by init as by config validate.
    let (code, _, stderr) = kubeadm(
        &["init", "--config"],
        Some(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens: [{token: short}]\n",
        ),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(
            "bootstrapTokens[0].token: Invalid value: \"\": the bootstrap token is invalid\n"
        ),
        "{stderr}"
    );
    // Token discovery without a pinned CA is refused, as kubeadm refuses it.
    let (code, _, stderr) = kubeadm(
        &["join", "--config"],
        Some(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken: {token: abcdef.0123456789abcdef, apiServerEndpoint: \"10.0.0.1:6443\"}\n",
        ),
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("caCertHashes: Invalid value: []: using token-based discovery without caCertHashes can be unsafe"), "{stderr}");
    let (code, _, stderr) = kubeadm(
        &["join", "--config"],
        Some(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken: {token: abcdef.0123456789abcdef, apiServerEndpoint: \"10.0.0.1:6443\", caCertHashes: [\"md5:00\"]}\n",
        ),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("invalid public key hash, expected \"format:hex-value\""),
        "{stderr}"
    );
}

/// The kubelet stand-in (the same program, called kubelet) refuses unknown
/// flags, and exits at once with the real kubelet's error while kubeadm has
/// written no config, so systemd restarts it as on a real node.
#[test]
fn kubelet_stand_in_refuses_unknown_flags_and_a_missing_config() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::os::unix::fs::symlink(format!("{}/lab/standin/kubeadm", root()), &kubelet).unwrap();
    let run = |args: &[&str]| {
        Command::new("python3")
            .arg(&kubelet)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--version"]);
    assert_eq!(text(&out.stdout), "Kubernetes v1.34.3 (lab-stand-in)\n");
    let out = run(&["--cgroup-driver=systemd"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error: unknown flag: --cgroup-driver\n");
    let missing = dir.path().join("config.yaml");
    let out = run(&[&format!("--config={}", missing.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "\"command failed\" err=\"failed to load kubelet config file, path: {p}, error: failed to load Kubelet config file {p}, error failed to read kubelet config file \\\"{p}\\\", error: open {p}: no such file or directory\"",
            p = missing.display()
        )),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&missing, "kind: KubeProxyConfiguration\n").unwrap();
    let out = run(&[&format!("--config={}", missing.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no kind \\\"KubeProxyConfiguration\\\" is registered"),
        "{}",
        text(&out.stderr)
    ); // The static CPU manager with no CPU reserved: the real kubelet's
    // words, before anything is written.
    std::fs::write(&missing, "kind: KubeletConfiguration\n").unwrap();
    let config = format!("--config={}", missing.display());
    let out = run(&[
        &config,
        "--cpu-manager-policy=static",
        "--kube-reserved=memory=1Gi",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"command failed\" err=\"[cpumanager] unable to determine reserved CPU resources for static policy\""),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[&config, "--cpu-manager-policy=dynamic"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown policy: \\\"dynamic\\\""),
        "{}",
        text(&out.stderr)
    );
}

/// helm v3.14.4's words (helm's source at that tag: pkg/chart/loader,
/// cmd/helm), for what needs no cluster: the version, a chart archive read
/// as helm reads it, and what it refuses.
#[test]
fn helm_stand_in_reads_charts_and_refuses_as_helm_does() {
    let dir = tempfile::tempdir().unwrap();
    let helm = |args: &[&str]| {
        let o = Command::new("python3")
            .arg(format!("{}/lab/standin/helm", root()))
            .args(args)
            .current_dir(dir.path())
            .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
            .output()
            .unwrap();
        (o.status.code(), text(&o.stdout), text(&o.stderr))
    };
    let chart = |name: &str, files: &[(&str, &str)]| {
        let root = dir.path().join(format!("{name}.d"));
        std::fs::create_dir_all(root.join("demo")).unwrap();
        for (f, body) in files {
            std::fs::write(root.join("demo").join(f), body).unwrap();
        }
        let st = Command::new("tar")
            .args([
                "-C",
                root.to_str().unwrap(),
                "-czf",
                &format!("{name}.tgz"),
                "demo",
            ])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        format!("{name}.tgz")
    };
    let (rc, out, _) = helm(&["version", "--short"]);
    assert_eq!(
        (rc, out.as_str()),
        (Some(0), "v3.14.4+g81c902a (lab-stand-in)\n")
    );
    let good = chart(
        "good",
        &[("Chart.yaml", "apiVersion: v2\nname: demo\nversion: 1.2.3\n")],
    );
    let (rc, out, _) = helm(&["show", "chart", &good]);
    assert_eq!(rc, Some(0));
    assert!(
        out.starts_with("apiVersion: v2\nname: demo\nversion: 1.2.3\n"),
        "{out}"
    );
    let none = chart("none", &[("values.yaml", "a: 1\n")]);
    assert_eq!(
        helm(&["show", "chart", &none]),
        (
            Some(1),
            String::new(),
            "Error: Chart.yaml file is missing\n".into()
        )
    );
    let nover = chart("nover", &[("Chart.yaml", "apiVersion: v2\nname: demo\n")]);
    assert_eq!(
        helm(&["show", "chart", &nover]).2,
        "Error: validation: chart.metadata.version is required\n"
    );
    std::fs::write(dir.path().join("plain.tgz"), "not a chart\n").unwrap();
    let (rc, _, err) = helm(&["show", "chart", "plain.tgz"]);
    assert_eq!(rc, Some(1));
    assert!(
        err.contains("does not appear to be a gzipped archive"),
        "{err}"
    );
    let (rc, _, err) = helm(&["list", "--bogus"]);
    assert_eq!(
        (rc, err.as_str()),
        (Some(1), "Error: unknown flag: --bogus\n")
    );
    let (rc, _, err) = helm(&["lisst"]);
    assert_eq!(rc, Some(1));
    assert!(
        err.starts_with("Error: unknown command \"lisst\" for \"helm\"\n"),
        "{err}"
    );
    // A real command it does not serve: refused, never a made-up answer.
    let (rc, _, err) = helm(&["template", "x", &good]);
    assert_eq!(rc, Some(2));
    assert!(err.contains("not served by this stand-in"), "{err}");
    // No cluster behind the kubeconfig.
    let (rc, _, err) = helm(&["upgrade", "--install", "demo", &good]);
    assert_eq!(rc, Some(1));
    assert!(
        err.starts_with("Error: Kubernetes cluster unreachable"),
        "{err}"
    );
}
