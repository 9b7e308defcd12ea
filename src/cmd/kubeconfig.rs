//! `gantry kubeconfig`: the cluster's admin kubeconfig, read from the first
//! control plane and written to the controller, 0600, atomically.

use std::path::PathBuf;

use super::{load, policy, runtime};
use crate::cli::{Connect, Input};
use crate::error::{Error, Result};

use crate::modules::ADMIN_KUBECONFIG as ADMIN_CONF;

pub fn kubeconfig(input: &Input, connect: &Connect, output: Option<PathBuf>) -> Result<i32> {
    let (inv, _) = load(input)?;
    let Some(first) = inv.first_control_plane() else {
        return Err(Error::Usage(format!(
            "{}: no host has the control-plane role",
            input.inventory.display()
        )));
    };
    let endpoint = inv
        .api_endpoint()
        .expect("a control plane gives an endpoint");
    let out = output.unwrap_or_else(|| {
        input
            .inventory
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("{}.kubeconfig", inv.cluster.name))
    });
    let rt = runtime()?;
    let text = rt.block_on(async {
        let conn = crate::remote::ssh::connect(&inv.ssh_for(first), policy(connect))
            .await
            .map_err(|e| Error::Other(format!("{}: {e}", first.name)))?;
        let got = conn.run(&format!("cat {ADMIN_CONF}"), &[], None).await;
        conn.close().await;
        let got = got.map_err(|e| Error::Other(format!("{}: {e}", first.name)))?;
        if got.rc != 0 {
            // stderr only: stdout would be the credentials.
            return Err(Error::Other(format!(
                "{}: cannot read {ADMIN_CONF} (is the cluster up? `gantry apply -p cluster`): {}",
                first.name,
                got.stderr.trim()
            )));
        }
        Ok(got.stdout)
    })?;
    let server = format!("https://{endpoint}");
    let servers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server: "))
        .collect();
    if servers != [server.as_str()] {
        return Err(Error::Other(format!(
            "{}:{ADMIN_CONF} names the API at {servers:?}, not the control-plane endpoint {server}: not written",
            first.name
        )));
    }
    crate::secrets::write_private(&out, text.as_bytes())?;
    crate::outln!(
        "wrote {} (0600): the cluster's admin credentials, for {server}\n  export KUBECONFIG={}",
        out.display(),
        out.display()
    );
    Ok(0)
}
