//! gpu, gpu-driver, gpu-toolkit: on GPU nodes, a card, a driver new enough
//! for the GPU Operator, and the container toolkit.

use super::version_at_least;
use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::facts::gpu::parse_nvidia_smi;
use crate::inventory::HostSpec;

pub const GPU: Check = Check {
    name: "gpu",
    stage: Stage::Always,
    roles: &["gpu"],
    reads: &["lspci", "nvidiasmi"],
    judge: Judge::Host(gpu),
    requires: "fail: no NVIDIA GPU (lspci or nvidia-smi)",
    source: "requirements doc",
};

fn gpu(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let parsed = parse_nvidia_smi(&sec.get("nvidiasmi"));
    let pci: u32 = sec.get("lspci").parse().unwrap_or(0);
    let present = pci > 0 || parsed.as_ref().is_some_and(|(_, n)| *n > 0);
    Some(finding(
        "gpu",
        if present { Level::Pass } else { Level::Fail },
        match &parsed {
            Some((_, n)) => format!("{n} NVIDIA GPU(s)"),
            None if pci > 0 => format!("{pci} NVIDIA PCI device(s)"),
            None => "no NVIDIA GPU found".into(),
        },
        "an NVIDIA GPU",
        "check the node's role, or the card's seating and BIOS",
    ))
}

pub const GPU_DRIVER: Check = Check {
    name: "gpu-driver",
    stage: Stage::Always,
    roles: &["gpu"],
    reads: &["nvidiasmi"],
    judge: Judge::Host(gpu_driver),
    requires: "fail: driver below 575 (`vars.nvidia_driver_min`), from `nvidia-smi`'s own output",
    source: "requirements doc, GPU Operator doc",
};

fn gpu_driver(_: &HostSpec, sec: &Sections, p: &Policy, _: &Targets) -> Option<Finding> {
    let smi = sec.get("nvidiasmi");
    let (level, measured) = match parse_nvidia_smi(&smi) {
        Some((v, _)) if version_at_least(&v, &p.driver_min) => (Level::Pass, format!("driver {v}")),
        Some((v, _)) => (Level::Fail, format!("driver {v}")),
        None if smi.is_empty() => (Level::Fail, "nvidia-smi not found: no driver".to_string()),
        None => (
            Level::Fail,
            format!("nvidia-smi failed: {}", smi.lines().next().unwrap_or("")),
        ),
    };
    Some(finding(
        "gpu-driver",
        level,
        measured,
        format!(">= {}", p.driver_min),
        format!("install NVIDIA driver {} or newer", p.driver_min),
    ))
}

pub const GPU_TOOLKIT: Check = Check {
    name: "gpu-toolkit",
    stage: Stage::Always,
    roles: &["gpu"],
    reads: &["nvidiactk"],
    judge: Judge::Host(gpu_toolkit),
    requires: "warn: no nvidia-ctk (the NVIDIA runtime role installs it)",
    source: "GPU Operator doc",
};

fn gpu_toolkit(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let ctk = sec.get("nvidiactk");
    Some(finding(
        "gpu-toolkit",
        if ctk.is_empty() {
            Level::Warn
        } else {
            Level::Pass
        },
        if ctk.is_empty() {
            "nvidia-ctk not found".to_string()
        } else {
            ctk
        },
        "NVIDIA container toolkit",
        "installed by the NVIDIA runtime role (or preinstall nvidia-container-toolkit)",
    ))
}
