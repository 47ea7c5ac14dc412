//! Anycast: the node's BGP speaker announcing the VIPs it can serve (route health
//! injection), and the VIP pool the API allocates from.
//!
//! A reconcile loop recomputes the wanted VIPs ([`routes::wanted`]) whenever the snapshot
//! changes and every [`POLL`] (health verdicts and readiness have no change signal), puts
//! new VIPs on `lo` before announcing them and takes withdrawn ones off after
//! (`[bgp] manage_vip_addresses`). On SIGTERM the node first [`Anycast::freeze`]s the loop
//! (so turning unready does not withdraw abruptly), then [`Frozen::withdraw`] re-announces
//! with GRACEFUL_SHUTDOWN (RFC 8326), waits `graceful_shutdown_wait_ms`, withdraws, waits
//! for the peers to have the withdrawal (plus [`WITHDRAW_SETTLE`] for their forwarding
//! tables) and closes the sessions with a Cease — all before the listeners close. The VIP
//! addresses go last, after the drain.

mod addresses;
mod routes;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use fiberlb_api::runtime::{AnnouncedVip, BgpSessionInfo, BgpState, BgpView};
use fiberlb_bgp::{PeerConfig, Speaker, SpeakerConfig, State};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use addresses::VipAddresses;
use routes::{RouteStyle, Wanted};

use super::runtime::NodeRuntime;
use crate::settings::{BgpSettings, Settings};

/// How often health and readiness are re-read (they change without a signal).
const POLL: Duration = Duration::from_millis(250);
/// How long a withdrawal may take to reach the peers before the sessions are closed anyway.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(2);
/// After the peers have the withdrawal, the listeners keep accepting this long: a router
/// still has to update its forwarding table (BIRD in the lab: a few ms; a loaded router or
/// its downstream peers: longer) and clients sent there meanwhile must not be refused.
const WITHDRAW_SETTLE: Duration = Duration::from_millis(500);

/// What the API and the status page read: the VIP pool and the speaker's state.
#[derive(Clone)]
pub struct AnycastView {
    vip_pool: Option<ipnet::IpNet>,
    shared: Option<Arc<Shared>>,
}

impl AnycastView {
    /// `[cluster] vip_pool`.
    pub fn vip_pool(&self) -> Option<ipnet::IpNet> {
        self.vip_pool
    }

    /// Sessions and announced VIPs (disabled when `[bgp]` is off).
    pub fn view(&self) -> BgpView {
        let Some(s) = &self.shared else {
            return BgpView::default();
        };
        let c = s.lock();
        let sessions = match &c.speaker {
            Some(sp) => sp.sessions().iter().map(session_info).collect(),
            None => Vec::new(),
        };
        BgpView {
            enabled: true,
            local_asn: s.asn,
            router_id: Some(s.router_id),
            sessions,
            announced: c
                .announced
                .iter()
                .map(|(vip, lb)| AnnouncedVip {
                    vip: *vip,
                    lb_id: lb.clone(),
                    graceful_shutdown: c.graceful,
                })
                .collect(),
        }
    }
}

/// State shared by the loop, the shutdown and the view.
struct Shared {
    asn: u32,
    router_id: std::net::Ipv4Addr,
    style: RouteStyle,
    control: Mutex<Control>,
}

