//! Task modules, in two pure steps, as pyinfra and k0sctl do it: `probes`
//! names the read-only questions a module asks of a host, and `decide` turns
//! the answers into a [`Decision`] (unchanged with a reason, or the actions
//! that would converge the host, with a diff). Modules never touch a host and
//! know nothing of SSH: only the engine (`exec`) runs probes and actions, and
//! `plan` never runs actions. That makes plan read-only by construction, and
//! every module testable from fixtures.
//!
//! One file per module holds its parameters (a serde struct that refuses
//! unknown keys: the only list of its parameter names), its [`Doc`], its
//! probes and decide side by side, and its tests. Adding a module is one new
//! file plus one line in the registry below; the engine never matches on
//! module kinds.

mod action;
mod cluster;
mod decision;
mod file_edit;
mod params;
mod probe;
mod run;
#[cfg(test)]
mod testing;

pub use action::{Action, Touches};
pub use decision::{Change, Decision};
pub use file_edit::unified_diff;

/// Where kubeadm writes the cluster's admin kubeconfig on a control plane:
/// what modules that ask the API use by default, and `gantry kubeconfig` reads.
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

/// `ADMIN_KUBECONFIG`, as a serde default for a module's `kubeconfig`.
fn admin_kubeconfig() -> String {
    ADMIN_KUBECONFIG.into()
}
pub use params::{Mode, Presence, regex};
pub use probe::{
    Answers, FileState, PROBE_LOCALS, Probe, ProbeOut, Probes, UNIT_SHOW, regular_file,
};
pub use upload::receive_script as upload_script;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

/// A module's documentation, shown by `gantry modules` and the README table.
/// `params` must name exactly the fields of the module's parameter struct (a
/// registry test holds them to it), and `example` is a task that loads and
/// validates (another test).
pub struct Doc {
    pub summary: &'static str,
    /// (name, what it is), in the struct's order.
    pub params: &'static [(&'static str, &'static str)],
    /// One task using the module, as a role's tasks.yaml would hold it.
    pub example: &'static str,
}

/// A role file a module's parameters name, checked to exist at load time.
pub enum RoleFile<'a> {
    /// `templates/NAME`, rendered on the controller.
    Template(&'a str),
    /// `files/NAME`, copied as it is.
    File(&'a str),
}

/// What a module may ask of the controller before the host is read
/// (Ansible's action plugins): render a role template, read a role file.
pub trait Controller {
    fn render_template(&self, name: &str) -> Result<String, String>;
    fn role_file(&self, name: &str) -> Result<String, String>;
    /// A file on the controller (`upload.src`): a relative path is taken
    /// from the inventory's directory.
    fn local_file(&self, path: &str) -> Result<std::path::PathBuf, String>;
}

/// The contract of a module. The struct is the module's parameters.
pub trait Module: DeserializeOwned + Clone + std::fmt::Debug + Into<AnyModule> {
    /// The name tasks use.
    const NAME: &'static str;
    const DOC: Doc;

    /// Checks that need no host (a regexp compiles, an address parses). They
    /// run at `gantry validate` for parameters that hold no template, and
    /// again once the parameters are rendered.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// A role file the parameters name (`template.src`, `copy.src`).
    fn role_file(&self) -> Option<RoleFile<'_>> {
        None
    }

    /// Controller-side work, once the parameters are rendered: a template
    /// is rendered here and becomes a `copy`. Most modules have none.
    fn prepare(self, _cx: &dyn Controller) -> Result<AnyModule, String> {
        Ok(self.into())
    }

    /// The read-only questions, each with a name `decide` reads it by.
    fn probes(&self) -> Result<Probes, String>;

    /// The decision, from the answers to `probes`.
    fn decide(&self, answers: &Answers) -> Result<Decision, String>;

    /// A file, by sha256, that the host holds once this call is done or
    /// found unchanged, with its path there: other hosts may be sent it
    /// from this one (`upload`'s fan-out).
    fn holds(&self) -> Option<(&str, &str)> {
        None
    }
}

/// Typed parameters from a JSON value, errors naming the module and field.
fn typed<T: DeserializeOwned>(module: &str, v: Json) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("{module}: {}", e.into_inner())
        } else {
            format!("{module}.{path}: {}", e.into_inner())
        }
    })
}

