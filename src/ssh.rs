//! SSH transport (russh): one connection per host, strict host-key checking
//! against known_hosts, key/agent authentication, `sudo -n` for become, and a
//! timeout on connect and on every command. Knows nothing about tasks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;

use crate::inventory::SshConfig;
use crate::shell::quote;

/// Why a host could not be used. `retryable` is false for the failures a
/// retry cannot fix and must not paper over: a changed host key, refused auth.
#[derive(Debug, Clone)]
pub struct ConnError {
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn transient(message: String) -> ConnError {
    ConnError { message, retryable: true }
}
fn fatal(message: String) -> ConnError {
    ConnError { message, retryable: false }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only keys already in known_hosts are accepted.
    Strict,
    /// Unknown keys are recorded (trust on first use); changed keys still fail.
    AcceptNew,
}

/// One process-wide lock so that concurrent first connections append to
/// known_hosts one line at a time.
static KNOWN_HOSTS_LOCK: Mutex<()> = Mutex::new(());

struct Verifier {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    verdict: Arc<Mutex<Option<ConnError>>>,
}

fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => match PublicKey::try_from(c.public_key().clone()) {
                Ok(k) => k,
                Err(_) => return Ok(false),
            },
        };
        let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let path = &self.known_hosts;
        let fp = fingerprint(&key);
        let checked = if path.exists() { russh::keys::check_known_hosts_path(&self.host, self.port, &key, path) } else { Ok(false) };
        let verdict = match checked {
            Ok(true) => return Ok(true),
            Ok(false) if self.policy == HostKeyPolicy::AcceptNew => match russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, &key, path) {
                Ok(()) => {
                    tracing::info!(host = %self.host, "recorded new host key {fp} in {}", path.display());
                    return Ok(true);
                }
                Err(e) => fatal(format!("could not record host key {fp} in {}: {e}", path.display())),
            },
            Ok(false) => fatal(format!(
                "host key of {}:{} is not known ({fp}); verify it out of band, then add it to {} or rerun with --accept-new-host-keys",
                self.host,
                self.port,
                path.display()
            )),
            Err(russh::keys::Error::KeyChanged { line }) => fatal(format!(
                "HOST KEY CHANGED for {}:{}: it now offers {fp}, which differs from {} line {line}. This can be a man-in-the-middle attack, or a reinstalled host. Nothing was sent; remove the old line only once you know why it changed",
                self.host,
                self.port,
                path.display()
            )),
            Err(e) => fatal(format!("cannot read {}: {e}", path.display())),
        };
        *self.verdict.lock().unwrap() = Some(verdict);
        Ok(false)
    }
}

/// How long a host that let a command time out has to answer a trivial one.
const LIVENESS: Duration = Duration::from_secs(5);