struct Control {
    /// Set by [`Anycast::freeze`]: the loop announces nothing any more.
    frozen: bool,
    /// Taken by the shutdown.
    speaker: Option<Speaker>,
    /// What is announced now (the speaker's route set), VIP → load balancer id.
    announced: Wanted,
    /// Announced with GRACEFUL_SHUTDOWN.
    graceful: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        match self.control.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// The running speaker and its reconcile loop.
pub struct Anycast {
    shared: Arc<Shared>,
    stop_loop: CancellationToken,
    task: JoinHandle<Option<VipAddresses>>,
}

/// Attaches the anycast view to the runtime and, with `[bgp] enabled`, starts the speaker
/// and the loop. Must run after the data plane attached its snapshot.
pub async fn start(
    settings: &Settings,
    runtime: Arc<NodeRuntime>,
) -> anyhow::Result<Option<Anycast>> {
    let vip_pool = settings.cluster.vip_pool_net();
    let b = &settings.bgp;
    if !b.enabled {
        runtime.attach_anycast(AnycastView {
            vip_pool,
            shared: None,
        });
        return Ok(None);
    }
    describe_metrics();
    metrics::gauge!("fiberlb_bgp_routes_announced").set(0.0);
    let config = speaker_config(b)?;
    let addresses = if b.manage_vip_addresses {
        Some(
            VipAddresses::open()
                .await
                .context("bgp.manage_vip_addresses: opening rtnetlink")?,
        )
    } else {
        None
    };
    let speaker = Speaker::start(config.clone())
        .await
        .context("starting the BGP speaker")?;
    if let Some(addr) = speaker.listen_addr() {
        tracing::info!(%addr, "BGP listening");
    }
    let shared = Arc::new(Shared {
        asn: config.asn,
        router_id: config.router_id,
        style: RouteStyle {
            next_hop: b.next_hop,
            communities: b
                .parsed_communities()
                .into_iter()
                .map(|(asn, value)| u32::from(asn) << 16 | u32::from(value))
                .collect(),
        },
        control: Mutex::new(Control {
            frozen: false,
            speaker: Some(speaker),
            announced: Wanted::new(),
            graceful: false,
        }),
    });
    runtime.attach_anycast(AnycastView {
        vip_pool,
        shared: Some(shared.clone()),
    });
    let stop_loop = CancellationToken::new();
    let task = tokio::spawn(reconcile_loop(
        shared.clone(),
        runtime,
        addresses,
        stop_loop.clone(),
    ));
    tracing::info!(asn = config.asn, router_id = %config.router_id, peers = config.peers.len(), "BGP speaker started");
    Ok(Some(Anycast {
        shared,
        stop_loop,
        task,
    }))
}

fn speaker_config(b: &BgpSettings) -> anyhow::Result<SpeakerConfig> {
    let router_id = b
        .effective_router_id()
        .context("bgp.router_id: required (settings validation should have said so)")?;
    let peers = b
        .peers
        .iter()
        .map(|p| {
            let mut pc = PeerConfig::new(p.address, p.asn);
            pc.port = p.port;
            pc.hold_time = p.hold_time;
            pc.passive = p.passive;
            pc.password = p.password.clone();
            pc
        })
        .collect();
    Ok(SpeakerConfig {
        asn: b.asn,
        router_id,
        listen: b.listen,
        peers,
    })
}

impl Anycast {
    /// Stops following health and readiness, keeping the current announcements: called
    /// before the node turns unready on shutdown, so that the withdrawal is graceful.
    pub fn freeze(self) -> Frozen {
        self.shared.lock().frozen = true;
        self.stop_loop.cancel();
        Frozen { inner: self }
    }
}

/// An [`Anycast`] whose loop is stopping; see [`Frozen::withdraw`].
pub struct Frozen {
    inner: Anycast,
}

impl Frozen {
    /// GRACEFUL_SHUTDOWN re-announcement, `wait`, withdrawal, Cease. Returns the VIP
    /// addresses to release once connections have drained.
    pub async fn withdraw(self, wait: Duration) -> Option<VipAddresses> {
        let Anycast { shared, task, .. } = self.inner;
        let addresses = task.await.ok().flatten();
        // Nobody to warn (no session has our routes) or no wait: straight to the withdrawal.
        let graceful = {
            let mut c = shared.lock();
            let marked = !wait.is_zero()
                && !c.announced.is_empty()
                && c.speaker.as_ref().is_some_and(|sp| {
                    any_route_out(sp)
                        && sp
                            .set_routes(shared.style.routes(c.announced.keys(), true))
                            .is_ok()
                });
            c.graceful = marked;
            marked
        };
        if graceful {
            tracing::info!(
                ?wait,
                "BGP: routes re-announced with GRACEFUL_SHUTDOWN; waiting before the withdrawal"
            );
            tokio::time::sleep(wait).await;
        }
        let speaker = {
            let mut c = shared.lock();
            c.announced.clear();
            c.graceful = false;
            c.speaker.take()
        };
        metrics::gauge!("fiberlb_bgp_routes_announced").set(0.0);
        if let Some(sp) = speaker {
            let had_routes = any_route_out(&sp);
            let _ = sp.set_routes(Vec::new());
            let started = Instant::now();
            let all_out = tokio::time::timeout(WITHDRAW_TIMEOUT, async {
                for i in 0..sp.sessions().len() {
                    sp.wait_session(i, |s| {
                        s.state != State::Established || s.routes_announced == 0
                    })
                    .await;
                }
            })
            .await
            .is_ok();
            if all_out {
                tracing::info!(took = ?started.elapsed(), "BGP: routes withdrawn");
            } else {
                tracing::warn!("BGP: withdrawal not confirmed in time; closing the sessions");
            }
            if had_routes {
                tokio::time::sleep(WITHDRAW_SETTLE).await;
            }
            let peers: Vec<String> = sp.sessions().iter().map(|s| s.peer.to_string()).collect();
            sp.shutdown().await;
            for peer in peers {
                metrics::gauge!("fiberlb_bgp_session_up", "peer" => peer).set(0.0);
            }
        }
        addresses
    }
}

/// Whether some established session has our routes (otherwise there is nobody to warn).
fn any_route_out(sp: &Speaker) -> bool {
    sp.sessions()
        .iter()
        .any(|s| s.state == State::Established && s.routes_announced > 0)
}

async fn reconcile_loop(
    shared: Arc<Shared>,
    runtime: Arc<NodeRuntime>,
    mut addresses: Option<VipAddresses>,
    stop: CancellationToken,
) -> Option<VipAddresses> {
    let Some((_, cell)) = runtime.data_plane() else {
        tracing::error!("BGP: no data plane attached; nothing will be announced");
        return addresses;
    };
    let mut changed = cell.subscribe();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return addresses,
            r = changed.changed() => if r.is_err() { return addresses },
            _ = tick.tick() => {}
        }
        let wanted = routes::wanted(&cell.load(), runtime.is_ready());
        let current = shared.lock().announced.clone();
        if wanted != current {
            apply(&shared, &mut addresses, &current, wanted).await;
        }
        publish_metrics(&shared);
    }
}

