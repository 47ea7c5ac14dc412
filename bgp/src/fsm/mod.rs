//! I/O-free BGP session state machine (RFC 4271 §8, the parts a route originator needs).
//!
//! Inputs are bytes, connection events, timer expiries and route commands; outputs are
//! [`Action`]s the driver carries out (send bytes, open/close the connection, arm timers).
//! No clock, socket or randomness here, so every path is tested deterministically. See
//! `LIFECYCLE.md` beside this crate for the state diagram.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::codec::{
    decode_with, notif, Attribute, Capability, CodecOptions, Message, Notification, Open, AFI_IPV4,
    AFI_IPV6, SAFI_UNICAST,
};
use crate::error::BgpError;
use crate::route::{Adjacency, AnnounceContext, Route};

/// Hold time used while waiting for the peer's OPEN (RFC 4271 §8: "a large value").
pub const OPEN_HOLD: Duration = Duration::from_secs(240);

/// Session state (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not trying; waiting for Start or the back-off timer.
    Idle,
    /// Active mode: a TCP connection attempt is in flight.
    Connect,
    /// Passive mode: waiting for the peer to connect.
    Active,
    /// Connected, our OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

impl State {
    /// Lower-case name for logs, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "open_sent",
            State::OpenConfirm => "open_confirm",
            State::Established => "established",
        }
    }

    fn connected(self) -> bool {
        matches!(
            self,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timers the driver runs for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Bounds one outgoing connection attempt.
    ConnectRetry,
    /// Peer silence limit.
    Hold,
    /// When to send our next KEEPALIVE.
    Keepalive,
    /// Back-off before reconnecting after a failure.
    IdleHold,
}

/// Something that happened, fed to [`Session::handle`].
#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// Start (or resume) trying to establish the session.
    Start,
    /// Stop for good: send Cease if connected, close, stay Idle.
    Stop,
    /// A TCP connection is up (our connect succeeded, or we accepted the peer's).
    Connected {
        /// Our end of the connection; its address is next hop "self".
        local: SocketAddr,
    },
    /// Our connection attempt failed.
    ConnectFailed,
    /// Bytes read from the connection.
    Bytes(&'a [u8]),
    /// The peer closed the connection or it broke.
    Closed,
    /// A timer armed with [`Action::Arm`] expired.
    Timer(Timer),
    /// The full set of routes to announce from now on (validated by the caller).
    SetRoutes(Vec<Route>),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Write these bytes to the connection.
    Send(Vec<u8>),
    /// Close the connection, or abandon the connection attempt.
    Close,
    /// (Re)arm a timer to fire after the duration; replaces any earlier deadline.
    Arm(Timer, Duration),
    /// Disarm a timer.
    Cancel(Timer),
    /// The session moved to this state.
    StateChanged(State),
    /// A connection was torn down, with the reason (for logs and the API).
    Down(String),
}

/// Static session parameters.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our ASN.
    pub local_asn: u32,
    /// The ASN the peer must present.
    pub peer_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// Wait for the peer to connect instead of connecting.
    pub passive: bool,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per consecutive failure.
    pub min_backoff: Duration,
    /// Reconnect delay ceiling.
    pub max_backoff: Duration,
}

impl SessionConfig {
    /// Defaults: hold 90 s, active, connect timeout 5 s, back-off 1 s doubling to 30 s.
    pub fn new(local_asn: u32, peer_asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_asn,
            peer_asn,
            router_id,
            hold_time: 90,
            passive: false,
            connect_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One BGP session with one peer.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    running: bool,
    buf: Vec<u8>,
    backoff: Duration,
    hold: u16,
    opts: CodecOptions,
    ctx: Option<AnnounceContext>,
    local: Option<SocketAddr>,
    desired: BTreeMap<IpNet, Route>,
    adj: Adjacency,
    received: BTreeSet<IpNet>,
}

impl Session {
    /// A session in Idle; feed [`Input::Start`] to begin.
    pub fn new(cfg: SessionConfig) -> Self {
        let backoff = cfg.min_backoff;
        Self {
            cfg,
            state: State::Idle,
            running: false,
            buf: Vec::new(),
            backoff,
            hold: 0,
            opts: CodecOptions::default(),
            ctx: None,
            local: None,
            desired: BTreeMap::new(),
            adj: Adjacency::default(),
            received: BTreeSet::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Negotiated hold time in seconds (meaningful from OpenConfirm on).
    pub fn hold_time(&self) -> u16 {
        self.hold
    }

    /// Prefixes the peer currently has from us.
    pub fn announced(&self) -> usize {
        self.adj.len()
    }

    /// Prefixes the peer announced to us (routers usually send none to an originator).
    pub fn received(&self) -> impl Iterator<Item = &IpNet> {
        self.received.iter()
    }

    /// Whether an incoming connection should be handed over as [`Input::Connected`]; if
    /// not, the driver refuses it.
    pub fn accepts_connection(&self) -> bool {
        self.running && self.cfg.passive && self.state == State::Active
    }

    /// Feeds one input; returns the actions to carry out, in order.
    pub fn handle(&mut self, input: Input<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if !self.running {
                    self.running = true;
                    if self.state == State::Idle {
                        self.start(&mut out);
                    }
                }
            }
            Input::Stop => self.stop(&mut out),
            Input::Connected { local } => {
                let expected = if self.cfg.passive {
                    State::Active
                } else {
                    State::Connect
                };
                if self.running && self.state == expected {
                    self.connected(local, &mut out);
                }
            }
            Input::ConnectFailed => {
                if self.state == State::Connect {
                    self.fail("connection attempt failed".into(), &mut out);
                }
            }
            Input::Closed => {
                if self.state.connected() {
                    self.fail("connection closed by peer".into(), &mut out);
                }
            }
            Input::Timer(t) => self.timer(t, &mut out),
            Input::Bytes(data) => {
                if self.state.connected() {
                    self.bytes(data, &mut out);
                }
            }
            Input::SetRoutes(routes) => {
                self.desired = routes.into_iter().map(|r| (r.prefix, r)).collect();
                if self.state == State::Established {
                    self.sync_routes(&mut out);
                }
            }
        }
        out
    }

