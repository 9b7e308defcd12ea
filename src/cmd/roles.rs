//! `gantry roles`: the roles built into the binary, what each does, and the
//! built-in playbooks that play it.

use crate::error::{Error, Result};

pub fn roles() -> Result<i32> {
    let dir = crate::builtin::dir().map_err(Error::Other)?;
    let mut played: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for pb in crate::builtin::playbooks() {
        let path = dir.join("playbooks").join(format!("{pb}.yaml"));
        let book = crate::loader::load_playbook(&path, &[dir.join("roles")])?;
        for role in book.plays.iter().flat_map(|p| &p.roles) {
            let list = played.entry(role.clone()).or_default();
            if !list.contains(&pb) {
                list.push(pb.clone());
            }
        }
    }
    for (name, about) in crate::builtin::roles() {
        let books = played
            .get(&name)
            .map_or("no playbook".into(), |b| b.join(", "));
        crate::outln!("{name}  ({books})");
        let mut line = String::from("   ");
        for word in about.split_whitespace() {
            if line.len() + word.len() > 88 {
                crate::outln!("{line}");
                line = String::from("   ");
            }
            line.push(' ');
            line.push_str(word);
        }
        crate::outln!("{line}\n");
    }
    crate::outln!(
        "A roles/NAME folder beside the inventory, in the working directory or under --roles-dir\noverrides the built-in role of that name; playbooks/NAME.yaml likewise overrides `-p NAME`."
    );
    Ok(0)
}
