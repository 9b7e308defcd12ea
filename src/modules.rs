//! Task modules, in two pure steps, as pyinfra and k0sctl do it: `probes`
//! names the read-only facts a module needs, and `decide` turns those facts
//! into a decision (unchanged with a reason, or the actions that would
//! converge the host, with a diff). Modules never touch a host: only the
//! executor runs probes and actions, and `plan` never runs actions. That makes
//! plan read-only by construction, and every module testable from fixtures.

use std::collections::{HashMap, HashSet};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::shell::{command, quote};
use crate::ssh::Scope;

pub const NAMES: &[&str] = &[
    "copy",
    "template",
    "file",
    "lineinfile",
    "blockinfile",
    "replace",
    "sysctl",
    "hostname",
    "modprobe",
    "command",
    "shell",
    "service",
    "package",
    "vip_check",
];

/// Parameters each module takes; anything else is a load-time error.
fn allowed(module: &str) -> Option<&'static [&'static str]> {
    Some(match module {
        "copy" => &[
            "dest", "content", "src", "mode", "owner", "group", "validate",
        ],
        "template" => &["dest", "src", "mode", "owner", "group", "validate"],
        "file" => &["path", "state", "mode", "owner", "group"],
        "lineinfile" => &["path", "line", "regexp", "state", "create", "mode"],
        "blockinfile" => &["path", "block", "marker", "state", "create", "mode"],
        "replace" => &["path", "regexp", "replace"],
        "sysctl" => &["name", "value", "values"],
        "hostname" => &["name"],
        "modprobe" => &["name", "state", "persistent"],
        "command" => &[
            "argv",
            "cmd",
            "creates",
            "removes",
            "chdir",
            "stdin",
            "changed_when",
        ],
        "shell" => &[
            "cmd",
            "creates",
            "removes",
            "chdir",
            "stdin",
            "changed_when",
        ],
        "service" => &["name", "state", "enabled"],
        "package" => &["name", "from_dir"],
        "vip_check" => &["vip", "managed_by"],
        _ => return None,
    })
}

/// Load-time check: the module exists and takes these parameter names.
pub fn check_params(module: &str, params: &Json) -> Result<(), String> {
    let Some(keys) = allowed(module) else {
        return Err(format!(
            "unknown module or keyword `{module}` (modules: {}; keywords: {})",
            NAMES.join(", "),
            crate::playbook::TASK_KEYWORDS.join(", ")
        ));
    };
    let Some(map) = params.as_object() else {
        return Err(format!(
            "`{module}` takes a mapping of parameters: {}",
            keys.join(", ")
        ));
    };
    for k in map.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(format!(
                "unknown parameter `{k}` for `{module}`, expected one of {}",
                keys.join(", ")
            ));
        }
    }
    Ok(())
}

