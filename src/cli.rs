//! Command-line definitions (clap). Each subcommand is a thin call into
//! `cmd`; nothing here talks to hosts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gantry",
    version,
    about = "Stand up private, GPU-ready Kubernetes clusters over SSH",
    long_about = "gantry reads one inventory.yaml (hosts, roles, SSH access, the API endpoint, networks), \
builds a DAG of tasks from a playbook and its roles, and runs it over SSH on many hosts at once.\n\n\
Typical flow:\n  gantry validate            # check inventory, playbook, roles, templates; offline\n  \
gantry plan                # connect, read state, show what would change as diffs; changes nothing\n  \
gantry apply               # converge the hosts; a second apply reports 0 changed\n  \
gantry graph | dot -Tsvg   # the task DAG\n\n\
Exit codes: 0 all ok, 1 some host failed or was unreachable, 2 bad input (inventory, playbook, flags).",
    after_help = "See README.md for the inventory and role reference."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Input {
    /// The cluster inventory.
    #[arg(
        short,
        long,
        default_value = "inventory.yaml",
        env = "GANTRY_INVENTORY"
    )]
    pub inventory: PathBuf,
    /// The playbook: a path, or the name of one in ./playbooks
    /// [default: node-prep; for `status`, the last run's].
    #[arg(short, long, env = "GANTRY_PLAYBOOK")]
    pub playbook: Option<String>,
    /// Where roles live; repeat for a search path, first match wins
    /// [default: roles/ beside the playbook's folder, then ./roles].
    #[arg(long = "roles-dir")]
    pub roles_dir: Vec<PathBuf>,
}

/// The inventory alone, for commands that need no playbook.
#[derive(Args, Debug, Clone)]
pub struct InventoryFile {
    /// The cluster inventory.
    #[arg(
        short,
        long,
        default_value = "inventory.yaml",
        env = "GANTRY_INVENTORY"
    )]
    pub inventory: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// Only these hosts (comma-separated names, or patterns with `*` and
    /// `?`: `--limit 'rack1-*,gpu?'`). Tasks on them that wait for data
    /// from other hosts still see the other hosts' registered results only
    /// if those hosts are included.
    #[arg(short, long, value_delimiter = ',')]
    pub limit: Vec<String>,
    /// Record unknown host keys in known_hosts (trust on first use). A key
    /// that changed is still refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Also print tasks that are already in the wanted state.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the content diffs of files that are not world-readable (0600
    /// keys, configs with passwords) and of `no_log` tasks. Without it they
    /// show only how many lines change.
    #[arg(long)]
    pub show_secret_diffs: bool,
    /// At most this many hosts in flight at once.
    #[arg(short, long, default_value_t = 50)]
    pub forks: usize,
    /// Ask once for sudo's password (for hosts with `ssh.become: true`).
    /// It serves every host of the run, wins over `ssh.become_password`,
    /// and is sent on the remote shell's stdin, never in a command line.
    #[arg(short = 'K', long)]
    pub ask_become_pass: bool,
    /// Ask once for the SSH password, tried after the keys.
    #[arg(short = 'k', long)]
    pub ask_pass: bool,
}

