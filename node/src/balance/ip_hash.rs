//! IP hash: Maglev keyed by the client IP alone.

use super::maglev::{default_table_size, KeyMode, Maglev};
use super::{Balancer, Endpoint, PickContext};

/// Every connection from one client IP goes to the same backend, on every fleet node.
///
/// It is the [`Maglev`] table keyed by the IP only (not a `hash mod N`), so a backend
/// going down or being removed moves only that backend's clients instead of reshuffling
/// nearly all of them.
#[derive(Debug)]
pub struct IpHash(Maglev);

impl IpHash {
    /// IP hash over `endpoints` with the default table size.
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self(Maglev::with_table_size(
            endpoints,
            KeyMode::Ip,
            default_table_size(endpoints.len()),
        ))
    }

    /// The underlying table.
    pub fn maglev(&self) -> &Maglev {
        &self.0
    }
}

impl Balancer for IpHash {
    fn pick(&self, ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        self.0.pick(ctx, eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::endpoints;
    use std::net::SocketAddr;

    #[test]
    fn same_ip_any_port_same_backend() {
        let eps = endpoints(&[1; 8]);
        let b = IpHash::new(&eps);
        for ip in 0..200u32 {
            let ip = std::net::Ipv4Addr::from(0xc0a8_0000 + ip);
            let first = b.pick(
                &PickContext {
                    client: SocketAddr::from((ip, 1000)),
                },
                &[true; 8],
            );
            for port in [1, 80, 40000, 65535] {
                let ctx = PickContext {
                    client: SocketAddr::from((ip, port)),
                };
                assert_eq!(b.pick(&ctx, &[true; 8]), first);
            }
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_client() {
        let eps = endpoints(&[1; 8]);
        let b = IpHash::new(&eps);
        for last in 0..=255u8 {
            let v4 = std::net::Ipv4Addr::new(203, 0, 113, last);
            let a = PickContext {
                client: SocketAddr::from((v4, 5)),
            };
            let m = PickContext {
                client: SocketAddr::from((v4.to_ipv6_mapped(), 6)),
            };
            assert_eq!(b.pick(&a, &[true; 8]), b.pick(&m, &[true; 8]));
        }
    }
}
