//! SSH transport (russh): one connection per host, strict host-key checking
//! against known_hosts, key/agent/password authentication, sudo for become
//! (with a password answered on stdin), a connection through bastions
//! (`jump`), and a timeout on connect and on every command. Knows nothing
//! about tasks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::credentials::Password;
use super::known_hosts::{self, KnownHosts, Verdict};
use super::script::{input_var, own_call, quote};
use crate::inventory::SshConfig;

/// What went wrong with a request or a connection, by what it means for
/// the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection or its shell is gone: the host is unreachable for
    /// the rest of the run.
    Lost,
    /// The host refused us for good: a changed or unknown host key, refused
    /// authentication, sudo that wants a password. A retry cannot fix it.
    Refused,
    /// A command ran past its time; the host still answers.
    TimedOut,
    /// This one request cannot be run or read (a NUL byte in a value,
    /// output past the cap): its task fails, the host goes on.
    Request,
}

/// Why a request or a connection failed, in words, with its kind.
#[derive(Debug, Clone)]
pub struct ConnError {
    pub message: String,
    pub kind: ErrorKind,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ConnError {
    /// Whether the host can still be used after this error: only its task
    /// failed.
    pub fn task_only(&self) -> bool {
        matches!(self.kind, ErrorKind::TimedOut | ErrorKind::Request)
    }

    /// The same error, said of `what` (a bastion on the way).
    pub fn context(self, what: &str) -> ConnError {
        ConnError {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }
}

fn transient(message: String) -> ConnError {
    ConnError {
        message,
        kind: ErrorKind::Lost,
    }
}
fn fatal(message: String) -> ConnError {
    ConnError {
        message,
        kind: ErrorKind::Refused,
    }
}
fn timed_out(message: String) -> ConnError {
    ConnError {
        message,
        kind: ErrorKind::TimedOut,
    }
}
pub fn request_error(message: String) -> ConnError {
    ConnError {
        message,
        kind: ErrorKind::Request,
    }
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

pub(super) struct Verifier {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    /// The user's file and the system's, read once for this connection.
    files: Arc<KnownHosts>,
    policy: HostKeyPolicy,
    verdict: Arc<Mutex<Option<ConnError>>>,
    /// The key the host proved it holds, once accepted (OpenSSH's one-line
    /// form): what a relay from another host checks it against.
    accepted: Arc<Mutex<Option<String>>>,
}

fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let ok = self.check(offered)?;
        if ok {
            let key = match offered {
                PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
                PublicKeyOrCertificate::Certificate(c) => PublicKey::from(c.public_key().clone()),
            };
            if let Ok(line) = key.to_openssh() {
                *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
            }
        }
        Ok(ok)
    }
}

impl Verifier {
    fn check(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, russh::Error> {
        let (key, cert) = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => (key.clone(), None),
            PublicKeyOrCertificate::Certificate(c) => {
                (PublicKey::from(c.public_key().clone()), Some(c))
            }
        };
        let fp = fingerprint(&key);
        let (host, port, path) = (&self.host, self.port, &self.known_hosts);
        let verdict = match self.files.verify(host, port, &key, cert) {
            Verdict::Known => return Ok(true),
            Verdict::Unknown if self.policy == HostKeyPolicy::AcceptNew => {
                // One writer at a time, and only if no other connection
                // recorded a key for this host meanwhile.
                let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                match KnownHosts::load(&[path.as_path()]).map(|k| k.verify(host, port, &key, None))
                {
                    Ok(Verdict::Known) => return Ok(true),
                    Ok(Verdict::Unknown) => {
                        match russh::keys::known_hosts::learn_known_hosts_path(
                            host, port, &key, path,
                        ) {
                            Ok(()) => {
                                // As OpenSSH's "Warning: Permanently added".
                                eprintln!(
                                    "warning: recorded the host key of {host}:{port} ({fp}) in {} (--accept-new-host-keys)",
                                    path.display()
                                );
                                return Ok(true);
                            }
                            Err(e) => fatal(format!(
                                "could not record host key {fp} in {}: {e}",
                                path.display()
                            )),
                        }
                    }
                    Ok(_) => fatal(format!(
                        "host key of {host}:{port} was recorded by another connection meanwhile, and differs ({fp})"
                    )),
                    Err(e) => fatal(e),
                }
            }
            Verdict::Unknown => fatal(format!(
                "host key of {host}:{port} is not known ({fp}); verify it out of band, then add it to {} or rerun with --accept-new-host-keys",
                path.display()
            )),
            Verdict::Changed(places) => fatal(format!(
                "HOST KEY CHANGED for {host}:{port}: it now offers {fp}, which is none of the keys recorded for it ({}). This can be a man-in-the-middle attack, or a reinstalled host. Nothing was sent; remove the old lines only once you know why it changed",
                places
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Verdict::Revoked(place) => fatal(format!(
                "host key of {host}:{port} ({fp}) is REVOKED ({place}): refused, with or without --accept-new-host-keys"
            )),
            Verdict::BadCertificate(why) => {
                fatal(format!("host certificate of {host}:{port} refused: {why}"))
            }
        };
        *self.verdict.lock().unwrap() = Some(verdict);
        Ok(false)
    }
}

/// How long a command without input waits for the busy shell before it takes
/// a channel of its own.
const SHELL_WAIT: Duration = Duration::from_secs(1);

/// How long a host that let a command time out has to answer a trivial one.
const LIVENESS: Duration = Duration::from_secs(5);

/// An open, authenticated connection to one host.
pub struct Conn {
    handle: Handle<Verifier>,
    pub host: String,
    /// The host key this connection verified (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    pub port: u16,
    pub user: String,
    become_: bool,
    /// sudo's password, when the host's sudo asks for one.
    become_password: Option<Password>,
    pub command_timeout: Duration,
    /// The most output (stdout and stderr together) one request may send
    /// back: past it the request fails and its shell is closed, so a
    /// command that prints gigabytes, or a read of a device, costs its task,
    /// never the controller's memory.
    max_output: usize,
    /// The long-lived remote shell that runs commands one after another, so
    /// the login shell (.bashrc), sudo and sshd's session spawn are paid once
    /// per host, not once per command. `None` until first used, or after a
    /// command timed out or the shell died (the next command opens a new one).
    shell: tokio::sync::Mutex<Option<Shell>>,
    /// What this connection has carried so far, for the run report.
    pub stats: super::traffic::Stats,
}

/// Where a request's script runs in the host's long-lived shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In a subshell: the script's `exit`, `cd`, traps, `set -e` and
    /// variables stay there. For users' commands and anything not gantry's.
    Subshell,
    /// In a function of the shell itself, with no process spent on it: for
    /// gantry's own scripts (locks, facts, probes, writes). Such a script
    /// keeps its variables `local`, ends with `return`, never `exit`s, and
    /// leaves options, umask and traps as it found them; a unit test holds
    /// each kind of them to that.
    Own,
}

/// The long-lived shell is a plain `sh` reading commands from its stdin.
/// Each request is one brace group, parsed whole before any of it runs:
///
/// ```sh
/// { gantry_stdin='INPUT'; ( eval 'SCRIPT' ) </dev/null; printf '\n%s %d\n' NONCE $?; unset gantry_stdin; printf '\n%s\n' NONCE >&2; }
/// ```
///
/// (`Scope::Own` has `gantry_run() { eval 'SCRIPT'
/// }; gantry_run </dev/null; ...; unset -f gantry_run` in place of the
/// subshell: a fork is a few milliseconds on a loaded host, and gantry's own
/// requests are most of a run's.)
///
/// Script and input are shell-quoted, so whatever their bytes, the group
/// stays balanced; a request cut short by a lost connection is a syntax error
/// at end of input, and the shell exits without running any of it. The input
/// (file content, secrets) is a shell variable the script reads, never
/// exported: it is in no file, no process argument and no child's
/// environment, and a write puts it in place with the `printf` builtin, with
/// no process spent (`printf %s "$gantry_stdin" | cmd` gives it to a command
/// as stdin). The nonce is random per connection plus a counter, so no output
/// can end a frame early by accident.
fn request(nonce: &str, script: &str, inputs: &[&str], scope: Scope) -> Result<String, ConnError> {
    let mut set = String::new();
    let mut unset = String::new();
    for (i, text) in inputs.iter().enumerate() {
        set.push_str(&format!(
            "{}={}; ",
            input_var(i),
            quote(text).map_err(request_error)?
        ));
        unset.push_str(&format!("unset {}; ", input_var(i)));
    }
    let (run, done) = match scope {
        Scope::Subshell => (
            format!("( eval {} )", quote(script).map_err(request_error)?),
            "",
        ),
        Scope::Own => (
            own_call(script).map_err(request_error)?,
            "unset -f gantry_run; ",
        ),
    };
    Ok(format!(
        "{{ {set}{run} </dev/null; printf '\\n%s %d\\n' {nonce} $?; {done}{unset}printf '\\n%s\\n' {nonce} >&2; }}\n"
    ))
}

/// A command line for a channel of its own, and the sudo prompt it will
/// answer, if any (`Conn::as_root`).
struct Line {
    text: String,
    sudo: Option<Sudo>,
}

impl Line {
    fn plain(text: &str) -> Line {
        Line {
            text: text.to_string(),
            sudo: None,
        }
    }
}

struct Sudo {
    prompt: String,
    mark: String,
    password: Password,
}

struct Shell {
    ch: russh::Channel<client::Msg>,
    prefix: String,
    count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Output {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

/// SSH handshakes in flight at once, process-wide. A key exchange costs the
/// host and this machine real CPU; a thousand at once (`--forks 1000`)
/// starve each other past the connect timeout. The timeout starts once a
/// handshake may begin.
static HANDSHAKES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

pub async fn connect(cfg: &SshConfig, policy: HostKeyPolicy) -> Result<Conn, ConnError> {
    let address = cfg.address.as_str();
    use super::credentials::{self, Purpose};
    let become_password = match cfg.become_ {
        true => credentials::get(Purpose::Become, cfg.become_password.as_ref()).map_err(fatal)?,
        false => None,
    };
    let target = Target {
        address,
        port: cfg.port,
        user: &cfg.user,
        identity_file: cfg.identity_file.as_deref(),
        known_hosts: &cfg.known_hosts,
        password: credentials::get(Purpose::Ssh, cfg.password.as_ref()).map_err(fatal)?,
        connect_timeout: cfg.connect_timeout,
    };
    // Through the bastions, when there are any: the way to the last one is
    // made (or found made) before this host's turn to shake hands, so a
    // bastion never waits on a slot its own hosts hold.
    let way = match cfg.jumps.is_empty() {
        true => None,
        false => Some(super::jump::last_hop(&cfg.jumps, policy, cfg.connect_timeout).await?),
    };
    let (handle, host_key) = handshake(&target, policy, way.as_deref()).await?;
    Ok(Conn {
        handle,
        host: address.to_string(),
        host_key,
        port: cfg.port,
        user: cfg.user.clone(),
        become_: cfg.become_,
        become_password,
        command_timeout: Duration::from_secs(cfg.command_timeout),
        max_output: usize::try_from(cfg.max_output_mib.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        shell: tokio::sync::Mutex::new(None),
        stats: Default::default(),
    })
}

/// Where an SSH handshake goes and how it authenticates: a host, or a
/// bastion on the way to one.
pub(super) struct Target<'a> {
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub identity_file: Option<&'a Path>,
    pub known_hosts: &'a Path,
    pub password: Option<super::credentials::Password>,
    pub connect_timeout: u64,
}

/// Connect to `target` (over TCP, or through a channel of the bastion
/// `via`), check its host key and authenticate; returns the connection and
/// the key it proved it holds.
pub(super) async fn handshake(
    target: &Target<'_>,
    policy: HostKeyPolicy,
    via: Option<&Handle<Verifier>>,
) -> Result<(Handle<Verifier>, String), ConnError> {
    let (address, port) = (target.address, target.port);
    let _turn = HANDSHAKES
        .acquire()
        .await
        .map_err(|e| transient(format!("connect: {e}")))?;
    let files = Arc::new(
        KnownHosts::load(&[target.known_hosts, Path::new(known_hosts::SYSTEM_FILE)])
            .map_err(fatal)?,
    );
    // Ask for the algorithms the host is recorded with first (as OpenSSH
    // does), so a host with several keys is not taken for a changed one;
    // its certificate when an authority covers it; never ssh-rsa (SHA-1).
    let mut preferred = russh::Preferred {
        key: known_hosts::preferred_order(&files.recorded_algorithms(address, port)).into(),
        ..Default::default()
    };
    if files.has_authority(address, port) {
        preferred.host_key_certificates = preferred.key.clone();
    }
    let config = Arc::new(client::Config {
        // A dead or cut-off host is noticed within ~15 s even mid-command.
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_max: 3,
        inactivity_timeout: None,
        preferred,
        ..Default::default()
    });
    let verdict = Arc::new(Mutex::new(None));
    let accepted = Arc::new(Mutex::new(None));
    let verifier = Verifier {
        host: address.to_string(),
        port,
        known_hosts: target.known_hosts.to_path_buf(),
        files,
        policy,
        verdict: verdict.clone(),
        accepted: accepted.clone(),
    };
    let timeout = Duration::from_secs(target.connect_timeout);
    let connecting = async {
        match via {
            None => {
                let tcp = tokio::net::TcpStream::connect((address, port))
                    .await
                    .map_err(russh::Error::from)?;
                let _ = tcp.set_nodelay(true);
                client::connect_stream(config, tcp, verifier).await
            }
            Some(bastion) => {
                let ch = bastion
                    .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
                    .await?;
                client::connect_stream(config, ch.into_stream(), verifier).await
            }
        }
    };
    let mut handle = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            return Err(transient(format!(
                "connect to {address}:{port} timed out after {}s",
                target.connect_timeout
            )));
        }
        Ok(Err(e)) => {
            if let Some(v) = verdict.lock().unwrap().take() {
                return Err(v);
            }
            return Err(transient(format!(
                "connect to {address}:{port}{}: {e}",
                if via.is_some() {
                    " through the bastion"
                } else {
                    ""
                }
            )));
        }
        Ok(Ok(h)) => h,
    };
    // Authentication has the connect timeout too: a slow PAM or LDAP, or an
    // agent waiting for a confirmation, must not hold a handshake slot for
    // ever.
    tokio::time::timeout(timeout, authenticate(&mut handle, target))
        .await
        .map_err(|_| {
            transient(format!(
                "authentication on {address}:{port} took more than {}s",
                target.connect_timeout
            ))
        })??;
    let host_key = accepted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    Ok((handle, host_key))
}

async fn authenticate(handle: &mut Handle<Verifier>, target: &Target<'_>) -> Result<(), ConnError> {
    let (user, identity) = (target.user, target.identity_file);
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let mut tried = Vec::new();
    let keys: Vec<PathBuf> = match identity {
        Some(p) => vec![p.to_path_buf()],
        None => {
            // The ssh-agent first, then the default key files, as OpenSSH does.
            if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await
                && let Ok(ids) = agent.request_identities().await
            {
                for id in ids {
                    let key = id.public_key().into_owned();
                    tried.push(format!("agent key {}", key.fingerprint(HashAlg::Sha256)));
                    if let Ok(r) = handle
                        .authenticate_publickey_with(user, key, rsa_hash, &mut agent)
                        .await
                        && r.success()
                    {
                        return Ok(());
                    }
                }
            }
            let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
            ["id_ed25519", "id_rsa", "id_ecdsa"]
                .iter()
                .map(|n| home.join(".ssh").join(n))
                .filter(|p| p.exists())
                .collect()
        }
    };
    for path in keys {
        let key = russh::keys::load_secret_key(&path, None)
            .map_err(|e| fatal(format!("cannot load key {}: {e}", path.display())))?;
        tried.push(path.display().to_string());
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| transient(format!("authentication: {e}")))?;
        if res.success() {
            return Ok(());
        }
    }
    // A password last, and only where the inventory gave one.
    if let Some(password) = &target.password {
        tried.push("password".into());
        let res = handle
            .authenticate_password(user, password.expose())
            .await
            .map_err(|e| transient(format!("authentication: {e}")))?;
        if res.success() {
            return Ok(());
        }
    }
    Err(fatal(format!(
        "authentication as {user:?} refused (tried: {})",
        if tried.is_empty() {
            "no key found".into()
        } else {
            tried.join(", ")
        }
    )))
}

impl Conn {
    /// Run a POSIX sh script on the host (as root through sudo when the
    /// host uses become), within `timeout`. Commands go through the host's
    /// long-lived shell. Each of `inputs` (file content, a secret) reaches
    /// the script as a shell variable (`input_var`), not as its stdin (see
    /// `request`).
    pub async fn run(
        &self,
        script: &str,
        inputs: &[&str],
        timeout: Option<Duration>,
    ) -> Result<Output, ConnError> {
        self.run_in(Scope::Subshell, script, inputs, timeout).await
    }

