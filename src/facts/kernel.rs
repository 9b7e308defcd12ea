//! Kernel state that modules and checks both read: live sysctl values and
//! loaded modules. One snippet and one parser each, so the `sysctl` module
//! and the sysctl check cannot read /proc/sys two ways.

use crate::remote::script::quote;

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Every key's value in one process: `grep -H` prints each line of each
/// file as "PATH:VALUE", and nothing for a key that does not exist. Not the
/// shell's `read`: it takes a byte at a time, and a numeric /proc/sys file
/// answers only its first byte to that. Not a `cat` per key: a process
/// each (the tuning table has a dozen keys).
pub fn sysctl_snippet<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<String, String> {
    let paths = keys
        .into_iter()
        .map(|k| quote(&sysctl_path(k)))
        .collect::<Result<Vec<_>, _>>()?;
    if paths.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        "grep -H '' -- {} 2>/dev/null; true\n",
        paths.join(" ")
    ))
}

/// Each key's live value (None: no such key), from `sysctl_snippet`'s
/// output, in the order of `keys`.
pub fn sysctl_values<'a>(
    out: &str,
    keys: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'a str, Option<String>)> {
    keys.into_iter()
        .map(|k| {
            let prefix = format!("{}:", sysctl_path(k));
            let lines: Vec<&str> = out
                .lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .collect();
            (k, (!lines.is_empty()).then(|| lines.join("\n")))
        })
        .collect()
}

/// Whether a kernel module is loaded: succeeds when it is.
pub fn module_test(name: &str) -> Result<String, String> {
    Ok(format!(
        "test -d {}",
        quote(&format!("/sys/module/{}", name.replace('-', "_")))?
    ))
}

/// One line per module: its name, where it is loaded.
pub fn modules_snippet<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<String, String> {
    let mut s = String::new();
    for n in names {
        s.push_str(&format!("{} && echo {}\n", module_test(n)?, quote(n)?));
    }
    Ok(s)
}

/// The loaded modules, from `modules_snippet`'s output.
pub fn modules_loaded(out: &str) -> Vec<String> {
    out.lines().map(str::to_string).collect()
}
