//! What a change runs on a host: a write or a command, and what each may
//! change, so that state read before it can be trusted after it.

use crate::remote::script::command;

/// A change to make on a host. Only the engine runs these (`remote::writes`
/// turns them into shell text).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace a file atomically: temp file in the same directory, mode and
    /// owner set while it is still empty, content from the request's input,
    /// fsync, rename.
    Write {
        path: String,
        content: String,
        mode: u32,
        owner: Option<String>,
        group: Option<String>,
        validate: Option<Vec<String>>,
    },
    /// A command; `show` is how it is displayed. `own`: a plain command of
    /// a known external program (`own_program`), which the host's shell can
    /// run in itself with no subshell around it.
    Run {
        script: String,
        show: String,
        stdin: Option<String>,
        touches: Touches,
        own: bool,
    },
    /// A controller file streamed to the host on a channel of its own
    /// (`modules::upload`), from `offset` on, checked there by its sha256
    /// before it is renamed into place.
    Upload {
        src: std::path::PathBuf,
        dest: String,
        sha256: String,
        size: u64,
        offset: u64,
        mode: u32,
    },
}

/// What an action may change on the host, so that state read before it and
/// not touched by it can still be trusted afterwards.
#[derive(Debug, Clone, PartialEq)]
pub enum Touches {
    /// One path (a write, chmod, chown, mkdir -p, rm -rf): what file probes
    /// read at that path, above it or below it, and what scripts read.
    Path(String),
    /// A directory made (`mkdir -p`): what file probes read at that path or
    /// above it, and what scripts read. What lies below is as it was.
    Made(String),
    /// Live kernel or service state (hostname, sysctl -w, modprobe,
    /// systemctl): what scripts read, not files.
    Live,
    /// Anything: a user's command, a package install.
    All,
}

/// Programs that change only live kernel state, never files: what file
/// probes read before them stays good. `systemctl` is not among them for a
/// user's command: `enable` writes links under /etc.
pub(super) fn live_only(program: &str) -> bool {
    matches!(program, "hostname" | "sysctl" | "modprobe" | "nft")
}

/// External programs whose plain command line can run in the host's shell
/// itself: none is a shell builtin, so none can end the
/// shell or change its directory, options or traps.
pub(super) fn own_program(program: &str) -> bool {
    live_only(program)
        || matches!(
            program,
            "mkdir" | "chmod" | "chown" | "chcon" | "rm" | "systemctl"
        )
}

impl Action {
    /// A command from argv; what it touches follows from the program, for
    /// the few programs gantry's own modules run, and is anything otherwise.
    pub fn run(argv: &[&str]) -> Result<Action, String> {
        let line = command(argv)?;
        let touches = match argv.first().copied() {
            Some("mkdir") => argv
                .last()
                .map_or(Touches::All, |p| Touches::Made(p.to_string())),
            Some("chmod" | "chown" | "chcon" | "rm") => argv
                .last()
                .map_or(Touches::All, |p| Touches::Path(p.to_string())),
            // gantry's own systemctl calls start, stop, enable and reload:
            // what they change, scripts read.
            Some("systemctl") => Touches::Live,
            Some(p) if live_only(p) => Touches::Live,
            _ => Touches::All,
        };
        Ok(Action::Run {
            script: line.clone(),
            show: line,
            stdin: None,
            touches,
            own: argv.first().is_some_and(|p| own_program(p)),
        })
    }

    /// A shell script of a module's own that may change anything (a
    /// package install, kubeadm), shown as `show`.
    pub fn script(script: String, show: String) -> Action {
        Action::Run {
            script,
            show,
            stdin: None,
            touches: Touches::All,
            own: false,
        }
    }

    pub fn touches(&self) -> Touches {
        match self {
            Action::Write { path, .. } | Action::Upload { dest: path, .. } => {
                Touches::Path(path.clone())
            }
            Action::Run { touches, .. } => touches.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::Write { path, mode, .. } => format!("write {path} (mode {mode:04o})"),
            Action::Run { show, .. } => format!("run: {show}"),
            Action::Upload {
                src,
                dest,
                size,
                offset,
                mode,
                ..
            } => format!(
                "upload {} to {dest} (mode {mode:04o}, {} bytes)",
                src.display(),
                size - offset
            ),
        }
    }
}
