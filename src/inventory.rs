//! The inventory: what the operator declares (hosts, roles, SSH access, the
//! cluster's endpoint and networks) and the checks it must pass before any host
//! is touched. Parsing from YAML lives in `loader`; this file owns the types and
//! the semantic checks, which return every problem found, not the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::error::{Diagnostic, Severity};

pub type Vars = serde_json::Map<String, Json>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub cluster: Cluster,
    #[serde(default)]
    pub ssh: SshSpec,
    pub hosts: Vec<HostSpec>,
    /// Free variables for roles and templates; they override role defaults.
    #[serde(default)]
    pub vars: Vars,
    #[serde(default)]
    pub firewall: Firewall,
    /// Secret values by name (VRRP password, tokens). Missing ones that a
    /// role needs are generated and kept in .gantry/secrets.json.
    #[serde(default)]
    pub secrets: Vars,
    /// The addons wanted, by name (`crate::addons`).
    #[serde(default)]
    pub addons: BTreeMap<String, crate::addons::AddonSpec>,
    /// The offline bundle the inventory names (`bundle: DIR`, relative to
    /// the inventory's directory), its manifest loaded and checked.
    #[serde(skip)]
    pub bundle: Option<BundleRef>,
    /// The operator's ssh_config, read when `ssh.config` asks for it.
    #[serde(skip)]
    pub ssh_config: Option<std::sync::Arc<crate::remote::ssh_config::ClientConfig>>,
}

/// A bundle directory and its manifest. Templates see it as `bundle`
/// (`bundle::template_view`).
#[derive(Debug, Clone)]
pub struct BundleRef {
    pub dir: std::path::PathBuf,
    pub manifest: crate::bundle::Manifest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    #[serde(default)]
    pub control_plane_endpoint: Option<Endpoint>,
    pub networking: Networking,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The API server's virtual IP, held by keepalived on the control planes.
    #[serde(default)]
    pub vip: Option<String>,
    /// The name written for the VIP in /etc/hosts.
    #[serde(default = "default_vip_name")]
    pub name: String,
    #[serde(default = "default_endpoint_port")]
    pub port: u16,
    /// The operator runs their own load balancer: gantry installs none.
    #[serde(default)]
    pub external: bool,
}

fn default_vip_name() -> String {
    "apiserver.cluster.local".into()
}
fn default_endpoint_port() -> u16 {
    API_SERVER_PORT
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Networking {
    pub pod_cidr: String,
    pub service_cidr: String,
    /// The hosts' own network. Without it, each control plane's /24 is assumed
    /// for the VIP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cidr: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FirewallMode {
    /// firewalld when it runs on the host, else gantry's own nftables table.
    #[default]
    Auto,
    Disabled,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    #[serde(default)]
    pub mode: FirewallMode,
}

/// SSH settings; at the top level they are defaults, on a host they override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    #[serde(rename = "become")]
    pub become_: Option<bool>,
    pub connect_timeout: Option<u64>,
    pub command_timeout: Option<u64>,
    pub max_output_mib: Option<u64>,
    pub known_hosts: Option<PathBuf>,
    /// sudo's password for `become`, from the environment or a file that
    /// only its owner can read; never the inventory itself. `gantry apply
    /// --ask-become-pass` prompts for it instead.
    pub become_password: Option<SecretSource>,
    /// A password for SSH's own authentication, tried after the keys. Off
    /// unless set; same sources as `become_password` (or `--ask-pass`).
    pub password: Option<SecretSource>,
    /// The jump host in front of this host: its connection is made through
    /// a `direct-tcpip` channel of the bastion's.
    pub bastion: Option<BastionSpec>,
    /// Read the operator's ssh_config (`true`: ~/.ssh/config; or a path)
    /// for what the inventory leaves unset. Inventory-wide only.
    pub config: Option<ClientConfigFile>,
}

/// `ssh.config`: `true` for ~/.ssh/config, `false`, or a file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientConfigFile {
    Off,
    Default,
    Path(PathBuf),
}

