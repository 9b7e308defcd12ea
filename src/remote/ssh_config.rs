//! The operator's OpenSSH client configuration (`ssh: { config: true }`, or a
//! path): Host blocks supply HostName, User, Port, IdentityFile, ProxyJump and
//! UserKnownHostsFile where the inventory leaves them unset. Parsed with the
//! `ssh2-config` crate, which follows OpenSSH's matching (Host patterns,
//! negation, first value wins, `Include`); gantry reads only those six
//! settings and ignores the rest, as `ssh -G` would show them.

use std::path::{Path, PathBuf};

/// A parsed ssh_config file.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    parsed: ssh2_config::SshConfig,
    pub path: PathBuf,
}

/// What the file says for one host name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    /// ProxyJump's hops, nearest the controller first; `ProxyJump none` is
    /// an empty list.
    pub proxy_jump: Option<Vec<String>>,
    pub known_hosts: Option<PathBuf>,
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<ClientConfig, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let parsed = ssh2_config::SshConfig::default()
            .parse(
                &mut std::io::BufReader::new(file),
                ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS
                    | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ClientConfig {
            parsed,
            path: path.to_path_buf(),
        })
    }

    /// The settings for `host`, as `ssh host` would use them.
    pub fn lookup(&self, host: &str) -> Found {
        let p = self.parsed.query(host);
        let known_hosts = p
            .unsupported_fields
            .get("userknownhostsfile")
            .and_then(|v| v.first())
            .map(PathBuf::from);
        Found {
            host_name: p.host_name,
            user: p.user,
            port: p.port,
            identity_file: p.identity_file.and_then(|v| v.into_iter().next()),
            proxy_jump: p.proxy_jump.map(|hops| {
                hops.into_iter()
                    .filter(|h| !h.eq_ignore_ascii_case("none"))
                    .collect()
            }),
            known_hosts,
        }
    }
}

/// One ProxyJump hop, `[user@]host[:port]`.
pub fn split_hop(hop: &str) -> (Option<&str>, &str, Option<u16>) {
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, hop),
    };
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (user, h, Some(port)),
            Err(_) => (user, rest, None),
        },
        _ => (user, rest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_blocks_first_value_wins_and_proxy_jump_chains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "Host gpu-*\n  User ops\n  ProxyJump jump@bastion1:2222,bastion2\n  UserKnownHostsFile /etc/site/known_hosts\n\
             Host gpu-01\n  HostName 10.0.0.11\n  Port 2200\n\
             Host direct\n  ProxyJump none\n\
             Host *\n  User fallback\n  IdentityFile ~/.ssh/site_ed25519\n  ForwardX11 no\n  SomethingNew yes\n",
        )
        .unwrap();
        let c = ClientConfig::load(&path).unwrap();
        let f = c.lookup("gpu-01");
        assert_eq!(f.host_name.as_deref(), Some("10.0.0.11"));
        assert_eq!(f.user.as_deref(), Some("ops"), "the first value wins");
        assert_eq!(f.port, Some(2200));
        assert_eq!(
            f.proxy_jump,
            Some(vec![
                "jump@bastion1:2222".to_string(),
                "bastion2".to_string()
            ])
        );
        assert_eq!(f.known_hosts, Some(PathBuf::from("/etc/site/known_hosts")));
        assert!(f.identity_file.unwrap().ends_with(".ssh/site_ed25519"));
        assert_eq!(c.lookup("direct").proxy_jump, Some(vec![]));
        assert_eq!(c.lookup("other").user.as_deref(), Some("fallback"));
        assert_eq!(
            split_hop("jump@bastion1:2222"),
            (Some("jump"), "bastion1", Some(2222))
        );
        assert_eq!(split_hop("bastion2"), (None, "bastion2", None));
        assert!(
            ClientConfig::load(&dir.path().join("none"))
                .unwrap_err()
                .contains("No such file")
        );
    }
}
