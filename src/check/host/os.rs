//! os, arch: the supported distributions and architectures.

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::facts::os::parse_os_release;
use crate::inventory::HostSpec;

use super::version_at_least;

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

pub const OS: Check = Check {
    name: "os",
    stage: Stage::Always,
    roles: &[],
    reads: &["os"],
    judge: Judge::Host(os),
    requires: "fail: Ubuntu >= 20.04, RHEL/Rocky >= 8.5, SLES/openSUSE >= 15.3, Debian >= 11, Fedora >= 37",
    source: "requirements doc",
};

fn os(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let os = parse_os_release(&sec.get("os"));
    let (level, required) = match os_minimum(&os.id) {
        Some(min) if version_at_least(&os.version_id, min) => {
            (Level::Pass, format!("{} {} or newer", os.id, min))
        }
        Some(min) => (Level::Fail, format!("{} {} or newer", os.id, min)),
        None => (
            Level::Fail,
            "Ubuntu >= 20.04, RHEL/Rocky >= 8.5, SLES/openSUSE >= 15.3, Debian >= 11, Fedora >= 37"
                .to_string(),
        ),
    };
    Some(finding(
        "os",
        level,
        if os.pretty.is_empty() {
            format!("{} {}", os.id, os.version_id)
        } else {
            os.pretty.clone()
        },
        required,
        "a supported release",
    ))
}

pub const ARCH: Check = Check {
    name: "arch",
    stage: Stage::Always,
    roles: &[],
    reads: &["arch"],
    judge: Judge::Host(arch),
    requires: "fail: x86_64 or aarch64",
    source: "requirements doc",
};

fn arch(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let arch = sec.get("arch");
    Some(finding(
        "arch",
        if arch == "x86_64" || arch == "aarch64" {
            Level::Pass
        } else {
            Level::Fail
        },
        arch.clone(),
        "x86_64 or aarch64",
        "a supported architecture",
    ))
}
