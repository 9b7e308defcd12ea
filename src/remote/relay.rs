//! Host-to-host transfer of a bundle file (fan-out), with the hosts' own
//! OpenSSH: the bytes leave the controller once, and hosts that hold a
//! verified copy pass it on over the cluster network, encrypted and
//! authenticated by SSH.
//!
//! For one transfer from source S to target T the controller, over its own
//! connections:
//! 1. on T, writes the receiving script (`modules::upload_script`) to
//!    `/var/lib/gantry/relay/TAG.sh` (root's, 0700 directory) and adds one
//!    line to the SSH user's `authorized_keys`: the run's ephemeral public
//!    key, `restrict`ed, usable only from S's address, expiring in two
//!    hours, and forced to run that script and nothing else;
//! 2. on S, writes the ephemeral private key and T's host key (the one the
//!    controller verified) to a fresh 0700 directory, and pipes the file
//!    into `ssh` to T, strict host key checking on; the key directory is
//!    removed when `ssh` ends;
//! 3. on T, removes the line and the script, whatever happened.
//!
//! Nothing is installed and nothing keeps running. T checks the sha256 of
//! what arrived exactly as for a direct upload. A line that a crash left
//! behind expires by itself and is swept by the next transfer to that host.

use super::script::quote;

/// Where relay scripts and keys live on hosts.
pub const DIR: &str = "/var/lib/gantry/relay";

/// The comment that marks gantry's `authorized_keys` lines.
const MARK: &str = "gantry-relay-";

/// Shell text that sets `ak` to the SSH user's authorized_keys file.
fn authorized_keys(user: &str) -> Result<String, String> {
    Ok(format!(
        "home=$(getent passwd {u} | cut -d: -f6); [ -n \"$home\" ] || {{ echo \"gantry relay: no home for {user}\" >&2; exit 3; }}; ak=$home/.ssh/authorized_keys",
        u = quote(user)?
    ))
}

/// Rewrite `$ak` without gantry's relay lines, plus `$line` when set: a
/// copy with the same owner and mode, filled, synced, then renamed over it.
const REWRITE: &str = r#"t=$ak.gantry-relay.tmp
cp -p -- "$ak" "$t" || exit 3
{ grep -vF ' gantry-relay-' -- "$ak"; [ -z "${line:-}" ] || printf '%s\n' "$line"; } > "$t"
sync -- "$t" && mv -fT -- "$t" "$ak" || { rm -f -- "$t"; exit 3; }"#;

/// On the target: the receiving script put in place (from the request's
/// input, `$gantry_stdin`) and the forced-command line added.
///
/// Only for hosts gantry logs into as root: the rewrite runs as root, and
/// in another user's `~/.ssh` that user could swap the temp file for a
/// link.
pub fn authorize(tag: &str, from: &str, public_key: &str) -> Result<String, String> {
    let user = "root";
    let job = format!("{DIR}/{tag}.sh");
    // authorized_keys options are double-quoted: none of these values may
    // hold a quote or a newline.
    for v in [tag, from, public_key] {
        if v.contains(['"', '\n', '\\']) {
            return Err(format!("relay: {v:?} cannot go in an authorized_keys line"));
        }
    }
    Ok(format!(
        r#"set -u
umask 077
{ak}
[ -f "$ak" ] && [ ! -L "$ak" ] || {{ echo "gantry relay: $ak is not a plain file" >&2; exit 3; }}
mkdir -p -m 0755 /var/lib/gantry && mkdir -p -m 0700 {dir} || exit 3
[ ! -L {dir} ] && [ "$(stat -c %u:%a {dir})" = 0:700 ] || {{ echo "gantry relay: {DIR} must be root's, mode 0700" >&2; exit 3; }}
printf '%s' "$gantry_stdin" > {jobq} || exit 3
exp=$(date -d '+2 hours' +%Y%m%d%H%M) || exit 3
line="restrict,from=\"{from}\",expiry-time=\"$exp\",command=\"sh {job}\" {public_key} {MARK}{tag}"
{REWRITE}
"#,
        ak = authorized_keys(user)?,
        dir = quote(DIR)?,
        jobq = quote(&job)?,
    ))
}

/// On the target, after the transfer: the line and the script removed.
pub fn revoke(tag: &str) -> Result<String, String> {
    let user = "root";
    Ok(format!(
        "set -u\n{ak}\nrm -f -- {job}\nline=\n[ -f \"$ak\" ] && grep -qF ' {MARK}' -- \"$ak\" || exit 0\n{REWRITE}\n",
        ak = authorized_keys(user)?,
        job = quote(&format!("{DIR}/{tag}.sh"))?,
    ))
}

