//! Routes we originate, and the per-session diff that turns "the routes we want" into
//! the fewest UPDATE messages against "the routes this peer has from us".

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::codec::{
    AsSegment, Attribute, Update, AFI_IPV6, AS_SEQUENCE, HEADER_LEN, MAX_MESSAGE_LEN, ORIGIN_IGP,
    SAFI_UNICAST,
};
use crate::error::BgpError;

/// Most communities one route may carry (keeps every UPDATE far below 4096 bytes).
pub const MAX_COMMUNITIES: usize = 64;

/// A route to originate, typically a VIP host route (/32 or /128).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Announced prefix.
    pub prefix: IpNet,
    /// Next hop; the unspecified address (`0.0.0.0` / `::`) means "this session's local
    /// address", which is what a node announcing its own VIP wants.
    pub next_hop: IpAddr,
    /// Communities (`asn << 16 | value`), e.g. [`crate::GRACEFUL_SHUTDOWN`].
    pub communities: Vec<u32>,
}

impl Route {
    /// A route with next hop "self" and no communities.
    pub fn host(prefix: IpNet) -> Self {
        let next_hop = match prefix {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self {
            prefix,
            next_hop,
            communities: Vec::new(),
        }
    }

    /// Checks what can be checked without a session: the next hop's family matches the
    /// prefix's, and the community list is bounded.
    pub fn validate(&self) -> Result<(), BgpError> {
        let same_family = matches!(
            (self.prefix, self.next_hop),
            (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_))
        );
        if !same_family {
            return Err(BgpError::InvalidRoute {
                prefix: self.prefix,
                reason: "next hop family differs from the prefix family",
            });
        }
        if self.communities.len() > MAX_COMMUNITIES {
            return Err(BgpError::InvalidRoute {
                prefix: self.prefix,
                reason: "more than 64 communities",
            });
        }
        Ok(())
    }
}

/// What a session negotiated, as far as building UPDATEs is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceContext {
    /// Our ASN.
    pub local_asn: u32,
    /// External session: AS_PATH carries our ASN; internal: empty AS_PATH + LOCAL_PREF.
    pub ebgp: bool,
    /// Both sides speak 4-octet ASNs.
    pub four_octet_as: bool,
    /// Peer accepts IPv4 unicast.
    pub ipv4: bool,
    /// Peer accepts IPv6 unicast.
    pub ipv6: bool,
    /// Local address of the TCP session, used for next hop "self".
    pub local_addr: IpAddr,
}

impl AnnounceContext {
    /// The route as this session announces it (next hop resolved), or `None` when the
    /// peer does not take its family or no next hop of that family is known.
    pub fn resolve(&self, route: &Route) -> Option<Route> {
        let family_ok = match route.prefix {
            IpNet::V4(_) => self.ipv4,
            IpNet::V6(_) => self.ipv6,
        };
        if !family_ok {
            return None;
        }
        let next_hop = if route.next_hop.is_unspecified() {
            match (route.prefix, self.local_addr) {
                (IpNet::V4(_), IpAddr::V4(a)) => IpAddr::V4(a),
                (IpNet::V6(_), IpAddr::V6(a)) => IpAddr::V6(a),
                (IpNet::V4(_), IpAddr::V6(a)) => IpAddr::V4(a.to_ipv4_mapped()?),
                (IpNet::V6(_), IpAddr::V4(_)) => return None,
            }
        } else {
            route.next_hop
        };
        Some(Route {
            next_hop,
            ..route.clone()
        })
    }

    fn base_attributes(&self, communities: &[u32]) -> Vec<Attribute> {
        let mut attrs = vec![Attribute::Origin(ORIGIN_IGP)];
        if self.ebgp {
            let seg = AsSegment {
                kind: AS_SEQUENCE,
                asns: vec![self.local_asn],
            };
            attrs.push(Attribute::AsPath(vec![seg.clone()]));
            if !self.four_octet_as && self.local_asn > u32::from(u16::MAX) {
                attrs.push(Attribute::As4Path(vec![seg]));
            }
        } else {
            attrs.push(Attribute::AsPath(Vec::new()));
            attrs.push(Attribute::LocalPref(100));
        }
        if !communities.is_empty() {
            attrs.push(Attribute::Communities(communities.to_vec()));
        }
        attrs
    }
}

/// The diff of one session: desired routes against what the peer has from us.
#[derive(Debug, Default)]
pub struct Adjacency {
    announced: BTreeMap<IpNet, Route>,
}

impl Adjacency {
    /// Number of prefixes the peer currently has from us.
    pub fn len(&self) -> usize {
        self.announced.len()
    }

