//! Kernel state that modules and checks both read: live sysctl values and
//! loaded modules. One snippet and one parser each, so the `sysctl` module
//! and the sysctl check cannot read /proc/sys two ways.

use crate::remote::script::quote;

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// One line per key: "0 VALUE", or "1" where the key does not exist. By
/// `cat`, not the shell's `read`: `read` takes a byte at a time, and a
/// numeric /proc/sys file answers only its first byte to that.
pub fn sysctl_snippet<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<String, String> {
    let mut s = String::new();
    for k in keys {
        s.push_str(&format!(
            "v=$(cat -- {} 2>/dev/null) && printf '0 %s\\n' \"$v\" || echo 1\n",
            quote(&sysctl_path(k))?
        ));
    }
    Ok(s)
}

/// Each key's live value (None: no such key), from `sysctl_snippet`'s
/// output, in the order of `keys`.
pub fn sysctl_values<'a>(
    out: &str,
    keys: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'a str, Option<String>)> {
    let mut lines = out.lines();
    keys.into_iter()
        .map(|k| {
            let v = lines
                .next()
                .and_then(|l| l.strip_prefix("0 "))
                .map(str::to_string);
            (k, v)
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