    /// `run` for gantry's own scripts, in the shell itself (`Scope::Own`).
    pub async fn run_own(
        &self,
        script: &str,
        inputs: &[&str],
        timeout: Option<Duration>,
    ) -> Result<Output, ConnError> {
        self.run_in(Scope::Own, script, inputs, timeout).await
    }

    /// `run` in the given scope.
    pub async fn run_in(
        &self,
        scope: Scope,
        script: &str,
        inputs: &[&str],
        timeout: Option<Duration>,
    ) -> Result<Output, ConnError> {
        let started = std::time::Instant::now();
        let result = self.run_timed(scope, script, inputs, timeout).await;
        self.stats.count(
            script.len() + inputs.iter().map(|i| i.len()).sum::<usize>(),
            result
                .as_ref()
                .map_or(0, |o| o.stdout.len() + o.stderr.len()),
        );
        // `GANTRY_LOG=gantry::ssh=debug` times each remote command. No text
        // of it is logged: a command's arguments can hold a token, and the
        // log does not pass through the redactor. Its size tells requests
        // apart well enough for timing.
        tracing::debug!(target: "gantry::ssh", host = %self.host, ms = started.elapsed().as_millis() as u64, rc = result.as_ref().map_or(-1, |o| o.rc), bytes = script.len(), "request");
        result
    }

