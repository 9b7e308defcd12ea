//! Bastions (jump hosts): a host behind one is reached through a
//! `direct-tcpip` channel of the bastion's SSH connection, in this process
//! (no `ssh` binary, no ProxyCommand). Each hop's host key is checked as
//! strictly as a host's, against its own known_hosts. One connection per
//! bastion serves every host behind it for the whole run; a chain's hops
//! are made in order, each through the one before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use russh::client::Handle;

use super::ssh::{ConnError, HostKeyPolicy, Target, Verifier, handshake};
use crate::inventory::Jump;

type Hop = Arc<Handle<Verifier>>;
/// A chain's connection, or why it could not be made: kept for the run, so
/// two hundred hosts behind a bastion that is down wait for it once.
type Cell = Arc<tokio::sync::OnceCell<Result<Hop, ConnError>>>;

/// The connections made so far, by the chain that leads to them (nearest
/// the controller first, the bastion itself last).
static HOPS: OnceLock<Mutex<HashMap<Vec<Jump>, Cell>>> = OnceLock::new();

/// The connection to the last bastion of `chain`, made (with every hop
/// before it) or found made. A connection that has closed since (the
/// bastion restarted) is made again.
pub(super) async fn last_hop(
    chain: &[Jump],
    policy: HostKeyPolicy,
    connect_timeout: u64,
) -> Result<Hop, ConnError> {
    let cell = |fresh: bool| {
        let mut hops = HOPS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if fresh {
            hops.remove(chain);
        }
        hops.entry(chain.to_vec()).or_default().clone()
    };
    let got = cell(false)
        .get_or_init(|| open(chain, policy, connect_timeout))
        .await
        .clone();
    match got {
        Ok(hop) if hop.is_closed() => cell(true)
            .get_or_init(|| open(chain, policy, connect_timeout))
            .await
            .clone(),
        got => got,
    }
}

/// Connect to the chain's last bastion, through the ones before it.
async fn open(
    chain: &[Jump],
    policy: HostKeyPolicy,
    connect_timeout: u64,
) -> Result<Hop, ConnError> {
    let (bastion, before) = chain.split_last().expect("a chain has a hop");
    let via = match before.is_empty() {
        true => None,
        false => Some(Box::pin(last_hop(before, policy, connect_timeout)).await?),
    };
    let target = Target {
        address: &bastion.address,
        port: bastion.port,
        user: &bastion.user,
        identity_file: bastion.identity_file.as_deref(),
        known_hosts: &bastion.known_hosts,
        password: None,
        connect_timeout,
    };
    handshake(&target, policy, via.as_deref())
        .await
        .map(|(handle, _)| Arc::new(handle))
        .map_err(|e| {
            e.context(&format!(
                "bastion {}@{}:{}",
                bastion.user, bastion.address, bastion.port
            ))
        })
}
