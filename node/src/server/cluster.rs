//! Joining the fleet's gossip when `[cluster] gossip_addr` is set: membership for
//! `ClusterService.ListMembers` and `GetNodeStatus`, and the channel replicated runtime
//! state will travel on.

use std::net::SocketAddr;

use anyhow::Context;
use fiberlb_gossip::{Gossip, GossipConfig, Keyring, Timing};
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// Starts the gossip driver, or returns `None` with gossip off.
pub async fn start(
    settings: &Settings,
    api_addr: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<Option<Gossip>> {
    let c = &settings.cluster;
    let Some(bind_addr) = c.gossip_addr else {
        return Ok(None);
    };
    let key_file = c
        .key_file
        .as_ref()
        .context("cluster.key_file is required with cluster.gossip_addr")?;
    // During a rotation the previous key still opens datagrams from members that have not
    // switched yet; the primary (`key_file`) is the only one used to seal.
    let previous = c.previous_key_file.as_deref();
    let keys = Keyring::from_files(key_file, previous).with_context(|| match previous {
        Some(p) => format!(
            "cluster.key_file {} / cluster.previous_key_file {}",
            key_file.display(),
            p.display()
        ),
        None => format!("cluster.key_file {}", key_file.display()),
    })?;
    let mut seeds = Vec::new();
    for peer in &c.peers {
        // A seed that does not resolve now is skipped: the others are enough to join, and
        // members learn about each other through gossip.
        match tokio::net::lookup_host(peer.as_str()).await {
            Ok(addrs) => seeds.extend(addrs),
            Err(e) => {
                tracing::warn!(peer, error = %e, "cluster.peers entry does not resolve; skipping")
            }
        }
    }
    let gossip = fiberlb_gossip::start(
        GossipConfig {
            node_id: c.node_id.clone(),
            bind_addr,
            advertise_addr: c.effective_advertise_addr(),
            api_addr,
            seeds,
            keys,
            timing: Timing::lan(),
        },
        stop,
    )
    .await
    .with_context(|| format!("starting gossip on {bind_addr}"))?;
    tracing::info!(addr = %gossip.local_addr(), node = %c.node_id, "gossip started");
    Ok(Some(gossip))
}
