//! Hardware: memory and logical CPUs, from /proc/meminfo and lscpu.

/// MemTotal from /proc/meminfo, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The logical CPU count from `lscpu`.
pub fn parse_lscpu(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("CPU(s):"))
        .and_then(|v| v.trim().parse().ok())
}
