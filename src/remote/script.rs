//! Building remote shell commands from typed values. Every argument goes
//! through `quote`; no caller pastes a value into a command line by hand.
//! Also the two conventions of the host's long-lived shell that scripts
//! rely on: gantry's own scripts run as a function (`own_call`), and a
//! request's inputs are shell variables (`input_var`).

/// One argument, quoted for a POSIX shell. A NUL byte cannot be passed to a
/// shell at all, so it is refused rather than silently cut.
pub fn quote(s: &str) -> Result<String, String> {
    // The value is never in the message: it may be a secret or a file's
    // content.
    shlex::try_quote(s).map(|c| c.into_owned()).map_err(|_| {
        format!(
            "a value of {} bytes holds a NUL byte (at byte {}), which no remote command can be given",
            s.len(),
            s.find('\0').unwrap_or_default()
        )
    })
}

/// A command line from an argument vector, each argument quoted.
pub fn command<S: AsRef<str>>(argv: &[S]) -> Result<String, String> {
    Ok(argv
        .iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Result<Vec<_>, _>>()?
        .join(" "))
}

/// A `Scope::Own` script as one command line: the function `gantry_run`
/// defined and called (`return` ends it, and `local` keeps its variables).
pub fn own_call(script: &str) -> Result<String, String> {
    Ok(format!(
        "gantry_run() {{ eval {}\n}}; gantry_run",
        quote(script)?
    ))
}

/// The shell variable that holds a request's input number `i`:
/// `gantry_stdin`, then `gantry_stdin_1`, `gantry_stdin_2`, ...
pub fn input_var(i: usize) -> String {
    if i == 0 {
        "gantry_stdin".into()
    } else {
        format!("gantry_stdin_{i}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile values come out as single literal words: run them through a
    /// real shell and check that it sees exactly the original arguments.
    #[test]
    fn hostile_values_stay_literal() {
        let hostile = [
            "a;touch pwned",
            "$(reboot)",
            "`id`",
            "x' || echo y '",
            "new\nline",
            "*",
            "-rf /",
            "\"$HOME\"",
        ];
        let line = command(&hostile).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .unwrap();
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        assert_eq!(got, hostile);
    }

    #[test]
    fn nul_is_refused() {
        assert!(quote("a\0b").is_err());
    }
}
