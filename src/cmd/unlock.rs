//! `gantry unlock`: remove the run lock from the selected hosts.

use super::{load, runtime, selected_hosts};
use crate::cli::{Connect, Input};
use crate::error::Result;
use crate::remote::ssh::HostKeyPolicy;

/// `gantry unlock`: remove the run lock from the selected hosts.
pub fn unlock(input: &Input, connect: &Connect) -> Result<i32> {
    let (inv, _) = load(input)?;
    let selected = selected_hosts(&inv, input, connect)?;
    let policy = if connect.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else {
        HostKeyPolicy::Strict
    };
    let rt = runtime()?;
    let mut code = 0;
    rt.block_on(async {
        for &h in &selected {
            let host = &inv.hosts[h];
            match crate::remote::ssh::connect(&inv.ssh_for(host), policy).await {
                Err(e) => {
                    crate::outln!("{}: {e}", host.name);
                    code = 1;
                }
                Ok(conn) => {
                    match crate::remote::lock::force_release(&conn).await {
                        Ok(Some(owner)) => crate::outln!(
                            "{}: removed lock ({})",
                            host.name,
                            crate::ui::out::terminal_safe(&owner)
                        ),
                        Ok(None) => crate::outln!("{}: not locked", host.name),
                        Err(e) => {
                            crate::outln!("{}: {e}", host.name);
                            code = 1;
                        }
                    }
                    conn.close().await;
                }
            }
        }
    });
    Ok(code)
}
