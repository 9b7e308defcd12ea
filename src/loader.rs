//! Reads inventory, playbook and role files from disk. This is the only module
//! that knows YAML (serde_yaml is deprecated upstream; keeping it here makes it
//! a one-file swap). Errors carry file:line:column: serde_yaml gives them for
//! syntax, and a position index from yaml-rust2's event parser gives them for
//! every field that a later semantic check complains about.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::{Diagnostic, Error, Location, Result, Severity};
use crate::inventory::Inventory;
use crate::playbook::{Play, PlaySpec, Playbook, Role, TASK_KEYWORDS, Task};

/// Field path -> position, for keys and for values.
#[derive(Debug, Default)]
pub struct Positions {
    file: PathBuf,
    keys: HashMap<String, (usize, usize)>,
    values: HashMap<String, (usize, usize)>,
}

impl Positions {
    /// The best position for a field path: the key itself, else its value,
    /// else the nearest enclosing field.
    pub fn locate(&self, field: &str) -> Option<Location> {
        let mut f = field.to_string();
        loop {
            if let Some(&(line, col)) = self.keys.get(&f).or_else(|| self.values.get(&f)) {
                return Some(Location {
                    file: self.file.clone(),
                    line,
                    col,
                });
            }
            let cut = f.rfind(['.', '['])?;
            f.truncate(cut);
        }
    }

    pub fn attach(&self, mut d: Vec<Diagnostic>) -> Vec<Diagnostic> {
        for x in &mut d {
            if x.location.is_none() {
                x.location = self.locate(&x.field);
            }
        }
        d
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, idx: usize },
}

struct Indexer {
    stack: Vec<Frame>,
    pos: Positions,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = (mark.line(), mark.col() + 1);
        let is_node = matches!(
            ev,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(..)
        );
        if matches!(ev, Event::MappingEnd | Event::SequenceEnd) {
            self.stack.pop();
            self.after_value();
            return;
        }
        if !is_node {
            return;
        }
        // A scalar in key position of a mapping is a key.
        if let Some(Frame::Map { path, key }) = self.stack.last_mut()
            && key.is_none()
        {
            let k = if let Event::Scalar(s, ..) = &ev {
                s.clone()
            } else {
                String::from("?")
            };
            self.pos.keys.insert(join(path, &k), at);
            *key = Some(k);
            return;
        }
        let path = match self.stack.last() {
            Some(Frame::Map { path, key: Some(k) }) => join(path, k),
            Some(Frame::Seq { path, idx }) => format!("{path}[{idx}]"),
            _ => String::new(),
        };
        self.pos.values.insert(path.clone(), at);
        match ev {
            Event::MappingStart(..) => self.stack.push(Frame::Map { path, key: None }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq { path, idx: 0 }),
            _ => self.after_value(),
        }
    }
}

impl Indexer {
    fn after_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { idx, .. }) => *idx += 1,
            None => {}
        }
    }
}

fn positions(file: &Path, text: &str) -> Positions {
    let mut ix = Indexer {
        stack: Vec::new(),
        pos: Positions {
            file: file.to_path_buf(),
            ..Default::default()
        },
    };
    // A syntax error is reported by serde_yaml with its own position.
    let _ = Parser::new_from_str(text).load(&mut ix, false);
    ix.pos
}

/// A YAML document, its positions, and the diagnostics found so far.
pub struct Doc {
    pub value: Json,
    pub pos: Positions,
    pub diags: Vec<Diagnostic>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

pub fn parse_yaml(path: &Path, text: &str) -> Result<Doc> {
    let value: Json = serde_yaml::from_str(text).map_err(|e| {
        let location = e.location().map(|l| Location {
            file: path.to_path_buf(),
            line: l.line(),
            col: l.column(),
        });
        Error::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            location,
            field: String::new(),
            message: format!("not valid YAML: {e}"),
        }])
    })?;
    Ok(Doc {
        value,
        pos: positions(path, text),
        diags: Vec::new(),
    })
}

