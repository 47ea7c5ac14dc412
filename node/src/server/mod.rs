//! The node runtime: `fiberlb serve`. Thin by design (config → build → spawn → signal →
//! drain): it opens the store, makes sure a bootstrap admin credential exists, and serves
//! the gRPC API and the admin HTTP endpoints until SIGTERM/SIGINT.

mod admin;
mod bgp;
mod bootstrap;
mod cluster;
mod dataplane;
mod grpc;
mod grpc_metrics;
mod logging;
mod metrics_help;
mod notify;
mod runtime;
mod status;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fiberlb_api::store::{ConfigStore, MemoryStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::settings::{ServeArgs, Settings, StorageBackend};
use crate::store::{EmbeddedStore, EtcdOptions, EtcdStore};

pub use runtime::NodeRuntime;

/// How often drained backends past their deadline are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(2);

/// Runs a node until it is told to stop. `args` are the command-line settings, kept so
/// that SIGHUP can re-read the configuration with the same precedence.
pub async fn run(settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    let log = logging::init(&settings.logging)?;
    let access_log = crate::access_log::Target::parse(&settings.logging.access_log);
    crate::access_log::init(&access_log).context("logging.access_log")?;
    // Handlers first: SIGHUP's default action would kill a node that printed "ready" but
    // had not installed them yet.
    let signals = Signals::install()?;
    // Exactly one rustls provider, installed before anything builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // [server.tls] files are checked before anything starts: a bad one names itself.
    let grpc_server = tls::grpc_server(&settings.server.tls)?;

    let store = open_store(&settings).await?;
    bootstrap::ensure_admin(&store, &settings).await?;

    let metrics = metrics_help::with_buckets(metrics_exporter_prometheus::PrometheusBuilder::new())
        .context("configuring metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    metrics_help::describe();

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
    let gossip_stop = tokio_util::sync::CancellationToken::new();
    if let Some(g) = cluster::start(&settings, grpc_addr, gossip_stop.clone()).await? {
        runtime.attach_gossip(g);
    }
    // The data plane's threads; they stop when the data plane is dropped, after the drain.
    let workers =
        crate::proxy::Workers::start(settings.proxy.worker_threads, crate::alloc_trim::on_park)
            .context("starting the data-plane worker threads")?;
    for worker in workers.handles() {
        worker.spawn(crate::alloc_trim::collect_pending());
    }
    let data_plane = dataplane::start(
        &settings,
        store.clone(),
        runtime.clone(),
        Arc::new(workers),
        stop_rx.clone(),
    );
    let anycast = bgp::start(&settings, runtime.clone()).await?;

    // The admin server outlives the drain, so /ready answers 503 while connections finish.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin_auth = settings.admin.require_auth.then(|| {
        fiberlb_api::auth::Authenticator::new(fiberlb_api::repo::Repo::new(store.clone()))
    });
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin::Admin {
            runtime: runtime.clone(),
            metrics,
            auth: admin_auth,
        },
        admin_stop_rx,
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

    notify::notify("READY=1");

    let mut current = settings;
    signals
        .wait_for_stop(&args, &log, &data_plane, &mut current)
        .await;
    tracing::info!("shutting down");
    notify::notify("STOPPING=1");
    // BGP: freeze announcements before turning unready, then GRACEFUL_SHUTDOWN, wait,
    // withdraw: routers move clients away while the listeners still accept.
    let anycast = anycast.map(bgp::Anycast::freeze);
    runtime.set_ready(false);
    let vips = match anycast {
        Some(a) => a.withdraw(current.bgp.graceful_shutdown_wait()).await,
        None => None,
    };
    let _ = stop_tx.send(true);
    let grace = current.proxy.drain_grace();
    data_plane.drain(grace).await;
    if let Some(v) = vips {
        v.release().await;
    }
    if tokio::time::timeout(grace, grpc).await.is_err() {
        tracing::warn!(?grace, "gRPC calls still running after the grace period");
    }
    gossip_stop.cancel();
    let _ = admin_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
    crate::access_log::flush(Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(())
}

/// The signals a node reacts to.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// Waits for SIGTERM or SIGINT, handling SIGHUP (configuration reload) meanwhile.
    async fn wait_for_stop(
        mut self,
        args: &ServeArgs,
        log: &logging::LogHandle,
        data_plane: &dataplane::DataPlane,
        current: &mut Settings,
    ) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    notify::reloading();
                    crate::access_log::reopen();
                    reload(args, log, data_plane, current);
                    notify::notify("READY=1");
                }
            }
        }
    }
}

