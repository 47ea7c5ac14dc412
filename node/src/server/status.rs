//! The status page on the admin port (`/`): one self-contained HTML page (no external
//! assets, works offline, readable on a phone) that polls `/status.json` and re-renders,
//! so it updates live without a reload. Read-only.

use serde_json::{json, Value};

use super::runtime::NodeRuntime;
use crate::balance::algorithm_name;

/// The page itself.
pub const PAGE: &str = include_str!("status.html");

/// Everything the page shows, as JSON.
pub fn status_json(runtime: &NodeRuntime) -> Value {
    use fiberlb_api::runtime::RuntimeView;
    let info = runtime.node_info();
    let mut lbs = Vec::new();
    if let Some((state, cell)) = runtime.data_plane() {
        let snap = cell.load();
        let mut all: Vec<_> = snap.lbs.values().collect();
        all.sort_by(|a, b| (&a.scope.org_id, &a.name).cmp(&(&b.scope.org_id, &b.name)));
        for lb in all {
            let mut listeners: Vec<_> = snap
                .listeners
                .values()
                .filter(|l| l.lb_id == lb.id)
                .collect();
            listeners.sort_by_key(|l| (l.port, l.name.clone()));
            let mut pools: Vec<_> = snap
                .pools
                .values()
                .filter(|p| p.pool.lb_id == lb.id)
                .collect();
            pools.sort_by(|a, b| a.pool.name.cmp(&b.pool.name));
            let pool_name = |id: &Option<String>| {
                id.as_ref()
                    .and_then(|id| snap.pools.get(id))
                    .map(|p| p.pool.name.clone())
            };
            lbs.push(json!({
                "id": lb.id,
                "name": lb.name,
                "org": lb.scope.org_id,
                "project": lb.scope.project_id,
                "vip": lb.vip.map(|v| v.to_string()),
                "enabled": lb.is_enabled(),
                "listeners": listeners.iter().map(|l| json!({
                    "name": l.name,
                    "protocol": format!("{:?}", l.protocol).to_lowercase(),
                    "port": l.port,
                    "enabled": l.enabled,
                    "default_pool": pool_name(&l.default_pool_id),
                    "rules": l.rules.len(),
                })).collect::<Vec<_>>(),
                "pools": pools.iter().map(|p| {
                    let check = p.pool.has_active_check();
                    json!({
                        "name": p.pool.name,
                        "algorithm": algorithm_name(p.pool.algorithm),
                        "enabled": p.pool.enabled,
                        "backends": p.backends.iter().zip(&p.states).map(|(b, s)| json!({
                            "id": b.id,
                            "name": b.name,
                            "address": b.address.to_string(),
                            "port": b.port,
                            "weight": b.weight,
                            "backup": b.backup,
                            "enabled": b.enabled,
                            "status": format!("{:?}", b.status).to_lowercase(),
                            "healthy": s.is_healthy(check),
                            "circuit": format!("{:?}", s.circuit_state()).to_lowercase(),
                            "active": s.stats.active.load(std::sync::atomic::Ordering::Relaxed),
                            "started": s.stats.started.load(std::sync::atomic::Ordering::Relaxed),
                        })).collect::<Vec<_>>(),
                    })
                }).collect::<Vec<_>>(),
            }));
        }
        let _ = state;
    }
    json!({
        "node": {
            "id": info.node_id,
            "version": info.version,
            "ready": info.ready,
            "store_up": info.store_up,
            "snapshot_revision": info.snapshot_revision,
            "started_at": info.started_at,
            "grpc_addr": info.grpc_addr,
        },
        "members": runtime.members().into_iter().map(|m| json!({
            "id": m.node_id,
            "state": format!("{:?}", m.state).to_lowercase(),
            "api_addr": m.api_addr,
            "self": m.is_self,
        })).collect::<Vec<_>>(),
        "bgp": bgp_json(runtime.bgp()),
        "load_balancers": lbs,
    })
}

/// The BGP section: sessions and announced VIPs (`enabled: false` and empty lists when
/// `[bgp]` is off).
fn bgp_json(b: fiberlb_api::runtime::BgpView) -> Value {
    json!({
        "enabled": b.enabled,
        "asn": b.local_asn,
        "router_id": b.router_id.map(|r| r.to_string()),
        "sessions": b.sessions.iter().map(|s| json!({
            "peer": s.peer,
            "asn": s.peer_asn,
            "state": state_name(s.state),
            "uptime_seconds": s.uptime_seconds,
            "routes": s.routes_announced,
            "last_error": s.last_error,
        })).collect::<Vec<_>>(),
        "vips": b.announced.iter().map(|v| v.vip.to_string()).collect::<Vec<_>>(),
        "graceful_shutdown": b.announced.iter().any(|v| v.graceful_shutdown),
    })
}

fn state_name(s: fiberlb_api::runtime::BgpState) -> &'static str {
    use fiberlb_api::runtime::BgpState as S;
    match s {
        S::Idle => "idle",
        S::Connect => "connect",
        S::Active => "active",
        S::OpenSent => "open_sent",
        S::OpenConfirm => "open_confirm",
        S::Established => "established",
    }
}

#[cfg(test)]
mod tests {
    use fiberlb_api::runtime::{AnnouncedVip, BgpSessionInfo, BgpState, BgpView};

    #[test]
    fn bgp_section() {
        let off = super::bgp_json(BgpView::default());
        assert_eq!(off["enabled"], false);
        assert_eq!(off["sessions"].as_array().unwrap().len(), 0);
        let on = super::bgp_json(BgpView {
            enabled: true,
            local_asn: 65001,
            router_id: Some("10.0.0.1".parse().unwrap()),
            sessions: vec![BgpSessionInfo {
                peer: "10.0.0.254:179".into(),
                peer_asn: 65000,
                state: BgpState::OpenConfirm,
                uptime_seconds: 0,
                routes_announced: 1,
                routes_received: 0,
                last_error: None,
            }],
            announced: vec![AnnouncedVip {
                vip: "10.200.0.1".parse().unwrap(),
                lb_id: "l".into(),
                graceful_shutdown: false,
            }],
        });
        assert_eq!(on["sessions"][0]["state"], "open_confirm");
        assert_eq!(on["sessions"][0]["routes"], 1);
        assert_eq!(on["vips"][0], "10.200.0.1");
    }
}