impl Doc {
    /// Deserialize the node at `field` into `T`, recording a located
    /// diagnostic instead of failing, so that later sections are still checked.
    pub fn section<T: DeserializeOwned>(&mut self, field: &str, v: &Json) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let mut path = if inner == "." {
                    field.to_string()
                } else if field.is_empty() {
                    inner
                } else if inner.starts_with('[') {
                    format!("{field}{inner}")
                } else {
                    format!("{field}.{inner}")
                };
                let msg = e.into_inner().to_string();
                // serde names the unknown key; point at it, not at its parent.
                if let Some(k) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                    && !path.ends_with(k)
                {
                    path = join(&path, k);
                }
                self.error(&path, msg);
                None
            }
        }
    }

    pub fn error(&mut self, field: &str, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            location: self.pos.locate(field),
            field: field.to_string(),
            message,
        });
    }
}

/// `v` as a `T` once the keys `T` does not know are dropped: for checking
/// the rest of a section whose unknown key is already reported.
fn known_keys_only<T: DeserializeOwned>(v: &Json) -> Option<T> {
    let known = serde_aux::serde_introspection::serde_introspect::<T>();
    let mut m = v.as_object()?.clone();
    m.retain(|k, _| known.contains(&k.as_str()));
    serde_json::from_value(Json::Object(m)).ok()
}

/// Load and check the inventory. Every problem, syntactic or semantic, is
/// reported at once; warnings are returned beside a valid inventory.
pub fn load_inventory(
    path: &Path,
    known_roles: impl Fn(&Inventory) -> std::collections::HashSet<String>,
) -> Result<(Inventory, Vec<Diagnostic>)> {
    load_inventory_with(path, known_roles, true)
}

/// The inventory without reading its bundle's manifest (`bundle: DIR` is
/// left out): for `bundle list` and `bundle fetch`, which make the bundle.
/// Every role a host names is taken as known.
pub fn load_inventory_for_bundle(path: &Path) -> Result<(Inventory, Vec<Diagnostic>)> {
    let every_role = |inv: &Inventory| inv.hosts.iter().flat_map(|h| h.roles.clone()).collect();
    load_inventory_with(path, every_role, false)
}