    async fn run_timed(
        &self,
        scope: Scope,
        script: &str,
        inputs: &[&str],
        timeout: Option<Duration>,
    ) -> Result<Output, ConnError> {
        let timeout = timeout.unwrap_or(self.command_timeout);
        // Input always goes through the shell, which runs a request only
        // once all of it has arrived (see `request`), so a write's content
        // can never land cut short. A command without input (the lock
        // heartbeat beside a task) waits a moment for the shell, then takes
        // a channel of its own.
        let shell = match inputs.first() {
            Some(_) => Ok(self.shell.lock().await),
            None => tokio::time::timeout(SHELL_WAIT, self.shell.lock()).await,
        };
        // The pid of the shell that runs the request, once its start line
        // has come back: what a timeout stops on the host.
        let pid = AtomicU32::new(0);
        let result = match shell {
            Ok(mut slot) => {
                match tokio::time::timeout(
                    timeout,
                    self.in_shell(&mut slot, scope, script, inputs, &pid),
                )
                .await
                {
                    Ok(r) => {
                        // A request refused before it was sent leaves the
                        // shell as it was; anything else, it is given up.
                        if r.as_ref().is_err_and(|e| e.kind != ErrorKind::Request) {
                            *slot = None;
                        }
                        Some(r)
                    }
                    Err(_) => {
                        // The shell is still busy with the command: give it up.
                        if let Some(old) = slot.take() {
                            let _ = old.ch.close().await;
                        }
                        None
                    }
                }
            }
            Err(_elapsed) => {
                let line = self.wrap(scope, script)?;
                tokio::time::timeout(timeout, self.exec(&line, &pid))
                    .await
                    .ok()
                    .map(|r| match r {
                        Ok(out) if out.rc == 1 => {
                            self.sudo_refused(&out.stderr).map_or(Ok(out), Err)
                        }
                        r => r,
                    })
            }
        };
        match result {
            // A command past its time, or a host that stopped answering?
            // Stop the command on the host (its shell and everything under
            // it): no answer means the host is gone (unreachable), an answer
            // means the command was just slow, and is stopped now.
            None => {
                let stop = match pid.load(Ordering::Relaxed) {
                    0 => Line::plain("true"),
                    p => self.wrap(Scope::Subshell, &stop_script(p))?,
                };
                let answered = tokio::time::timeout(
                    LIVENESS + Duration::from_secs(2),
                    self.exec(&stop, &AtomicU32::new(0)),
                )
                .await;
                match answered {
                    Ok(Ok(_)) => Err(timed_out(format!(
                        "command timed out after {}s{}",
                        timeout.as_secs(),
                        if pid.load(Ordering::Relaxed) == 0 {
                            ""
                        } else {
                            "; gantry stopped it on the host"
                        }
                    ))),
                    _ => Err(transient(format!(
                        "connection lost: the host stopped answering (command timed out after {}s, and a liveness check got no answer in {}s)",
                        timeout.as_secs(),
                        LIVENESS.as_secs()
                    ))),
                }
            }
            Some(r) => r,
        }
    }