impl<'de> Deserialize<'de> for ClientConfigFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::Bool(false) => Ok(ClientConfigFile::Off),
            Json::Bool(true) => Ok(ClientConfigFile::Default),
            Json::String(p) => Ok(ClientConfigFile::Path(PathBuf::from(p))),
            _ => Err(serde::de::Error::custom(
                "expected true, false or the path of an ssh_config file",
            )),
        }
    }
}

/// Where a password comes from. The inventory names the source, never the
/// password: `{ env: NAME }` or `{ file: PATH }` (a file only its owner can
/// read; its first line is the password).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A jump host. `via` is the hop before it, for chains (`ProxyJump a,b`
/// is `bastion: { address: b, via: { address: a } }`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct BastionSpec {
    pub address: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Its own known_hosts file; the host's when unset.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub via: Option<Box<BastionSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub ssh: Option<SshSpec>,
    #[serde(default)]
    pub vars: Vars,
    /// The host's CPU architecture, for the bundle's binaries and images.
    #[serde(default)]
    pub arch: Arch,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl HostSpec {
    /// The host's IPv4 address: the address itself, or what its name resolves to.
    pub fn ipv4(&self) -> Option<String> {
        if let Ok(ip) = self.address.parse::<IpAddr>() {
            return ip.is_ipv4().then(|| ip.to_string());
        }
        (self.address.as_str(), 22)
            .to_socket_addrs()
            .ok()?
            .find(|a| a.is_ipv4())
            .map(|a| a.ip().to_string())
    }
}

/// SSH settings of one host, every default filled in.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Where to connect: the host's address, or ssh_config's HostName for it.
    pub address: String,
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub become_: bool,
    pub connect_timeout: u64,
    pub command_timeout: u64,
    /// The most output one request may send back, in MiB.
    pub max_output_mib: u64,
    pub known_hosts: PathBuf,
    pub become_password: Option<SecretSource>,
    pub password: Option<SecretSource>,
    /// The hops to this host, nearest the controller first.
    pub jumps: Vec<Jump>,
}

/// One hop on the way to a host, with the paths expanded and the defaults
/// (the host's user, key and known_hosts; port 22) filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jump {
    pub address: String,
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: PathBuf,
}

pub const ROLE_CONTROL_PLANE: &str = "control-plane";
/// The port the API server listens on, on each control plane.
pub const API_SERVER_PORT: u16 = 6443;