fn load_inventory_with(
    path: &Path,
    known_roles: impl Fn(&Inventory) -> std::collections::HashSet<String>,
    read_bundle: bool,
) -> Result<(Inventory, Vec<Diagnostic>)> {
    let text = read(path)?;
    let mut doc = parse_yaml(path, &text)?;
    let Some(top) = doc.value.as_object().cloned() else {
        doc.error(
            "",
            "the inventory must be a mapping with cluster, hosts, ssh, vars and firewall".into(),
        );
        return Err(Error::Invalid(doc.diags));
    };
    // Check each part on its own, so one bad host does not hide another.
    for k in top.keys() {
        if ![
            "cluster", "ssh", "hosts", "vars", "firewall", "secrets", "addons", "bundle",
        ]
        .contains(&k.as_str())
        {
            doc.error(k, format!("unknown field `{k}`, expected one of `cluster`, `ssh`, `hosts`, `vars`, `firewall`, `secrets`, `addons`, `bundle`"));
        }
    }
    for required in ["cluster", "hosts"] {
        if !top.contains_key(required) {
            doc.error("", format!("missing field `{required}`"));
        }
    }
    let null = Json::Null;
    let get = |k: &str| top.get(k).unwrap_or(&null);
    // An optional section: absent is its default; present must parse.
    fn part<T: serde::de::DeserializeOwned + Default>(
        doc: &mut Doc,
        top: &serde_json::Map<String, Json>,
        key: &str,
    ) -> Option<T> {
        match top.get(key) {
            Some(v) => doc.section(key, v),
            None => Some(T::default()),
        }
    }
    let cluster = top
        .get("cluster")
        .and_then(|c| doc.section::<crate::inventory::Cluster>("cluster", c));
    let ssh = part::<crate::inventory::SshSpec>(&mut doc, &top, "ssh");
    let vars = part::<crate::inventory::Vars>(&mut doc, &top, "vars");
    let secrets = part::<crate::inventory::Vars>(&mut doc, &top, "secrets");
    let firewall = part::<crate::inventory::Firewall>(&mut doc, &top, "firewall");
    let addons = part::<BTreeMap<String, crate::addons::AddonSpec>>(&mut doc, &top, "addons");
    // Hosts one by one, keeping each one's index for messages.
    let mut hosts = Vec::new();
    match get("hosts") {
        Json::Array(list) => {
            for (i, h) in list.iter().enumerate() {
                let field = format!("hosts[{i}]");
                // A host with an unknown key is reported, and still checked
                // with the rest (duplicate names and addresses, roles), so
                // one run names every problem.
                if let Some(spec) = doc
                    .section::<crate::inventory::HostSpec>(&field, h)
                    .or_else(|| known_keys_only(h))
                {
                    hosts.push((i, spec));
                }
            }
        }
        Json::Null => {}
        _ => doc.error("hosts", "expected a list of hosts".into()),
    }
    // The bundle's manifest is checked with the inventory; its files are
    // hashed only by apply (`bundle verify`), which can take a while.
    let bundle = match top.get("bundle") {
        None => None,
        Some(Json::String(_)) if !read_bundle => None,
        Some(Json::String(d)) => {
            let dir = match path.parent() {
                Some(p) => p.join(d),
                None => PathBuf::from(d),
            };
            match load_manifest(&dir.join(crate::bundle::MANIFEST)) {
                Ok((manifest, _)) => Some(crate::inventory::BundleRef { dir, manifest }),
                Err(Error::Invalid(d)) => {
                    doc.diags.extend(d);
                    None
                }
                Err(e) => {
                    doc.error("bundle", format!("the bundle's manifest: {e}"));
                    None
                }
            }
        }
        Some(_) => {
            doc.error("bundle", "expected the bundle directory's path".into());
            None
        }
    };
    let ssh = ssh.unwrap_or_default();
    let ssh_config = match &ssh.config {
        None | Some(crate::inventory::ClientConfigFile::Off) => None,
        Some(c) => {
            let file = match c {
                crate::inventory::ClientConfigFile::Path(p) => expand_home(p),
                _ => expand_home(Path::new("~/.ssh/config")),
            };
            let default = !matches!(c, crate::inventory::ClientConfigFile::Path(_));
            match crate::remote::ssh_config::ClientConfig::load(&file) {
                Ok(c) => Some(std::sync::Arc::new(c)),
                // As OpenSSH: no ~/.ssh/config is an empty one. A path the
                // inventory names must be there.
                Err(_) if default && !file.exists() => None,
                Err(e) => {
                    doc.error("ssh.config", format!("cannot read the ssh_config: {e}"));
                    None
                }
            }
        }
    };
    let structural_ok = doc.diags.is_empty();
    // The semantic checks run on whatever parsed, so one run reports both
    // kinds of problem.
    let Some(cluster) = cluster else {
        return Err(Error::Invalid(doc.diags));
    };
    let index: Vec<usize> = hosts.iter().map(|(i, _)| *i).collect();
    let inv = Inventory {
        cluster,
        ssh,
        hosts: hosts.into_iter().map(|(_, h)| h).collect(),
        vars: vars.unwrap_or_default(),
        firewall: firewall.unwrap_or_default(),
        secrets: secrets.unwrap_or_default(),
        addons: addons.unwrap_or_default(),
        bundle,
        ssh_config,
    };
    let renumber = |text: &str| {
        let mut t = text.to_string();
        for (k, orig) in index.iter().enumerate() {
            t = t.replace(&format!("hosts[{k}]"), &format!("hosts[#{orig}#]"));
        }
        t.replace("[#", "[").replace("#]", "]")
    };
    let semantic: Vec<Diagnostic> = inv
        .check(&known_roles(&inv))
        .into_iter()
        .map(|mut d| {
            d.field = renumber(&d.field);
            d.message = renumber(&d.message);
            d
        })
        .collect();
    let mut diags = std::mem::take(&mut doc.diags);
    diags.extend(doc.pos.attach(semantic));
    // Report in file order.
    diags.sort_by_key(|d| {
        d.location
            .as_ref()
            .map(|l| (l.line, l.col))
            .unwrap_or((0, 0))
    });
    if !structural_ok || diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(Error::Invalid(diags));
    }
    Ok((inv, diags))
}

