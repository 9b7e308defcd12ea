//! gantry: private, GPU-ready Kubernetes clusters over SSH.
//! `main.rs` parses the command line and calls [`run`]. The map:
//!
//! - `cli`, `cmd/`: the command line, and one thin file per subcommand;
//! - `builtin`: the playbooks and roles compiled into the binary;
//! - `loader`, `inventory`, `playbook`, `secrets`: what the operator wrote,
//!   read and checked before any host is touched (`loader` alone knows YAML);
//! - `versions`: the component versions and kubeadm's images of a cluster;
//! - `bundle/`: the offline bundle: its manifest, what a cluster needs in it
//!   (`wanted`), `fetch` and `verify`;
//! - `plan/`: the task DAG, templates, task variables, input hashes;
//! - `modules/`: one file per task module (probes and decide, pure);
//! - `facts/`: what gantry reads about a host, shared by the run and checks;
//! - `check/`: `gantry check` and apply's preflight, one file per check;
//! - `exec/`: the engine that runs the DAG and reports through events;
//! - `remote/`: SSH, the host's shell, request framing, writes, the lock;
//! - `journal/`: the run journal, and what a retry skips;
//! - `ui/`: the only code that prints a run (sink, report, check table);
//! - `error`: the one error type and its located diagnostics.

pub mod addons;
pub mod builtin;
pub mod bundle;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod exec;
pub mod facts;
pub mod inventory;
pub mod journal;
pub mod loader;
pub mod modules;
pub mod plan;
pub mod playbook;
pub mod remote;
pub mod secrets;
pub mod ui;
pub mod versions;

pub use error::{Error, Result};

/// Run one command line; returns the process exit code.
pub fn run(cli: cli::Cli) -> i32 {
    // One socket per host: a 1,000-host run needs more than the usual soft
    // limit of 1,024 open files. Raise it to the hard limit, as ssh-heavy
    // tools do; where that fails, a run that needs it says so per host.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// For tests whose shell scripts chown to root: whether they run as root
/// (else they say they are skipped).
#[cfg(test)]
pub(crate) fn running_as_root() -> bool {
    remote::credentials::current_uid() == Ok(0)
}