/// The registry: one line per module. It makes `AnyModule` (static dispatch,
/// one variant per module), the name table, parse by name, and the dispatch
/// of every method of the contract.
macro_rules! registry {
    ($($file:ident => $ty:ident),* $(,)?) => {
        $(mod $file;)*

        /// A module call with typed parameters.
        #[derive(Debug, Clone)]
        pub enum AnyModule {
            $($ty($file::$ty),)*
        }

        $(impl From<$file::$ty> for AnyModule {
            fn from(m: $file::$ty) -> AnyModule {
                AnyModule::$ty(m)
            }
        })*

        /// Every module's name, in registry order.
        pub const NAMES: &[&str] = &[$(<$file::$ty as Module>::NAME),*];

        /// Every module's name and documentation, in registry order.
        pub fn docs() -> Vec<(&'static str, &'static Doc)> {
            vec![$((<$file::$ty as Module>::NAME, &<$file::$ty as Module>::DOC)),*]
        }

        /// The parameter names a module's struct takes, from the struct itself.
        pub fn fields(module: &str) -> Option<&'static [&'static str]> {
            $(if module == <$file::$ty as Module>::NAME {
                return Some(serde_aux::serde_introspection::serde_introspect::<$file::$ty>());
            })*
            None
        }

        impl AnyModule {
            /// Typed parameters, not yet validated (`validate`).
            pub fn typed(module: &str, params: Json) -> Result<AnyModule, String> {
                $(if module == <$file::$ty as Module>::NAME {
                    return Ok(AnyModule::$ty(typed(module, params)?));
                })*
                Err(format!("unknown module `{module}`"))
            }

            /// Typed and validated parameters from rendered ones.
            pub fn parse(module: &str, params: Json) -> Result<AnyModule, String> {
                let m = AnyModule::typed(module, params)?;
                m.validate()?;
                Ok(m)
            }

            pub fn name(&self) -> &'static str {
                match self {
                    $(AnyModule::$ty(_) => <$file::$ty as Module>::NAME,)*
                }
            }

            pub fn role_file(&self) -> Option<RoleFile<'_>> {
                match self {
                    $(AnyModule::$ty(m) => m.role_file(),)*
                }
            }

            pub fn prepare(self, cx: &dyn Controller) -> Result<AnyModule, String> {
                let m = match self {
                    $(AnyModule::$ty(m) => m.prepare(cx)?,)*
                };
                m.validate()?;
                Ok(m)
            }

            pub fn validate(&self) -> Result<(), String> {
                match self {
                    $(AnyModule::$ty(m) => m.validate(),)*
                }
            }

            pub fn probes(&self) -> Result<Probes, String> {
                match self {
                    $(AnyModule::$ty(m) => m.probes(),)*
                }
            }

            pub fn decide(&self, answers: &Answers) -> Result<Decision, String> {
                match self {
                    $(AnyModule::$ty(m) => m.decide(answers),)*
                }
            }

            pub fn holds(&self) -> Option<(&str, &str)> {
                match self {
                    $(AnyModule::$ty(m) => m.holds(),)*
                }
            }
        }
    };
}

registry! {
    copy => Copy,
    template => Template,
    file => File,
    lineinfile => LineInFile,
    blockinfile => BlockInFile,
    replace => Replace,
    sysctl => Sysctl,
    hostname => Hostname,
    modprobe => Modprobe,
    command => Command,
    shell => Shell,
    service => Service,
    package => Package,
    vip_check => VipCheck,
    upload => Upload,
    image => Image,
    ca_hash => CaHash,
    kubeadm => Kubeadm,
    kubeadm_cluster => KubeadmCluster,
    node_label => NodeLabel,
    kube_object => KubeObject,
    helm => Helm,
}

/// Load-time check of a task's module and parameter names, against the
/// module's own struct.
pub fn check_params(module: &str, params: &Json) -> Result<(), String> {
    let Some(keys) = fields(module) else {
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

/// The module table, as the README shows it (`gantry modules --markdown`).
pub fn markdown_table() -> String {
    let mut s = String::from("| module | parameters | what it does |\n|---|---|---|\n");
    for (name, doc) in docs() {
        let params: Vec<String> = doc.params.iter().map(|(p, _)| format!("`{p}`")).collect();
        s.push_str(&format!(
            "| `{name}` | {} | {} |\n",
            params.join(", "),
            doc.summary
        ));
    }
    s
}

/// One module's page, as `gantry modules NAME` prints it.
pub fn page(name: &str) -> Option<String> {
    let (_, doc) = docs().into_iter().find(|(n, _)| *n == name)?;
    let width = doc.params.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let mut s = format!("{name}: {}\n\nParameters:\n", doc.summary);
    for (p, what) in doc.params {
        s.push_str(&format!("  {p:width$}  {what}\n"));
    }
    s.push_str("\nExample:\n");
    for l in doc.example.lines() {
        s.push_str(&format!("  {l}\n"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each module's documented parameters are its struct's fields, in order.
    #[test]
    fn docs_name_exactly_the_parameters() {
        for (name, doc) in docs() {
            let documented: Vec<&str> = doc.params.iter().map(|(p, _)| *p).collect();
            assert_eq!(documented, fields(name).unwrap(), "{name}");
        }
    }

    /// Each module's documented example is one task that loads and whose
    /// parameters parse and validate.
    #[test]
    fn every_example_loads_and_validates() {
        for (name, doc) in docs() {
            let tasks: Json = yaml(doc.example);
            let task = tasks.as_array().and_then(|a| a.first()).unwrap_or_else(|| {
                panic!(
                    "{name}: the example is a list holding one task: {}",
                    doc.example
                )
            });
            let params = task
                .get(name)
                .unwrap_or_else(|| panic!("{name}: example uses another module"));
            check_params(name, params).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !crate::plan::template::holds_template(params) {
                AnyModule::parse(name, params.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    fn yaml(text: &str) -> Json {
        crate::loader::parse_yaml(std::path::Path::new("example.yaml"), text)
            .map(|d| d.value)
            .unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}