/// A file mode, written as octal digits (`"0644"` or `644`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Json::deserialize(d)? {
            Json::String(s) => s,
            Json::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "mode must be octal digits like \"0644\", not {other}"
                )));
            }
        };
        u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Mode)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("mode {text:?} is not octal digits like \"0644\""))
            })
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyP {
    pub dest: String,
    pub content: String,
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// A command that checks the new file before it replaces the old one;
    /// `%s` is the temporary file (Ansible's `validate`).
    pub validate: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum FileStateP {
    #[default]
    File,
    Directory,
    Absent,
    Touch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileP {
    pub path: String,
    #[serde(default)]
    pub state: FileStateP,
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineInFileP {
    pub path: String,
    pub line: Option<String>,
    pub regexp: Option<String>,
    #[serde(default)]
    pub state: Presence,
    #[serde(default)]
    pub create: bool,
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockInFileP {
    pub path: String,
    #[serde(default)]
    pub block: String,
    #[serde(default = "default_marker")]
    pub marker: String,
    #[serde(default)]
    pub state: Presence,
    #[serde(default)]
    pub create: bool,
    pub mode: Option<Mode>,
}

fn default_marker() -> String {
    "# {mark} GANTRY MANAGED BLOCK".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceP {
    pub path: String,
    pub regexp: String,
    #[serde(default)]
    pub replace: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlP {
    pub name: Option<String>,
    pub value: Option<Json>,
    /// gantry's batch form: many keys read and set in one round trip.
    #[serde(default)]
    pub values: serde_json::Map<String, Json>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostnameP {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Persistent {
    Present,
    Absent,
    #[default]
    Disabled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModprobeP {
    pub name: String,
    #[serde(default)]
    pub state: Presence,
    #[serde(default)]
    pub persistent: Persistent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandP {
    /// `command`: the argument vector, each quoted. `cmd` is split like a shell would.
    pub argv: Option<Vec<String>>,
    pub cmd: Option<String>,
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub chdir: Option<String>,
    /// Sent over the channel's stdin, never on a command line: for secrets.
    pub stdin: Option<String>,
    pub changed_when: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceP {
    pub name: String,
    pub state: Option<ServiceState>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageP {
    pub name: Vec<String>,
    /// Offline hosts: a directory on the host with the .deb or .rpm files.
    pub from_dir: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipCheckP {
    pub vip: String,
    /// A file that exists once gantry manages the VIP on this host; then an
    /// answering VIP is ours.
    pub managed_by: String,
}

/// A module call with rendered, typed parameters.
#[derive(Debug, Clone)]
pub enum Module {
    Copy(CopyP),
    File(FileP),
    LineInFile(LineInFileP),
    BlockInFile(BlockInFileP),
    Replace(ReplaceP),
    Sysctl(SysctlP),
    Hostname(HostnameP),
    Modprobe(ModprobeP),
    /// `command` (argv quoted) and `shell` (script as written) share one type.
    Command {
        p: CommandP,
        shell: bool,
    },
    Service(ServiceP),
    Package(PackageP),
    /// Preflight: the VIP must not be answering for someone else.
    VipCheck(VipCheckP),
}

fn typed<T: serde::de::DeserializeOwned>(module: &str, v: Json) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("{module}: {}", e.into_inner())
        } else {
            format!("{module}.{path}: {}", e.into_inner())
        }
    })
}

impl Module {
    /// Typed parameters from rendered ones. `template` arrives here already
    /// rendered into a `copy` by the executor.
    pub fn parse(module: &str, v: Json) -> Result<Module, String> {
        Ok(match module {
            "copy" | "template" => Module::Copy(typed(module, v)?),
            "file" => Module::File(typed(module, v)?),
            "lineinfile" => {
                let p: LineInFileP = typed(module, v)?;
                if p.state == Presence::Present && p.line.is_none() {
                    return Err("lineinfile: state=present needs `line`".into());
                }
                if let Some(r) = &p.regexp {
                    Regex::new(r).map_err(|e| format!("lineinfile.regexp: {e}"))?;
                }
                Module::LineInFile(p)
            }
            "blockinfile" => Module::BlockInFile(typed(module, v)?),
            "replace" => {
                let p: ReplaceP = typed(module, v)?;
                Regex::new(&p.regexp).map_err(|e| format!("replace.regexp: {e}"))?;
                Module::Replace(p)
            }
            "sysctl" => {
                let mut p: SysctlP = typed(module, v)?;
                if let Some(n) = p.name.take() {
                    let value = p.value.take().ok_or("sysctl: `name` needs `value`")?;
                    p.values.insert(n, value);
                }
                for k in p.values.keys() {
                    if k.is_empty()
                        || !k
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
                        || k.contains("..")
                    {
                        return Err(format!("sysctl: {k:?} is not a sysctl key"));
                    }
                }
                Module::Sysctl(p)
            }
            "hostname" => Module::Hostname(typed(module, v)?),
            "modprobe" => Module::Modprobe(typed(module, v)?),
            "command" | "shell" => {
                let p: CommandP = typed(module, v)?;
                if p.argv.is_some() == p.cmd.is_some() {
                    return Err(format!("{module}: give exactly one of `argv` and `cmd`"));
                }
                if module == "shell" && p.argv.is_some() {
                    return Err("shell: takes `cmd`, a script; use `command` with `argv`".into());
                }
                Module::Command {
                    p,
                    shell: module == "shell",
                }
            }
            "service" => Module::Service(typed(module, v)?),
            "package" => {
                let p: PackageP = typed(module, v)?;
                if let Some(bad) = p.name.iter().find(|n| {
                    n.is_empty()
                        || !n
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-._:".contains(&b))
                }) {
                    return Err(format!("package: {bad:?} is not a package name"));
                }
                Module::Package(p)
            }
            "vip_check" => {
                let p: VipCheckP = typed(module, v)?;
                p.vip
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| format!("vip_check: {:?} is not an IP address", p.vip))?;
                Module::VipCheck(p)
            }
            other => return Err(format!("unknown module `{other}`")),
        })
    }
}

/// A read-only question for the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Metadata and content of a path.
    File(String),
    /// A read-only script; its stdout and exit code are the answer.
    Script(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOut {
    pub rc: i32,
    pub out: String,
}

/// What a path is on the host, as `Probe::File` reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileState {
    pub exists: bool,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub is_dir: bool,
    pub content: String,
}

impl Probe {
    /// The shell text of the probe. A file probe prints one stat line, then
    /// the content; a missing path prints nothing and exits 1.
    pub fn script(&self) -> Result<String, String> {
        Ok(match self {
            Probe::File(p) => {
                let q = quote(p)?;
                format!("stat -c '%a %U %G %F' -- {q} && {{ [ -d {q} ] || cat -- {q}; }}")
            }
            Probe::Script(s) => s.clone(),
        })
    }
}

impl FileState {
    pub fn parse(o: &ProbeOut) -> FileState {
        if o.rc != 0 {
            return FileState::default();
        }
        let (head, content) = o.out.split_once('\n').unwrap_or((o.out.as_str(), ""));
        let mut f = head.splitn(4, ' ');
        let mode = u32::from_str_radix(f.next().unwrap_or("0"), 8).unwrap_or(0);
        let owner = f.next().unwrap_or("").to_string();
        let group = f.next().unwrap_or("").to_string();
        let is_dir = f.next().unwrap_or("") == "directory";
        FileState {
            exists: true,
            mode,
            owner,
            group,
            is_dir,
            content: content.to_string(),
        }
    }
}

/// A change to make on a host. Only the executor runs these.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace a file atomically: temp file in the same directory, mode and
    /// owner set while it is still empty, content from the request's input,
    /// fsync, rename.
    Write {
        path: String,
        content: String,
        mode: u32,
        owner: Option<String>,
        group: Option<String>,
        validate: Option<Vec<String>>,
    },
    /// A command; `show` is how it is displayed. `own`: a plain command of
    /// a known external program (`own_program`), which the host's shell can
    /// run in itself (`ssh::Scope::Own`) with no subshell around it.
    Run {
        script: String,
        show: String,
        stdin: Option<String>,
        touches: Touches,
        own: bool,
    },
}

/// What an action may change on the host, so that state read before it and
/// not touched by it can still be trusted afterwards.
#[derive(Debug, Clone, PartialEq)]
pub enum Touches {
    /// One path (a write, chmod, chown, mkdir -p, rm -rf): what file probes
    /// read at that path, above it or below it, and what scripts read.
    Path(String),
    /// A directory made (`mkdir -p`): what file probes read at that path or
    /// above it, and what scripts read. What lies below is as it was.
    Made(String),
    /// Live kernel or service state (hostname, sysctl -w, modprobe,
    /// systemctl): what scripts read, not files.
    Live,
    /// Anything: a user's command, a package install.
    All,
}

/// Programs that change only live kernel state, never files: what file
/// probes read before them stays good. `systemctl` is not among them for a
/// user's command: `enable` writes links under /etc.
fn live_only(program: &str) -> bool {
    matches!(program, "hostname" | "sysctl" | "modprobe" | "nft")
}

/// External programs whose plain command line can run in the host's shell
/// itself (`ssh::Scope::Own`): none is a shell builtin, so none can end the
/// shell or change its directory, options or traps.
fn own_program(program: &str) -> bool {
    live_only(program) || matches!(program, "mkdir" | "chmod" | "chown" | "rm" | "systemctl")
}

impl Action {
    /// A command from argv; what it touches follows from the program, for
    /// the few programs gantry's own modules run, and is anything otherwise.
    pub fn run(argv: &[&str]) -> Result<Action, String> {
        let line = command(argv)?;
        let touches = match argv.first().copied() {
            Some("mkdir") => argv
                .last()
                .map_or(Touches::All, |p| Touches::Made(p.to_string())),
            Some("chmod" | "chown" | "rm") => argv
                .last()
                .map_or(Touches::All, |p| Touches::Path(p.to_string())),
            // gantry's own systemctl calls start, stop, enable and reload:
            // what they change, scripts read.
            Some("systemctl") => Touches::Live,
            Some(p) if live_only(p) => Touches::Live,
            _ => Touches::All,
        };
        Ok(Action::Run {
            script: line.clone(),
            show: line,
            stdin: None,
            touches,
            own: argv.first().is_some_and(|p| own_program(p)),
        })
    }

    pub fn touches(&self) -> Touches {
        match self {
            Action::Write { path, .. } => Touches::Path(path.clone()),
            Action::Run { touches, .. } => touches.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::Write { path, mode, .. } => format!("write {path} (mode {mode:04o})"),
            Action::Run { show, .. } => format!("run: {show}"),
        }
    }

    /// Where the host's shell runs the action's script: writes and plain
    /// commands of known programs in itself, anything else in a subshell.
    pub fn scope(&self) -> Scope {
        match self {
            Action::Write { .. } | Action::Run { own: true, .. } => Scope::Own,
            Action::Run { .. } => Scope::Subshell,
        }
    }

    /// The script, and the input it reads as `$gantry_stdin`, that carry
    /// the action out, in `scope`.
    pub fn script(&self) -> Result<(String, Option<String>), String> {
        match self {
            Action::Write { content, .. } => {
                Ok((writes_script(&[self], "-")?, Some(content.clone())))
            }
            // The request's input is a shell variable; a command reads it
            // on its stdin.
            Action::Run {
                script,
                stdin: Some(text),
                ..
            } => Ok((
                format!("printf %s \"$gantry_stdin\" | {{\n{script}\n}}"),
                Some(text.clone()),
            )),
            Action::Run {
                script,
                stdin: None,
                ..
            } => Ok((script.clone(), None)),
        }
    }
}

/// Whether an action can go in a request of writes (`writes_script`): a
/// write, or a plain command of a known program that changes only live
/// state or makes a directory, with no input (`hostname`, `sysctl -p`,
/// `nft -f`, `mkdir -p`).
pub fn batchable(a: &Action) -> bool {
    match a {
        Action::Write { .. } => true,
        Action::Run {
            own: true,
            stdin: None,
            touches,
            ..
        } => matches!(touches, Touches::Live | Touches::Made(_)),
        Action::Run { .. } => false,
    }
}

/// One script for consecutive actions, in order, all `batchable`: writes,
/// and between them commands that change live state or make a directory.
/// Each write's content is the request's input of the same index
/// (`ssh::input_var`; a command's input is empty and unused). Each write
/// lands in a temp file in its own directory, created exclusively with its
/// final mode and owner while still empty (a mode the umask can give needs
/// no chmod), filled by the `printf` builtin and checked by its `validate`;
/// then one `sync` makes the temp files durable, and each is renamed over
/// its path in its turn. The temp files are made and synced a stretch at a
/// time: up to and including the next command that makes a directory,
/// since a later write may go into it. A command runs in its turn, after
/// the renames before it and before those after it; its stdout is followed
/// by `\nMARKER INDEX RC\n` (`batch_output` reads it).
///
/// The first action that fails stops the rest: those before it are done,
/// those after it are not, and no temp file is left. The script prints
/// `written N`, the number of actions done, and returns the failing
/// command's status.
///
/// It runs in the host's shell itself (`ssh::Scope::Own`): no subshell per
/// write or per request. Its variables are `local`; the umask and noclobber
/// it sets per write are put back, and its traps (which remove the temp
/// files if the connection drops midway) are cleared before it returns.
///
/// The content cannot arrive cut short: input goes only through the host's
/// shell, which runs a request only once every byte of it has arrived
/// (ssh.rs `request`).
pub fn writes_script(actions: &[&Action], marker: &str) -> Result<String, String> {
    let mut vars = vec![
        "lim".to_string(),
        "r".into(),
        "c".into(),
        "u".into(),
        "k".into(),
    ];
    let mut s = String::new();
    let mut temps = Vec::new();
    // Stretches of actions: each ends after a command that makes a
    // directory, or at the end.
    let mut stretches: Vec<Vec<usize>> = vec![Vec::new()];
    for (j, a) in actions.iter().enumerate() {
        if !batchable(a) {
            return Err(format!(
                "cannot go in a request of writes: {}",
                a.describe()
            ));
        }
        stretches.last_mut().expect("one at least").push(j);
        if matches!(
            a,
            Action::Run {
                touches: Touches::Made(_),
                ..
            }
        ) {
            stretches.push(Vec::new());
        }
    }
    let mut body = String::new();
    for stretch in stretches.iter().filter(|s| !s.is_empty()) {
        let mut synced = Vec::new();
        for &j in stretch {
            let Action::Write {
                path,
                mode,
                owner,
                group,
                validate,
                ..
            } = actions[j]
            else {
                continue;
            };
            let tmp = quote(&format!("{path}.gantry.{}", crate::secrets::random_hex(6)?))?;
            vars.push(format!("t{j}"));
            vars.push(format!("d{j}"));
            s.push_str(&format!("t{j}={tmp}; d{j}={}\n", quote(path)?));
            temps.push(tmp);
            let t = format!("\"$t{j}\"");
            synced.push(t.clone());
            let input = format!("\"${}\"", crate::ssh::input_var(j));
            let by_umask = mode & !0o666 == 0;
            let umask = if by_umask { 0o666 & !mode } else { 0o077 };
            // Created empty and exclusively (noclobber), so nothing already
            // at the temp path, a planted symlink say, is ever written
            // through. By `true`, not `:`: a failed redirection of a special
            // builtin such as `:` ends a non-interactive shell, and this is
            // the host's long-lived one.
            let mut steps = vec![
                format!("umask {umask:03o}"),
                "set -C".to_string(),
                format!("true > {t}"),
                "set +C".to_string(),
            ];
            if !by_umask {
                steps.push(format!("chmod {mode:o} {t}"));
            }
            if owner.is_some() || group.is_some() {
                let spec = format!(
                    "{}:{}",
                    owner.as_deref().unwrap_or(""),
                    group.as_deref().unwrap_or("")
                );
                steps.push(format!("chown -- {} {t}", quote(&spec)?));
            }
            // dash's printf builtin calls every write error "I/O error";
            // where it fails, cat writes the content again and names the
            // cause (No space left on device).
            steps.push(format!(
                "{{ printf %s {input} >| {t} || printf %s {input} | cat >| {t}; }}"
            ));
            if let Some(argv) = validate {
                // The candidate is checked in place: the live file is never
                // replaced by one the validator refused.
                let words: Vec<String> = argv
                    .iter()
                    .map(|w| if w == "%s" { Ok(t.clone()) } else { quote(w) })
                    .collect::<Result<_, _>>()?;
                steps.push(format!("{} >&2", words.join(" ")));
            }
            // `&&`, not `set -e`: a shell ignores -e inside an `&&` list.
            body.push_str(&format!(
                "[ $lim -gt {j} ] && {{ {{ {}; }} || {{ r=$?; lim={j}; }}; }}\n",
                steps.join(" && ")
            ));
        }
        body.push_str("set +C; umask \"$u\"\n");
        if !synced.is_empty() {
            body.push_str(&format!(
                "sync -- {} 2>/dev/null || true\n",
                synced.join(" ")
            ));
        }
        for &j in stretch {
            match actions[j] {
                Action::Write { .. } => body.push_str(&format!(
                    "[ $lim -gt {j} ] && {{ mv -f -- \"$t{j}\" \"$d{j}\" || {{ r=$?; lim={j}; }}; }}\n"
                )),
                Action::Run { script, .. } => body.push_str(&format!(
                    "[ $lim -gt {j} ] && {{ {script}\nc=$?; printf '\\n%s %d %d\\n' {marker} {j} $c; [ $c -eq 0 ] || {{ r=$c; lim={j}; }}; }}\n"
                )),
            }
        }
    }
    let temps = temps.join(" ");
    let trap = |action: &str| quote(&format!("rm -f -- {temps}{action}"));
    let mut head = format!("local {}\n", vars.join(" "));
    // A run that died mid-write (a host that lost power, a controller killed
    // while a validator ran) leaves its temp file beside the target. This run
    // holds the host's lock, so any temp file of gantry's naming there is a
    // dead run's: remove it before this run makes its own. A glob, no
    // process, unless there is one to remove.
    let mut swept = HashSet::new();
    for a in actions {
        if let Action::Write { path, .. } = a {
            if swept.insert(path.as_str()) {
                head.push_str(&format!(
                    "for k in {}.gantry.{}; do {{ [ -e \"$k\" ] || [ -L \"$k\" ]; }} && rm -f -- \"$k\"; done\n",
                    quote(path)?,
                    "[0-9a-f]".repeat(12)
                ));
            }
        }
    }
    // The shell's umask, to put back: read from /proc with builtins (no
    // process), by `umask` where that fails.
    head.push_str("u=; while read -r k u; do [ \"$k\" = Umask: ] && break; u=; done < /proc/$$/status 2>/dev/null\n[ -n \"$u\" ] || u=$(umask)\n");
    if !temps.is_empty() {
        head.push_str(&format!(
            "trap {} EXIT\ntrap {} HUP INT TERM PIPE\n",
            trap("")?,
            trap("; exit 1")?
        ));
    }
    head.push_str(&format!("lim={}; r=0\n", actions.len()));
    s.insert_str(0, &head);
    s.push_str(&body);
    if !temps.is_empty() {
        s.push_str(&format!(
            "[ $lim -eq {} ] || rm -f -- {temps}\ntrap - EXIT HUP INT TERM PIPE\n",
            actions.len()
        ));
    }
    s.push_str("printf 'written %d\\n' $lim\nreturn $r\n");
    Ok(s)
}

/// The inputs of a request of `writes_script`, by index: each write's
/// content; a command's is empty and unused.
pub fn batch_inputs<'a>(actions: &[&'a Action]) -> Vec<&'a str> {
    actions
        .iter()
        .map(|a| match a {
            Action::Write { content, .. } => content.as_str(),
            Action::Run { .. } => "",
        })
        .collect()
}

/// From what `writes_script` printed: how many actions were done, and each
/// command's stdout and status by its index.
pub fn batch_output(stdout: &str, marker: &str) -> (usize, HashMap<usize, (String, i32)>) {
    let (body, last) = stdout
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .unwrap_or(("", stdout.trim_end_matches('\n')));
    let done = last
        .strip_prefix("written ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut runs = HashMap::new();
    let mut rest = body;
    let sep = format!("\n{marker} ");
    while let Some(at) = rest.find(&sep) {
        let (out, after) = (&rest[..at], &rest[at + sep.len()..]);
        let (line, next) = after.split_once('\n').unwrap_or((after, ""));
        let mut f = line.split(' ');
        if let (Some(Ok(j)), Some(Ok(rc))) = (f.next().map(str::parse), f.next().map(str::parse)) {
            runs.insert(j, (out.to_string(), rc));
        }
        rest = next;
    }
    (done, runs)
}

#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub changed: bool,
    pub reason: String,
    pub diff: Option<String>,
    pub actions: Vec<Action>,
}

impl Decision {
    fn ok(reason: impl Into<String>) -> Decision {
        Decision {
            changed: false,
            reason: reason.into(),
            ..Default::default()
        }
    }
    fn change(reason: impl Into<String>, actions: Vec<Action>) -> Decision {
        Decision {
            changed: true,
            reason: reason.into(),
            diff: None,
            actions,
        }
    }
}

pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a{path}"), &format!("b{path}"))
        .to_string()
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn json_scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn norm_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The only variables modules' script probes assign: the probe request
/// declares them `local`, since it runs in the host's shell itself.
pub const PROBE_LOCALS: &str = "v";

/// The probes a module needs.
pub fn probes(m: &Module) -> Result<Vec<Probe>, String> {
    Ok(match m {
        Module::Copy(p) => vec![Probe::File(p.dest.clone())],
        Module::File(p) => vec![Probe::File(p.path.clone())],
        Module::LineInFile(LineInFileP { path, .. })
        | Module::BlockInFile(BlockInFileP { path, .. })
        | Module::Replace(ReplaceP { path, .. }) => {
            vec![Probe::File(path.clone())]
        }
        Module::Sysctl(p) => {
            // One line per key: "<rc> <value>", read from /proc/sys directly.
            // By `cat`, not the shell's `read`: `read` takes a byte at a time,
            // and a numeric /proc/sys file answers only its first byte to that.
            let mut s = String::new();
            for k in p.values.keys() {
                s.push_str(&format!(
                    "v=$(cat -- {} 2>/dev/null) && printf '0 %s\\n' \"$v\" || echo 1\n",
                    quote(&sysctl_path(k))?
                ));
            }
            vec![Probe::Script(s)]
        }
        Module::Hostname(_) => vec![
            Probe::Script(
                "{ IFS= read -r v < /proc/sys/kernel/hostname; } 2>/dev/null && printf '%s\\n' \"$v\" || hostname".into(),
            ),
            Probe::File("/etc/hostname".into()),
        ],
        Module::Modprobe(p) => vec![
            Probe::Script(format!(
                "test -d {}",
                quote(&format!("/sys/module/{}", p.name.replace('-', "_")))?
            )),
            Probe::File(format!("/etc/modules-load.d/{}.conf", p.name)),
        ],
        Module::Command { p, .. } => {
            let mut v = Vec::new();
            if let Some(c) = &p.creates {
                v.push(Probe::Script(format!("test -e {}", quote(c)?)));
            }
            if let Some(r) = &p.removes {
                v.push(Probe::Script(format!("test -e {}", quote(r)?)));
            }
            v
        }
        Module::Service(p) => {
            let n = quote(&p.name)?;
            vec![
                Probe::Script(format!("systemctl is-active -- {n}")),
                Probe::Script(format!("systemctl is-enabled -- {n}")),
            ]
        }
        Module::Package(p) => {
            // First line: the package manager; then one line per package:
            // "<name> installed" or "<name> missing".
            let mut s = String::from(
                "if command -v dpkg-query >/dev/null; then echo deb; elif command -v rpm >/dev/null; then echo rpm; else echo none; fi\n",
            );
            for n in &p.name {
                let q = quote(n)?;
                s.push_str(&format!("if command -v dpkg-query >/dev/null; then dpkg-query -W -f='${{db:Status-Status}}' -- {q} 2>/dev/null | grep -qx installed; else rpm -q -- {q} >/dev/null 2>&1; fi && echo {q} installed || echo {q} missing\n"));
            }
            vec![Probe::Script(s)]
        }
        Module::VipCheck(p) => {
            let v = quote(&p.vip)?;
            vec![
                // Held here?
                Probe::Script(format!("ip -o addr show | grep -qw -- {v}")),
                // Answering anywhere?
                Probe::Script(format!("ping -c 1 -W 1 -- {v} >/dev/null 2>&1")),
                Probe::Script(format!("test -e {}", quote(&p.managed_by)?)),
            ]
        }
    })
}

/// Converge a file to `content`/`mode`: the decision copy, template,
/// lineinfile, blockinfile and replace share.
fn converge_file(
    path: &str,
    cur: &FileState,
    content: &str,
    mode: Option<Mode>,
    owner: &Option<String>,
    group: &Option<String>,
) -> Decision {
    converge_file_checked(path, cur, content, mode, owner, group, None)
}

fn converge_file_checked(
    path: &str,
    cur: &FileState,
    content: &str,
    mode: Option<Mode>,
    owner: &Option<String>,
    group: &Option<String>,
    validate: Option<Vec<String>>,
) -> Decision {
    if cur.is_dir {
        return Decision {
            changed: true,
            reason: format!("{path} is a directory"),
            ..Default::default()
        };
    }
    let want_mode = mode
        .map(|m| m.0)
        .unwrap_or(if cur.exists { cur.mode } else { 0o644 });
    let write = || Action::Write {
        path: path.into(),
        content: content.into(),
        mode: want_mode,
        owner: owner.clone(),
        group: group.clone(),
        validate: validate.clone(),
    };
    if !cur.exists {
        let mut d = Decision::change(format!("{path} does not exist"), vec![write()]);
        d.diff = Some(unified_diff(path, "", content));
        return d;
    }
    if cur.content != content {
        let mut d = Decision::change(format!("{path} content differs"), vec![write()]);
        d.diff = Some(unified_diff(path, &cur.content, content));
        return d;
    }
    let mut actions = Vec::new();
    let mut why = Vec::new();
    if cur.mode != want_mode {
        why.push(format!("mode {:04o} -> {want_mode:04o}", cur.mode));
        actions
            .push(Action::run(&["chmod", &format!("{want_mode:o}"), "--", path]).expect("no NUL"));
    }
    let owner_off = owner.as_ref().is_some_and(|o| *o != cur.owner);
    let group_off = group.as_ref().is_some_and(|g| *g != cur.group);
    if owner_off || group_off {
        let spec = format!(
            "{}:{}",
            owner.as_deref().unwrap_or(""),
            group.as_deref().unwrap_or("")
        );
        why.push(format!("owner {}:{} -> {spec}", cur.owner, cur.group));
        actions.push(Action::run(&["chown", &spec, "--", path]).expect("no NUL"));
    }
    if actions.is_empty() {
        Decision::ok(format!("{path} is up to date"))
    } else {
        Decision::change(format!("{path}: {}", why.join(", ")), actions)
    }
}

fn split_lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

fn join_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("{}\n", lines.join("\n"))
    }
}

/// Decide from probe answers (in the order `probes` gave).
pub fn decide(m: &Module, facts: &[ProbeOut]) -> Result<Decision, String> {
    let file = |i: usize| {
        FileState::parse(facts.get(i).unwrap_or(&ProbeOut {
            rc: 1,
            out: String::new(),
        }))
    };
    Ok(match m {
        Module::Copy(p) => {
            let validate = match &p.validate {
                Some(v) => {
                    let argv = shlex::split(v)
                        .ok_or_else(|| format!("validate: cannot split {v:?} into words"))?;
                    if !argv.iter().any(|w| w == "%s") {
                        return Err(format!(
                            "validate: {v:?} must name the candidate file as %s"
                        ));
                    }
                    Some(argv)
                }
                None => None,
            };
            converge_file_checked(
                &p.dest,
                &file(0),
                &p.content,
                p.mode,
                &p.owner,
                &p.group,
                validate,
            )
        }
        Module::File(p) => {
            let cur = file(0);
            let q = &p.path;
            match p.state {
                FileStateP::Absent if !cur.exists => Decision::ok(format!("{q} is absent")),
                FileStateP::Absent => Decision::change(
                    format!("{q} exists"),
                    vec![Action::run(&["rm", "-rf", "--", q])?],
                ),
                FileStateP::Directory if cur.exists && !cur.is_dir => {
                    return Err(format!("{q} exists and is not a directory"));
                }
                FileStateP::Directory if !cur.exists => {
                    let mode = p.mode.map(|m| m.0).unwrap_or(0o755);
                    let mut a = vec![Action::run(&[
                        "mkdir",
                        "-p",
                        "-m",
                        &format!("{mode:o}"),
                        "--",
                        q,
                    ])?];
                    if p.owner.is_some() || p.group.is_some() {
                        a.push(Action::run(&[
                            "chown",
                            &format!(
                                "{}:{}",
                                p.owner.as_deref().unwrap_or(""),
                                p.group.as_deref().unwrap_or("")
                            ),
                            "--",
                            q,
                        ])?);
                    }
                    Decision::change(format!("directory {q} does not exist"), a)
                }
                FileStateP::Touch if !cur.exists => {
                    converge_file(q, &cur, "", p.mode, &p.owner, &p.group)
                }
                FileStateP::File if !cur.exists => {
                    return Err(format!(
                        "{q} does not exist (state: file only changes attributes; use copy or state: touch)"
                    ));
                }
                _ => {
                    // Exists with the right kind: attributes only.
                    let mut d = converge_file(q, &cur, &cur.content, p.mode, &p.owner, &p.group);
                    if cur.is_dir {
                        d = Decision::ok(format!("directory {q} exists"));
                        if let Some(m) = p.mode.filter(|m| m.0 != cur.mode) {
                            d = Decision::change(
                                format!("{q}: mode {:04o} -> {m}", cur.mode),
                                vec![Action::run(&["chmod", &format!("{:o}", m.0), "--", q])?],
                            );
                        }
                    }
                    d
                }
            }
        }
        Module::LineInFile(p) => {
            let cur = file(0);
            if !cur.exists && !p.create {
                if p.state == Presence::Absent {
                    return Ok(Decision::ok(format!("{} does not exist", p.path)));
                }
                return Err(format!(
                    "{} does not exist (set create: true to create it)",
                    p.path
                ));
            }
            let re = p
                .regexp
                .as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| e.to_string())?;
            let mut lines = split_lines(&cur.content);
            let matches = |l: &str| match (&re, &p.line) {
                (Some(r), _) => r.is_match(l),
                (None, Some(line)) => l == line,
                (None, None) => false,
            };
            match p.state {
                Presence::Present => {
                    let line = p.line.clone().unwrap_or_default();
                    match lines.iter().rposition(|l| matches(l)) {
                        Some(i) => lines[i] = line,
                        None => lines.push(line),
                    }
                }
                Presence::Absent => lines.retain(|l| !matches(l)),
            }
            converge_file(&p.path, &cur, &join_lines(&lines), p.mode, &None, &None)
        }
        Module::BlockInFile(p) => {
            let cur = file(0);
            if !cur.exists && !p.create {
                if p.state == Presence::Absent {
                    return Ok(Decision::ok(format!("{} does not exist", p.path)));
                }
                return Err(format!(
                    "{} does not exist (set create: true to create it)",
                    p.path
                ));
            }
            let begin = p.marker.replace("{mark}", "BEGIN");
            let end = p.marker.replace("{mark}", "END");
            let mut lines = split_lines(&cur.content);
            let b = lines.iter().position(|l| *l == begin);
            let e = b.and_then(|b| lines[b..].iter().position(|l| *l == end).map(|e| e + b));
            let mut block = vec![begin.clone()];
            block.extend(split_lines(&p.block));
            block.push(end.clone());
            match (p.state.clone(), b, e) {
                (Presence::Present, Some(b), Some(e)) => {
                    lines.splice(b..=e, block);
                }
                (Presence::Present, _, _) => lines.extend(block),
                (Presence::Absent, Some(b), Some(e)) => {
                    lines.drain(b..=e);
                }
                (Presence::Absent, _, _) => {}
            }
            converge_file(&p.path, &cur, &join_lines(&lines), p.mode, &None, &None)
        }
        Module::Replace(p) => {
            let cur = file(0);
            if !cur.exists {
                return Err(format!("{} does not exist", p.path));
            }
            let re = Regex::new(&format!("(?m){}", p.regexp)).map_err(|e| e.to_string())?;
            let new = re
                .replace_all(&cur.content, p.replace.as_str())
                .into_owned();
            converge_file(&p.path, &cur, &new, None, &None, &None)
        }
        Module::Sysctl(p) => {
            let out = facts.first().map(|f| f.out.as_str()).unwrap_or("");
            let mut lines = out.lines();
            let mut set = Vec::new();
            let mut shown = Vec::new();
            for (k, v) in &p.values {
                let want = json_scalar(v);
                let line = lines.next().unwrap_or("1");
                let Some(have) = line.strip_prefix("0 ") else {
                    return Err(format!(
                        "sysctl {k} does not exist on this host (is its kernel module loaded?)"
                    ));
                };
                if norm_ws(have) != norm_ws(&want) {
                    shown.push(format!("{k}: {} -> {}", norm_ws(have), norm_ws(&want)));
                    set.push(format!("{k}={want}"));
                }
            }
            if set.is_empty() {
                Decision::ok(format!("{} sysctl key(s) already set", p.values.len()))
            } else {
                let mut argv = vec!["sysctl", "-w"];
                argv.extend(set.iter().map(String::as_str));
                let mut d = Decision::change(
                    format!("{} of {} key(s) differ", set.len(), p.values.len()),
                    vec![Action::run(&argv)?],
                );
                d.diff = Some(shown.iter().map(|s| format!("  {s}\n")).collect());
                d
            }
        }
        Module::Hostname(p) => {
            let live = facts
                .first()
                .map(|f| f.out.trim().to_string())
                .unwrap_or_default();
            let etc = file(1);
            let mut actions = Vec::new();
            let mut why = Vec::new();
            let mut diff = None;
            if etc.content.trim() != p.name {
                why.push(format!("/etc/hostname says {:?}", etc.content.trim()));
                let content = format!("{}\n", p.name);
                diff = Some(unified_diff("/etc/hostname", &etc.content, &content));
                actions.push(Action::Write {
                    path: "/etc/hostname".into(),
                    content,
                    mode: 0o644,
                    owner: None,
                    group: None,
                    validate: None,
                });
            }
            if live != p.name {
                why.push(format!("live hostname is {live:?}"));
                actions.push(Action::run(&["hostname", "--", &p.name])?);
            }
            if actions.is_empty() {
                Decision::ok(format!("hostname is {}", p.name))
            } else {
                Decision {
                    changed: true,
                    reason: why.join(", "),
                    diff,
                    actions,
                }
            }
        }
        Module::Modprobe(p) => {
            let loaded = facts.first().is_some_and(|f| f.rc == 0);
            let conf = file(1);
            let path = format!("/etc/modules-load.d/{}.conf", p.name);
            let mut actions = Vec::new();
            let mut why = Vec::new();
            match (&p.state, loaded) {
                (Presence::Present, false) => {
                    why.push(format!("module {} is not loaded", p.name));
                    actions.push(Action::run(&["modprobe", "--", &p.name])?);
                }
                (Presence::Absent, true) => {
                    why.push(format!("module {} is loaded", p.name));
                    actions.push(Action::run(&["modprobe", "-r", "--", &p.name])?);
                }
                _ => {}
            }
            let mut diff = None;
            match p.persistent {
                Persistent::Present if conf.content != format!("{}\n", p.name) => {
                    let d = converge_file(
                        &path,
                        &conf,
                        &format!("{}\n", p.name),
                        Some(Mode(0o644)),
                        &None,
                        &None,
                    );
                    why.push(d.reason);
                    diff = d.diff;
                    actions.extend(d.actions);
                }
                Persistent::Absent if conf.exists => {
                    why.push(format!("{path} exists"));
                    actions.push(Action::run(&["rm", "-f", "--", &path])?);
                }
                _ => {}
            }
            if actions.is_empty() {
                Decision::ok(format!("module {} is as wanted", p.name))
            } else {
                Decision {
                    changed: true,
                    reason: why.join(", "),
                    diff,
                    actions,
                }
            }
        }
        Module::Command { p, shell } => {
            let mut i = 0;
            if let Some(c) = &p.creates {
                if facts.get(i).is_some_and(|f| f.rc == 0) {
                    return Ok(Decision::ok(format!("{c} exists")));
                }
                i += 1;
            }
            if let Some(r) = &p.removes {
                if !facts.get(i).is_some_and(|f| f.rc == 0) {
                    return Ok(Decision::ok(format!("{r} does not exist")));
                }
            }
            let words = match (&p.argv, &p.cmd) {
                (Some(argv), _) => Some(argv.clone()),
                (None, Some(_)) if *shell => None,
                // `command` with a string: split as a shell would, then quote
                // each word, so no expansion, pipe or `;` takes effect.
                (None, Some(cmd)) => Some(
                    shlex::split(cmd).ok_or_else(|| format!("cannot split {cmd:?} into words"))?,
                ),
                _ => unreachable!("checked in parse"),
            };
            let body = match &words {
                Some(w) => command(w)?,
                None => p.cmd.clone().unwrap_or_default(),
            };
            // Any other command, and any shell script, could change anything.
            let touches = match words.as_ref().and_then(|w| w.first()) {
                Some(p) if live_only(p) => Touches::Live,
                _ => Touches::All,
            };
            let own = p.chdir.is_none()
                && p.stdin.is_none()
                && words
                    .as_ref()
                    .and_then(|w| w.first())
                    .is_some_and(|p| own_program(p));
            let script = match &p.chdir {
                Some(d) => format!("cd -- {} && {body}", quote(d)?),
                None => body.clone(),
            };
            let mut d = Decision::change(
                if p.creates.is_some() {
                    "not yet done".to_string()
                } else {
                    "commands always run".to_string()
                },
                vec![Action::Run {
                    script,
                    show: body,
                    stdin: p.stdin.clone(),
                    touches,
                    own,
                }],
            );
            if p.changed_when == Some(false) {
                d.reason = "read-only command".into();
            }
            d
        }
        Module::Service(p) => {
            let active = facts
                .first()
                .map(|f| f.out.trim().to_string())
                .unwrap_or_default();
            let enabled = facts
                .get(1)
                .map(|f| f.out.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "not-found".into());
            let mut actions = Vec::new();
            let mut why = Vec::new();
            let n = p.name.as_str();
            match p.state {
                Some(ServiceState::Started) if active != "active" => {
                    why.push(format!("{n} is {active}"));
                    actions.push(Action::run(&["systemctl", "start", "--", n])?);
                }
                Some(ServiceState::Stopped) if active == "active" => {
                    why.push(format!("{n} is active"));
                    actions.push(Action::run(&["systemctl", "stop", "--", n])?);
                }
                Some(ServiceState::Restarted) => {
                    why.push("restart requested".into());
                    actions.push(Action::run(&["systemctl", "restart", "--", n])?);
                }
                Some(ServiceState::Reloaded) => {
                    why.push("reload requested".into());
                    actions.push(Action::run(&["systemctl", "reload-or-restart", "--", n])?);
                }
                _ => {}
            }
            match p.enabled {
                Some(true) if enabled != "enabled" => {
                    why.push(format!("{n} is {enabled}, not enabled"));
                    actions.push(Action::run(&["systemctl", "enable", "--", n])?);
                }
                Some(false) if enabled == "enabled" => {
                    why.push(format!("{n} is enabled"));
                    actions.push(Action::run(&["systemctl", "disable", "--", n])?);
                }
                _ => {}
            }
            if actions.is_empty() {
                Decision::ok(format!("{n} is {active}, {enabled}"))
            } else {
                Decision::change(why.join(", "), actions)
            }
        }
        Module::Package(p) => {
            let out = facts.first().map(|f| f.out.as_str()).unwrap_or("");
            let mut lines = out.lines();
            let manager = lines.next().unwrap_or("none");
            let missing: Vec<&str> = lines.filter_map(|l| l.strip_suffix(" missing")).collect();
            if missing.is_empty() {
                return Ok(Decision::ok(format!("installed: {}", p.name.join(", "))));
            }
            let script = match (manager, &p.from_dir) {
                // apt explains a failure (unmet dependencies) on stdout,
                // which a failed task does not show: it goes to stderr.
                ("deb", None) => format!(
                    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -- {} >&2",
                    command(&missing)?
                ),
                ("rpm", None) => format!(
                    "if command -v dnf >/dev/null; then dnf install -y -q -- {m}; else yum install -y -q -- {m}; fi",
                    m = command(&missing)?
                ),
                // Offline: install what the directory holds for these names,
                // with their dependencies from the same directory. No
                // repository is consulted (an air-gapped host's sources
                // would only time out), so a dependency the directory lacks
                // is named in apt's error at once. Not `--no-download`:
                // apt 2.6 then refuses local files ("Pathname to install is
                // not absolute"), as the lab showed.
                ("deb", Some(d)) => format!(
                    "cd -- {} && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null -- ./*.deb >&2",
                    quote(d)?
                ),
                ("rpm", Some(d)) => format!(
                    "cd -- {} && if command -v dnf >/dev/null; then dnf install -y -q --disablerepo='*' -- ./*.rpm; else yum install -y -q --disablerepo='*' -- ./*.rpm; fi",
                    quote(d)?
                ),
                _ => return Err("package: neither dpkg nor rpm found on this host".into()),
            };
            Decision::change(
                format!("not installed: {}", missing.join(", ")),
                vec![Action::Run {
                    show: script.clone(),
                    script,
                    stdin: None,
                    touches: Touches::All,
                    own: false,
                }],
            )
        }
        Module::VipCheck(p) => {
            let held_here = facts.first().is_some_and(|f| f.rc == 0);
            let answers = facts.get(1).is_some_and(|f| f.rc == 0);
            let managed = facts.get(2).is_some_and(|f| f.rc == 0);
            match (held_here, answers, managed) {
                (true, _, _) => Decision::ok(format!("{} is held by this host", p.vip)),
                (_, false, _) => Decision::ok(format!("{} is free", p.vip)),
                (_, true, true) => Decision::ok(format!(
                    "{} answers, held by another control plane of this cluster",
                    p.vip
                )),
                (_, true, false) => {
                    return Err(format!(
                        "VIP {} already answers on the network and gantry does not manage keepalived here yet: another host holds it. Pick a free address for control_plane_endpoint.vip, or set control_plane_endpoint.external: true if it is your own load balancer",
                        p.vip
                    ));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    //! Operation fixtures: facts in, decision out, no network.
    use super::*;
    use serde_json::json;

    fn module(name: &str, v: Json) -> Module {
        Module::parse(name, v).unwrap()
    }
    fn file(mode: &str, content: &str) -> ProbeOut {
        ProbeOut {
            rc: 0,
            out: format!("{mode} root root regular file\n{content}"),
        }
    }
    fn absent() -> ProbeOut {
        ProbeOut {
            rc: 1,
            out: String::new(),
        }
    }

    #[test]
    fn copy_creates_updates_and_leaves_alone() {
        let m = module(
            "copy",
            json!({"dest": "/etc/x", "content": "a\n", "mode": "0600"}),
        );
        assert_eq!(probes(&m).unwrap(), vec![Probe::File("/etc/x".into())]);
        let d = decide(&m, &[absent()]).unwrap();
        assert!(d.changed);
        assert_eq!(d.reason, "/etc/x does not exist");
        assert_eq!(
            d.actions,
            vec![Action::Write {
                path: "/etc/x".into(),
                content: "a\n".into(),
                mode: 0o600,
                owner: None,
                group: None,
                validate: None
            }]
        );
        let d = decide(&m, &[file("600", "b\n")]).unwrap();
        assert_eq!(d.reason, "/etc/x content differs");
        assert!(d.diff.unwrap().contains("-b\n+a\n"));
        let d = decide(&m, &[file("600", "a\n")]).unwrap();
        assert!(!d.changed, "{d:?}");
        let d = decide(&m, &[file("644", "a\n")]).unwrap();
        assert_eq!(d.reason, "/etc/x: mode 0644 -> 0600");
        assert_eq!(
            d.actions,
            vec![Action::run(&["chmod", "600", "--", "/etc/x"]).unwrap()]
        );
    }

    #[test]
    fn copy_keeps_existing_mode_when_none_given() {
        let m = module("copy", json!({"dest": "/etc/x", "content": "a\n"}));
        let d = decide(&m, &[file("640", "old\n")]).unwrap();
        assert!(matches!(&d.actions[0], Action::Write { mode: 0o640, .. }));
    }

    #[test]
    fn mode_must_be_octal() {
        let e = Module::parse("copy", json!({"dest": "/x", "content": "", "mode": "0999"}))
            .unwrap_err();
        assert_eq!(
            e,
            "copy.mode: mode \"0999\" is not octal digits like \"0644\""
        );
    }

    #[test]
    fn lineinfile_replaces_last_match_or_appends() {
        let m = module(
            "lineinfile",
            json!({"path": "/f", "regexp": "^a=", "line": "a=2"}),
        );
        let d = decide(&m, &[file("644", "a=1\nb=1\n")]).unwrap();
        assert!(matches!(&d.actions[0], Action::Write { content, .. } if content == "a=2\nb=1\n"));
        let d = decide(&m, &[file("644", "b=1\n")]).unwrap();
        assert!(matches!(&d.actions[0], Action::Write { content, .. } if content == "b=1\na=2\n"));
        assert!(!decide(&m, &[file("644", "a=2\nb=1\n")]).unwrap().changed);
        let e = decide(&m, &[absent()]).unwrap_err();
        assert_eq!(e, "/f does not exist (set create: true to create it)");
    }

    #[test]
    fn blockinfile_is_idempotent_and_keeps_other_lines() {
        let m = module(
            "blockinfile",
            json!({"path": "/etc/hosts", "block": "1.1.1.1 a\n"}),
        );
        let d = decide(&m, &[file("644", "127.0.0.1 localhost\n")]).unwrap();
        let Action::Write { content, .. } = &d.actions[0] else {
            panic!()
        };
        assert_eq!(
            content,
            "127.0.0.1 localhost\n# BEGIN GANTRY MANAGED BLOCK\n1.1.1.1 a\n# END GANTRY MANAGED BLOCK\n"
        );
        assert!(!decide(&m, &[file("644", content)]).unwrap().changed);
        let m2 = module(
            "blockinfile",
            json!({"path": "/etc/hosts", "block": "2.2.2.2 b\n"}),
        );
        let d = decide(&m2, &[file("644", &format!("{content}tail\n"))]).unwrap();
        let Action::Write { content, .. } = &d.actions[0] else {
            panic!()
        };
        assert_eq!(
            content,
            "127.0.0.1 localhost\n# BEGIN GANTRY MANAGED BLOCK\n2.2.2.2 b\n# END GANTRY MANAGED BLOCK\ntail\n"
        );
    }

    #[test]
    fn replace_comments_out_swap_once() {
        let m = module(
            "replace",
            json!({"path": "/etc/fstab", "regexp": "^([^#\\s]\\S*\\s+\\S+\\s+swap\\s.*)$", "replace": "# ${1}"}),
        );
        let fstab = "UUID=1 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n";
        let d = decide(&m, &[file("644", fstab)]).unwrap();
        let Action::Write { content, .. } = &d.actions[0] else {
            panic!()
        };
        assert_eq!(
            content,
            "UUID=1 / ext4 defaults 0 1\n# /swap.img none swap sw 0 0\n"
        );
        assert!(!decide(&m, &[file("644", content)]).unwrap().changed);
    }

    #[test]
    fn sysctl_sets_only_what_differs() {
        let m = module(
            "sysctl",
            json!({"values": {"net.core.somaxconn": 65536, "net.ipv4.ip_forward": 1}}),
        );
        let d = decide(
            &m,
            &[ProbeOut {
                rc: 0,
                out: "0 4096\n0 1\n".into(),
            }],
        )
        .unwrap();
        assert_eq!(d.reason, "1 of 2 key(s) differ");
        assert_eq!(
            d.actions,
            vec![Action::run(&["sysctl", "-w", "net.core.somaxconn=65536"]).unwrap()]
        );
        let d = decide(
            &m,
            &[ProbeOut {
                rc: 0,
                out: "0 65536\n0 1\n".into(),
            }],
        )
        .unwrap();
        assert!(!d.changed);
        let e = decide(
            &m,
            &[ProbeOut {
                rc: 0,
                out: "1\n0 1\n".into(),
            }],
        )
        .unwrap_err();
        assert!(e.contains("net.core.somaxconn does not exist"), "{e}");
        // Multi-value keys compare by words, as the kernel prints tabs.
        let m = module(
            "sysctl",
            json!({"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}),
        );
        assert!(
            !decide(
                &m,
                &[ProbeOut {
                    rc: 0,
                    out: "0 1024\t65000\n".into()
                }]
            )
            .unwrap()
            .changed
        );
    }

    #[test]
    fn sysctl_refuses_keys_that_are_paths() {
        for key in ["../../etc/passwd", "net/../../x", "", "a b"] {
            assert_eq!(
                Module::parse("sysctl", json!({"name": key, "value": 1})).unwrap_err(),
                format!("sysctl: {key:?} is not a sysctl key")
            );
        }
        assert!(
            Module::parse("sysctl", json!({"name": "net.ipv4.ip_forward", "value": 1})).is_ok()
        );
    }

    #[test]
    fn hostname_sets_file_and_live_name() {
        let m = module("hostname", json!({"name": "master1"}));
        let d = decide(
            &m,
            &[
                ProbeOut {
                    rc: 0,
                    out: "debian\n".into(),
                },
                file("644", "debian\n"),
            ],
        )
        .unwrap();
        assert_eq!(
            d.actions,
            [
                Action::Write {
                    path: "/etc/hostname".into(),
                    content: "master1\n".into(),
                    mode: 0o644,
                    owner: None,
                    group: None,
                    validate: None
                },
                Action::run(&["hostname", "--", "master1"]).unwrap()
            ]
        );
        assert!(
            !decide(
                &m,
                &[
                    ProbeOut {
                        rc: 0,
                        out: "master1\n".into()
                    },
                    file("644", "master1\n")
                ]
            )
            .unwrap()
            .changed
        );
    }

    #[test]
    fn modprobe_loads_and_persists() {
        let m = module(
            "modprobe",
            json!({"name": "br_netfilter", "persistent": "present"}),
        );
        let d = decide(
            &m,
            &[
                ProbeOut {
                    rc: 1,
                    out: String::new(),
                },
                absent(),
            ],
        )
        .unwrap();
        assert_eq!(
            d.actions[0],
            Action::run(&["modprobe", "--", "br_netfilter"]).unwrap()
        );
        assert!(
            matches!(&d.actions[1], Action::Write { path, content, .. } if path == "/etc/modules-load.d/br_netfilter.conf" && content == "br_netfilter\n")
        );
        assert!(
            !decide(
                &m,
                &[
                    ProbeOut {
                        rc: 0,
                        out: String::new()
                    },
                    file("644", "br_netfilter\n")
                ]
            )
            .unwrap()
            .changed
        );
    }

    #[test]
    fn command_quotes_argv_and_honours_creates() {
        let m = module(
            "command",
            json!({"argv": ["touch", "a;touch pwned"], "creates": "/x"}),
        );
        assert!(
            !decide(
                &m,
                &[ProbeOut {
                    rc: 0,
                    out: String::new()
                }]
            )
            .unwrap()
            .changed
        );
        let d = decide(
            &m,
            &[ProbeOut {
                rc: 1,
                out: String::new(),
            }],
        )
        .unwrap();
        assert!(
            matches!(&d.actions[0], Action::Run { script, .. } if script == "touch 'a;touch pwned'")
        );
        // `command` with a string is split into words, never given to a shell.
        let m = module("command", json!({"cmd": "echo $(reboot) ; id"}));
        let d = decide(&m, &[]).unwrap();
        assert!(
            matches!(&d.actions[0], Action::Run { script, .. } if script == "echo '$(reboot)' ';' id"),
            "{:?}",
            d.actions
        );
        // A program that changes only live kernel state keeps file answers
        // good; anything else, and any shell script, may change anything.
        let touches = |module_name: &str, v: Json| {
            decide(&module(module_name, v), &[]).unwrap().actions[0].touches()
        };
        assert_eq!(
            touches(
                "command",
                json!({"argv": ["sysctl", "-p", "/etc/sysctl.d/k8s.conf"]})
            ),
            Touches::Live
        );
        assert_eq!(
            touches("command", json!({"cmd": "nft -f /etc/nftables.conf"})),
            Touches::Live
        );
        assert_eq!(
            touches(
                "command",
                json!({"argv": ["systemctl", "enable", "kubelet"]})
            ),
            Touches::All
        );
        assert_eq!(
            touches("shell", json!({"cmd": "sysctl -p; rm -rf /etc/x"})),
            Touches::All
        );
    }

    /// A command's `stdin` reaches it on its stdin, byte for byte, from the
    /// request's input variable.
    #[test]
    fn command_stdin_is_fed_from_the_input() {
        let secret = "token: 'abc'\n$(id)\nno newline";
        let m = module("command", json!({"argv": ["cat"], "stdin": secret}));
        let d = decide(&m, &[]).unwrap();
        let (script, input) = d.actions[0].script().unwrap();
        assert!(
            !script.contains("abc"),
            "the secret is in the script: {script}"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("gantry_stdin", input.unwrap())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), secret);
    }

    #[test]
    fn service_starts_and_enables() {
        let m = module(
            "service",
            json!({"name": "haproxy", "state": "started", "enabled": true}),
        );
        let d = decide(
            &m,
            &[
                ProbeOut {
                    rc: 3,
                    out: "inactive\n".into(),
                },
                ProbeOut {
                    rc: 1,
                    out: "disabled\n".into(),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            d.reason,
            "haproxy is inactive, haproxy is disabled, not enabled"
        );
        assert_eq!(
            d.actions,
            [
                Action::run(&["systemctl", "start", "--", "haproxy"]).unwrap(),
                Action::run(&["systemctl", "enable", "--", "haproxy"]).unwrap()
            ]
        );
        assert!(
            !decide(
                &m,
                &[
                    ProbeOut {
                        rc: 0,
                        out: "active\n".into()
                    },
                    ProbeOut {
                        rc: 0,
                        out: "enabled\n".into()
                    }
                ]
            )
            .unwrap()
            .changed
        );
    }

    #[test]
    fn service_restarts_reloads_and_stops() {
        let answers = |active: &str, enabled: &str| {
            [
                ProbeOut {
                    rc: 0,
                    out: format!("{active}\n"),
                },
                ProbeOut {
                    rc: 0,
                    out: format!("{enabled}\n"),
                },
            ]
        };
        let decide_for = |state: &str, active: &str| {
            decide(
                &module("service", json!({"name": "keepalived", "state": state})),
                &answers(active, "enabled"),
            )
            .unwrap()
        };
        // restarted and reloaded act on every run they are asked for (the
        // roles ask only when the config changed).
        let d = decide_for("restarted", "active");
        assert_eq!(
            (d.reason.as_str(), d.actions),
            (
                "restart requested",
                vec![Action::run(&["systemctl", "restart", "--", "keepalived"]).unwrap()]
            )
        );
        let d = decide_for("reloaded", "active");
        assert_eq!(
            d.actions,
            [Action::run(&["systemctl", "reload-or-restart", "--", "keepalived"]).unwrap()]
        );
        let d = decide_for("stopped", "active");
        assert_eq!(
            d.actions,
            [Action::run(&["systemctl", "stop", "--", "keepalived"]).unwrap()]
        );
        let d = decide_for("stopped", "inactive");
        assert!(!d.changed);
        assert_eq!(d.reason, "keepalived is inactive, enabled");
        let d = decide(
            &module("service", json!({"name": "keepalived", "enabled": false})),
            &answers("active", "enabled"),
        )
        .unwrap();
        assert_eq!(
            d.actions,
            [Action::run(&["systemctl", "disable", "--", "keepalived"]).unwrap()]
        );
    }

    fn dir(mode: &str) -> ProbeOut {
        ProbeOut {
            rc: 0,
            out: format!("{mode} root root directory\n"),
        }
    }

    #[test]
    fn file_makes_directories_removes_and_touches() {
        let d = decide(
            &module(
                "file",
                json!({"path": "/etc/keepalived", "state": "directory", "owner": "root", "group": "adm"}),
            ),
            &[absent()],
        )
        .unwrap();
        assert_eq!(d.reason, "directory /etc/keepalived does not exist");
        assert_eq!(
            d.actions,
            [
                Action::run(&["mkdir", "-p", "-m", "755", "--", "/etc/keepalived"]).unwrap(),
                Action::run(&["chown", "root:adm", "--", "/etc/keepalived"]).unwrap()
            ]
        );
        let m = module(
            "file",
            json!({"path": "/srv/d", "state": "directory", "mode": "0700"}),
        );
        assert!(!decide(&m, &[dir("700")]).unwrap().changed);
        let d = decide(&m, &[dir("755")]).unwrap();
        assert_eq!(d.reason, "/srv/d: mode 0755 -> 0700");
        assert_eq!(
            d.actions,
            [Action::run(&["chmod", "700", "--", "/srv/d"]).unwrap()]
        );
        assert_eq!(
            decide(&m, &[file("644", "x")]).unwrap_err(),
            "/srv/d exists and is not a directory"
        );
        let gone = module("file", json!({"path": "/srv/old", "state": "absent"}));
        let d = decide(&gone, &[file("644", "x")]).unwrap();
        assert_eq!(
            (d.reason.as_str(), d.actions),
            (
                "/srv/old exists",
                vec![Action::run(&["rm", "-rf", "--", "/srv/old"]).unwrap()]
            )
        );
        assert_eq!(
            decide(&gone, &[absent()]).unwrap().reason,
            "/srv/old is absent"
        );
        let touch = module(
            "file",
            json!({"path": "/srv/t", "state": "touch", "mode": "0600"}),
        );
        assert!(matches!(
            &decide(&touch, &[absent()]).unwrap().actions[..],
            [Action::Write { path, content, mode: 0o600, .. }] if path == "/srv/t" && content.is_empty()
        ));
        assert!(!decide(&touch, &[file("600", "kept")]).unwrap().changed);
        assert_eq!(
            decide(
                &module("file", json!({"path": "/srv/f", "mode": "0600"})),
                &[absent()]
            )
            .unwrap_err(),
            "/srv/f does not exist (state: file only changes attributes; use copy or state: touch)"
        );
    }

    /// `template` is `copy` of the rendered text (the executor renders it on
    /// the controller): the text, mode and validator go into one write.
    #[test]
    fn template_writes_the_rendered_text_with_its_validator() {
        let m = module(
            "template",
            json!({"dest": "/etc/haproxy/haproxy.cfg", "content": "global\n    daemon\n", "mode": "0644", "validate": "haproxy -c -f %s"}),
        );
        let d = decide(&m, &[file("644", "global\n")]).unwrap();
        assert_eq!(d.reason, "/etc/haproxy/haproxy.cfg content differs");
        assert_eq!(
            d.actions,
            [Action::Write {
                path: "/etc/haproxy/haproxy.cfg".into(),
                content: "global\n    daemon\n".into(),
                mode: 0o644,
                owner: None,
                group: None,
                validate: Some(vec![
                    "haproxy".into(),
                    "-c".into(),
                    "-f".into(),
                    "%s".into()
                ])
            }]
        );
        assert!(
            !decide(&m, &[file("644", "global\n    daemon\n")])
                .unwrap()
                .changed
        );
        let bad = module(
            "template",
            json!({"dest": "/x", "content": "", "validate": "haproxy -c -f /x"}),
        );
        assert_eq!(
            decide(&bad, &[absent()]).unwrap_err(),
            "validate: \"haproxy -c -f /x\" must name the candidate file as %s"
        );
    }

    fn packages(answer: &str) -> [ProbeOut; 1] {
        [ProbeOut {
            rc: 0,
            out: answer.into(),
        }]
    }

    #[test]
    fn package_installs_what_is_missing_online_or_from_a_directory() {
        let m = module("package", json!({"name": ["haproxy", "keepalived"]}));
        let d = decide(
            &m,
            &packages("deb\nhaproxy installed\nkeepalived missing\n"),
        )
        .unwrap();
        assert_eq!(d.reason, "not installed: keepalived");
        assert!(matches!(
            &d.actions[..],
            [Action::Run { script, touches: Touches::All, own: false, .. }]
                if script == "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -- keepalived >&2"
        ));
        let d = decide(
            &m,
            &packages("deb\nhaproxy installed\nkeepalived installed\n"),
        )
        .unwrap();
        assert!(!d.changed);
        assert_eq!(d.reason, "installed: haproxy, keepalived");
        let offline = module(
            "package",
            json!({"name": ["keepalived"], "from_dir": "/root/yum/lb"}),
        );
        let d = decide(&offline, &packages("rpm\nkeepalived missing\n")).unwrap();
        assert!(matches!(
            &d.actions[..],
            [Action::Run { script, .. }] if script == "cd -- /root/yum/lb && if command -v dnf >/dev/null; then dnf install -y -q --disablerepo='*' -- ./*.rpm; else yum install -y -q --disablerepo='*' -- ./*.rpm; fi"
        ));
        assert_eq!(
            decide(&offline, &packages("none\nkeepalived missing\n")).unwrap_err(),
            "package: neither dpkg nor rpm found on this host"
        );
    }

    #[test]
    fn vip_check_tells_a_free_vip_ours_and_a_strangers() {
        let m = module(
            "vip_check",
            json!({"vip": "10.0.0.100", "managed_by": "/etc/keepalived/check_haproxy.sh"}),
        );
        let rc = |held: i32, answers: i32, managed: i32| {
            [held, answers, managed].map(|rc| ProbeOut {
                rc,
                out: String::new(),
            })
        };
        assert_eq!(
            decide(&m, &rc(1, 1, 1)).unwrap().reason,
            "10.0.0.100 is free"
        );
        assert_eq!(
            decide(&m, &rc(0, 0, 0)).unwrap().reason,
            "10.0.0.100 is held by this host"
        );
        assert_eq!(
            decide(&m, &rc(1, 0, 0)).unwrap().reason,
            "10.0.0.100 answers, held by another control plane of this cluster"
        );
        assert!(
            decide(&m, &rc(1, 0, 1))
                .unwrap_err()
                .starts_with("VIP 10.0.0.100 already answers on the network and gantry does not manage keepalived here yet")
        );
        for ok in [rc(1, 1, 1), rc(0, 0, 0), rc(1, 0, 0)] {
            assert!(decide(&m, &ok).unwrap().actions.is_empty());
        }
        assert_eq!(
            Module::parse("vip_check", json!({"vip": "10.0.0", "managed_by": "/x"})).unwrap_err(),
            "vip_check: \"10.0.0\" is not an IP address"
        );
    }

    #[test]
    fn shell_runs_its_script_as_written_unless_created() {
        let m = module(
            "shell",
            json!({"cmd": "echo a | tr a b > /tmp/x", "creates": "/tmp/x"}),
        );
        assert_eq!(
            probes(&m).unwrap(),
            [Probe::Script("test -e /tmp/x".into())]
        );
        let d = decide(
            &m,
            &[ProbeOut {
                rc: 1,
                out: String::new(),
            }],
        )
        .unwrap();
        assert_eq!(d.reason, "not yet done");
        assert_eq!(
            d.actions,
            [Action::Run {
                script: "echo a | tr a b > /tmp/x".into(),
                show: "echo a | tr a b > /tmp/x".into(),
                stdin: None,
                touches: Touches::All,
                own: false
            }]
        );
        let d = decide(
            &m,
            &[ProbeOut {
                rc: 0,
                out: String::new(),
            }],
        )
        .unwrap();
        assert!(!d.changed);
        assert_eq!(d.reason, "/tmp/x exists");
        assert_eq!(
            Module::parse("shell", json!({"argv": ["ls"]})).unwrap_err(),
            "shell: takes `cmd`, a script; use `command` with `argv`"
        );
    }

    /// The write script itself, run by a local sh: atomic replace, mode set
    /// before content, and a refused `validate` leaves the old file alone.
    #[test]
    fn write_script_is_atomic_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        std::fs::write(&path, "old\n").unwrap();
        let p = path.to_str().unwrap().to_string();
        let run = |a: &Action| {
            // The input as the remote shell has it: a variable of the
            // shell running the script (here from its environment).
            let (script, input) = a.script().unwrap();
            std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::ssh::own_call(&script).unwrap())
                .env("gantry_stdin", input.unwrap())
                .output()
                .unwrap()
        };
        let bad = Action::Write {
            path: p.clone(),
            content: "new\n".into(),
            mode: 0o600,
            owner: None,
            group: None,
            validate: Some(vec![
                "grep".into(),
                "-q".into(),
                "nomatch".into(),
                "%s".into(),
            ]),
        };
        assert!(!run(&bad).status.success());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temp file left behind");
        let good = Action::Write {
            path: p.clone(),
            content: "new\n".into(),
            mode: 0o600,
            owner: None,
            group: None,
            validate: Some(vec!["grep".into(), "-q".into(), "new".into(), "%s".into()]),
        };
        assert!(run(&good).status.success());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // Content cut short by a lost connection never reaches this script:
        // the remote shell runs a request only whole (ssh.rs tests,
        // a_request_runs_whole_with_its_stdin_or_not_at_all).
        // The mode is the file's from its creation, before any content is
        // written: by the umask where it can be, else by chmod on the empty
        // file. Owner and group are set on the empty file too.
        let (script, _) = good.script().unwrap();
        assert!(
            script
                .contains("{ umask 066 && set -C && true > \"$t0\" && set +C && { printf %s \"$gantry_stdin\" >| \"$t0\" || "),
            "{script}"
        );
        let exec = Action::Write {
            path: p.clone(),
            content: "#!/bin/sh\n".into(),
            mode: 0o755,
            owner: Some("root".into()),
            group: None,
            validate: None,
        };
        let (script, _) = exec.script().unwrap();
        let at = |needle: &str| {
            script
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} not in {script}"))
        };
        assert!(
            at("true > \"$t0\"") < at("chmod 755")
                && at("chmod 755") < at("chown")
                && at("chown") < at("printf %s")
        );
        let euid = std::process::Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&euid.stdout).trim() == "0" {
            assert!(run(&exec).status.success());
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
                0o755
            );
        } else {
            println!("SKIPPED: the owner=root write needs root to chown; run as root to check it");
        }
    }

    /// Several writes in one script: the first refused stops the rest; those
    /// before it land, none after it does, no temp file is left, and the
    /// script says how many landed.
    #[test]
    fn writes_in_one_script_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(n).display().to_string();
        let write = |n: &str, content: &str, validate: Option<&str>| Action::Write {
            path: file(n),
            content: content.into(),
            mode: 0o640,
            owner: None,
            group: None,
            validate: validate.map(|v| vec!["grep".into(), "-q".into(), v.into(), "%s".into()]),
        };
        let run = |writes: &[&Action]| {
            let script = writes_script(writes, "M").unwrap();
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(crate::ssh::own_call(&script).unwrap());
            for (i, w) in writes.iter().enumerate() {
                if let Action::Write { content, .. } = w {
                    c.env(crate::ssh::input_var(i), content);
                }
            }
            c.output().unwrap()
        };
        let (a, b, c) = (
            write("a", "A\n", None),
            write("b", "it's B", Some("nomatch")),
            write("c", "C\n", None),
        );
        let out = run(&[&a, &b, &c]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "written 1\n");
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(), ["a"]);
        assert_eq!(std::fs::read_to_string(file("a")).unwrap(), "A\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(file("a")).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let b = write("b", "it's B", Some("B"));
        let out = run(&[&a, &b, &c]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "written 3\n");
        assert_eq!(names(), ["a", "b", "c"]);
        assert_eq!(std::fs::read_to_string(file("b")).unwrap(), "it's B");
        // A directory that is not there fails the write that needs it.
        let lost = write("no/such/dir", "x", None);
        let out = run(&[&c, &lost]);
        assert_ne!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "written 1\n");
        assert_eq!(names(), ["a", "b", "c"]);
        // In the host's shell itself, landed or refused, chmod'ed or not, the
        // writes leave its variables, umask, options and traps as they were.
        let mut x = write("x", "X\n", None);
        if let Action::Write { mode, .. } = &mut x {
            *mode = 0o1750;
        }
        let refused = write("y", "Y\n", Some("nomatch"));
        for (writes, landed) in [
            (vec![&a, &x], "written 2\n"),
            (vec![&c, &refused, &b], "written 1\n"),
        ] {
            let inputs = batch_inputs(&writes);
            let script = writes_script(&writes, "M").unwrap();
            let out = crate::ssh::tests::shell_left_as_found(&script, &inputs).unwrap();
            assert!(out.contains(landed), "{out}");
        }
        assert_eq!(names(), ["a", "b", "c", "x"]);
    }

    /// A dead run's temp file beside a target (a host that lost power while
    /// a validator ran) is removed by the next write of that target, a link
    /// as a link; files that only look alike are left alone.
    #[test]
    fn a_dead_runs_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(n).display().to_string();
        let target = std::fs::canonicalize(dir.path()).unwrap().join("outside");
        std::fs::write(&target, "keep\n").unwrap();
        std::fs::write(file("a.gantry.0123456789ab"), "half").unwrap();
        std::os::unix::fs::symlink(&target, file("a.gantry.ba9876543210")).unwrap();
        for other in [
            "a.gantry.backup",
            "a.gantry.0123456789abc",
            "b.gantry.0123456789ab",
        ] {
            std::fs::write(file(other), "mine").unwrap();
        }
        let a = Action::Write {
            path: file("a"),
            content: "A\n".into(),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        };
        let script = writes_script(&[&a], "M").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(crate::ssh::own_call(&script).unwrap())
            .env(crate::ssh::input_var(0), "A\n")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "written 1\n",
            "{out:?}"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "a",
                "a.gantry.0123456789abc",
                "a.gantry.backup",
                "b.gantry.0123456789ab",
                "outside"
            ]
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    }

    /// Commands between the writes run in their turn, each with its own
    /// output; a directory made midway takes the writes after it; a failed
    /// command stops the rest.
    #[test]
    fn commands_run_in_their_turn_among_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(n).display().to_string();
        let write = |n: &str| Action::Write {
            path: file(n),
            content: format!("{n}\n"),
            mode: 0o644,
            owner: None,
            group: None,
            validate: None,
        };
        let sub = file("sub");
        let actions = [
            write("a"),
            Action::run(&["hostname"]).unwrap(),
            Action::run(&["mkdir", "-p", "-m", "700", "--", &sub]).unwrap(),
            write("sub/f"),
            Action::run(&["mkdir", "-p", "--", "/proc/gantry/no"]).unwrap(),
            write("c"),
        ];
        let refs: Vec<&Action> = actions.iter().collect();
        assert!(refs.iter().all(|a| batchable(a)));
        let script = writes_script(&refs, "M").unwrap();
        let out = crate::ssh::tests::shell_left_as_found(&script, &batch_inputs(&refs)).unwrap();
        let (done, runs) = batch_output(&out, "M");
        assert_eq!(done, 4, "{out}");
        let host = std::process::Command::new("hostname").output().unwrap();
        assert_eq!(
            runs[&1],
            (String::from_utf8_lossy(&host.stdout).into_owned(), 0)
        );
        assert_eq!(runs[&2], (String::new(), 0));
        assert_ne!(runs[&4].1, 0);
        assert_eq!(runs.len(), 3);
        assert_eq!(std::fs::read_to_string(file("sub/f")).unwrap(), "sub/f\n");
        assert!(!std::path::Path::new(&file("c")).exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .chain(std::fs::read_dir(&sub).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "f", "sub"], "a temp file was left");
    }
}