    /// Whether nothing is announced.
    pub fn is_empty(&self) -> bool {
        self.announced.is_empty()
    }

    /// Forgets everything (the session went down, so the peer dropped our routes).
    pub fn clear(&mut self) {
        self.announced.clear();
    }

    /// UPDATEs that bring the peer from what it has to `desired`, and records the result.
    pub fn sync(&mut self, desired: &BTreeMap<IpNet, Route>, ctx: &AnnounceContext) -> Vec<Update> {
        let wanted: BTreeMap<IpNet, Route> = desired
            .values()
            .filter_map(|r| ctx.resolve(r).map(|e| (e.prefix, e)))
            .collect();
        let withdraw: Vec<IpNet> = self
            .announced
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        let mut groups: BTreeMap<(IpAddr, Vec<u32>), Vec<IpNet>> = BTreeMap::new();
        for (prefix, route) in &wanted {
            if self.announced.get(prefix) != Some(route) {
                groups
                    .entry((route.next_hop, route.communities.clone()))
                    .or_default()
                    .push(*prefix);
            }
        }
        self.announced = wanted;
        let mut updates = withdrawals(&withdraw);
        for ((next_hop, communities), prefixes) in groups {
            announcements(ctx, next_hop, &communities, &prefixes, &mut updates);
        }
        updates
    }
}

/// Largest encoded prefix per family, used to size chunks without re-encoding.
fn max_prefix_len(v6: bool) -> usize {
    if v6 {
        17
    } else {
        5
    }
}

/// Room left for prefixes in an UPDATE whose other fields take `fixed` bytes; one byte
/// is kept for an attribute length switching to the 2-byte form.
fn chunk_size(fixed: usize, v6: bool) -> usize {
    ((MAX_MESSAGE_LEN - HEADER_LEN - 4 - fixed - 1) / max_prefix_len(v6)).max(1)
}

