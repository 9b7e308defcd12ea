//! The subcommands as workflows: load and check input, build the DAG, then
//! hand it to the executor (plan/apply) or print it (graph/validate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{Cli, Command, Connect, Input};
use crate::error::{Error, Result};
use crate::executor::{self, Options, RunMode};
use crate::graph::Dag;
use crate::inventory::Inventory;
use crate::loader;
use crate::playbook::Playbook;
use crate::report::Reporter;
use crate::ssh::HostKeyPolicy;

pub fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Validate { input } => {
            let (inv, pb) = load(&input)?;
            let all: Vec<usize> = (0..inv.hosts.len()).collect();
            let dag = Dag::build(&inv, &pb, &all)?;
            println!("ok: {} hosts, {} plays, {} roles, {} tasks in the DAG", inv.hosts.len(), pb.plays.len(), pb.roles.len(), dag.graph.node_count());
            Ok(0)
        }
        Command::Graph { input } => {
            let (inv, pb) = load(&input)?;
            let all: Vec<usize> = (0..inv.hosts.len()).collect();
            print!("{}", Dag::build(&inv, &pb, &all)?.dot(&inv));
            Ok(0)
        }
        Command::Plan { input, connect } => execute(&input, &connect, RunMode::Plan),
        Command::Apply { input, connect } => execute(&input, &connect, RunMode::Apply),
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

pub fn load(input: &Input) -> Result<(Inventory, Playbook)> {
    let pb_path = playbook_path(&input.playbook);
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

fn execute(input: &Input, connect: &Connect, mode: RunMode) -> Result<i32> {
    let (mut inv, pb) = load(input)?;
    inv.secrets = crate::secrets::resolve(&input.inventory, &inv.secrets, &pb.secret_names())?;
    let mut selected = Vec::new();
    for name in &connect.limit {
        match inv.hosts.iter().position(|h| &h.name == name) {
            Some(i) => selected.push(i),
            None => return Err(Error::Usage(format!("--limit: no host named {name:?} in {}", input.inventory.display()))),
        }
    }
    if connect.limit.is_empty() {
        selected = (0..inv.hosts.len()).collect();
    }
    let dag = Dag::build(&inv, &pb, &selected)?;
    let names: Vec<String> = selected.iter().map(|&i| inv.hosts[i].name.clone()).collect();
    let reporter = Arc::new(Reporter::new(mode == RunMode::Plan, connect.verbose, dag.graph.node_count() as u64, &names));
    let opts = Options { mode, forks: connect.forks, host_keys: if connect.accept_new_host_keys { HostKeyPolicy::AcceptNew } else { HostKeyPolicy::Strict } };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Error::Other(format!("starting the runtime: {e}")))?;
    let result = rt.block_on(executor::run(inv, pb, dag, opts, reporter.clone()));
    reporter.finish();
    Ok(if result.any_failed() { 1 } else { 0 })
}