/// An open, authenticated connection to one host.
pub struct Conn {
    handle: Handle<Verifier>,
    become_: bool,
    pub command_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Output {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

pub async fn connect(address: &str, cfg: &SshConfig, policy: HostKeyPolicy) -> Result<Conn, ConnError> {
    let config = Arc::new(client::Config {
        // A dead or cut-off host is noticed within ~15 s even mid-command.
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_max: 3,
        inactivity_timeout: None,
        ..Default::default()
    });
    let verdict = Arc::new(Mutex::new(None));
    let verifier = Verifier { host: address.to_string(), port: cfg.port, known_hosts: cfg.known_hosts.clone(), policy, verdict: verdict.clone() };
    let timeout = Duration::from_secs(cfg.connect_timeout);
    let connecting = client::connect(config, (address, cfg.port), verifier);
    let mut handle = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Err(transient(format!("connect to {address}:{} timed out after {}s", cfg.port, cfg.connect_timeout))),
        Ok(Err(e)) => {
            if let Some(v) = verdict.lock().unwrap().take() {
                return Err(v);
            }
            return Err(transient(format!("connect to {address}:{}: {e}", cfg.port)));
        }
        Ok(Ok(h)) => h,
    };
    authenticate(&mut handle, &cfg.user, cfg.identity_file.as_deref()).await?;
    Ok(Conn { handle, become_: cfg.become_, command_timeout: Duration::from_secs(cfg.command_timeout) })
}

async fn authenticate(handle: &mut Handle<Verifier>, user: &str, identity: Option<&Path>) -> Result<(), ConnError> {
    let rsa_hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
    let mut tried = Vec::new();
    let keys: Vec<PathBuf> = match identity {
        Some(p) => vec![p.to_path_buf()],
        None => {
            // The ssh-agent first, then the default key files, as OpenSSH does.
            if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
                if let Ok(ids) = agent.request_identities().await {
                    for id in ids {
                        let key = id.public_key().into_owned();
                        tried.push(format!("agent key {}", key.fingerprint(HashAlg::Sha256)));
                        if let Ok(r) = handle.authenticate_publickey_with(user, key, rsa_hash, &mut agent).await {
                            if r.success() {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
            ["id_ed25519", "id_rsa", "id_ecdsa"].iter().map(|n| home.join(".ssh").join(n)).filter(|p| p.exists()).collect()
        }
    };
    for path in keys {
        let key = russh::keys::load_secret_key(&path, None).map_err(|e| fatal(format!("cannot load key {}: {e}", path.display())))?;
        tried.push(path.display().to_string());
        let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| transient(format!("authentication: {e}")))?;
        if res.success() {
            return Ok(());
        }
    }
    Err(fatal(format!("authentication as {user:?} refused (tried: {})", if tried.is_empty() { "no key found".into() } else { tried.join(", ") })))
}

impl Conn {
    /// Run a POSIX sh script on the host (as root through `sudo -n` when the
    /// host uses become), with optional stdin, within `timeout`.
    pub async fn run(&self, script: &str, stdin: Option<&[u8]>, timeout: Option<Duration>) -> Result<Output, ConnError> {
        let timeout = timeout.unwrap_or(self.command_timeout);
        let quoted = quote(script).map_err(fatal)?;
        let line = if self.become_ { format!("sudo -n -- sh -c {quoted}") } else { format!("sh -c {quoted}") };
        match tokio::time::timeout(timeout, self.exec(&line, stdin)).await {
            // A command past its time, or a host that stopped answering?
            // Ask the host something trivial: no answer means the host is
            // gone (unreachable), an answer means the command is just slow.
            Err(_) => match tokio::time::timeout(LIVENESS, self.exec("true", None)).await {
                Ok(Ok(_)) => Err(transient(format!("command timed out after {}s", timeout.as_secs()))),
                _ => Err(transient(format!("connection lost: the host stopped answering (command timed out after {}s, and a liveness check got no answer in {}s)", timeout.as_secs(), LIVENESS.as_secs()))),
            },
            Ok(Err(e)) => Err(e),
            Ok(Ok(out)) => {
                if self.become_ && out.rc == 1 && out.stderr.contains("sudo: a password is required") {
                    return Err(fatal("become: sudo wants a password for this user; gantry uses `sudo -n`, so allow the user NOPASSWD in sudoers, or connect as root".into()));
                }
                Ok(out)
            }
        }
    }

    async fn exec(&self, line: &str, stdin: Option<&[u8]>) -> Result<Output, ConnError> {
        let lost = |e: russh::Error| transient(format!("connection lost: {e}"));
        let mut ch = self.handle.channel_open_session().await.map_err(lost)?;
        ch.exec(true, line).await.map_err(lost)?;
        if let Some(data) = stdin {
            ch.data_bytes(data.to_vec()).await.map_err(lost)?;
        }
        ch.eof().await.map_err(lost)?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut rc = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => rc = Some(exit_status as i32),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    return Err(transient(format!("remote command killed by signal {signal_name:?}")));
                }
                _ => {}
            }
        }
        let Some(rc) = rc else {
            return Err(transient("connection lost: the command ended without an exit status".into()));
        };
        Ok(Output { rc, stdout: String::from_utf8_lossy(&out).into_owned(), stderr: String::from_utf8_lossy(&err).into_owned() })
    }

    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}
