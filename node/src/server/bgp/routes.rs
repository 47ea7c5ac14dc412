//! Route health injection, the pure part: which VIPs this node should announce given the
//! configuration snapshot, the backends' health and the node's readiness, and the BGP
//! routes that carry them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fiberlb_bgp::{Route, GRACEFUL_SHUTDOWN};
use ipnet::IpNet;

use crate::snapshot::Snapshot;

/// The VIPs to announce, each with the load balancer it belongs to.
pub(super) type Wanted = BTreeMap<IpAddr, String>;

/// A load balancer's VIP is announced while the node is ready and the load balancer is
/// enabled, has a VIP, has at least one enabled listener (something to answer on it) and at
/// least one backend that may take a new connection (enabled, active, healthy in this
/// node's view, circuit not open) in one of its enabled pools.
pub(super) fn wanted(snapshot: &Snapshot, ready: bool) -> Wanted {
    let mut out = Wanted::new();
    if !ready {
        return out;
    }
    for lb in snapshot.lbs.values() {
        let Some(vip) = lb.vip else { continue };
        if !lb.is_enabled() {
            continue;
        }
        let listening = snapshot
            .listeners
            .values()
            .any(|l| l.lb_id == lb.id && l.enabled);
        if !listening {
            continue;
        }
        let serving = snapshot
            .pools
            .values()
            .filter(|p| p.pool.lb_id == lb.id && p.pool.enabled)
            .any(|p| p.eligible().into_iter().any(|ok| ok));
        if serving {
            out.insert(vip, lb.id.clone());
        }
    }
    out
}

/// How announcements look on this node: `[bgp] next_hop` and `[bgp] communities`.
#[derive(Debug, Clone, Default)]
pub(super) struct RouteStyle {
    /// Next hop for announcements of its family; others use the session's local address.
    pub next_hop: Option<IpAddr>,
    /// Communities on every announcement (`asn << 16 | value`).
    pub communities: Vec<u32>,
}