/// Re-reads the configuration. An invalid file is rejected and the old settings stay.
/// What can change live is applied: the log level, the `[proxy]` timeouts and limits (to
/// connections accepted from now on; `drain_grace_seconds` to the next shutdown) and the
/// `[health_check]` and `[circuit_breaker]` defaults. Other changes are reported as
/// needing a restart.
fn reload(
    args: &ServeArgs,
    log: &logging::LogHandle,
    data_plane: &dataplane::DataPlane,
    current: &mut Settings,
) {
    let new = match crate::settings::load(args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload rejected; keeping the running configuration");
            return;
        }
    };
    if let Err(e) = log.set_level(&new.logging.level) {
        tracing::error!(error = %e, "configuration reload rejected; keeping the running configuration");
        return;
    }
    let proxy = current.proxy.changes(&new.proxy);
    let mut applied: Vec<&str> = Vec::new();
    if current.logging.level != new.logging.level {
        applied.push("logging.level");
    }
    data_plane.apply_proxy(&new.proxy);
    applied.extend(&proxy.live);
    if data_plane.apply_health_defaults(&new.health_check) {
        applied.push("health_check");
    }
    if data_plane.apply_circuit_defaults(&new.circuit_breaker) {
        applied.push("circuit_breaker");
    }
    let mut needs_restart: Vec<&str> = [
        ("server", current.server != new.server),
        ("storage", current.storage != new.storage),
        ("cluster", current.cluster != new.cluster),
        ("bgp", current.bgp != new.bgp),
        ("admin", current.admin != new.admin),
        ("iam", current.iam != new.iam),
        ("plasmavmc", current.plasmavmc != new.plasmavmc),
        ("flashdns", current.flashdns != new.flashdns),
        (
            "logging.format",
            current.logging.format != new.logging.format,
        ),
        // The file is reopened on SIGHUP (rotation), but a new path needs a restart.
        (
            "logging.access_log",
            current.logging.access_log != new.logging.access_log,
        ),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    needs_restart.extend(&proxy.restart);
    if !needs_restart.is_empty() {
        tracing::warn!(settings = ?needs_restart, "these settings changed but take effect only after a restart");
    }
    // The running settings keep the old values of what was not applied, so a later reload
    // still reports them as pending a restart.
    let mut kept = current.clone();
    kept.logging.level = new.logging.level.clone();
    kept.health_check = new.health_check.clone();
    kept.circuit_breaker = new.circuit_breaker.clone();
    kept.proxy = current.proxy.with_live_from(&new.proxy);
    *current = kept;
    tracing::info!(applied = ?applied, level = %current.logging.level, "configuration reloaded");
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn ConfigStore>> {
    Ok(match settings.storage.backend {
        StorageBackend::Embedded => {
            let dir = &settings.storage.data_dir;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data dir {}", dir.display()))?;
            let path = dir.join("fiberlb.redb");
            Arc::new(
                EmbeddedStore::open(&path)
                    .with_context(|| format!("opening the store {}", path.display()))?,
            )
        }
        StorageBackend::Memory => {
            tracing::warn!(
                "storage.backend = memory: configuration is lost when the process exits"
            );
            Arc::new(MemoryStore::new())
        }
        StorageBackend::Chainfire => {
            let s = &settings.storage;
            let password = match &s.chainfire_password_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| {
                            format!("storage.chainfire_password_file {}", p.display())
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let ca_pem = match &s.chainfire_ca_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("storage.chainfire_ca_file {}", p.display()))?,
                ),
                None => None,
            };
            let opts = EtcdOptions {
                endpoints: s.chainfire_endpoints.clone(),
                user: s
                    .chainfire_username
                    .clone()
                    .map(|u| (u, password.unwrap_or_default())),
                ca_pem,
            };
            let store = EtcdStore::connect(&opts).await.with_context(|| {
                format!(
                    "connecting to the store at {}",
                    s.chainfire_endpoints.join(",")
                )
            })?;
            Arc::new(store)
        }
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