fn withdrawals(prefixes: &[IpNet]) -> Vec<Update> {
    let v4: Vec<_> = prefixes
        .iter()
        .filter_map(|p| match p {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<_> = prefixes
        .iter()
        .filter(|p| p.addr().is_ipv6())
        .copied()
        .collect();
    let mut out = Vec::new();
    for chunk in v4.chunks(chunk_size(0, false)) {
        out.push(Update {
            withdrawn: chunk.to_vec(),
            ..Update::default()
        });
    }
    // MP_UNREACH: 3 bytes flags/code/len (+1 extended) and 3 bytes AFI/SAFI.
    for chunk in v6.chunks(chunk_size(7, true)) {
        out.push(Update {
            attributes: vec![Attribute::MpUnreach {
                afi: AFI_IPV6,
                safi: SAFI_UNICAST,
                withdrawn: chunk.to_vec(),
            }],
            ..Update::default()
        });
    }
    out
}

fn announcements(
    ctx: &AnnounceContext,
    next_hop: IpAddr,
    communities: &[u32],
    prefixes: &[IpNet],
    out: &mut Vec<Update>,
) {
    let base = ctx.base_attributes(communities);
    // Size of the attributes without prefixes: each at most 4 header bytes + value.
    let fixed: usize = 64 + 4 * communities.len() + 24;
    match next_hop {
        IpAddr::V4(nh) => {
            let v4: Vec<_> = prefixes
                .iter()
                .filter_map(|p| match p {
                    IpNet::V4(n) => Some(*n),
                    IpNet::V6(_) => None,
                })
                .collect();
            for chunk in v4.chunks(chunk_size(fixed, false)) {
                let mut attributes = base.clone();
                attributes.insert(2, Attribute::NextHop(nh));
                out.push(Update {
                    attributes,
                    nlri: chunk.to_vec(),
                    ..Update::default()
                });
            }
        }
        IpAddr::V6(nh) => {
            for chunk in prefixes.chunks(chunk_size(fixed, true)) {
                let mut attributes = base.clone();
                attributes.push(Attribute::MpReach {
                    afi: AFI_IPV6,
                    safi: SAFI_UNICAST,
                    next_hops: vec![IpAddr::V6(nh)],
                    nlri: chunk.to_vec(),
                });
                out.push(Update {
                    attributes,
                    ..Update::default()
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Message;

    fn ctx() -> AnnounceContext {
        AnnounceContext {
            local_asn: 65001,
            ebgp: true,
            four_octet_as: true,
            ipv4: true,
            ipv6: true,
            local_addr: "192.0.2.1".parse().unwrap(),
        }
    }

    fn desired(routes: &[Route]) -> BTreeMap<IpNet, Route> {
        routes.iter().map(|r| (r.prefix, r.clone())).collect()
    }

    #[test]
    fn sync_sends_only_changes() {
        let mut adj = Adjacency::default();
        let a = Route::host("10.0.0.1/32".parse().unwrap());
        let b = Route::host("10.0.0.2/32".parse().unwrap());
        let ups = adj.sync(&desired(&[a.clone(), b.clone()]), &ctx());
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].nlri.len(), 2);
        assert!(ups[0]
            .attributes
            .contains(&Attribute::NextHop("192.0.2.1".parse().unwrap())));
        assert!(adj
            .sync(&desired(&[a.clone(), b.clone()]), &ctx())
            .is_empty());
        let ups = adj.sync(&desired(std::slice::from_ref(&a)), &ctx());
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].withdrawn, vec!["10.0.0.2/32".parse().unwrap()]);
        assert!(ups[0].nlri.is_empty());
        // Changing communities re-announces (implicit replace), no withdraw.
        let mut a2 = a.clone();
        a2.communities = vec![crate::GRACEFUL_SHUTDOWN];
        let ups = adj.sync(&desired(&[a2]), &ctx());
        assert_eq!(ups.len(), 1);
        assert!(ups[0].withdrawn.is_empty());
        assert!(ups[0]
            .attributes
            .contains(&Attribute::Communities(vec![0xFFFF_0000])));
        assert_eq!(adj.len(), 1);
    }

    #[test]
    fn v6_uses_mp_reach_and_mp_unreach() {
        let mut c = ctx();
        c.local_addr = "2001:db8::1".parse().unwrap();
        let mut adj = Adjacency::default();
        let r = Route::host("2001:db8:ff::1/128".parse().unwrap());
        let ups = adj.sync(&desired(std::slice::from_ref(&r)), &c);
        assert!(
            matches!(&ups[0].attributes[..], [.., Attribute::MpReach { afi: AFI_IPV6, next_hops, nlri, .. }]
            if next_hops == &vec!["2001:db8::1".parse::<IpAddr>().unwrap()] && nlri == &vec![r.prefix])
        );
        let ups = adj.sync(&BTreeMap::new(), &c);
        assert!(
            matches!(&ups[0].attributes[..], [Attribute::MpUnreach { withdrawn, .. }] if withdrawn == &vec![r.prefix])
        );
    }

    #[test]
    fn v6_route_skipped_without_v6_next_hop_or_capability() {
        let mut adj = Adjacency::default();
        let r = Route::host("2001:db8:ff::1/128".parse().unwrap());
        assert!(adj
            .sync(&desired(std::slice::from_ref(&r)), &ctx())
            .is_empty());
        let mut c = ctx();
        c.ipv6 = false;
        c.local_addr = "2001:db8::1".parse().unwrap();
        assert!(adj.sync(&desired(&[r]), &c).is_empty());
    }

    #[test]
    fn ibgp_has_empty_as_path_and_local_pref() {
        let mut c = ctx();
        c.ebgp = false;
        let ups =
            Adjacency::default().sync(&desired(&[Route::host("10.0.0.1/32".parse().unwrap())]), &c);
        assert!(ups[0].attributes.contains(&Attribute::AsPath(Vec::new())));
        assert!(ups[0].attributes.contains(&Attribute::LocalPref(100)));
    }

    #[test]
    fn many_routes_split_into_messages_under_4096_bytes() {
        let mut routes = Vec::new();
        for i in 0..3000u32 {
            let mut r = Route::host(IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from(0x0A00_0000 + i), 32).unwrap(),
            ));
            r.communities = (0..MAX_COMMUNITIES as u32).collect();
            routes.push(r);
            let v6 = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(i));
            routes.push(Route::host(IpNet::V6(
                ipnet::Ipv6Net::new(v6, 128).unwrap(),
            )));
        }
        let mut c = ctx();
        c.local_addr = "::ffff:192.0.2.1".parse().unwrap();
        let mut adj = Adjacency::default();
        let ups = adj.sync(&desired(&routes), &c);
        assert!(ups.len() > 2);
        for u in &ups {
            Message::Update(u.clone()).encode().unwrap();
        }
        assert_eq!(adj.len(), 6000, "v4 next hop from the mapped address");
        for u in adj.sync(&BTreeMap::new(), &c) {
            Message::Update(u).encode().unwrap();
        }
    }

    #[test]
    fn validate_rejects_family_mismatch() {
        let mut r = Route::host("10.0.0.1/32".parse().unwrap());
        r.next_hop = "::1".parse().unwrap();
        assert!(r.validate().is_err());
    }
}