    fn set_state(&mut self, s: State, out: &mut Vec<Action>) {
        if s != self.state {
            self.state = s;
            out.push(Action::StateChanged(s));
        }
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.cfg.passive {
            self.set_state(State::Active, out);
        } else {
            self.set_state(State::Connect, out);
            out.push(Action::Connect);
            out.push(Action::Arm(Timer::ConnectRetry, self.cfg.connect_timeout));
        }
    }

    fn stop(&mut self, out: &mut Vec<Action>) {
        self.running = false;
        if self.state.connected() {
            let cease = Notification::new(notif::CEASE, notif::CEASE_ADMIN_SHUTDOWN);
            self.send(&Message::Notification(cease), out);
        }
        if self.state != State::Idle {
            out.push(Action::Close);
        }
        for t in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ] {
            out.push(Action::Cancel(t));
        }
        self.reset_connection();
        self.set_state(State::Idle, out);
    }

    fn connected(&mut self, local: SocketAddr, out: &mut Vec<Action>) {
        out.push(Action::Cancel(Timer::ConnectRetry));
        self.local = Some(local);
        self.buf.clear();
        let open = Open {
            asn: self.cfg.local_asn,
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: AFI_IPV4,
                    safi: SAFI_UNICAST,
                },
                Capability::Multiprotocol {
                    afi: AFI_IPV6,
                    safi: SAFI_UNICAST,
                },
                Capability::FourOctetAs(self.cfg.local_asn),
            ],
        };
        self.send(&Message::Open(open), out);
        out.push(Action::Arm(Timer::Hold, OPEN_HOLD));
        self.set_state(State::OpenSent, out);
    }

    /// Tears the connection down and schedules the next attempt.
    fn fail(&mut self, reason: String, out: &mut Vec<Action>) {
        out.push(Action::Close);
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Action::Cancel(t));
        }
        out.push(Action::Down(reason));
        self.reset_connection();
        if !self.running {
            self.set_state(State::Idle, out);
        } else if self.cfg.passive {
            // The peer does the reconnecting (and its own back-off); be ready for it.
            self.set_state(State::Active, out);
        } else {
            self.set_state(State::Idle, out);
            out.push(Action::Arm(Timer::IdleHold, self.backoff));
            self.backoff = (self.backoff * 2).min(self.cfg.max_backoff);
        }
    }

    fn reset_connection(&mut self) {
        self.buf.clear();
        self.adj.clear();
        self.received.clear();
        self.ctx = None;
        self.local = None;
        self.hold = 0;
        self.opts = CodecOptions::default();
    }

    fn timer(&mut self, t: Timer, out: &mut Vec<Action>) {
        match t {
            Timer::ConnectRetry if self.state == State::Connect => {
                self.fail("connection attempt timed out".into(), out);
            }
            Timer::Hold if self.state.connected() => {
                let n = Notification::new(notif::HOLD_EXPIRED, 0);
                self.send(&Message::Notification(n), out);
                self.fail("hold timer expired".into(), out);
            }
            Timer::Keepalive
                if matches!(self.state, State::OpenConfirm | State::Established)
                    && self.hold > 0 =>
            {
                self.send(&Message::Keepalive, out);
                out.push(Action::Arm(Timer::Keepalive, self.keepalive_interval()));
            }
            Timer::IdleHold if self.state == State::Idle && self.running => self.start(out),
            _ => {}
        }
    }

    fn keepalive_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.hold / 3).max(1))
    }

    fn bytes(&mut self, data: &[u8], out: &mut Vec<Action>) {
        self.buf.extend_from_slice(data);
        loop {
            match decode_with(&self.buf, self.opts) {
                Ok(None) => break,
                Ok(Some((msg, used))) => {
                    self.buf.drain(..used);
                    self.message(msg, out);
                    if !self.state.connected() {
                        break;
                    }
                }
                Err(e) => {
                    if let BgpError::Malformed { notification, .. } = &e {
                        self.send(&Message::Notification(notification.clone()), out);
                    }
                    self.fail(format!("received {e}"), out);
                    break;
                }
            }
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if self.hold > 0 {
            out.push(Action::Arm(
                Timer::Hold,
                Duration::from_secs(u64::from(self.hold)),
            ));
        }
    }

    fn message(&mut self, msg: Message, out: &mut Vec<Action>) {
        match (self.state, msg) {
            (_, Message::Notification(n)) => self.fail(format!("peer sent {n}"), out),
            (State::OpenSent, Message::Open(open)) => self.open_received(open, out),
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(out);
                self.set_state(State::Established, out);
                self.backoff = self.cfg.min_backoff;
                self.adj.clear();
                self.sync_routes(out);
            }
            (State::Established, Message::Keepalive) => self.restart_hold(out),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(out);
                self.apply_received(u);
            }
            (state, msg) => {
                let kind = match msg {
                    Message::Open(_) => "OPEN",
                    Message::Update(_) => "UPDATE",
                    Message::Keepalive => "KEEPALIVE",
                    Message::Notification(_) => "NOTIFICATION",
                };
                self.send(
                    &Message::Notification(Notification::new(notif::FSM, 0)),
                    out,
                );
                self.fail(format!("unexpected {kind} in {state}"), out);
            }
        }
    }

    fn open_received(&mut self, open: Open, out: &mut Vec<Action>) {
        let ebgp = self.cfg.local_asn != self.cfg.peer_asn;
        let refuse = if open.asn != self.cfg.peer_asn {
            Some((notif::OPEN_BAD_PEER_AS, "unexpected peer AS"))
        } else if open.router_id.is_unspecified() || (!ebgp && open.router_id == self.cfg.router_id)
        {
            Some((notif::OPEN_BAD_ID, "bad BGP identifier"))
        } else {
            None
        };
        if let Some((subcode, why)) = refuse {
            self.send(
                &Message::Notification(Notification::new(notif::OPEN, subcode)),
                out,
            );
            self.fail(
                format!(
                    "refused OPEN: {why} (AS {}, id {})",
                    open.asn, open.router_id
                ),
                out,
            );
            return;
        }
        self.hold = self.cfg.hold_time.min(open.hold_time);
        self.opts = CodecOptions {
            four_octet_as: open.four_octet_as(),
        };
        let local_addr = self
            .local
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.ctx = Some(AnnounceContext {
            local_asn: self.cfg.local_asn,
            ebgp,
            four_octet_as: self.opts.four_octet_as,
            ipv4: open.supports(AFI_IPV4, SAFI_UNICAST),
            ipv6: open.supports(AFI_IPV6, SAFI_UNICAST),
            local_addr,
        });
        self.send(&Message::Keepalive, out);
        if self.hold > 0 {
            self.restart_hold(out);
            out.push(Action::Arm(Timer::Keepalive, self.keepalive_interval()));
        } else {
            out.push(Action::Cancel(Timer::Hold));
        }
        self.set_state(State::OpenConfirm, out);
    }

    fn apply_received(&mut self, u: crate::codec::Update) {
        for p in &u.withdrawn {
            self.received.remove(&IpNet::V4(*p));
        }
        for a in &u.attributes {
            match a {
                Attribute::MpUnreach { withdrawn, .. } => {
                    for p in withdrawn {
                        self.received.remove(p);
                    }
                }
                Attribute::MpReach { nlri, .. } => self.received.extend(nlri.iter().copied()),
                _ => {}
            }
        }
        self.received.extend(u.nlri.iter().map(|p| IpNet::V4(*p)));
    }

    fn sync_routes(&mut self, out: &mut Vec<Action>) {
        let Some(ctx) = self.ctx else { return };
        let updates = self.adj.sync(&self.desired, &ctx);
        for u in updates {
            self.send(&Message::Update(u), out);
        }
    }

    fn send(&self, msg: &Message, out: &mut Vec<Action>) {
        match msg.encode_with(self.opts) {
            Ok(bytes) => out.push(Action::Send(bytes)),
            // Unreachable with validated routes (UPDATEs are sized below the limit);
            // logged rather than panicking if it ever happens.
            Err(e) => tracing::error!(error = %e, "failed to encode BGP message"),
        }
    }
}
