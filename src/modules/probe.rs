//! The read-only questions a module asks of a host, and the answers it
//! decides on, by name.

use crate::remote::script::quote;

/// A read-only question for the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Metadata and content of a path.
    File(String),
    /// A read-only script; its stdout and exit code are the answer.
    Script(String),
    /// A read-only script that asks a daemon over the network (the API
    /// server) and mostly waits for it: the engine runs it beside the
    /// round trip's other probes, not after them.
    Query(String),
    /// A systemd unit's state: `ActiveState=` and `UnitFileState=` lines,
    /// as `systemctl show` prints them. The engine asks for every unit of a
    /// round trip in one `systemctl show`.
    Unit(String),
    /// A read-only script over arguments (`"$@"`): the engine runs each
    /// such script once per round trip, with the arguments of every probe
    /// that asks it (each once, in order), and each of them reads the
    /// whole answer. One `ctr images ls` for all of a host's images, not
    /// one each.
    Batch { script: String, arg: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOut {
    pub rc: i32,
    pub out: String,
}

/// What a unit probe asks: `systemctl show` of these properties, then
/// `--` and the units (one block each, a blank line between, in order).
pub const UNIT_SHOW: &str = "systemctl show -p ActiveState -p UnitFileState --";

/// The only variables modules' script probes (and the engine's running of
/// queries: `q`, `p`) assign: the probe request declares them `local`,
/// since it runs in the host's shell itself.
pub const PROBE_LOCALS: &str = "v k f l rc q p";

impl Probe {
    /// The shell text of the probe. A file probe prints one stat line, then
    /// the content of a regular file; a missing path prints nothing and
    /// exits 1. A symbolic link, a directory, a device are described, never
    /// read.
    pub fn script(&self) -> Result<String, String> {
        Ok(match self {
            Probe::File(p) => {
                let q = quote(p)?;
                format!(
                    "stat -c '%a %U %G %F' -- {q} && if {}; then cat -- {q}; fi",
                    regular_file(&q)
                )
            }
            Probe::Script(s) | Probe::Query(s) => s.clone(),
            Probe::Unit(u) => format!("{UNIT_SHOW} {}", quote(u)?),
            Probe::Batch { script, arg } => format!("set -- {}\n{script}", quote(arg)?),
        })
    }
}

/// The shell test for a regular file that is not a symbolic link, of the
/// quoted path `q`: what a file probe reads the content of.
pub fn regular_file(q: &str) -> String {
    format!("[ -f {q} ] && [ ! -L {q} ]")
}

/// What a path is on the host, as `Probe::File` reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileState {
    pub exists: bool,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub is_dir: bool,
    /// A symbolic link: its mode and owner are the link's, and its content
    /// is not read.
    pub is_link: bool,
    /// What `stat` calls it: "regular file", "directory", "symbolic link",
    /// "character special file"...; empty when missing.
    pub kind: String,
    pub content: String,
    /// Where SELinux is enabled and the path's label is not the policy's:
    /// (the label it has, the policy's), as `matchpathcon -V` says.
    pub relabel: Option<(String, String)>,
}

impl FileState {
    /// A regular file (empty or not): the only kind gantry reads or writes.
    pub fn is_regular(&self) -> bool {
        self.kind.starts_with("regular")
    }

    pub fn parse(o: &ProbeOut) -> FileState {
        if o.rc != 0 {
            return FileState::default();
        }
        let (head, content) = o.out.split_once('\n').unwrap_or((o.out.as_str(), ""));
        let mut f = head.splitn(4, ' ');
        let mode = u32::from_str_radix(f.next().unwrap_or("0"), 8).unwrap_or(0);
        let owner = f.next().unwrap_or("").to_string();
        let group = f.next().unwrap_or("").to_string();
        // The stat line may end with a tab and `label HAS SHOULD`
        // (exec::probe, where SELinux is enabled).
        let rest = f.next().unwrap_or("");
        let (kind, label) = rest.split_once('\t').unwrap_or((rest, ""));
        let relabel = label
            .strip_prefix("label ")
            .and_then(|l| l.split_once(' '))
            .map(|(has, should)| (has.to_string(), should.to_string()));
        FileState {
            exists: true,
            mode,
            owner,
            group,
            is_dir: kind == "directory",
            is_link: kind == "symbolic link",
            kind: kind.to_string(),
            content: content.to_string(),
            relabel,
        }
    }
}

/// A module's questions, each named for `decide` to read it by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probes(Vec<(String, Probe)>);

impl Probes {
    pub fn new() -> Probes {
        Probes::default()
    }

    /// The metadata and content of `path`, read as `name`.
    pub fn file(mut self, name: impl Into<String>, path: impl Into<String>) -> Probes {
        self.0.push((name.into(), Probe::File(path.into())));
        self
    }

    /// A read-only script's output and status, read as `name`.
    pub fn script(mut self, name: impl Into<String>, script: impl Into<String>) -> Probes {
        self.0.push((name.into(), Probe::Script(script.into())));
        self
    }

    /// A script probe that asks a daemon over the network
    /// (`Probe::Query`), read as `name` (`script` reads the answer).
    pub fn query(mut self, name: impl Into<String>, script: impl Into<String>) -> Probes {
        self.0.push((name.into(), Probe::Query(script.into())));
        self
    }

    /// A script over arguments, asked once per round trip with every
    /// probe's `arg` (`Probe::Batch`), read as `name` (`script` reads the
    /// whole answer).
    pub fn batch(
        mut self,
        name: impl Into<String>,
        script: impl Into<String>,
        arg: impl Into<String>,
    ) -> Probes {
        self.0.push((
            name.into(),
            Probe::Batch {
                script: script.into(),
                arg: arg.into(),
            },
        ));
        self
    }

    /// A systemd unit's state, read as `name` (`script` reads the answer).
    pub fn unit(mut self, name: impl Into<String>, unit: impl Into<String>) -> Probes {
        self.0.push((name.into(), Probe::Unit(unit.into())));
        self
    }

    /// The questions in order, for the engine to ask.
    pub fn list(&self) -> impl Iterator<Item = &Probe> {
        self.0.iter().map(|(_, p)| p)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The answers, in the order of `list`, under their names.
    pub fn answered(&self, outs: Vec<ProbeOut>) -> Answers {
        Answers(
            self.0
                .iter()
                .map(|(n, p)| (n.clone(), matches!(p, Probe::File(_))))
                .zip(outs)
                .map(|((n, file), o)| (n, file, o))
                .collect(),
        )
    }
}

/// The answers to a module's `Probes`, by name.
#[derive(Debug, Clone, Default)]
pub struct Answers(Vec<(String, bool, ProbeOut)>);

impl Answers {
    fn get(&self, name: &str) -> Result<&(String, bool, ProbeOut), String> {
        self.0
            .iter()
            .find(|(n, ..)| n == name)
            .ok_or_else(|| format!("internal: no probe named {name:?} was asked"))
    }

    /// A file probe's answer.
    pub fn file(&self, name: &str) -> Result<FileState, String> {
        match self.get(name)? {
            (_, true, o) => Ok(FileState::parse(o)),
            _ => Err(format!("internal: probe {name:?} is not a file probe")),
        }
    }

    /// A script probe's answer.
    pub fn script(&self, name: &str) -> Result<&ProbeOut, String> {
        match self.get(name)? {
            (_, false, o) => Ok(o),
            _ => Err(format!("internal: probe {name:?} is not a script probe")),
        }
    }

    /// Whether a script probe succeeded (exit status 0).
    pub fn ok(&self, name: &str) -> Result<bool, String> {
        Ok(self.script(name)?.rc == 0)
    }
}
