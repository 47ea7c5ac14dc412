//! The node runtime: `fiberlb serve`. Thin by design (config → build → spawn → signal →
//! drain): it opens the store, makes sure a bootstrap admin credential exists, and serves
//! the gRPC API and the admin HTTP endpoints until SIGTERM/SIGINT.

mod admin;
mod bootstrap;
mod dataplane;
mod grpc;
mod grpc_metrics;
mod logging;
mod runtime;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fiberlb_api::store::{ConfigStore, MemoryStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::settings::{Settings, StorageBackend};
use crate::store::EmbeddedStore;

pub use runtime::NodeRuntime;

/// How often drained backends past their deadline are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(2);

/// Runs a node until it is told to stop.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    logging::init(&settings.logging)?;
    // Exactly one rustls provider, installed before anything builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // [server.tls] files are checked before anything starts: a bad one names itself.
    let grpc_server = tls::grpc_server(&settings.server.tls)?;

    let store = open_store(&settings).await?;
    bootstrap::ensure_admin(&store, &settings).await?;

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;

    let grpc_listener = TcpListener::bind(settings.server.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC API to {}", settings.server.grpc_addr))?;
    let admin_listener = TcpListener::bind(settings.server.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "binding the admin HTTP server to {}",
                settings.server.metrics_addr
            )
        })?;
    let grpc_addr = grpc_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let runtime = Arc::new(NodeRuntime::new(&settings, grpc_addr, admin_addr));
    let (stop_tx, stop_rx) = watch::channel(false);
    let data_plane = dataplane::start(&settings, store.clone(), runtime.clone(), stop_rx.clone());

    let admin = tokio::spawn(admin::serve(
        admin_listener,
        runtime.clone(),
        metrics,
        stop_rx.clone(),
    ));
    let grpc = tokio::spawn(grpc::serve(
        grpc_listener,
        grpc_server,
        store.clone(),
        runtime.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(reap_loop(store.clone(), runtime.clone(), stop_rx.clone()));

    runtime.set_ready(true);
    tracing::info!(%grpc_addr, %admin_addr, store = store.backend_name(), node = %settings.cluster.node_id, "fiberlb node ready");
    // A machine-readable line for scripts and tests that bind port 0.
    println!("fiberlb ready grpc={grpc_addr} admin={admin_addr}");

    wait_for_signal().await;
    tracing::info!("shutting down");
    runtime.set_ready(false);
    let _ = stop_tx.send(true);
    let grace = settings.proxy.drain_grace();
    data_plane.drain(grace).await;
    match tokio::time::timeout(grace, async {
        let _ = grpc.await;
        let _ = admin.await;
    })
    .await
    {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(?grace, "grace period over; exiting with requests in flight"),
    }
    Ok(())
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn ConfigStore>> {
    Ok(match settings.storage.backend {
        StorageBackend::Embedded => {
            let dir = &settings.storage.data_dir;
            std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
            let path = dir.join("fiberlb.redb");
            Arc::new(EmbeddedStore::open(&path).with_context(|| format!("opening the store {}", path.display()))?)
        }
        StorageBackend::Memory => {
            tracing::warn!("storage.backend = memory: configuration is lost when the process exits");
            Arc::new(MemoryStore::new())
        }
        StorageBackend::Chainfire => anyhow::bail!(
            "storage.backend = chainfire: the etcd/ChainFire store is not part of this build yet; use embedded"
        ),
    })
}

async fn reap_loop(
    store: Arc<dyn ConfigStore>,
    runtime: Arc<NodeRuntime>,
    mut stop: watch::Receiver<bool>,
) {
    let repo = fiberlb_api::repo::Repo::new(store);
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match fiberlb_api::service::reap_drained_backends(&repo).await {
            Ok(_) => runtime.set_store_up(true),
            Err(e) => {
                runtime.set_store_up(false);
                tracing::warn!(error = %e, "reaping drained backends failed");
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
