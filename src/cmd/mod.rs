//! The subcommands, one file each, each thin: load the input, build the
//! DAG, run, render. The work lives in `plan`, `exec`, `check` and the
//! journal; nothing here talks to a host itself.

mod bundle;
mod check;
mod graph;
mod init;
mod kubeconfig;
mod modules;
mod reset;
mod run;
mod status;
mod unlock;
mod validate;

use std::path::{Path, PathBuf};

use crate::cli::{BundleCommand, Cli, Command, Connect, Input};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::loader;
use crate::playbook::Playbook;
use crate::remote::ssh::HostKeyPolicy;

pub fn dispatch(cli: Cli) -> Result<i32> {
    if let Some(connect) = cli.command.connect() {
        ask_passwords(connect)?;
    }
    match cli.command {
        Command::Validate { input } => validate::validate(&input),
        Command::Graph { input } => graph::graph(&input),
        Command::Plan { input, connect } => run::execute(&input, &connect, None),
        Command::Apply {
            input,
            connect,
            run,
        } => run::execute(&input, &connect, Some(&run)),
        Command::Status { input } => status::status(&input),
        Command::Check { list: true, .. } => {
            crate::out!("{}", crate::check::markdown_table());
            Ok(0)
        }
        Command::Check {
            input,
            connect,
            output,
            no_fsync_probe,
            list: false,
        } => check::check(&input, &connect, output, !no_fsync_probe),
        Command::Unlock { input, connect } => unlock::unlock(&input, &connect),
        Command::Reset {
            input,
            connect,
            run,
            yes,
        } => reset::reset(input, &connect, &run, yes),
        Command::Kubeconfig {
            input,
            connect,
            output,
        } => kubeconfig::kubeconfig(&input, &connect, output),
        Command::Bundle { command } => match command {
            BundleCommand::Verify { dir, inventory } => bundle::verify(&dir, inventory.as_deref()),
            BundleCommand::List { inventory, yaml } => bundle::list(&inventory.inventory, yaml),
            BundleCommand::Fetch {
                dir,
                inventory,
                list,
                jobs,
                trust_first_fetch,
            } => bundle::fetch(
                &dir,
                &inventory.inventory,
                list.as_deref(),
                jobs,
                trust_first_fetch,
            ),
        },
        Command::Init { topology, output } => init::init(topology, &output),
        Command::Modules { name, markdown } => modules::modules(name.as_deref(), markdown),
    }
}

/// Resolve `-p node-prep` to ./playbooks/node-prep.yaml; a path is used as is.
fn playbook_path(p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.extension().is_some() || path.components().count() > 1 {
        return path;
    }
    PathBuf::from("playbooks").join(format!("{p}.yaml"))
}

/// The playbook used when none is named.
pub const DEFAULT_PLAYBOOK: &str = "node-prep";

fn playbook_name(input: &Input) -> &str {
    input.playbook.as_deref().unwrap_or(DEFAULT_PLAYBOOK)
}

pub fn load(input: &Input) -> Result<(Inventory, Playbook)> {
    let pb_path = playbook_path(playbook_name(input));
    // playbooks/ and roles/ are siblings; say `roles/x`, not `playbooks/../roles/x`.
    let mut roles_path = input.roles_dir.clone();
    if roles_path.is_empty() {
        roles_path.push(match pb_path.parent().and_then(Path::parent) {
            Some(top) => top.join("roles"),
            None => PathBuf::from("roles"),
        });
        // The built-in roles, for playbooks kept elsewhere.
        if roles_path[0] != Path::new("roles") {
            roles_path.push(PathBuf::from("roles"));
        }
    }
    let pb = loader::load_playbook(&pb_path, &roles_path)?;
    let (inv, warnings) = loader::load_inventory(&input.inventory, |inv| pb.known_host_roles(inv))?;
    for w in warnings {
        eprintln!("{w}");
    }
    Ok((inv, pb))
}

fn selected_hosts(inv: &Inventory, input: &Input, connect: &Connect) -> Result<Vec<usize>> {
    if connect.limit.is_empty() {
        return Ok((0..inv.hosts.len()).collect());
    }
    connect
        .limit
        .iter()
        .map(|name| {
            inv.hosts
                .iter()
                .position(|h| &h.name == name)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--limit: no host named {name:?} in {}",
                        input.inventory.display()
                    ))
                })
        })
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("starting the runtime: {e}")))
}

/// `--ask-become-pass` and `--ask-pass`: once, before any host is reached.
fn ask_passwords(connect: &Connect) -> Result<()> {
    use crate::remote::credentials::{self, Purpose};
    for (asked, purpose) in [
        (connect.ask_pass, Purpose::Ssh),
        (connect.ask_become_pass, Purpose::Become),
    ] {
        if asked {
            credentials::prompt(purpose).map_err(Error::Usage)?;
        }
    }
    Ok(())
}

fn policy(connect: &Connect) -> HostKeyPolicy {
    if connect.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else {
        HostKeyPolicy::Strict
    }
}