impl HostSpec {
    /// The labels its Node gets through the API (role `node-labels`): a
    /// worker's role label, `gpu=on` on a `gpu` host (HAMi's device plugin
    /// runs there), then the host's `node_labels` var laid over them.
    pub fn node_labels(&self) -> BTreeMap<String, Json> {
        let mut labels = BTreeMap::new();
        if self.roles.iter().any(|r| r == "worker") {
            labels.insert("node-role.kubernetes.io/worker".to_string(), Json::from(""));
        }
        if self.roles.iter().any(|r| r == "gpu") {
            labels.insert("gpu".to_string(), Json::from("on"));
        }
        if let Some(Json::Object(m)) = self.vars.get("node_labels") {
            labels.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        labels
    }
}

impl Inventory {
    /// How to reach `host`: its own `ssh` settings, then the inventory's,
    /// then the operator's ssh_config for its address (`ssh.config`), then
    /// gantry's defaults.
    pub fn ssh_for(&self, host: &HostSpec) -> SshConfig {
        let h = host.ssh.clone().unwrap_or_default();
        let d = &self.ssh;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let expand = |p: PathBuf| match p.strip_prefix("~") {
            Ok(rest) => home.join(rest),
            Err(_) => p,
        };
        let lookup = |name: &str| {
            self.ssh_config
                .as_ref()
                .map(|c| c.lookup(name))
                .unwrap_or_default()
        };
        let found = lookup(&host.address);
        let user = h
            .user
            .or(d.user.clone())
            .or(found.user)
            .unwrap_or_else(|| "root".into());
        let identity_file = h
            .identity_file
            .or(d.identity_file.clone())
            .or(found.identity_file)
            .map(expand);
        let known_hosts = expand(
            h.known_hosts
                .or(d.known_hosts.clone())
                .or(found.known_hosts)
                .unwrap_or_else(|| PathBuf::from("~/.ssh/known_hosts")),
        );
        let mut jumps = Vec::new();
        match h.bastion.as_ref().or(d.bastion.as_ref()) {
            Some(mut b) => loop {
                jumps.insert(
                    0,
                    Jump {
                        address: b.address.clone(),
                        user: b.user.clone().unwrap_or_else(|| user.clone()),
                        port: b.port.unwrap_or(22),
                        identity_file: b
                            .identity_file
                            .clone()
                            .map(expand)
                            .or(identity_file.clone()),
                        known_hosts: b.known_hosts.clone().map_or(known_hosts.clone(), expand),
                    },
                );
                match b.via.as_deref() {
                    Some(v) => b = v,
                    None => break,
                }
            },
            // ProxyJump's hops, each with what the file says for it.
            None => {
                for hop in found.proxy_jump.unwrap_or_default() {
                    let (hop_user, name, hop_port) = crate::remote::ssh_config::split_hop(&hop);
                    let f = lookup(name);
                    jumps.push(Jump {
                        address: f.host_name.unwrap_or_else(|| name.to_string()),
                        user: hop_user
                            .map(str::to_string)
                            .or(f.user)
                            .unwrap_or_else(|| user.clone()),
                        port: hop_port.or(f.port).unwrap_or(22),
                        identity_file: f.identity_file.map(expand).or(identity_file.clone()),
                        known_hosts: f.known_hosts.map_or(known_hosts.clone(), expand),
                    });
                }
            }
        }
        let expand_source = |s: SecretSource| match s {
            SecretSource::File(p) => SecretSource::File(expand(p)),
            s => s,
        };
        SshConfig {
            address: found.host_name.unwrap_or_else(|| host.address.clone()),
            user,
            port: h.port.or(d.port).or(found.port).unwrap_or(22),
            identity_file,
            become_: h.become_.or(d.become_).unwrap_or(false),
            connect_timeout: h.connect_timeout.or(d.connect_timeout).unwrap_or(10),
            command_timeout: h.command_timeout.or(d.command_timeout).unwrap_or(300),
            max_output_mib: h.max_output_mib.or(d.max_output_mib).unwrap_or(64),
            known_hosts,
            become_password: h
                .become_password
                .or(d.become_password.clone())
                .map(expand_source),
            password: h.password.or(d.password.clone()).map(expand_source),
            jumps,
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &HostSpec> {
        self.hosts
            .iter()
            .filter(|h| h.roles.iter().any(|r| r == ROLE_CONTROL_PLANE))
    }

    /// The semantic checks. `known_roles` are the host roles the playbook's
    /// plays select on. Every problem is returned; none stops the others.
    pub fn check(&self, known_roles: &HashSet<String>) -> Vec<Diagnostic> {
        let mut out = crate::addons::check(self);
        for (i, h) in self.hosts.iter().enumerate() {
            match h.vars.get("node_labels") {
                None => {}
                Some(Json::Object(m)) => {
                    for (k, v) in m {
                        let problem = match v.as_str() {
                            Some(v) => check_label(k, v).err(),
                            None => Some(format!("label {k}: expected a string value")),
                        };
                        if let Some(p) = problem {
                            out.push(Diagnostic::error(
                                format!("hosts[{i}].vars.node_labels.{k}"),
                                p,
                            ));
                        }
                    }
                }
                Some(_) => out.push(Diagnostic::error(
                    format!("hosts[{i}].vars.node_labels"),
                    "expected a mapping of label to value",
                )),
            }
        }
        let mut err = |field: String, message: String| out.push(Diagnostic::error(field, message));
        for (i, h) in self.hosts.iter().enumerate() {
            if h.ssh.as_ref().is_some_and(|s| s.config.is_some()) {
                err(
                    format!("hosts[{i}].ssh.config"),
                    "the ssh_config is read for the whole inventory: set `config` under the top-level `ssh`".into(),
                );
            }
        }

        if !is_rfc1123_label_seq(&self.cluster.name) {
            err(
                "cluster.name".into(),
                format!("{:?} is not a valid DNS name", self.cluster.name),
            );
        }
        if self.hosts.is_empty() {
            err("hosts".into(), "no hosts are declared".into());
        }
        if let Some(v) = &self.cluster.kubernetes_version
            && !crate::versions::supports(v)
        {
            err(
                "cluster.kubernetes_version".into(),
                format!(
                    "{v:?} is not a Kubernetes version gantry supports ({}; the guide's is {})",
                    crate::versions::known_kubernetes(),
                    crate::versions::DEFAULT_KUBERNETES
                ),
            );
        }

        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut addrs: HashMap<&str, usize> = HashMap::new();
        let mut host_ips: Vec<(usize, IpAddr)> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !is_rfc1123_label_seq(&h.name) {
                err(
                    format!("hosts[{i}].name"),
                    format!(
                        "{:?} is not an RFC 1123 host name (lowercase letters, digits and '-', dot-separated, at most 63 per label)",
                        h.name
                    ),
                );
            }
            if let Some(first) = names.insert(&h.name, i) {
                err(
                    format!("hosts[{i}].name"),
                    format!("duplicate host name {:?}, also hosts[{first}]", h.name),
                );
            }
            if let Some(first) = addrs.insert(&h.address, i) {
                err(
                    format!("hosts[{i}].address"),
                    format!(
                        "duplicate address {:?}, also hosts[{first}] ({})",
                        h.address, self.hosts[first].name
                    ),
                );
            }
            match h.address.parse::<IpAddr>() {
                Ok(ip) => host_ips.push((i, ip)),
                Err(_) => {
                    if !is_rfc1123_label_seq(&h.address)
                        || (h.address.as_str(), 22).to_socket_addrs().is_err()
                    {
                        err(
                            format!("hosts[{i}].address"),
                            format!(
                                "{:?} is neither an IP address nor a name that resolves",
                                h.address
                            ),
                        );
                    }
                }
            }
            if h.roles.is_empty() {
                err(
                    format!("hosts[{i}].roles"),
                    format!("host {} has no roles", h.name),
                );
            }
            for (j, r) in h.roles.iter().enumerate() {
                if !known_roles.contains(r) {
                    let mut known: Vec<_> = known_roles.iter().cloned().collect();
                    known.sort();
                    err(
                        format!("hosts[{i}].roles[{j}]"),
                        format!(
                            "role {r:?} is not used by any play of the playbook (known: {})",
                            known.join(", ")
                        ),
                    );
                }
            }
        }

        // Networks: each CIDR parses, and none overlaps another or a host address.
        let mut nets: Vec<(String, IpNet)> = Vec::new();
        for (field, text) in [
            (
                "cluster.networking.pod_cidr",
                &self.cluster.networking.pod_cidr,
            ),
            (
                "cluster.networking.service_cidr",
                &self.cluster.networking.service_cidr,
            ),
        ] {
            match text.parse::<IpNet>() {
                Ok(net) if net.trunc() != net => err(
                    field.into(),
                    format!("{text:?} has host bits set; did you mean {}?", net.trunc()),
                ),
                Ok(net) => nets.push((field.to_string(), net)),
                Err(_) => err(
                    field.into(),
                    format!("{text:?} is not a CIDR like 10.244.0.0/16"),
                ),
            }
        }
        if let Some(text) = &self.cluster.networking.host_cidr {
            match text.parse::<IpNet>() {
                Ok(host_net) => {
                    for (f, n) in &nets {
                        if n.contains(&host_net.network()) || host_net.contains(&n.network()) {
                            err(
                                f.clone(),
                                format!("{n} overlaps the host network {host_net}"),
                            );
                        }
                    }
                }
                Err(_) => err(
                    "cluster.networking.host_cidr".into(),
                    format!("{text:?} is not a CIDR like 55.192.0.0/24"),
                ),
            }
        }
        for (a, (fa, na)) in nets.iter().enumerate() {
            for (fb, nb) in &nets[a + 1..] {
                if na.contains(&nb.network()) || nb.contains(&na.network()) {
                    err(fb.clone(), format!("{nb} overlaps {fa} ({na})"));
                }
            }
            for (i, ip) in &host_ips {
                if na.contains(ip) {
                    err(
                        fa.clone(),
                        format!(
                            "{na} contains the address of host {} ({ip}); pod and service networks must not overlap the host network",
                            self.hosts[*i].name
                        ),
                    );
                }
            }
        }

        // The endpoint: a VIP is a free address in the control planes' subnet.
        let cps: Vec<_> = self.control_planes().collect();
        if let Some(ep) = &self.cluster.control_plane_endpoint
            && let Some(vip) = &ep.vip
        {
            let field = "cluster.control_plane_endpoint.vip".to_string();
            match vip.parse::<IpAddr>() {
                Err(_) => err(field, format!("{vip:?} is not an IP address")),
                Ok(vip_ip) => {
                    if let Some(h) = self
                        .hosts
                        .iter()
                        .find(|h| h.address.parse::<IpAddr>().ok() == Some(vip_ip))
                    {
                        err(
                            field.clone(),
                            format!(
                                "VIP {vip} is the address of host {}; it must be a free address",
                                h.name
                            ),
                        );
                    }
                    let host_net = self
                        .cluster
                        .networking
                        .host_cidr
                        .as_deref()
                        .and_then(|c| c.parse::<IpNet>().ok());
                    for h in &cps {
                        if let Ok(ip) = h.address.parse::<IpAddr>() {
                            let (net, how) = match host_net {
                                Some(n) => (n, "networking.host_cidr"),
                                None => (
                                    IpNet::new(ip, if ip.is_ipv4() { 24 } else { 64 })
                                        .unwrap()
                                        .trunc(),
                                    "assumed; set networking.host_cidr",
                                ),
                            };
                            if !net.contains(&vip_ip) || !net.contains(&ip) {
                                err(
                                    field.clone(),
                                    format!(
                                        "VIP {vip} and control-plane host {} ({ip}) are not both in subnet {net} ({how}); keepalived can only move the VIP within one L2 segment",
                                        h.name
                                    ),
                                );
                            }
                        }
                    }
                    for (f, n) in &nets {
                        if n.contains(&vip_ip) {
                            err(field.clone(), format!("VIP {vip} lies inside {f} ({n})"));
                        }
                    }
                }
            }
        }
        // haproxy listens on the endpoint's port on every control plane,
        // where the API server already holds 6443.
        if let Some(ep) = &self.cluster.control_plane_endpoint
            && ep.vip.is_some()
            && !ep.external
            && ep.port == API_SERVER_PORT
        {
            err(
                "cluster.control_plane_endpoint.port".into(),
                format!(
                    "port {API_SERVER_PORT} is the API server's own on every control plane, where haproxy would listen for the VIP; use another (the guide's is 6553), or set external: true for a load balancer of your own"
                ),
            );
        }
        if cps.is_empty() && !self.hosts.is_empty() {
            err(
                "hosts".into(),
                "no host has the control-plane role: a cluster needs one (kubeadm init runs there)"
                    .into(),
            );
        } else if !cps.is_empty() && cps.len() % 2 == 0 {
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: None,
                field: "hosts".into(),
                message: format!("{} control-plane hosts: an even count adds no etcd fault tolerance over {}; use an odd number", cps.len(), cps.len() - 1),
            });
        }
        out
    }

