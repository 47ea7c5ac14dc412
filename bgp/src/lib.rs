//! FiberLB's BGP-4 speaker: originates host routes (load balancer VIPs, /32 and /128)
//! towards routers and withdraws them, so that anycast traffic reaches only nodes that
//! can serve it.
//!
//! What it does: OPEN with the 4-octet-ASN and multiprotocol (IPv4/IPv6 unicast)
//! capabilities, KEEPALIVE, UPDATE (announce/withdraw, ORIGIN IGP, AS_PATH, NEXT_HOP or
//! MP_REACH/MP_UNREACH, communities), NOTIFICATION, hold-timer negotiation, reconnect
//! with back-off, active and passive sessions, graceful Cease on shutdown.
//!
//! What it does not do: it is not a router. Routes received from peers are decoded and
//! counted but never selected or installed; no route reflection, no add-path, no
//! graceful restart. TCP MD5 signatures (RFC 2385) are set per peer on Linux.
//!
//! Layout: [`codec`] (bytes <-> messages, never panics on input), [`fsm`] (I/O-free
//! session state machine), [`route`] (per-session diff into UPDATEs) and [`speaker`]
//! (tokio driver owning sockets and timers).

#![deny(missing_docs, unreachable_pub)]

pub mod codec;
pub mod error;
pub mod fsm;
pub mod route;
pub mod speaker;

pub use codec::{decode, Message, GRACEFUL_SHUTDOWN};
pub use error::BgpError;
pub use fsm::State;
pub use route::Route;
pub use speaker::{PeerConfig, SessionInfo, Speaker, SpeakerConfig};
