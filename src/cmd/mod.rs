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
mod roles;
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
        Command::Plan {
            input,
            connect,
            output,
        } => run::execute(&input, &connect, None, output),
        Command::Apply {
            input,
            connect,
            run,
            output,
        } => run::execute(&input, &connect, Some(&run), output),
        Command::Status { input, output } => status::status(&input, output),
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
        Command::Roles => roles::roles(),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "gantry", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| Error::Other(format!("writing the man page: {e}")))?;
            Ok(0)
        }
    }
}

/// Resolve `-p NAME` to the first `playbooks/NAME.yaml` beside the
/// inventory, in the working directory, or built in; a path (`-p x.yaml`,
/// `-p dir/x`) is used as is. Also says whether it is the built-in one.
fn playbook_path(p: &str, inventory: &Path) -> Result<(PathBuf, bool)> {
    let path = PathBuf::from(p);
    if path.extension().is_some() || path.components().count() > 1 {
        return Ok((path, false));
    }
    let file = Path::new("playbooks").join(format!("{p}.yaml"));
    let beside = inventory.parent().map(|d| d.join(&file));
    for own in beside.iter().chain([&file]) {
        if own.is_file() {
            return Ok((own.clone(), false));
        }
    }
    let builtin = crate::builtin::dir().map_err(Error::Other)?.join(&file);
    if builtin.is_file() {
        return Ok((builtin, true));
    }
    Err(Error::Usage(format!(
        "no playbook named {p:?}: none in playbooks/ beside the inventory or in the working directory, and gantry has none built in by that name (built in: {})",
        crate::builtin::playbooks().join(", ")
    )))
}

/// The playbook used when none is named.
pub const DEFAULT_PLAYBOOK: &str = "node-prep";

fn playbook_name(input: &Input) -> &str {
    input.playbook.as_deref().unwrap_or(DEFAULT_PLAYBOOK)
}

pub fn load(input: &Input) -> Result<(Inventory, Playbook)> {
    let (pb_path, builtin_playbook) = playbook_path(playbook_name(input), &input.inventory)?;
    // Where roles are found, first match wins: --roles-dir; else roles/
    // beside the operator's own playbook, beside the inventory and in the
    // working directory. The built-in roles come last, so any of those
    // overrides one by name.
    let mut roles_path = input.roles_dir.clone();
    if roles_path.is_empty() {
        if !builtin_playbook {
            // playbooks/ and roles/ are siblings; say `roles/x`, not
            // `playbooks/../roles/x`.
            roles_path.push(match pb_path.parent().and_then(Path::parent) {
                Some(top) => top.join("roles"),
                None => PathBuf::from("roles"),
            });
        }
        if let Some(d) = input.inventory.parent() {
            roles_path.push(d.join("roles"));
        }
        roles_path.push(PathBuf::from("roles"));
    }
    roles_path.push(crate::builtin::dir().map_err(Error::Other)?.join("roles"));
    let mut seen = std::collections::HashSet::new();
    roles_path.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    let pb = loader::load_playbook(&pb_path, &roles_path)?;
    let (inv, warnings) = loader::load_inventory(&input.inventory, |inv| pb.known_host_roles(inv))?;
    for w in warnings {
        eprintln!("{w}");
    }
    Ok((inv, pb))
}

/// The hosts `--limit` names, in inventory order: names, or patterns with
/// `*` and `?` (`--limit 'rack1-*'`), each of which must match a host.
fn selected_hosts(inv: &Inventory, input: &Input, connect: &Connect) -> Result<Vec<usize>> {
    if connect.limit.is_empty() {
        return Ok((0..inv.hosts.len()).collect());
    }
    let mut chosen = vec![false; inv.hosts.len()];
    for item in &connect.limit {
        let pattern = wildmatch::WildMatch::new(item);
        let mut any = false;
        for (i, h) in inv.hosts.iter().enumerate() {
            if pattern.matches(&h.name) {
                chosen[i] = true;
                any = true;
            }
        }
        if !any {
            return Err(Error::Usage(format!(
                "--limit: no host named {item:?} in {}",
                input.inventory.display()
            )));
        }
    }
    Ok((0..inv.hosts.len()).filter(|&i| chosen[i]).collect())
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