    /// `sh -c SCRIPT`, as root when the host uses become.
    fn wrap(&self, scope: Scope, script: &str) -> Result<Line, ConnError> {
        let quoted = match scope {
            Scope::Subshell => quote(script),
            Scope::Own => own_call(script).and_then(|f| quote(&f)),
        }
        .map_err(request_error)?;
        self.as_root(&format!("sh -c {quoted}"))
    }

    /// `program` (a command line) through sudo when the host uses become:
    /// `sudo -n` without a password; with one, `sudo -S` with a prompt of
    /// gantry's own, answered on stdin (`sudo_handshake`), and a mark the
    /// program prints once it runs as root.
    fn as_root(&self, program: &str) -> Result<Line, ConnError> {
        if !self.become_ {
            return Ok(Line::plain(program));
        }
        let Some(password) = &self.become_password else {
            return Ok(Line::plain(&format!("sudo -n -- {program}")));
        };
        let tag = crate::secrets::random_hex(8).map_err(fatal)?;
        let sudo = Sudo {
            prompt: format!("gantry-sudo-{tag}:"),
            mark: format!("gantry-root-{tag}"),
            password: password.clone(),
        };
        let then = quote(&format!("printf '%s\\n' {} >&2; exec {program}", sudo.mark))
            .map_err(request_error)?;
        Ok(Line {
            text: format!("sudo -S -p {} -- sh -c {then}", sudo.prompt),
            sudo: Some(sudo),
        })
    }

