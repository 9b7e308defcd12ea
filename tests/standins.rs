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