    /// Where kubeadm, the kubelets and kubeconfigs reach the API, as
    /// `host:port`: the VIP (or, with an external load balancer and no VIP,
    /// its name) at the endpoint's port, else the first control plane's
    /// address at 6443. None without a control plane (validate refuses that).
    pub fn api_endpoint(&self) -> Option<String> {
        if let Some(ep) = &self.cluster.control_plane_endpoint {
            if let Some(vip) = &ep.vip {
                return Some(format!("{vip}:{}", ep.port));
            }
            if ep.external {
                return Some(format!("{}:{}", ep.name, ep.port));
            }
        }
        let first = self.first_control_plane()?;
        Some(format!(
            "{}:{API_SERVER_PORT}",
            first.ipv4().unwrap_or_else(|| first.address.clone())
        ))
    }

    /// The first control plane in inventory order: where `kubeadm init`
    /// runs (`groups['control-plane'][0]` in the roles) and the admin
    /// kubeconfig is read from.
    pub fn first_control_plane(&self) -> Option<&HostSpec> {
        self.hosts
            .iter()
            .find(|h| h.roles.iter().any(|r| r == ROLE_CONTROL_PLANE))
    }

    /// keepalived's virtual_router_id: derived from the cluster name, so two
    /// clusters on one segment differ unless their names collide (1..=254).
    pub fn vrrp_router_id(&self) -> u8 {
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.cluster.name.as_bytes());
        (d[0] % 254) + 1
    }

    /// `template_view` as a map, for building a task's scope on top of it.
    pub fn template_map(&self) -> serde_json::Map<String, Json> {
        match self.template_view() {
            Json::Object(m) => m,
            _ => unreachable!("template_view builds a mapping"),
        }
    }

    /// What templates and `when:` see of the inventory.
    pub fn template_view(&self) -> Json {
        let hosts: Vec<Json> = self
            .hosts
            .iter()
            .map(|h| serde_json::json!({ "name": h.name, "address": h.address, "ip": h.ipv4(), "roles": h.roles, "arch": h.arch, "labels": h.node_labels() }))
            .collect();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &self.hosts {
            groups.entry("all".into()).or_default().push(h.name.clone());
            for r in &h.roles {
                groups.entry(r.clone()).or_default().push(h.name.clone());
            }
        }
        serde_json::json!({
            "cluster": {
                "name": self.cluster.name,
                "vrrp_router_id": self.vrrp_router_id(),
                // keepalived + haproxy run on the control planes: a VIP is set
                // and the operator has no load balancer of their own.
                "api_lb": self.cluster.control_plane_endpoint.as_ref().is_some_and(|e| e.vip.is_some() && !e.external),
                "kubernetes_version": self.cluster.kubernetes_version,
                "control_plane_endpoint": self.cluster.control_plane_endpoint,
                "api_endpoint": self.api_endpoint(),
                "networking": self.cluster.networking,
            },
            // The component versions and kubeadm's images (`versions`).
            "kubernetes": crate::versions::Versions::for_inventory(self).map(|v| v.template_view()),
            "firewall": self.firewall,
            "secrets": self.secrets,
            "hosts": hosts,
            "groups": groups,
            "addons": crate::addons::template_view(self),
            "bundle": self.bundle.as_ref().map(|b| {
                let arches = self.hosts.iter().map(|h| h.arch.as_str()).collect();
                crate::bundle::template_view(&b.dir, &b.manifest, &arches)
            }),
        })
    }
}