/// `~/x` under the user's home.
fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// Load a playbook and every role it names, each from the first folder of
/// `roles_path` that has it (Ansible's roles_path).
pub fn load_playbook(path: &Path, roles_path: &[PathBuf]) -> Result<Playbook> {
    let text = read(path)?;
    let mut doc = parse_yaml(path, &text)?;
    let mut plays = Vec::new();
    let specs: Vec<Json> = match &doc.value {
        Json::Array(a) => a.clone(),
        _ => {
            doc.error(
                "",
                "a playbook is a list of plays: - { name, hosts, roles, after? }".into(),
            );
            return Err(Error::Invalid(doc.diags));
        }
    };
    for (i, p) in specs.iter().enumerate() {
        if let Some(spec) = doc.section::<PlaySpec>(&format!("[{i}]"), p) {
            plays.push(Play {
                name: spec.name,
                hosts: spec.hosts.to_vec(),
                roles: spec.roles,
                after: spec.after.map(|a| a.to_vec()).unwrap_or_default(),
            });
        }
    }
    for (i, p) in plays.iter().enumerate() {
        for a in &p.after {
            if !plays[..i].iter().any(|q| &q.name == a) {
                doc.error(
                    &format!("[{i}].after"),
                    format!(
                        "play {:?} waits for {a:?}, which is not an earlier play",
                        p.name
                    ),
                );
            }
        }
    }
    let mut roles = BTreeMap::new();
    let mut diags = std::mem::take(&mut doc.diags);
    for p in &plays {
        for r in &p.roles {
            if roles.contains_key(r) {
                continue;
            }
            let dir = roles_path
                .iter()
                .find(|d| d.join(r).join("tasks.yaml").is_file())
                .unwrap_or(&roles_path[0]);
            match load_role(dir, r) {
                Ok((role, problems)) => {
                    diags.extend(problems);
                    roles.insert(r.clone(), role);
                }
                Err(Error::Invalid(d)) => diags.extend(d),
                Err(e) => diags.push(Diagnostic {
                    severity: Severity::Error,
                    location: None,
                    field: String::new(),
                    message: format!("role {r}: {e}"),
                }),
            }
        }
    }
    // `wait_for` names a task of this playbook, as `role/task name`.
    let ids: std::collections::HashSet<&str> = roles
        .values()
        .flat_map(|r: &Role| r.tasks.iter().map(|t| t.id.as_str()))
        .collect();
    for r in roles.values() {
        for t in &r.tasks {
            for w in t.wait_for.iter().filter(|w| !ids.contains(w.as_str())) {
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    location: t.wait_for_at.clone(),
                    field: "wait_for".into(),
                    message: format!(
                        "task {} waits for {w:?}, which is no task of this playbook (write it as role/task name)",
                        t.id
                    ),
                });
            }
        }
    }
    if !diags.is_empty() {
        return Err(Error::Invalid(diags));
    }
    Ok(Playbook {
        path: path.to_path_buf(),
        plays,
        roles,
    })
}

fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, read(&p)?);
            }
        }
    }
    Ok(out)
}

