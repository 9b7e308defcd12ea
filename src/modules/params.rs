//! Parameter types several modules share.

use serde::Deserialize;
use serde_json::Value as Json;

/// A file mode, written as octal digits (`"0644"` or `644`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Json::deserialize(d)? {
            Json::String(s) => s,
            Json::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "mode must be octal digits like \"0644\", not {other}"
                )));
            }
        };
        u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Mode)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("mode {text:?} is not octal digits like \"0644\""))
            })
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}

/// A regexp compiled, or why not in one line (the regex crate's message
/// draws the pattern over several).
pub fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| match e {
        regex::Error::Syntax(text) => {
            let why = text
                .lines()
                .last()
                .unwrap_or("")
                .trim_start_matches("error: ");
            format!("{pattern:?} does not compile: {why}")
        }
        other => format!("{pattern:?} does not compile: {other}"),
    })
}