impl RouteStyle {
    /// The host routes (/32, /128) for `vips`, with GRACEFUL_SHUTDOWN added when `graceful`.
    pub(super) fn routes<'a>(
        &self,
        vips: impl IntoIterator<Item = &'a IpAddr>,
        graceful: bool,
    ) -> Vec<Route> {
        vips.into_iter()
            .map(|vip| {
                let prefix = IpNet::from(*vip);
                let next_hop = match (vip, self.next_hop) {
                    (IpAddr::V4(_), Some(h @ IpAddr::V4(_))) => h,
                    (IpAddr::V6(_), Some(h @ IpAddr::V6(_))) => h,
                    (IpAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    (IpAddr::V6(_), _) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                let mut communities = self.communities.clone();
                if graceful && !communities.contains(&GRACEFUL_SHUTDOWN) {
                    communities.push(GRACEFUL_SHUTDOWN);
                }
                Route {
                    prefix,
                    next_hop,
                    communities,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use fiberlb_api::model::{
        Algorithm, Backend, BackendAddress, BackendStatus, CheckKind, HealthCheck, LbStatus,
        Listener, ListenerProtocol, LoadBalancer, Pool, Scope,
    };

    use super::*;
    use crate::snapshot::PoolPlan;
    use crate::state::{RuntimeState, Verdict};

    fn scope() -> Scope {
        Scope {
            org_id: "o".into(),
            project_id: None,
        }
    }

    fn lb(id: &str, vip: Option<&str>) -> LoadBalancer {
        LoadBalancer {
            id: id.into(),
            name: id.into(),
            scope: scope(),
            description: None,
            default_pool_id: None,
            status: LbStatus::Active,
            status_message: None,
            last_transition: 0,
            vip: vip.map(|v| v.parse().unwrap()),
            created_at: 0,
            updated_at: 0,
            created_by: "t".into(),
            metadata: BTreeMap::new(),
            tags: BTreeMap::new(),
            revision: 0,
        }
    }

    fn listener(id: &str, lb: &str) -> Listener {
        Listener {
            id: id.into(),
            lb_id: lb.into(),
            scope: scope(),
            name: id.into(),
            protocol: ListenerProtocol::Tcp,
            port: 80,
            tls: None,
            default_pool_id: None,
            rules: Vec::new(),
            connection_limit: None,
            timeout_client_ms: 1000,
            timeout_backend_ms: 1000,
            enabled: true,
            created_at: 0,
            updated_at: 0,
            revision: 0,
        }
    }

    fn plan(id: &str, lb: &str, backends: &[&str], state: &RuntimeState) -> PoolPlan {
        let pool = Pool {
            id: id.into(),
            lb_id: lb.into(),
            scope: scope(),
            name: id.into(),
            algorithm: Algorithm::RoundRobin,
            health_check: Some(HealthCheck {
                id: "hc".into(),
                kind: CheckKind::Tcp,
                interval_seconds: 1,
                timeout_seconds: 1,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                enabled: true,
            }),
            session_persistence: None,
            circuit_breaker: None,
            proxy_protocol: None,
            enabled: true,
            created_at: 0,
            updated_at: 0,
            revision: 0,
        };
        let backends: Vec<Backend> = backends
            .iter()
            .map(|b| Backend {
                id: (*b).into(),
                pool_id: id.into(),
                lb_id: lb.into(),
                scope: scope(),
                name: (*b).into(),
                address: BackendAddress::Ip("10.0.0.1".parse().unwrap()),
                port: 80,
                weight: 1,
                status: BackendStatus::Active,
                enabled: true,
                backup: false,
                max_connections: None,
                metadata: BTreeMap::new(),
                drain_deadline: None,
                remove_after_drain: false,
                created_at: 0,
                updated_at: 0,
                revision: 0,
            })
            .collect();
        PoolPlan::new(pool, backends, state)
    }

    fn snapshot(
        lbs: Vec<LoadBalancer>,
        listeners: Vec<Listener>,
        pools: Vec<PoolPlan>,
    ) -> Snapshot {
        Snapshot {
            lbs: lbs
                .into_iter()
                .map(|l| (l.id.clone(), Arc::new(l)))
                .collect(),
            listeners: listeners
                .into_iter()
                .map(|l| (l.id.clone(), Arc::new(l)))
                .collect(),
            pools: pools
                .into_iter()
                .map(|p| (p.pool.id.clone(), Arc::new(p)))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn announces_only_served_vips_of_a_ready_node() {
        let state = RuntimeState::default();
        let snap = snapshot(
            vec![
                lb("a", Some("10.200.0.1")),
                lb("b", Some("10.200.0.2")),
                lb("novip", None),
                lb("nolistener", Some("10.200.0.4")),
            ],
            vec![
                listener("la", "a"),
                listener("lb", "b"),
                listener("ln", "novip"),
            ],
            vec![
                plan("pa", "a", &["a1", "a2"], &state),
                plan("pb", "b", &["b1"], &state),
                plan("pn", "novip", &["n1"], &state),
                plan("pl", "nolistener", &["l1"], &state),
            ],
        );
        // Active checks: nothing is healthy before the first verdict.
        assert!(wanted(&snap, true).is_empty());
        for id in ["a2", "b1", "n1", "l1"] {
            state.backend(id).set_verdict(Verdict::Healthy);
        }
        let w = wanted(&snap, true);
        assert_eq!(
            w.into_iter().collect::<Vec<_>>(),
            vec![
                ("10.200.0.1".parse().unwrap(), "a".to_string()),
                ("10.200.0.2".parse().unwrap(), "b".to_string()),
            ]
        );
        assert!(wanted(&snap, false).is_empty(), "not ready: withdraw all");
        state.backend("b1").set_verdict(Verdict::Unhealthy);
        let w = wanted(&snap, true);
        assert_eq!(
            w.keys().count(),
            1,
            "b lost its last healthy backend: {w:?}"
        );
    }

    #[test]
    fn disabled_things_do_not_count() {
        let state = RuntimeState::default();
        state.backend("a1").set_verdict(Verdict::Healthy);
        let mut off = lb("a", Some("10.200.0.1"));
        off.status = LbStatus::Disabled;
        let snap = snapshot(
            vec![off],
            vec![listener("la", "a")],
            vec![plan("pa", "a", &["a1"], &state)],
        );
        assert!(wanted(&snap, true).is_empty());
        let mut l = listener("la", "a");
        l.enabled = false;
        let snap = snapshot(
            vec![lb("a", Some("10.200.0.1"))],
            vec![l],
            vec![plan("pa", "a", &["a1"], &state)],
        );
        assert!(wanted(&snap, true).is_empty());
    }

    #[test]
    fn route_style() {
        let style = RouteStyle {
            next_hop: Some("192.0.2.7".parse().unwrap()),
            communities: vec![65000 << 16 | 7],
        };
        let v4: IpAddr = "10.200.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let r = style.routes([&v4, &v6], false);
        assert_eq!(r[0].prefix.to_string(), "10.200.0.1/32");
        assert_eq!(r[0].next_hop.to_string(), "192.0.2.7");
        assert_eq!(r[1].prefix.to_string(), "2001:db8::1/128");
        assert!(
            r[1].next_hop.is_unspecified(),
            "v6 VIP: the session's address"
        );
        assert_eq!(r[0].communities, vec![65000 << 16 | 7]);
        let g = style.routes([&v4], true);
        assert_eq!(g[0].communities, vec![65000 << 16 | 7, GRACEFUL_SHUTDOWN]);
        for route in r.iter().chain(&g) {
            route.validate().unwrap();
        }
    }
}
