//! The one error type of gantry, and the diagnostics that input checks collect.
//! Rendering lives here too, so every message a user sees has one shape.

use std::fmt;
use std::path::PathBuf;

/// Where in an input file a problem is. Lines and columns are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the input, before any host is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Option<Location>,
    /// The field, as a path: `hosts[2].address`.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    /// An error at `field`, not yet located in a file (`Positions::attach`
    /// or `locate` place it).
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            location: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if let Some(l) = &self.location {
            write!(f, "{}:{}:{}: ", l.file.display(), l.line, l.col)?
        }
        if self.field.is_empty() {
            write!(f, "{level}: {}", self.message)
        } else {
            write!(f, "{level}: {}: {}", self.field, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that does not pass the checks; every problem found is listed.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("dependency cycle between tasks: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("{0}")]
    Other(String),
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    let errors = d.iter().filter(|d| d.severity == Severity::Error).count();
    let mut s: String = d.iter().map(|d| format!("{d}\n")).collect();
    s.push_str(&format!(
        "{errors} error(s); nothing was changed on any host"
    ));
    s
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Usage(_) | Error::Cycle(_) | Error::Io { .. } => 2,
            Error::Other(_) => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
