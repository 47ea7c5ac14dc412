//! The active checker: one probe loop per checked backend, kept in step with the
//! configuration snapshot.
//!
//! On every snapshot (and every change of the `[health_check]` or `[circuit_breaker]`
//! defaults) the supervisor
//! resolves each pool's [`Policy`] into its backends' state, then diffs the probes it runs
//! against the probes the snapshot wants: a probe whose target (check, timings, address)
//! is unchanged keeps running untouched, a changed one restarts, a removed one stops.
//!
//! Backend verdicts around check changes:
//! - a backend added to a pool with a check starts unknown (no traffic) until a probe
//!   passes;
//! - when a check is added to a pool whose backends were already serving, they keep
//!   serving (marked healthy) until the probes say otherwise, instead of all going dark
//!   for one interval;
//! - in a pool without an active check the verdict is always unknown (which serves), so
//!   removing a check re-admits backends it had marked down.
//!
//! In a fleet only the backends the [`ProbeShard`]'s assignment gives this node get a probe
//! loop; a change of membership reconciles at once, starting the loops of backends taken
//! over from a dead prober and stopping those handed to a new member.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::HeaderValue;
use fiberlb_api::model::{now_ms, BackendAddress, CheckKind};
use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::time::MissedTickBehavior;

use super::dns::DnsClients;
use super::http::HttpProbe;
use super::policy::{Policy, PolicyDefaults, Timings};
use super::tls::TlsClients;
use super::{grpc, http, metrics, mono_ms, tcp, CheckError};
use crate::fleet::{Assignment, ProbeShard};
use crate::resolve::Resolver;
use crate::settings::HealthCheckSettings;
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::state::{BackendState, Verdict};

/// How often the health gauges are refreshed between snapshot changes.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);

/// Where the `[health_check]` and `[circuit_breaker]` defaults come from: fixed at start,
/// or a watch the node updates on SIGHUP (then intervals, thresholds, jitter, the
/// concurrency cap and the breakers' unset fields follow).
pub struct Defaults {
    rx: watch::Receiver<PolicyDefaults>,
    // Keeps a fixed source's channel open, so `changed()` pends instead of failing.
    _fixed: Option<watch::Sender<PolicyDefaults>>,
}

impl From<PolicyDefaults> for Defaults {
    fn from(s: PolicyDefaults) -> Self {
        let (tx, rx) = watch::channel(s);
        Self {
            rx,
            _fixed: Some(tx),
        }
    }
}

impl From<watch::Receiver<PolicyDefaults>> for Defaults {
    fn from(rx: watch::Receiver<PolicyDefaults>) -> Self {
        Self { rx, _fixed: None }
    }
}