    fn sudo_refused(&self, stderr: &str) -> Option<ConnError> {
        (self.become_ && stderr.contains("sudo: a password is required"))
            .then(|| fatal("become: sudo wants a password for this user; set ssh.become_password ({ env: NAME } or { file: PATH }) or pass --ask-become-pass, allow the user NOPASSWD in sudoers, or connect as root".into()))
    }

    /// Answer sudo's prompt on a channel just opened with `as_root`'s line:
    /// the password goes on stdin once, when sudo asks; a second prompt is
    /// a wrong password, and the channel is closed before sudo reads
    /// anything else. Returns what came on stdout before the program ran.
    async fn sudo_handshake(
        &self,
        ch: &mut russh::Channel<client::Msg>,
        sudo: &Sudo,
    ) -> Result<Vec<u8>, ConnError> {
        let lost = |e: russh::Error| transient(format!("connection lost: {e}"));
        let mark = format!("{}\n", sudo.mark);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut answered = false;
        loop {
            match ch.wait().await {
                Some(ChannelMsg::Data { data }) => out.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    err.extend_from_slice(&data);
                    if find(&err, mark.as_bytes(), 0).is_some() {
                        return Ok(out);
                    }
                    let asked = String::from_utf8_lossy(&err).matches(&sudo.prompt).count();
                    if asked > 1 {
                        let _ = ch.close().await;
                        return Err(fatal(format!(
                            "become: sudo refused the password for {:?} (ssh.become_password or --ask-become-pass)",
                            self.user
                        )));
                    }
                    if asked == 1 && !answered {
                        answered = true;
                        let mut line = sudo.password.expose().as_bytes().to_vec();
                        line.push(b'\n');
                        ch.data_bytes(line).await.map_err(lost)?;
                    }
                }
                // sshd may send the exit status before the last of stderr
                // (sudo's reason): read on to the channel's end.
                Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::ExitSignal { .. }) => {}
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    let said = String::from_utf8_lossy(&err).replace(&sudo.prompt, "");
                    return Err(fatal(format!(
                        "become: sudo did not run the command{}",
                        match said.trim() {
                            "" => String::new(),
                            s => format!(": {s}"),
                        }
                    )));
                }
                Some(_) => {}
            }
        }
    }

    async fn in_shell(
        &self,
        slot: &mut Option<Shell>,
        scope: Scope,
        script: &str,
        inputs: &[&str],
        pid: &AtomicU32,
    ) -> Result<Output, ConnError> {
        let lost = |e: russh::Error| transient(format!("connection lost: {e}"));
        if slot.is_none() {
            let mut ch = self.handle.channel_open_session().await.map_err(lost)?;
            let line = self.as_root("sh")?;
            ch.exec(true, line.text.as_str()).await.map_err(lost)?;
            if let Some(sudo) = &line.sudo {
                self.sudo_handshake(&mut ch, sudo).await?;
            }
            let prefix = crate::secrets::random_hex(12).map_err(fatal)?;
            *slot = Some(Shell {
                ch,
                prefix: format!("gantry-{prefix}"),
                count: 0,
            });
        }
        let sh = slot.as_mut().expect("opened above");
        sh.count += 1;
        let nonce = format!("{}-{}", sh.prefix, sh.count);
        let start = start_marker(&nonce);
        sh.ch
            .data_bytes(
                format!(
                    "{}{}",
                    start_line(&start),
                    request(&nonce, script, inputs, scope)?
                )
                .into_bytes(),
            )
            .await
            .map_err(lost)?;
        let out_end = format!("\n{nonce} ");
        let err_end = format!("\n{nonce}\n");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut rc, mut err_done) = (None, false);
        while rc.is_none() || !err_done {
            if out.len() + err.len() > self.max_output {
                // Closing the channel ends the shell, and the command with it
                // at its next write.
                if let Some(sh) = slot.take() {
                    let _ = sh.ch.close().await;
                }
                return Err(self.too_much());
            }
            match sh.ch.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    let from = out.len().saturating_sub(out_end.len() + 12);
                    out.extend_from_slice(&data);
                    if pid.load(Ordering::Relaxed) == 0
                        && let Some(p) = start_pid(&out, &start)
                    {
                        pid.store(p, Ordering::Relaxed);
                    }
                    if rc.is_none() {
                        rc = frame_end(&mut out, from, out_end.as_bytes());
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    let from = err.len().saturating_sub(err_end.len());
                    err.extend_from_slice(&data);
                    if let Some(at) = find(&err, err_end.as_bytes(), from) {
                        err.truncate(at);
                        err_done = true;
                    }
                }
                // The shell ended. sshd may send its exit status before the
                // last of its stderr (sudo's reason, say): read on to the
                // channel's end, so the error says why.
                Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::ExitSignal { .. }) => {}
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    let stderr = String::from_utf8_lossy(&err).into_owned();
                    if let Some(e) = self.sudo_refused(&stderr) {
                        return Err(e);
                    }
                    return Err(transient(format!(
                        "connection lost: the remote shell ended{}",
                        if stderr.trim().is_empty() {
                            String::new()
                        } else {
                            format!(": {}", stderr.trim())
                        }
                    )));
                }
                Some(_) => {}
            }
        }
        // What the login shell printed before this request (a banner from
        // .bashrc, a conda note) is not part of the answer.
        after_start(&mut out, &start);
        after_start(&mut err, &start);
        Ok(Output {
            rc: rc.unwrap_or_default(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    /// A command line on a channel of its own, stdin empty.
    async fn exec(&self, line: &Line, pid: &AtomicU32) -> Result<Output, ConnError> {
        self.exec_with(line, pid, None).await
    }

    /// Run `script` (as root when the host uses become) on a channel of its
    /// own, its stdin the bytes `src` yields, streamed: the window of the
    /// SSH channel is all that is in flight, so memory does not grow with
    /// the size of what is sent. For `modules::upload`; `timeout` bounds
    /// the whole transfer.
    pub async fn upload(
        &self,
        script: &str,
        src: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
        timeout: Duration,
    ) -> Result<Output, ConnError> {
        let line = self.wrap(Scope::Subshell, script)?;
        let pid = AtomicU32::new(0);
        // The file's bytes are counted by the caller, which knows them.
        self.stats.count(script.len(), 0);
        match tokio::time::timeout(timeout, self.exec_with(&line, &pid, Some(src))).await {
            Ok(r) => r,
            // The channel is dropped, which closes it: the host's `cat`
            // sees the end of its input, and what arrived stays for the
            // next run to resume from.
            Err(_) => Err(timed_out(format!(
                "the upload did not finish within {}s (the task's timeout); the next run resumes it",
                timeout.as_secs()
            ))),
        }
    }

    async fn exec_with(
        &self,
        line: &Line,
        pid: &AtomicU32,
        stdin: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)>,
    ) -> Result<Output, ConnError> {
        let lost = |e: russh::Error| transient(format!("connection lost: {e}"));
        let start = start_marker(&format!(
            "gantry-exec-{}",
            crate::secrets::random_hex(8).map_err(fatal)?
        ));
        let mut ch = self.handle.channel_open_session().await.map_err(lost)?;
        ch.exec(true, format!("{}{}", start_line(&start), line.text))
            .await
            .map_err(lost)?;
        let mut out = match &line.sudo {
            Some(sudo) => self.sudo_handshake(&mut ch, sudo).await?,
            None => Vec::new(),
        };
        // Input is sent while output is read: a command that ends before
        // reading all of its input (an upload refused on the host) stops
        // the sending, and its exit status and stderr say why.
        let (mut rd, wr) = ch.split();
        let send = async {
            if let Some(src) = stdin {
                wr.data(src).await?;
            }
            wr.eof().await
        };
        tokio::pin!(send);
        let mut sent: Option<Result<(), russh::Error>> = None;
        let mut err = Vec::new();
        let mut rc = None;
        if let Some(p) = start_pid(&out, &start) {
            pid.store(p, Ordering::Relaxed);
        }
        loop {
            let msg = tokio::select! {
                r = &mut send, if sent.is_none() => {
                    sent = Some(r);
                    continue;
                }
                m = rd.wait() => m,
            };
            let Some(msg) = msg else { break };
            if out.len() + err.len() > self.max_output {
                let _ = wr.close().await;
                return Err(self.too_much());
            }
            match msg {
                ChannelMsg::Data { data } => {
                    out.extend_from_slice(&data);
                    if pid.load(Ordering::Relaxed) == 0
                        && let Some(p) = start_pid(&out, &start)
                    {
                        pid.store(p, Ordering::Relaxed);
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => rc = Some(exit_status as i32),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    return Err(transient(format!(
                        "remote command killed by signal {signal_name:?}"
                    )));
                }
                _ => {}
            }
        }
        let Some(rc) = rc else {
            if let Some(Err(e)) = sent {
                return Err(lost(e));
            }
            return Err(transient(
                "connection lost: the command ended without an exit status".into(),
            ));
        };
        after_start(&mut out, &start);
        after_start(&mut err, &start);
        Ok(Output {
            rc,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    fn too_much(&self) -> ConnError {
        request_error(format!(
            "the command's output passed the cap of {} MiB (ssh.max_output_mib); gantry closed the remote shell, which ends the command",
            self.max_output >> 20
        ))
    }

    pub async fn close(&self) {
        if let Some(sh) = self.shell.lock().await.take() {
            let _ = sh.ch.eof().await;
        }
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// The line that marks where a request's own output starts, on stdout and
/// stderr. A login shell may print anything before it (sshd runs every
/// command through the user's shell, and a .bashrc that greets, or a conda
/// or module system that reports, writes to both streams): `after_start`
/// drops all of it.
fn start_marker(nonce: &str) -> String {
    format!("{nonce}-start")
}

/// On stdout the start line also names the shell that runs the request
/// (`$$`), so a request past its time can be stopped on the host
/// (`stop_script`).
fn start_line(marker: &str) -> String {
    format!("printf '%s %s\\n' {marker} $$; printf '%s\\n' {marker} >&2\n")
}

/// Drop what came before the start marker's line, and the line. Output
/// without it (a shell that ended before it ran) is kept whole.
fn after_start(buf: &mut Vec<u8>, marker: &str) {
    for line in [format!("{marker}\n"), format!("{marker} ")] {
        if let Some(at) = find(buf, line.as_bytes(), 0) {
            let end = find(buf, b"\n", at).map_or(buf.len(), |e| e + 1);
            buf.drain(..end);
            return;
        }
    }
}

/// The pid the start line names on stdout, once it has arrived whole.
fn start_pid(buf: &[u8], marker: &str) -> Option<u32> {
    let line = format!("{marker} ");
    let at = find(buf, line.as_bytes(), 0)? + line.len();
    let end = find(buf, b"\n", at)?;
    std::str::from_utf8(&buf[at..end])
        .ok()?
        .parse()
        .ok()
        .filter(|&p| p > 1)
}

/// Stop a process on the host and everything under it: the shell of a
/// request past its time, first (so a write script runs its trap, removes
/// its temp files and renames nothing), then its children, all of them
/// listed before any is signalled; a second later, whatever is left is
/// killed. Through /proc, so nothing needs procps.
fn stop_script(pid: u32) -> String {
    format!(
        "p=; t() {{ p=\"$p $1\"; for k in $(cat /proc/$1/task/*/children 2>/dev/null); do t $k; done; }}; t {pid}; kill -TERM $p 2>/dev/null; sleep 1; kill -KILL $p 2>/dev/null; true"
    )
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Where stdout holds `\nNONCE RC\n` (searching from `from`): cut it off and
/// return RC. `None` while the frame's end has not fully arrived.
fn frame_end(out: &mut Vec<u8>, from: usize, marker: &[u8]) -> Option<i32> {
    let at = find(out, marker, from)?;
    let rest = &out[at + marker.len()..];
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let rc = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
    out.truncate(at);
    Some(rc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sh(input: &[u8]) -> String {
        use std::io::Write;
        let mut c = std::process::Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    }

    #[test]
    fn a_request_runs_whole_with_its_stdin_or_not_at_all() {
        let data = "it's $(reboot)\n`id`\n'; echo injected; '\nno newline";
        let req = request(
            "N-1",
            "printf %s \"$gantry_stdin\"; exit 3",
            &[data],
            Scope::Subshell,
        )
        .unwrap();
        assert_eq!(sh(req.as_bytes()), format!("{data}\nN-1 3\n"));
        // Two requests back to back: the second, without input, sees none,
        // and its stdin is empty.
        let two = format!(
            "{req}{}",
            request(
                "N-2",
                "echo \"two[$gantry_stdin]\"; read x || echo eof",
                &[],
                Scope::Subshell,
            )
            .unwrap()
        );
        assert_eq!(
            sh(two.as_bytes()),
            format!("{data}\nN-1 3\ntwo[]\neof\n\nN-2 0\n")
        );
        // The input is in no child's environment.
        let env = request("N-4", "env | grep -c gantry_stdin", &["secret"], Scope::Own).unwrap();
        assert_eq!(sh(env.as_bytes()), "0\n\nN-4 1\n");
        // Several inputs, each in its own variable.
        let many = request(
            "N-5",
            "printf '%s|' \"$gantry_stdin\" \"$gantry_stdin_1\" \"$gantry_stdin_2\"",
            &["a", "b'c", ""],
            Scope::Own,
        )
        .unwrap();
        assert_eq!(sh(many.as_bytes()), "a|b'c||\nN-5 0\n");
        // Cut anywhere short of its end, a request runs nothing.
        for scope in [Scope::Subshell, Scope::Own] {
            let req = request("N-3", "echo RAN", &["x'y", "z"], scope).unwrap();
            for cut in 0..req.len() - 1 {
                assert_eq!(
                    sh(&req.as_bytes()[..cut]),
                    "",
                    "cut at {cut}: {:?}",
                    &req[..cut]
                );
            }
        }
    }

    /// Whatever the login shell prints before a request, on either stream,
    /// is never taken for the answer.
    #[test]
    fn a_login_shell_that_talks_is_not_an_answer() {
        let banner = "echo 'Welcome to prod, node1'; echo 'conda: base activated' >&2\n";
        let start = start_marker("N-1");
        let req = request("N-1", "echo answer; echo note >&2", &[], Scope::Own).unwrap();
        let input = format!("{banner}{}{req}{banner}", start_line(&start));
        let mut c = std::process::Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let c_pid = c.id();
        let o = c.wait_with_output().unwrap();
        let (mut out, mut err) = (o.stdout, o.stderr);
        assert_eq!(frame_end(&mut out, 0, b"\nN-1 "), Some(0));
        let end = find(&err, b"\nN-1\n", 0).unwrap();
        err.truncate(end);
        assert!(start_pid(&out, &start).is_some_and(|p| p == c_pid));
        after_start(&mut out, &start);
        after_start(&mut err, &start);
        assert_eq!(String::from_utf8(out).unwrap(), "answer\n");
        assert_eq!(String::from_utf8(err).unwrap(), "note\n");
    }

    /// A request past its time is stopped on the host: its shell first
    /// (whose trap then runs), then everything under it, grandchildren too.
    #[test]
    fn a_stopped_request_leaves_no_process_behind() {
        let dir = tempfile::tempdir().unwrap();
        let trap = dir.path().join("trapped");
        // Durations of this test's own (sleep takes fractions), so that a
        // sleep of another process on the machine is never counted.
        let tag = std::process::id();
        let c = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap 'echo ran > {}; exit 1' TERM; ( sleep 300.{tag} & sleep 301.{tag} ) & sleep 302.{tag}; echo renamed",
                trap.display()
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = c.id();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let tree = || {
            let ps = std::process::Command::new("pgrep")
                .args(["-f", &format!("^sleep 30[012]\\.{tag}$")])
                .output()
                .unwrap();
            String::from_utf8_lossy(&ps.stdout).lines().count()
        };
        assert_eq!(tree(), 3);
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(stop_script(pid))
            .status()
            .unwrap();
        assert!(st.success());
        let out = c.wait_with_output().unwrap();
        assert_eq!(tree(), 0, "a process was left behind");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "the shell went on"
        );
        assert_eq!(std::fs::read_to_string(&trap).unwrap(), "ran\n");
    }

    #[test]
    fn an_own_request_runs_in_the_shell_and_returns_its_status() {
        // `return` ends it with its status; the shell goes on to the next
        // request, and the function is gone.
        let one = request(
            "N-1",
            "local x=1; echo \"in $x\"; return 4; echo after",
            &[],
            Scope::Own,
        )
        .unwrap();
        let two = request(
            "N-2",
            "command -v gantry_run || echo gone; echo \"x=[${x-unset}]\"",
            &[],
            Scope::Subshell,
        )
        .unwrap();
        assert_eq!(
            sh(format!("{one}{two}").as_bytes()),
            "in 1\n\nN-1 4\ngone\nx=[unset]\n\nN-2 0\n"
        );
        // No process is spent on it: a variable it sets without `local`
        // would outlive it (which is why gantry's own scripts must not).
        let leak = request("N-3", "leaked=yes", &[], Scope::Own).unwrap();
        let read = request("N-4", "echo \"$leaked\"", &[], Scope::Own).unwrap();
        assert_eq!(
            sh(format!("{leak}{read}").as_bytes()),
            "\nN-3 0\nyes\n\nN-4 0\n"
        );
        assert!(shell_left_as_found("leaked=yes", &[]).is_err());
    }

    /// The state of the shell that `Scope::Own` scripts must leave as they
    /// found it: variables, functions' absence, options, umask, traps and
    /// the working directory.
    const DUMP: &str = "set; umask; set +o; trap; pwd";

    /// Run `script` as an own request in a real `sh` and compare the shell's
    /// state before and after it; Err names what changed, Ok has the
    /// script's stdout.
    pub(crate) fn shell_left_as_found(script: &str, inputs: &[&str]) -> Result<String, String> {
        let req = request("N-9", script, inputs, Scope::Own).unwrap();
        let out = sh(format!(
            "echo ==before; {DUMP}; echo ==run\n{req}echo ==after; {DUMP}; echo ==end\n"
        )
        .as_bytes());
        let part = |a: &str, b: &str| {
            out.split_once(a)
                .and_then(|(_, r)| r.split_once(b))
                .map(|(m, _)| m.to_string())
                .ok_or_else(|| format!("the shell did not get to {b}: {out}"))
        };
        let (before, run, after) = (
            part("==before\n", "==run\n")?,
            part("==run\n", "==after\n")?,
            part("==after\n", "==end\n")?,
        );
        if before != after {
            let diff = similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .to_string();
            return Err(format!("the script changed the shell:\n{diff}"));
        }
        // The script's own output, without the request's frame.
        Ok(run
            .rsplit_once("\nN-9 ")
            .map_or(run.clone(), |(o, _)| o.to_string()))
    }

    #[test]
    fn frame_end_needs_the_whole_marker_and_keeps_the_output() {
        let mut out = b"line\n\ngantry-ab-1 ".to_vec();
        assert_eq!(frame_end(&mut out, 0, b"\ngantry-ab-1 "), None);
        out.extend_from_slice(b"3\n");
        assert_eq!(frame_end(&mut out, 0, b"\ngantry-ab-1 "), Some(3));
        assert_eq!(out, b"line\n");
        // Another nonce's marker inside the output is just output.
        let mut out = b"\ngantry-ab-2 0\nx\ngantry-ab-1 0\n".to_vec();
        assert_eq!(frame_end(&mut out, 0, b"\ngantry-ab-1 "), Some(0));
        assert_eq!(out, b"\ngantry-ab-2 0\nx");
    }
}