/// A task's parameters checked as its module types them, before any host:
/// wrong types and what the module's `validate` refuses (a mode like
/// "0999", a regexp that does not compile), each at its parameter. Only
/// parameters that hold no template: the rest are known once rendered. A
/// role file the module names must exist (unless its name is a template).
fn check_module(
    doc: &mut Doc,
    t: &Task,
    field: &str,
    dir: &Path,
    templates: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
) {
    use crate::modules::{AnyModule, RoleFile};
    // Unknown keys and modules are reported by `check_params` already.
    if crate::modules::check_params(&t.module, &t.params).is_err() {
        return;
    }
    let at = format!("{field}.{}", t.module);
    let templated = crate::plan::template::holds_template(&t.params);
    let m = match AnyModule::typed(&t.module, t.params.clone()) {
        Ok(m) => m,
        Err(msg) => {
            if !templated {
                let (f, msg) = param_field(&at, &t.module, &msg);
                doc.error(&f, msg);
            }
            return;
        }
    };
    if !templated && let Err(msg) = m.validate() {
        let (f, msg) = param_field(&at, &t.module, &msg);
        doc.error(&f, msg);
    }
    let (name, folder, have) = match m.role_file() {
        Some(RoleFile::Template(n)) => (n, "templates", templates),
        Some(RoleFile::File(n)) => (n, "files", files),
        None => return,
    };
    if !name.contains("{{") && !have.contains_key(name) {
        let what = if folder == "templates" {
            "template"
        } else {
            "file"
        };
        doc.error(
            &format!("{at}.src"),
            format!("no {what} {name:?} in {}", dir.join(folder).display()),
        );
    }
}

/// The field a module's message is about, and the message without the
/// field it names: "copy.mode: ..." and "validate: ..." name a parameter;
/// anything else is about the module's parameters as a whole.
fn param_field(at: &str, module: &str, msg: &str) -> (String, String) {
    let whole = (at.to_string(), msg.to_string());
    let Some((head, rest)) = msg.split_once(": ") else {
        return whole;
    };
    if head == module {
        return (at.to_string(), rest.to_string());
    }
    let path = head.strip_prefix(&format!("{module}.")).unwrap_or(head);
    let first = path.split(['.', '[']).next().unwrap_or("");
    match crate::modules::fields(module) {
        Some(fields) if fields.contains(&first) => (format!("{at}.{path}"), rest.to_string()),
        _ => whole,
    }
}

