//! The operating system: /etc/os-release, read with shell builtins.

#[derive(Debug, Clone, PartialEq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    /// ID_LIKE, else the id itself.
    pub like: String,
    pub pretty: String,
}

/// The fields of /etc/os-release gantry reads (as the file has them, or as
/// the `os` fact prints them: unquoted).
pub fn parse_os_release(text: &str) -> OsRelease {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    OsRelease {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        like: Some(get("ID_LIKE"))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| get("ID")),
        pretty: get("PRETTY_NAME"),
    }
}