/// A label key (`[prefix/]name`) or value, as the API server takes them.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    // Compiled once a run: every label of every node_label call is checked.
    static KEY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
        )
        .expect("a valid pattern")
    });
    static VALUE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
            .expect("a valid pattern")
    });
    let key_ok = KEY.is_match(key);
    let value_ok = VALUE.is_match(value);
    if !key_ok || key.split('/').next().is_some_and(|p| p.len() > 253) {
        return Err(format!(
            "{key:?} is not a label key (`[prefix/]name`, name at most 63 characters)"
        ));
    }
    if !value_ok {
        return Err(format!(
            "label {key}: {value:?} is not a label value (at most 63 letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

/// One RFC 1123 label of at most `max` characters: lowercase letters,
/// digits and '-', no leading or trailing '-' (a namespace, a release).
pub fn is_dns_label(s: &str, max: usize) -> bool {
    s.len() <= max && !s.contains('.') && is_rfc1123_label_seq(s)
}

/// An RFC 1123 host name: dot-separated labels of lowercase letters, digits
/// and '-', 1-63 characters each, no leading or trailing '-'.
pub fn is_rfc1123_label_seq(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123() {
        assert!(is_rfc1123_label_seq("master1"));
        assert!(is_rfc1123_label_seq("gpu-1.dc1"));
        assert!(!is_rfc1123_label_seq("Master1"));
        assert!(!is_rfc1123_label_seq("-a"));
        assert!(!is_rfc1123_label_seq("a;touch pwned"));
        assert!(!is_rfc1123_label_seq(&"a".repeat(64)));
        assert!(!is_rfc1123_label_seq("a..b"));
    }

    /// The inventory's values win over ssh_config's, which win over
    /// gantry's defaults; ProxyJump's hops get their own Host blocks.
    #[test]
    fn ssh_config_fills_what_the_inventory_leaves_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ssh_config"),
            "Host 10.0.0.11\n  User ops\n  Port 2200\n  ProxyJump edge\n  UserKnownHostsFile /site/known_hosts\n\
             Host 10.0.0.12\n  User ops\n  HostName 10.9.9.12\n  ProxyJump admin@edge:2222\n\
             Host edge\n  HostName 203.0.113.5\n  User jump\n",
        )
        .unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(
            &path,
            "cluster: { name: c, networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12 } }\n\
             ssh: { config: ssh_config_path, become: true, become_password: { env: SUDO_PASS } }\n\
             hosts:\n\
             - { name: a, address: 10.0.0.11, roles: [control-plane] }\n\
             - { name: b, address: 10.0.0.12, roles: [worker], ssh: { user: root, bastion: { address: 192.0.2.1, via: { address: 192.0.2.0, user: far } } } }\n\
             - { name: c, address: 10.0.0.13, roles: [worker] }\n"
                .replace("ssh_config_path", &dir.path().join("ssh_config").display().to_string()),
        )
        .unwrap();
        let (inv, _) = crate::loader::load_inventory(&path, |_| {
            ["control-plane", "worker"]
                .iter()
                .map(|r| r.to_string())
                .collect()
        })
        .unwrap();
        let a = inv.ssh_for(&inv.hosts[0]);
        assert_eq!(
            (a.address.as_str(), a.user.as_str(), a.port),
            ("10.0.0.11", "ops", 2200)
        );
        assert_eq!(a.known_hosts, PathBuf::from("/site/known_hosts"));
        assert_eq!(
            a.jumps
                .iter()
                .map(|j| (j.address.as_str(), j.user.as_str(), j.port))
                .collect::<Vec<_>>(),
            [("203.0.113.5", "jump", 22)]
        );
        assert_eq!(
            a.become_password,
            Some(SecretSource::Env("SUDO_PASS".into()))
        );
        // The inventory's user and bastion win over the file's; the
        // bastion chain is listed nearest the controller first.
        let b = inv.ssh_for(&inv.hosts[1]);
        assert_eq!((b.address.as_str(), b.user.as_str()), ("10.9.9.12", "root"));
        assert_eq!(
            b.jumps
                .iter()
                .map(|j| (j.address.as_str(), j.user.as_str()))
                .collect::<Vec<_>>(),
            [("192.0.2.0", "far"), ("192.0.2.1", "root")]
        );
        let c = inv.ssh_for(&inv.hosts[2]);
        assert_eq!((c.user.as_str(), c.port, c.jumps.len()), ("root", 22, 0));
    }

    #[test]
    fn ssh_config_is_inventory_wide_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(
            &path,
            "cluster: { name: c, networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12 } }\n\
             ssh: { config: /nonexistent/ssh_config }\n\
             hosts:\n\
             - { name: a, address: 10.0.0.11, roles: [worker], ssh: { config: true } }\n",
        )
        .unwrap();
        let e =
            crate::loader::load_inventory(&path, |_| ["worker".to_string()].into_iter().collect())
                .unwrap_err()
                .to_string();
        assert!(
            e.contains(
                "ssh.config: cannot read the ssh_config: /nonexistent/ssh_config: No such file"
            ),
            "{e}"
        );
        assert!(
            e.contains("hosts[0].ssh.config: the ssh_config is read for the whole inventory"),
            "{e}"
        );
    }
}