/// A role, and the problems found in it. A role whose tasks parse is
/// returned even with problems, so the playbook's own checks (`wait_for`)
/// still run and every problem is reported at once.
pub fn load_role(roles_dir: &Path, name: &str) -> Result<(Role, Vec<Diagnostic>)> {
    let dir = roles_dir.join(name);
    let tasks_path = dir.join("tasks.yaml");
    if !tasks_path.is_file() {
        return Err(Error::Other(format!("{} not found", tasks_path.display())));
    }
    let mut doc = parse_yaml(&tasks_path, &read(&tasks_path)?)?;
    let mut tasks = Vec::new();
    // Each loaded task's index in the file, for messages after a bad task was dropped.
    let mut index = Vec::new();
    let items = doc.value.as_array().cloned().unwrap_or_else(|| {
        doc.error("", "tasks.yaml is a list of tasks".into());
        Vec::new()
    });
    for (i, t) in items.iter().enumerate() {
        let field = format!("[{i}]");
        let Some(map) = t.as_object() else {
            doc.error(
                &field,
                "a task is a mapping: { name, <module>: {...} }".into(),
            );
            continue;
        };
        let name = map
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            doc.error(&field, "every task needs a `name`".into());
        }
        let modules: Vec<&String> = map
            .keys()
            .filter(|k| !TASK_KEYWORDS.contains(&k.as_str()))
            .collect();
        let module = match modules.as_slice() {
            [m] => (*m).clone(),
            [] => {
                doc.error(
                    &field,
                    format!(
                        "task {name:?} names no module (one of: {})",
                        crate::modules::NAMES.join(", ")
                    ),
                );
                continue;
            }
            many => {
                doc.error(
                    &format!("{field}.{}", many[1]),
                    format!(
                        "task {name:?} has more than one module or unknown keyword: {}",
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            }
        };
        let params = map[&module].clone();
        if let Err(msg) = crate::modules::check_params(&module, &params) {
            doc.error(&format!("{field}.{module}"), msg);
        }
        let str_list = |k: &str| -> Vec<String> {
            match map.get(k) {
                Some(Json::String(s)) => vec![s.clone()],
                Some(Json::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            }
        };
        for k in ["no_log", "serial"] {
            if map.get(k).is_some_and(|v| !v.is_boolean()) {
                doc.error(&format!("{field}.{k}"), format!("`{k}` is true or false"));
            }
        }
        let line = doc.pos.locate(&field).map(|l| l.line).unwrap_or(0);
        index.push(i);
        tasks.push(Task {
            id: String::new(),
            name: name.clone(),
            role: String::new(),
            module,
            params,
            when: map.get("when").and_then(|w| match w {
                Json::String(s) => Some(s.clone()),
                Json::Bool(b) => Some(b.to_string()),
                _ => None,
            }),
            register: map
                .get("register")
                .and_then(Json::as_str)
                .map(str::to_string),
            no_log: map.get("no_log").and_then(Json::as_bool).unwrap_or(false),
            wait_for: str_list("wait_for"),
            wait_for_at: doc.pos.locate(&format!("{field}.wait_for")),
            timeout: map.get("timeout").and_then(Json::as_u64),
            loop_: map.get("loop").cloned(),
            retries: map.get("retries").and_then(Json::as_u64).unwrap_or(0) as u32,
            delay: map.get("delay").and_then(Json::as_u64).unwrap_or(5),
            serial: map.get("serial").and_then(Json::as_bool).unwrap_or(false),
            source: format!("{}:{}", tasks_path.display(), line),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for (t, &i) in tasks.iter_mut().zip(&index) {
        t.role = name.to_string();
        t.id = format!("{name}/{}", t.name);
        if !seen.insert(t.name.clone()) {
            doc.error(
                &format!("[{i}].name"),
                format!("two tasks in role {name} are named {:?}", t.name),
            );
        }
    }
    let defaults_path = dir.join("defaults.yaml");
    let defaults = if defaults_path.is_file() {
        let mut d = parse_yaml(&defaults_path, &read(&defaults_path)?)?;
        let v = d.value.clone();
        let out = if v.is_null() {
            Some(Default::default())
        } else {
            d.section("", &v)
        };
        // The secrets a role asks gantry for: each a name, or {name, kind}.
        if let Some(list) = v.get("gantry_secrets") {
            match list.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if crate::playbook::secret_entry(item).is_none() {
                            d.error(
                                &format!("gantry_secrets[{i}]"),
                                "expected a name, or {name: N, kind: password | kubeadm-token | certificate-key}".into(),
                            );
                        }
                    }
                }
                None => d.error("gantry_secrets", "expected a list of secret names".into()),
            }
        }
        doc.diags.extend(d.diags);
        out.unwrap_or_default()
    } else {
        Default::default()
    };
    let templates = read_dir_files(&dir.join("templates"))?;
    let files = read_dir_files(&dir.join("files"))?;
    // Templates must compile, so a typo is found offline.
    for (t, src) in &templates {
        if let Err(e) = crate::plan::template::check_syntax(src) {
            doc.diags.push(Diagnostic {
                severity: Severity::Error,
                location: Some(Location {
                    file: dir.join("templates").join(t),
                    line: e.1,
                    col: 1,
                }),
                field: String::new(),
                message: e.0,
            });
        }
    }
    for (t, &i) in tasks.iter().zip(&index) {
        for (f, s) in crate::plan::template::strings_in(&t.params, &format!("[{i}].{}", t.module))
            .into_iter()
            .chain(
                t.when
                    .iter()
                    .map(|w| (format!("[{i}].when"), format!("{{{{ {w} }}}}"))),
            )
        {
            if let Err(e) = crate::plan::template::check_syntax(&s) {
                doc.error(&f, e.0);
            }
        }
        check_module(&mut doc, t, &format!("[{i}]"), &dir, &templates, &files);
    }
    Ok((
        Role {
            name: name.to_string(),
            dir,
            tasks: tasks.into_iter().map(std::sync::Arc::new).collect(),
            defaults,
            templates,
            files,
        },
        doc.diags,
    ))
}

/// Load a bundle's manifest and check it (`Manifest::check`): every
/// problem at once, each at its line. The positions come back too, for
/// `bundle::verify` to point at the artifact a file belongs to.
pub fn load_manifest(path: &Path) -> Result<(crate::bundle::Manifest, Positions)> {
    let text = read(path)?;
    let mut doc = parse_yaml(path, &text)?;
    let value = doc.value.clone();
    let Some(m) = doc.section::<crate::bundle::Manifest>("", &value) else {
        return Err(Error::Invalid(doc.diags));
    };
    for d in m.check() {
        doc.error(&d.field, d.message);
    }
    if doc.diags.is_empty() {
        Ok((m, doc.pos))
    } else {
        Err(Error::Invalid(doc.diags))
    }
}

/// Load the list of artifacts `bundle fetch --list` downloads (as `bundle
/// list --yaml` prints it) and check it (`WantedList::check`): every
/// problem at once, each at its line.
pub fn load_wanted(path: &Path) -> Result<crate::bundle::wanted::WantedList> {
    let text = read(path)?;
    let mut doc = parse_yaml(path, &text)?;
    let value = doc.value.clone();
    let Some(list) = doc.section::<crate::bundle::wanted::WantedList>("", &value) else {
        return Err(Error::Invalid(doc.diags));
    };
    for d in list.check() {
        doc.error(&d.field, d.message);
    }
    if doc.diags.is_empty() {
        Ok(list)
    } else {
        Err(Error::Invalid(doc.diags))
    }
}

/// Any value as YAML, for what gantry prints or writes for people to read.
pub fn to_yaml<T: serde::Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).expect("plain data serializes")
}