/// The delivery guide's topologies, for `gantry init`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One control plane (the API endpoint is its own address), two
    /// workers, one GPU node.
    Single,
    /// Three control planes behind a keepalived + haproxy VIP, two workers,
    /// two GPU nodes.
    Ha,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct RunControl {
    /// Do not run the fail-level checks of `gantry check` before changing
    /// anything.
    #[arg(long)]
    pub skip_preflight: bool,
    /// Send every uploaded file to every host from this machine, instead of
    /// once, with the hosts passing it on to each other over SSH.
    #[arg(long)]
    pub no_fan_out: bool,
    /// Run only what failed, was skipped or was unreachable last time (and
    /// what a changed inventory or role touches), on those hosts alone.
    #[arg(long)]
    pub retry_failed: bool,
    /// Start each host at this task (`role/task name`, or a task name);
    /// the tasks before it are not run.
    #[arg(long, value_name = "TASK")]
    pub from: Option<String>,
    /// Stop scheduling new tasks once more than this percentage of hosts failed.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_fail_percent: Option<u8>,
    /// Stop scheduling new tasks at the first failed host.
    #[arg(long)]
    pub fail_fast: bool,
    /// Take over a host's run lock when its heartbeat is older than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub lock_stale_after: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Connect, read every host's state and print what apply would change, with
    /// unified diffs for files. Runs only read-only probes: changes nothing.
    Plan {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        connect: Connect,
        /// table: the grouped plan and a table per host; json: one document
        /// (schema `gantry.run/1`, see the README) on stdout, nothing else.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Converge the hosts: run the task DAG, many hosts at once. A failed task
    /// stops only what depends on it; every other host goes on. Every finished
    /// task is journaled in .gantry/journal.jsonl beside the inventory.
    Apply {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        run: RunControl,
        /// table: changes as they land and a table per host; json: one
        /// document (schema `gantry.run/1`) on stdout at the end.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Preflight: every requirement of the delivery guides, per host, read-only
    /// (hardware per role, OS, unique hostnames, no existing Kubernetes, swap,
    /// cgroup, SELinux/AppArmor, time sync and clock offset, DNS, ports free
    /// and reachable host to host, GPU driver >= 575, etcd disk fsync, sysctl
    /// and modules). Exit 0 when nothing fails; warnings do not fail.
    Check {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        connect: Connect,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
        /// Skip the etcd disk fsync probe (it writes and removes a small
        /// file under /var/lib on control planes for up to 3 seconds).
        #[arg(long)]
        no_fsync_probe: bool,
        /// Print the checks as a table (Markdown) and exit; no host is
        /// contacted.
        #[arg(long)]
        list: bool,
    },
    /// Show the last outcome of every task on every host, from the journal,
    /// and what `apply --retry-failed` would run. Offline.
    Status {
        #[command(flatten)]
        input: Input,
        /// table, or json: one document (schema `gantry.status/1`).
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove the run lock from hosts (after a run that died, when you do not
    /// want to wait for the lock to go stale). Use --limit to pick hosts.
    Unlock {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        connect: Connect,
    },
    /// Remove Kubernetes from the selected hosts (`--limit`): kubeadm reset
    /// (a control plane's etcd member is removed first), then etcd's data,
    /// the CNI config and gantry's kubeadm configs. Asks before it starts
    /// unless --yes. A host with nothing left to remove reports 0 changed;
    /// the next `gantry apply -p cluster` joins the hosts again.
    Reset {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        run: RunControl,
        /// Do not ask: reset the selected hosts.
        #[arg(long)]
        yes: bool,
    },
    /// Write the cluster's admin kubeconfig, read from the first control
    /// plane, to the controller (mode 0600, replaced atomically). It points
    /// at the control-plane endpoint (the VIP). It holds cluster-admin
    /// credentials: keep it as you keep the inventory's secrets.
    Kubeconfig {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        connect: Connect,
        /// Where to write it [default: CLUSTER.kubeconfig beside the
        /// inventory].
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Print the task DAG as Graphviz DOT (pipe into `dot -Tsvg`).
    Graph {
        #[command(flatten)]
        input: Input,
    },
    /// Check inventory, playbook, roles and templates offline, reporting every
    /// problem at once with file:line:column.
    Validate {
        #[command(flatten)]
        input: Input,
    },
    /// The offline bundle: a directory of artifacts with a manifest.yaml that
    /// lists each one's kind, version, architecture, size and sha256.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Write a commented inventory for one of the guide's topologies to start
    /// from. Replace the cluster name, the addresses and the SSH access, then
    /// `gantry validate -i FILE`. Never overwrites a file.
    Init {
        /// The topology.
        #[arg(long, value_enum, default_value_t = Topology::Ha)]
        topology: Topology,
        /// Where to write it.
        #[arg(short, long, default_value = "inventory.yaml")]
        output: PathBuf,
    },
    /// List the task modules with their parameters; with a name, that
    /// module's page (summary, every parameter, an example).
    Modules {
        /// One module's page.
        name: Option<String>,
        /// The table as the README shows it (Markdown).
        #[arg(long)]
        markdown: bool,
    },
    /// List the built-in roles, what each does and which built-in playbooks
    /// play it. A `roles/NAME` folder beside the inventory, in the working
    /// directory or under `--roles-dir` overrides the built-in one.
    Roles,
    /// Print a shell completion script: `gantry completions bash >
    /// /etc/bash_completion.d/gantry`, or zsh, fish, elvish, powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `gantry man > /usr/local/share/man/man1/gantry.1`.
    Man,
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Check a bundle directory against its manifest.yaml, offline: every
    /// listed file present, a plain file of its listed size and sha256, and
    /// nothing there that the manifest does not list. Every problem is
    /// reported at once; exit 2 when there is any.
    ///
    /// Example: gantry bundle verify ./bundle
    Verify {
        /// The bundle directory (its manifest.yaml at the top).
        dir: std::path::PathBuf,
        /// Also report what this inventory's cluster needs (`bundle list`)
        /// that the bundle lacks.
        #[arg(short, long)]
        inventory: Option<PathBuf>,
    },
    /// What the inventory's cluster needs in its bundle, derived from it.
    ///
    /// The Kubernetes binaries and images of its version, containerd,
    /// runc, crictl, the CNI plugins, Helm and Calico, for each CPU
    /// architecture its hosts have (`arch:` on a host, default amd64).
    /// Kubernetes is the inventory's `cluster.kubernetes_version`; the
    /// other versions are the delivery guide's.
    ///
    /// Example: gantry bundle list -i inventory.yaml --yaml > wanted.yaml
    List {
        #[command(flatten)]
        inventory: InventoryFile,
        /// Print the list as YAML, as `bundle fetch --list` reads it (a
        /// pinned `sha256:` can be added to any entry).
        #[arg(long)]
        yaml: bool,
    },
    /// Download a bundle on a machine with internet access.
    ///
    /// Each artifact comes from its source, several at once, resumed with HTTP range requests
    /// after a dropped connection or an interrupted fetch, checked against
    /// its sha256 (pinned in the list, or from the checksum file its project
    /// publishes), then moved into place. Writes DIR/manifest.yaml with
    /// every artifact's size and sha256; a second fetch downloads nothing.
    /// Image references (docker://) are not downloaded: the run lists them,
    /// to be saved with `docker save` or `skopeo copy`. Exit 1 when any
    /// artifact is missing at the end.
    ///
    /// Example: gantry bundle fetch ./bundle -i inventory.yaml --jobs 8
    Fetch {
        /// The bundle directory to fill (created when absent).
        dir: PathBuf,
        #[command(flatten)]
        inventory: InventoryFile,
        /// Fetch this list (as `bundle list --yaml` prints it) instead of
        /// the inventory's needs.
        #[arg(long)]
        list: Option<PathBuf>,
        /// Artifacts downloading at once.
        #[arg(short, long, default_value_t = 4)]
        jobs: usize,
        /// Accept artifacts with no pinned sha256 and no published checksum
        /// file, recording the hash of what arrived (trust on first fetch).
        #[arg(long)]
        trust_first_fetch: bool,
    },
}

impl Command {
    /// The connection flags of a command that reaches hosts.
    pub fn connect(&self) -> Option<&Connect> {
        match self {
            Command::Plan { connect, .. }
            | Command::Apply { connect, .. }
            | Command::Check { connect, .. }
            | Command::Unlock { connect, .. }
            | Command::Reset { connect, .. }
            | Command::Kubeconfig { connect, .. } => Some(connect),
            _ => None,
        }
    }
}
