//! gantry: private, GPU-ready Kubernetes clusters over SSH.
//! `main.rs` parses the command line and calls [`run`]; each subcommand is a
//! thin workflow over the modules below.

pub mod check;
pub mod cli;
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
pub mod workflow;

pub use error::{Error, Result};

/// Run one command line; returns the process exit code.
pub fn run(cli: cli::Cli) -> i32 {
    // One socket per host: a 1,000-host run needs more than the usual soft
    // limit of 1,024 open files. Raise it to the hard limit, as ssh-heavy
    // tools do; where that fails, a run that needs it says so per host.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match workflow::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
