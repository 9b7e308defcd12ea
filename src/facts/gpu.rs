//! NVIDIA GPUs: driver version and GPU count from plain `nvidia-smi`.

/// Driver version and GPU count from plain `nvidia-smi` output.
pub fn parse_nvidia_smi(text: &str) -> Option<(String, usize)> {
    let header = text.lines().find(|l| l.contains("Driver Version:"))?;
    let version = header
        .split("Driver Version:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .to_string();
    // In the GPU table (before "Processes:"), each GPU's first row starts
    // with its index and name: "|   0  NVIDIA GeForce RTX 4090        Off |".
    // Its second row starts with fan or "N/A" ("|  0%   48C ..."), not a number.
    let gpus = text
        .lines()
        .take_while(|l| !l.contains("Processes:"))
        .filter_map(|l| l.strip_prefix('|')?.split('|').next())
        .filter(|cell| {
            let mut words = cell.split_whitespace();
            words.next().is_some_and(|w| w.parse::<u32>().is_ok()) && words.next().is_some()
        })
        .count();
    Some((version, gpus))
}

/// Local ports in LISTEN state from `ss -Hltn` / `ss -Hlun`.
pub fn parse_listening(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|addr| addr.rsplit(':').next())
        .filter_map(|p| p.parse().ok())
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// The 99th percentile of fsync write latencies in nanoseconds.
pub fn p99(mut samples: Vec<u64>) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let idx = ((samples.len() as f64) * 0.99).ceil() as usize;
    Some(samples[idx.saturating_sub(1).min(samples.len() - 1)])
}
