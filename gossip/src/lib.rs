//! FiberLB fleet gossip: SWIM membership (foca) over authenticated UDP, and the runtime
//! state every node shares (probers' health verdicts, circuit states, connection counts,
//! passive ejections).
//!
//! Layout: an I/O-free [`GossipCore`] (datagrams and timer events in, sealed datagrams and
//! timer requests out) and a thin tokio driver ([`start`]) owning the socket, the clock and
//! the entropy. Every datagram is `version | key id | nonce | ChaCha20-Poly1305(payload)`
//! under the cluster key; anything that fails to open or decode is dropped and counted in
//! `fiberlb_gossip_dropped_total{reason}`, never a panic.
//!
//! Not done here: deciding what to probe or how to route (the node does that, using
//! [`probers`] and the merged entries), and replay protection (a replayed datagram is
//! authentic; SWIM tolerates duplicates and state entries are versioned).
#![deny(missing_docs, unreachable_pub)]

mod broadcast;
mod core;
mod driver;
mod identity;
mod keys;
mod rendezvous;
mod state;
mod wire;

pub use crate::core::{
    CoreConfig, CoreTimer, GossipCore, Member, MemberState, Output, PublishError, Timing,
};
pub use crate::driver::{start, Gossip, GossipConfig, GossipView, StartError};
pub use crate::identity::Identity;
pub use crate::keys::{parse_key, read_key_file, KeyError, Keyring};
pub use crate::rendezvous::probers;
pub use crate::state::{
    Entry, EntryKey, ReplicatedState, StateUpdate, MAX_BACKEND_ID_LEN, MAX_NODE_ID_LEN,
};
pub use crate::wire::{
    decode_datagram, seal, DropReason, MAX_DATAGRAM, MAX_PAYLOAD, OVERHEAD, WIRE_VERSION,
};