/// Moves the announcements from `current` to `wanted`: addresses first for new VIPs,
/// then the route set, then addresses off for withdrawn VIPs.
async fn apply(
    shared: &Shared,
    addresses: &mut Option<VipAddresses>,
    current: &Wanted,
    wanted: Wanted,
) {
    if let Some(a) = addresses.as_mut() {
        for ip in wanted.keys().filter(|ip| !current.contains_key(ip)) {
            if let Err(e) = a.add(*ip).await {
                // Announce anyway: the operator may route the VIP another way; the error
                // says what to fix.
                tracing::error!(%ip, error = %e, "could not add VIP to lo");
            }
        }
    }
    {
        let mut c = shared.lock();
        if c.frozen {
            return;
        }
        let routes = shared.style.routes(wanted.keys(), false);
        if let Some(sp) = &c.speaker {
            if let Err(e) = sp.set_routes(routes) {
                tracing::error!(error = %e, "BGP: routes refused");
                return;
            }
        }
        let added: Vec<&IpAddr> = wanted
            .keys()
            .filter(|ip| !current.contains_key(ip))
            .collect();
        let gone: Vec<&IpAddr> = current
            .keys()
            .filter(|ip| !wanted.contains_key(ip))
            .collect();
        tracing::info!(announce = ?added, withdraw = ?gone, "BGP announcements changed");
        c.announced = wanted.clone();
    }
    metrics::gauge!("fiberlb_bgp_routes_announced").set(wanted.len() as f64);
    if let Some(a) = addresses.as_mut() {
        let stale: Vec<IpAddr> = a
            .ours()
            .iter()
            .filter(|ip| !wanted.contains_key(ip))
            .copied()
            .collect();
        for ip in stale {
            if let Err(e) = a.remove(ip).await {
                tracing::warn!(%ip, error = %e, "could not remove VIP from lo");
            }
        }
    }
}

/// Session gauges (the peer set is fixed by the configuration).
fn publish_metrics(shared: &Shared) {
    let c = shared.lock();
    let Some(sp) = &c.speaker else {
        return;
    };
    for s in sp.sessions() {
        let up = if s.state == State::Established {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("fiberlb_bgp_session_up", "peer" => s.peer.to_string()).set(up);
    }
}

fn session_info(s: &fiberlb_bgp::SessionInfo) -> BgpSessionInfo {
    BgpSessionInfo {
        peer: s.peer.to_string(),
        peer_asn: s.peer_asn,
        state: match s.state {
            State::Idle => BgpState::Idle,
            State::Connect => BgpState::Connect,
            State::Active => BgpState::Active,
            State::OpenSent => BgpState::OpenSent,
            State::OpenConfirm => BgpState::OpenConfirm,
            State::Established => BgpState::Established,
        },
        uptime_seconds: s.uptime.map(|u| u.as_secs()).unwrap_or(0),
        routes_announced: u32::try_from(s.routes_announced).unwrap_or(u32::MAX),
        routes_received: u32::try_from(s.routes_received.len()).unwrap_or(u32::MAX),
        last_error: s.last_error.clone(),
    }
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "fiberlb_bgp_session_up",
        "1 while the BGP session with this peer is established, else 0."
    );
    metrics::describe_gauge!(
        "fiberlb_bgp_routes_announced",
        "VIP routes this node announces now."
    );
}
