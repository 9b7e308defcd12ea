//! The network as the host sees it: listening ports, and its IPv4 addresses.

use serde_json::{Value as Json, json};

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

/// Each IPv4 address of the host -> its interface and prefix, from the
/// `ipv4` fact ("IFACE ADDR/PREFIX" per line), so roles can find the
/// interface that carries the host's inventory address.
pub fn parse_ipv4(text: &str) -> Json {
    let mut m = serde_json::Map::new();
    for line in text.lines() {
        if let Some((iface, cidr)) = line.split_once(' ') {
            let (ip, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
            m.insert(
                ip.to_string(),
                json!({"iface": iface, "prefix": prefix.parse::<u8>().unwrap_or(32)}),
            );
        }
    }
    Json::Object(m)
}
