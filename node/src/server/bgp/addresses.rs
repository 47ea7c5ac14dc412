//! `[bgp] manage_vip_addresses`: puts announced VIPs on `lo` (so the kernel accepts the
//! traffic routers send for them) and takes them off again, over rtnetlink.
//!
//! Only addresses this node added are ever removed. They carry the address protocol
//! [`PROTO`] (IPv4 and IPv6, Linux >= 5.18) and, on IPv4, the label [`LABEL`] (what `ip addr`
//! shows), which is how a restarted node recognises the ones a crashed predecessor left
//! behind (adopted, and removed if no longer announced); an address an operator configured
//! has neither and is left alone even when it equals a VIP.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol};
use rtnetlink::{AddressMessageBuilder, Handle};

/// Interface the VIPs go on.
const IFACE: &str = "lo";
/// Address label marking our addresses (must start with the interface name).
pub(super) const LABEL: &str = "lo:fiberlb";
/// Address protocol (IFA_PROTO) marking our addresses; 0-3 are taken by the kernel.
pub(super) const PROTO: u8 = 0xfb;

/// What can fail talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// Opening the netlink socket failed.
    #[error("opening a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The kernel refused or the request failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// No `lo` in this network namespace.
    #[error("no interface {IFACE}")]
    NoLoopback,
}

/// The VIP addresses this node put on `lo`.
pub struct VipAddresses {
    handle: Handle,
    index: u32,
    ours: BTreeSet<IpAddr>,
}

impl VipAddresses {
    /// Connects to rtnetlink, finds `lo` and adopts addresses carrying our label.
    pub async fn open() -> Result<Self, AddressError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let link = handle
            .link()
            .get()
            .match_name(IFACE)
            .execute()
            .try_next()
            .await?
            .ok_or(AddressError::NoLoopback)?;
        let index = link.header.index;
        let mut ours = BTreeSet::new();
        let mut addrs = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addrs.try_next().await? {
            if let Some(ip) = labelled_ours(&msg) {
                ours.insert(ip);
            }
        }
        if !ours.is_empty() {
            tracing::info!(addresses = ?ours, "adopted VIP addresses left on lo by an earlier run");
        }
        Ok(Self {
            handle,
            index,
            ours,
        })
    }

    /// Addresses this node manages now.
    pub fn ours(&self) -> &BTreeSet<IpAddr> {
        &self.ours
    }

    /// Puts `ip` on `lo` (/32 or /128). An address that is already there and not ours is
    /// left to whoever put it there.
    pub async fn add(&mut self, ip: IpAddr) -> Result<(), AddressError> {
        if self.ours.contains(&ip) {
            return Ok(());
        }
        let mut req = self.handle.address().add(self.index, ip, host_len(ip));
        mark(req.message_mut());
        match req.execute().await {
            Ok(()) => {
                tracing::info!(%ip, "VIP added to lo");
                self.ours.insert(ip);
                Ok(())
            }
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                tracing::debug!(%ip, "VIP already on lo (configured by someone else)");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes `ip` off `lo` if this node put it there.
    pub async fn remove(&mut self, ip: IpAddr) -> Result<(), AddressError> {
        if !self.ours.contains(&ip) {
            return Ok(());
        }
        let msg = message(self.index, ip);
        match self.handle.address().del(msg).execute().await {
            Ok(()) => tracing::info!(%ip, "VIP removed from lo"),
            // Someone removed it already: the goal is reached.
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => {}
            Err(e) => return Err(e.into()),
        }
        self.ours.remove(&ip);
        Ok(())
    }

    /// Removes every address this node added (at the end of a shutdown).
    pub async fn release(mut self) {
        let all: Vec<IpAddr> = self.ours.iter().copied().collect();
        for ip in all {
            if let Err(e) = self.remove(ip).await {
                tracing::warn!(%ip, error = %e, "could not remove VIP from lo");
            }
        }
    }
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The request message naming `ip`/host on interface `index` (deletion matches on these).
fn message(index: u32, ip: IpAddr) -> AddressMessage {
    match ip {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(v4, 32)
            .build(),
        IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(v6, 128)
            .build(),
    }
}

/// Adds our marks to an address being created.
fn mark(msg: &mut AddressMessage) {
    msg.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::Other(PROTO)));
    if msg.header.family == rtnetlink::packet_route::AddressFamily::Inet {
        msg.attributes
            .push(AddressAttribute::Label(LABEL.to_owned()));
    }
}

/// The host address of `msg` if it carries one of our marks.
fn labelled_ours(msg: &AddressMessage) -> Option<IpAddr> {
    let labelled = msg.attributes.iter().any(|a| match a {
        AddressAttribute::Label(l) => l == LABEL,
        AddressAttribute::Protocol(AddressProtocol::Other(p)) => *p == PROTO,
        _ => false,
    });
    if !labelled || msg.header.prefix_len != 32 && msg.header.prefix_len != 128 {
        return None;
    }
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_labelled_host_addresses() {
        let ip: IpAddr = "10.200.0.1".parse().unwrap();
        let mut m = message(1, ip);
        assert_eq!(labelled_ours(&m), None, "no label: an operator's address");
        m.attributes.push(AddressAttribute::Label(LABEL.into()));
        assert_eq!(labelled_ours(&m), Some(ip));
        let mut other = message(1, "10.0.0.1".parse().unwrap());
        other.header.prefix_len = 8;
        other.attributes.push(AddressAttribute::Label(LABEL.into()));
        assert_eq!(labelled_ours(&other), None);
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut m6 = message(1, v6);
        assert_eq!(labelled_ours(&m6), None);
        mark(&mut m6);
        assert!(!m6
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Label(_))));
        assert_eq!(labelled_ours(&m6), Some(v6));
    }
}