/// On the source: its copy of the file, from `offset`, piped into `ssh`
/// to the target, which runs the forced receiving script. The private key
/// is this request's stdin; it lives in a 0700 directory only while `ssh`
/// runs. Exit 255 is `ssh`'s own failure (the target unreachable from
/// here, or refusing the key); other codes are the receiving script's.
pub fn send(
    path: &str,
    offset: u64,
    address: &str,
    port: u16,
    host_key: &str,
) -> Result<String, String> {
    let pattern = if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    };
    Ok(format!(
        r#"set -u
umask 077
mkdir -p -m 0755 /var/lib/gantry && mkdir -p -m 0700 {dir} || exit 3
d=$(mktemp -d {dir}/key.XXXXXX) || exit 3
trap 'rm -rf -- "$d"' EXIT
cat > "$d/key" || exit 3
printf '%s\n' {kh} > "$d/known_hosts"
tail -c +{start} -- {src} | ssh -T -i "$d/key" -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile="$d/known_hosts" -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com -o ConnectTimeout=10 -o LogLevel=ERROR -p {port} -l root {a}
"#,
        dir = quote(DIR)?,
        kh = quote(&format!("{pattern} {host_key}"))?,
        start = offset + 1,
        src = quote(path)?,
        a = quote(address)?,
    ))
}

/// A fresh ed25519 key pair for one run's relays: (private key in OpenSSH
/// format, public key line).
pub fn ephemeral_key() -> Result<(String, String), String> {
    use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("relay key: {e}"))?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("relay key: {e}"))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("relay key: {e}"))?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_would_break_the_line_are_refused() {
        assert!(authorize("t", "10.0.0.1\"", "ssh-ed25519 AAAA").is_err());
        assert!(authorize("t", "10.0.0.1", "ssh-ed25519 AAAA\nx").is_err());
        assert!(authorize("t", "10.0.0.1", "ssh-ed25519 AAAA").is_ok());
    }

    #[test]
    fn an_ephemeral_key_is_ed25519_in_openssh_format() {
        let (private, public) = ephemeral_key().unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(public.starts_with("ssh-ed25519 AAAA"));
        assert_ne!(ephemeral_key().unwrap().1, public);
    }

    /// The authorized_keys rewrite, run by a local `sh` on a scratch home:
    /// the user's lines and the file's mode are kept, gantry's line added,
    /// then removed with any left by an earlier run.
    #[test]
    fn authorize_and_revoke_keep_the_users_lines() {
        if !crate::running_as_root() {
            eprintln!("skipped: needs root (writes under /var/lib/gantry)");
            return;
        }
        let ak = tempfile::NamedTempFile::new().unwrap();
        // No trailing newline, and an old gantry line.
        std::fs::write(
            ak.path(),
            "ssh-ed25519 AAAAuser me@laptop\nssh-ed25519 AAAAold gantry-relay-old",
        )
        .unwrap();
        let set_ak = format!("ak={}", ak.path().display());
        let run = |script: String, input: &str| {
            let s = script.replace(&authorized_keys("root").unwrap(), &set_ak);
            let out = std::process::Command::new("sh")
                .args([
                    "-c",
                    &format!("gantry_stdin={}\n{s}", quote(input).unwrap()),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::set_permissions(
            ak.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        run(
            authorize("unit", "10.0.0.2", "ssh-ed25519 AAAAnew").unwrap(),
            "echo job\n",
        );
        let text = std::fs::read_to_string(ak.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ssh-ed25519 AAAAuser me@laptop");
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[1].starts_with("restrict,from=\"10.0.0.2\",expiry-time=\""),
            "{text}"
        );
        assert!(lines[1].ends_with("\",command=\"sh /var/lib/gantry/relay/unit.sh\" ssh-ed25519 AAAAnew gantry-relay-unit"), "{text}");
        assert_eq!(
            std::fs::read_to_string("/var/lib/gantry/relay/unit.sh").unwrap(),
            "echo job\n"
        );
        run(revoke("unit").unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(ak.path()).unwrap(),
            "ssh-ed25519 AAAAuser me@laptop\n"
        );
        assert!(!std::path::Path::new("/var/lib/gantry/relay/unit.sh").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(ak.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Leave this machine as found (only empty directories go).
        let _ = std::fs::remove_dir(DIR);
        let _ = std::fs::remove_dir("/var/lib/gantry");
    }
}