/// Write a bundle's manifest: a temp file beside it, synced, renamed into
/// place, so a reader sees the old manifest or the new, never half.
pub fn write_manifest(path: &Path, m: &crate::bundle::Manifest) -> Result<()> {
    let tmp = path.with_file_name(format!(".{}.gantry-tmp", crate::bundle::MANIFEST));
    let text = format!(
        "# Written by gantry bundle fetch: every artifact's size and sha256 as it arrived.\n{}",
        to_yaml(m)
    );
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(path, e))
}

/// A scratch directory of this process, for the fuzz targets (`fuzz/`).
fn fuzz_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gantry-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(d.join("roles/r")).expect("a scratch directory");
    d
}

/// Fuzz target (`fuzz/`): any bytes as an inventory. Loading may fail; it
/// must not panic.
#[doc(hidden)]
pub fn fuzz_inventory(data: &[u8]) {
    let p = fuzz_dir().join("inventory.yaml");
    std::fs::write(&p, data).expect("scratch write");
    let _ = load_inventory(&p, |_| Default::default());
}

/// Fuzz target (`fuzz/`): any bytes as a role, its tasks.yaml up to the
/// first 0xff byte, its defaults.yaml after it.
#[doc(hidden)]
pub fn fuzz_role(data: &[u8]) {
    let dir = fuzz_dir().join("roles");
    let (tasks, defaults) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(dir.join("r/tasks.yaml"), tasks).expect("scratch write");
    std::fs::write(dir.join("r/defaults.yaml"), defaults).expect("scratch write");
    let _ = load_role(&dir, "r");
}
