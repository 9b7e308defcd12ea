//! `gantry init`: a commented inventory to start from, for one of the
//! delivery guide's topologies. The examples in `inventory/` are the ones
//! validated by the tests; this writes them with a header that says what to
//! change and what to run next.

use std::io::Write;
use std::path::Path;

use crate::cli::Topology;
use crate::error::{Error, Result};

const SINGLE: &str = include_str!("../../inventory/single-master.yaml");
const HA: &str = include_str!("../../inventory/ha-3-masters.yaml");

/// The topology's name as `--topology` spells it.
fn name(topology: Topology) -> String {
    clap::ValueEnum::to_possible_value(&topology)
        .expect("every topology is a value of --topology")
        .get_name()
        .to_string()
}

/// The inventory `gantry init` writes for a topology.
pub fn inventory_text(topology: Topology) -> String {
    let body = match topology {
        Topology::Single => SINGLE,
        Topology::Ha => HA,
    };
    let name = name(topology);
    format!(
        "# Written by `gantry init --topology {name}`. Replace the cluster's name,\n\
         # every address (and the VIP), the networks and the SSH access with yours,\n\
         # then check it without touching a host:\n\
         #   gantry validate -i inventory.yaml\n\
         #   gantry plan -i inventory.yaml -p cluster\n\
         # Offline hosts install from a bundle: `gantry bundle list -i inventory.yaml`\n\
         # says what it holds, `gantry bundle fetch` fills it; then name its directory\n\
         # here (relative to this file):\n\
         # bundle: bundle/\n\
         #\n\
         {body}"
    )
}

pub fn init(topology: Topology, output: &Path) -> Result<i32> {
    let text = inventory_text(topology);
    // create_new: an existing file (or a link planted where it goes) is
    // never overwritten.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(format!(
                    "{} exists: gantry init never overwrites a file; name another with -o",
                    output.display()
                ))
            } else {
                Error::io(output, e)
            }
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(output, e))?;
    println!(
        "wrote {} ({} topology): replace the addresses, then `gantry validate -i {}`",
        output.display(),
        name(topology),
        output.display()
    );
    Ok(0)
}
