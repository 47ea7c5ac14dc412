//! `ListBgpSessions`: the runtime's BGP view as protobuf.

use fiberlb_proto::v1 as pb;

use crate::runtime::{BgpState, BgpView};

/// Converts the node's BGP view into the response.
pub(super) fn to_proto(v: BgpView) -> pb::ListBgpSessionsResponse {
    pb::ListBgpSessionsResponse {
        enabled: v.enabled,
        local_asn: v.local_asn,
        router_id: v.router_id.map(|r| r.to_string()).unwrap_or_default(),
        sessions: v
            .sessions
            .into_iter()
            .map(|s| pb::BgpSession {
                peer: s.peer,
                peer_asn: s.peer_asn,
                state: state(s.state) as i32,
                uptime_seconds: s.uptime_seconds,
                routes_announced: s.routes_announced,
                routes_received: s.routes_received,
                last_error: s.last_error.unwrap_or_default(),
            })
            .collect(),
        announced_vips: v
            .announced
            .into_iter()
            .map(|a| pb::AnnouncedVip {
                vip: a.vip.to_string(),
                lb_id: a.lb_id,
                graceful_shutdown: a.graceful_shutdown,
            })
            .collect(),
    }
}

fn state(s: BgpState) -> pb::BgpSessionState {
    use pb::BgpSessionState as P;
    match s {
        BgpState::Idle => P::Idle,
        BgpState::Connect => P::Connect,
        BgpState::Active => P::Active,
        BgpState::OpenSent => P::OpenSent,
        BgpState::OpenConfirm => P::OpenConfirm,
        BgpState::Established => P::Established,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{AnnouncedVip, BgpSessionInfo};

    #[test]
    fn converts_every_field() {
        let v = BgpView {
            enabled: true,
            local_asn: 65001,
            router_id: Some("10.0.0.1".parse().unwrap()),
            sessions: vec![BgpSessionInfo {
                peer: "10.0.0.254:179".into(),
                peer_asn: 65000,
                state: BgpState::Established,
                uptime_seconds: 12,
                routes_announced: 2,
                routes_received: 1,
                last_error: Some("hold timer expired".into()),
            }],
            announced: vec![AnnouncedVip {
                vip: "10.200.0.1".parse().unwrap(),
                lb_id: "lb-1".into(),
                graceful_shutdown: true,
            }],
        };
        let p = to_proto(v);
        assert!(p.enabled);
        assert_eq!((p.local_asn, p.router_id.as_str()), (65001, "10.0.0.1"));
        let s = &p.sessions[0];
        assert_eq!(s.state, pb::BgpSessionState::Established as i32);
        assert_eq!(
            (s.uptime_seconds, s.routes_announced, s.routes_received),
            (12, 2, 1)
        );
        assert_eq!(s.last_error, "hold timer expired");
        assert_eq!(p.announced_vips[0].vip, "10.200.0.1");
        assert!(p.announced_vips[0].graceful_shutdown);
        assert_eq!(to_proto(BgpView::default()).router_id, "");
    }
}