/// Runs the active checker until `stop` turns true. `dns_addr` is `[flashdns] dns_addr`,
/// the server DNS checks ask (see the `dns` module for the fallback). `shard` says which
/// backends this node probes ([`ProbeShard::local`]: all of them).
pub async fn run(
    cell: Arc<SnapshotCell>,
    resolver: Resolver,
    defaults: impl Into<Defaults>,
    dns_addr: Option<SocketAddr>,
    mut shard: ProbeShard,
    mut stop: watch::Receiver<bool>,
) {
    let mut defaults = defaults.into();
    let d = defaults.rx.borrow_and_update().clone();
    let mut sup = Supervisor::new(
        resolver,
        dns_addr,
        &d.health_check,
        user_agent(&shard.peek()),
    );
    let mut changed = cell.subscribe();
    let mut gauges = tokio::time::interval(GAUGE_REFRESH);
    gauges.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut published = metrics::Published::default();
    let mut shard_open = true;
    loop {
        let snapshot = cell.load();
        let d = defaults.rx.borrow_and_update().clone();
        sup.shared.apply_defaults(&d.health_check);
        sup.reconcile(&snapshot, &d, &shard.current());
        shard.set_owned(sup.probes.len());
        metrics::publish(&snapshot, &mut published);
        loop {
            tokio::select! {
                r = changed.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
                r = defaults.rx.changed() => {
                    if r.is_err() {
                        // The node dropped its settings watch: keep the last defaults.
                        defaults = Defaults::from(d.clone());
                    }
                    break;
                }
                open = shard.changed(), if shard_open => {
                    // Closed at shutdown: the last assignment stays.
                    shard_open = open;
                    if open {
                        break;
                    }
                }
                _ = gauges.tick() => metrics::publish(&cell.load(), &mut published),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// The User-Agent of HTTP(S) checks; in a fleet it names the probing node, so a backend's
/// logs show which members probe it.
fn user_agent(a: &Assignment) -> HeaderValue {
    const BASE: &str = concat!("fiberlb-health-check/", env!("CARGO_PKG_VERSION"));
    a.node_id()
        .and_then(|id| HeaderValue::from_str(&format!("{BASE} ({id})")).ok())
        .unwrap_or_else(|| HeaderValue::from_static(BASE))
}

/// What probes share.
struct Shared {
    resolver: Resolver,
    dns_addr: Option<SocketAddr>,
    dns: DnsClients,
    tls: Option<TlsClients>,
    permits: Arc<Semaphore>,
    permit_count: AtomicUsize,
    jitter_percent: AtomicU32,
    user_agent: HeaderValue,
}

impl Shared {
    fn apply_defaults(&self, d: &HealthCheckSettings) {
        self.jitter_percent
            .store(d.check_jitter_percent.min(100), Ordering::Relaxed);
        let want = d.max_concurrent_checks.max(1);
        let have = self.permit_count.swap(want, Ordering::Relaxed);
        if want > have {
            self.permits.add_permits(want - have);
        } else if want < have {
            // Only idle permits can be forgotten; with probes in flight the cap shrinks
            // as far as it can now and the count says what it really is.
            let forgotten = self.permits.forget_permits(have - want);
            self.permit_count.store(have - forgotten, Ordering::Relaxed);
        }
    }
}

/// One backend's probe: what is checked, where, how often.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    check: CheckKind,
    timings: Timings,
    address: BackendAddress,
    port: u16,
}

/// A running probe loop; dropping it stops the loop.
pub(super) struct Probe {
    target: Target,
    /// The loop's task.
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the previous snapshot had, for the "check added to a serving pool" rule.
struct Previous {
    checked_pools: HashSet<String>,
    backends: HashSet<String>,
}

/// Owns the probe loops.
pub(super) struct Supervisor {
    shared: Arc<Shared>,
    /// Running probes by backend id.
    pub(super) probes: HashMap<String, Probe>,
    previous: Option<Previous>,
}

impl Supervisor {
    pub(super) fn new(
        resolver: Resolver,
        dns_addr: Option<SocketAddr>,
        d: &HealthCheckSettings,
        user_agent: HeaderValue,
    ) -> Self {
        let shared = Arc::new(Shared {
            resolver,
            dns_addr,
            dns: DnsClients::default(),
            tls: TlsClients::new(),
            permits: Arc::new(Semaphore::new(d.max_concurrent_checks.max(1))),
            permit_count: AtomicUsize::new(d.max_concurrent_checks.max(1)),
            jitter_percent: AtomicU32::new(d.check_jitter_percent.min(100)),
            user_agent,
        });
        Self {
            shared,
            probes: HashMap::new(),
            previous: None,
        }
    }

    /// Brings the probes and the backends' policies in line with `snapshot`, probing only
    /// the backends `assignment` gives this node.
    pub(super) fn reconcile(
        &mut self,
        snapshot: &Snapshot,
        d: &PolicyDefaults,
        assignment: &Assignment,
    ) {
        let mut wanted: HashMap<&str, (Target, &Arc<BackendState>)> = HashMap::new();
        let mut checked_pools = HashSet::new();
        let mut backends = HashSet::new();
        for plan in snapshot.pools.values() {
            let policy = Arc::new(Policy::for_pool(&plan.pool, d));
            let check = plan.pool.health_check.as_ref().filter(|h| h.enabled);
            for (b, st) in plan.backends.iter().zip(&plan.states) {
                st.set_policy(policy.clone());
                backends.insert(b.id.clone());
                let (Some(check), Some(timings)) = (check, policy.active) else {
                    reset_unchecked(st);
                    continue;
                };
                // On every node, prober or not: a non-prober routes on its own verdict
                // until the probers have reported.
                if self.was_serving_unchecked(&plan.pool.id, &b.id)
                    && st.own_verdict() == Verdict::Unknown
                {
                    st.set_verdict(Verdict::Healthy);
                }
                if !assignment.probes_here(&b.id) {
                    continue;
                }
                let target = Target {
                    check: check.kind.clone(),
                    timings,
                    address: b.address.clone(),
                    port: b.port,
                };
                wanted.insert(b.id.as_str(), (target, st));
            }
            if check.is_some() {
                checked_pools.insert(plan.pool.id.clone());
            }
        }
        self.probes
            .retain(|id, p| wanted.get(id.as_str()).is_some_and(|(t, _)| *t == p.target));
        for (id, (target, st)) in wanted {
            if self.probes.contains_key(id) {
                continue;
            }
            let task = tokio::spawn(probe_loop(target.clone(), st.clone(), self.shared.clone()));
            self.probes.insert(id.to_string(), Probe { target, task });
        }
        let servers: HashSet<SocketAddr> = self
            .probes
            .values()
            .filter_map(|p| ip_target(&p.target))
            .collect();
        self.shared
            .dns
            .retain(|s| Some(*s) == self.shared.dns_addr || servers.contains(s));
        self.previous = Some(Previous {
            checked_pools,
            backends,
        });
    }

    fn was_serving_unchecked(&self, pool: &str, backend: &str) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| !p.checked_pools.contains(pool) && p.backends.contains(backend))
    }
}

/// In a pool without an active check nothing but passive health decides.
fn reset_unchecked(st: &BackendState) {
    if st.own_verdict() != Verdict::Unknown {
        let mut d = st.details();
        d.reset_counts();
        st.set_verdict(Verdict::Unknown);
    }
}

fn ip_target(t: &Target) -> Option<SocketAddr> {
    match t.address {
        BackendAddress::Ip(ip) => Some(SocketAddr::new(ip, t.port)),
        _ => None,
    }
}

async fn probe_loop(t: Target, st: Arc<BackendState>, sh: Arc<Shared>) {
    let mut tick = tokio::time::interval(t.timings.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let kind = kind_name(&t.check);
    loop {
        tick.tick().await;
        let pct = u64::from(sh.jitter_percent.load(Ordering::Relaxed));
        let max_ms = t.timings.interval.as_millis() as u64 * pct / 100;
        if max_ms > 0 {
            let ms = rand::rng().random_range(0..=max_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let Ok(permit) = sh.permits.acquire().await else {
            return;
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(t.timings.timeout, probe(&t, &sh)).await {
            Ok(r) => r,
            Err(_) => Err(CheckError::Timeout(t.timings.timeout)),
        };
        drop(permit);
        metrics::record_check(kind, result.is_ok(), started.elapsed());
        apply(&st, &t.timings, result);
    }
}

/// Applies a probe result to the backend's verdict and details.
pub(super) fn apply(st: &BackendState, t: &Timings, result: Result<(), CheckError>) {
    let ok = result.is_ok();
    let error = result.as_ref().err().map(ToString::to_string);
    let (before, after) = {
        let mut d = st.details();
        let before = st.own_verdict();
        let after = d.apply(
            before,
            result.map_err(|e| e.to_string()),
            now_ms(),
            t.healthy_threshold,
            t.unhealthy_threshold,
        );
        st.set_verdict(after);
        (before, after)
    };
    if ok && st.passive().readmit(mono_ms()) {
        tracing::info!(backend = %st.id(), "active check passed; passive ejection ended");
    }
    match (before, after) {
        (b, a) if b == a => {
            if let Some(e) = error {
                tracing::debug!(backend = %st.id(), error = %e, "health check failed");
            }
        }
        (_, Verdict::Unhealthy) => {
            tracing::warn!(backend = %st.id(), error = error.as_deref().unwrap_or(""), "backend unhealthy")
        }
        (_, a) => tracing::info!(backend = %st.id(), verdict = ?a, "backend health changed"),
    }
}

fn kind_name(k: &CheckKind) -> &'static str {
    match k {
        CheckKind::Tcp => "tcp",
        CheckKind::Http { .. } => "http",
        CheckKind::Https { .. } => "https",
        CheckKind::Dns { .. } => "dns",
        CheckKind::Grpc { .. } => "grpc",
    }
}

/// The first address of the backend (resolving a name if needed).
async fn backend_addr(t: &Target, sh: &Shared) -> Result<SocketAddr, CheckError> {
    let addrs = sh
        .resolver
        .resolve_now(&t.address, t.port)
        .await
        .map_err(|e| CheckError::Resolve(e.to_string()))?;
    addrs
        .first()
        .copied()
        .ok_or_else(|| CheckError::Resolve(format!("{} resolved to nothing", t.address)))
}

/// The Host header a backend gets by default: its configured address, with the port
/// unless it is the scheme's default.
fn default_host(t: &Target, addr: SocketAddr, tls: bool) -> String {
    let host = match &t.address {
        BackendAddress::Hostname(h) => h.clone(),
        BackendAddress::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        BackendAddress::Ip(ip) => ip.to_string(),
        BackendAddress::VmId(_) => match addr {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        },
    };
    if t.port == if tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{}", t.port)
    }
}

async fn probe(t: &Target, sh: &Shared) -> Result<(), CheckError> {
    match &t.check {
        CheckKind::Dns {
            hostname,
            record_type,
            expected_address,
        } => {
            let server = match sh.dns_addr {
                Some(a) => a,
                None => backend_addr(t, sh).await?,
            };
            sh.dns
                .check(
                    server,
                    hostname,
                    *record_type,
                    *expected_address,
                    t.timings.timeout,
                )
                .await
        }
        CheckKind::Tcp => tcp::check(backend_addr(t, sh).await?).await,
        CheckKind::Http {
            path,
            method,
            expected_codes,
            host_header,
            headers,
        } => {
            let addr = backend_addr(t, sh).await?;
            let p = HttpProbe {
                method: *method,
                path,
                expected_codes,
                host_header: host_header.as_deref(),
                headers,
                user_agent: &sh.user_agent,
            };
            http::check(addr, &default_host(t, addr, false), p, None).await
        }
        CheckKind::Https {
            path,
            method,
            expected_codes,
            host_header,
            headers,
            verify_tls,
        } => {
            let tls = sh
                .tls
                .as_ref()
                .ok_or_else(|| CheckError::Tls("no TLS client configuration".into()))?;
            let cfg = if *verify_tls {
                &tls.verify
            } else {
                &tls.insecure
            };
            let addr = backend_addr(t, sh).await?;
            let p = HttpProbe {
                method: *method,
                path,
                expected_codes,
                host_header: host_header.as_deref(),
                headers,
                user_agent: &sh.user_agent,
            };
            http::check(addr, &default_host(t, addr, true), p, Some(cfg)).await
        }
        CheckKind::Grpc { service } => {
            grpc::check(
                backend_addr(t, sh).await?,
                service.as_deref(),
                t.timings.timeout,
            )
            .await
        }
    }
}
