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
