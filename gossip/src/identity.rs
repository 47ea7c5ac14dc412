//! The identity a node gossips under.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a member is and where to reach it.
///
/// foca addresses members by [`foca::Identity::addr`], which here is the gossip socket
/// address: seed peers are configured by address only, and foca accepts an announce whose
/// destination has our address even when the rest of the identity (node id, generation)
/// is unknown to the sender. The `generation` lets a node that was declared down come back:
/// foca calls [`foca::Identity::renew`] and the bumped identity wins the address conflict
/// against the dead one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Stable node id from `[cluster] node_id`.
    pub node_id: String,
    /// Advertised UDP address of the gossip socket.
    pub gossip_addr: SocketAddr,
    /// Advertised address of the gRPC API, so clients can be sent to any member.
    pub api_addr: SocketAddr,
    /// Bumped on every (re)join; the driver starts it at the Unix time in milliseconds so
    /// a restarted process always beats its previous incarnation.
    pub generation: u64,
}

impl Identity {
    /// A placeholder identity used only to announce to a seed whose node id is unknown.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            node_id: String::new(),
            gossip_addr: addr,
            api_addr: addr,
            generation: 0,
        }
    }
}

impl foca::Identity for Identity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Two identities on one address: the newer generation is the live process.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.node_id) > (adversary.generation, &adversary.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    #[test]
    fn renew_bumps_generation_and_wins() {
        let id = Identity {
            node_id: "a".into(),
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            api_addr: "127.0.0.1:2".parse().unwrap(),
            generation: 7,
        };
        let renewed = id.renew().unwrap();
        assert_eq!(renewed.generation, 8);
        assert_eq!(renewed.addr(), id.addr());
        assert!(renewed.win_addr_conflict(&id));
        assert!(!id.win_addr_conflict(&renewed));
    }
}
