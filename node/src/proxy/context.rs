//! What every connection handler needs: the snapshot, the resolver and the socket settings.
//!
//! The `[proxy]` values a configuration reload (SIGHUP) may change live in one
//! [`LiveProxy`] behind an `ArcSwap`: a handler loads it once when its connection starts
//! (one atomic load, no lock) and keeps what it loaded to the end, so a reload changes new
//! connections and leaves established ones alone. What is fixed at start (listener socket
//! options inherited by accepted sockets, buffer sizes, TLS defaults) needs a restart.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::connect::SocketOptions;
use super::http::HttpLive;
use crate::resolve::Resolver;
use crate::settings::ProxySettings;
use crate::snapshot::SnapshotCell;

/// The `[proxy]` values that apply to new connections without a restart.
#[derive(Debug, Clone)]
pub struct LiveProxy {
    /// Socket options for backend connections, with the current connect timeout
    /// (`connection_timeout_ms`).
    pub sockets: SocketOptions,
    /// How long a TLS passthrough client may take to send its ClientHello
    /// (`header_read_timeout_ms`).
    pub hello_timeout: Duration,
    /// The L7 limits and timeouts.
    pub http: HttpLive,
    /// `trusted_forwarders`: clients whose `X-Forwarded-For` is kept.
    pub trusted_forwarders: Arc<[ipnet::IpNet]>,
}

impl LiveProxy {
    /// Whether a client at `ip` may hand us an `X-Forwarded-For` chain to append to.
    pub fn trusts_forwarded_from(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_forwarders.iter().any(|n| n.contains(&ip))
    }

    /// The values of `s`; `fixed` supplies the socket options that need a restart, and
    /// `generation` is the backend-dialling generation (see [`super::http::Dial`]).
    fn new(s: &ProxySettings, fixed: SocketOptions, generation: u64) -> Self {
        let sockets = SocketOptions {
            connect_timeout: s.connection_timeout(),
            ..fixed
        };
        LiveProxy {
            sockets,
            hello_timeout: s.header_read_timeout(),
            http: HttpLive::new(s, sockets, generation),
            trusted_forwarders: s.trusted_forwarders.iter().copied().collect(),
        }
    }

    /// Whether the two differ in anything a connection would see.
    fn differs(&self, other: &LiveProxy) -> bool {
        self.sockets.connect_timeout != other.sockets.connect_timeout
            || self.hello_timeout != other.hello_timeout
            || self.trusted_forwarders != other.trusted_forwarders
            || self.http.limits != other.http.limits
            || self.http.dial.idle != other.http.dial.idle
    }
}

/// Shared by all listeners of a node.
#[derive(Debug, Clone)]
pub struct ProxyContext {
    /// Current configuration.
    pub cell: Arc<SnapshotCell>,
    /// Backend address resolution.
    pub resolver: Resolver,
    /// Socket options as of start-up. Nodelay and keepalive are set on the listener
    /// sockets (accepted sockets inherit them) and need a restart to change; handlers
    /// read the connect timeout from [`ProxyContext::live`] instead.
    pub sockets: SocketOptions,
    /// Copy buffer size.
    pub buffer_size: usize,
    /// Bulk TCP directions use splice(2) (`[proxy] zero_copy`).
    pub zero_copy: bool,
    /// The ClientHello timeout as of start-up; handlers read [`LiveProxy::hello_timeout`].
    pub hello_timeout: Duration,
    /// Cancelled at the end of the shutdown grace period: closes every connection.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The L7 data plane's backend clients and persistence tables.
    pub http: Arc<super::http::HttpShared>,
    /// What a reload may change; see the module documentation.
    live: Arc<ArcSwap<LiveProxy>>,
    /// Open HTTP/HTTPS client connections (see [`ProxyContext::open_http_connections`]).
    http_conns: Arc<AtomicUsize>,
}

/// Counts an open HTTP client connection until dropped.
#[derive(Debug)]
pub struct HttpConnGuard(Arc<AtomicUsize>);

impl Drop for HttpConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection among its listener's open connections (what `connection_limit`
/// is checked against) until dropped.
#[derive(Debug)]
pub struct OpenGuard(Arc<AtomicU32>);

impl OpenGuard {
    /// Takes over one count the caller has already added to `open`.
    pub fn new(open: Arc<AtomicU32>) -> Self {
        OpenGuard(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ProxyContext {
    /// Builds the context from `[proxy]` settings.
    pub fn new(cell: Arc<SnapshotCell>, resolver: Resolver, s: &ProxySettings) -> Self {
        let sockets = SocketOptions {
            nodelay: s.tcp_nodelay,
            keepalive: s.tcp_keepalive(),
            connect_timeout: s.connection_timeout(),
        };
        Self {
            cell,
            resolver,
            sockets,
            buffer_size: s.recv_buffer_size.clamp(4096, 1 << 20),
            zero_copy: s.zero_copy,
            hello_timeout: s.header_read_timeout(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            http: Arc::new(super::http::HttpShared::new(s)),
            live: Arc::new(ArcSwap::from_pointee(LiveProxy::new(s, sockets, 0))),
            http_conns: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts an HTTP client connection as open until the guard drops.
    pub fn http_connection(&self) -> HttpConnGuard {
        self.http_conns.fetch_add(1, Ordering::Relaxed);
        HttpConnGuard(self.http_conns.clone())
    }

    /// HTTP client connections still open. A drain waits for these as well as for
    /// backend connections: a response whose last bytes hyper has taken from the backend
    /// (so the backend count is down) may still sit in the client socket's write buffer.
    pub fn open_http_connections(&self) -> usize {
        self.http_conns.load(Ordering::Relaxed)
    }

    /// The live values for a new connection; load once per connection and keep them.
    pub fn live(&self) -> Arc<LiveProxy> {
        self.live.load_full()
    }

    /// Socket options for a new backend connection (the current connect timeout).
    pub fn sockets_now(&self) -> SocketOptions {
        self.live.load().sockets
    }

    /// Applies the live part of new `[proxy]` settings to connections accepted from now
    /// on. Returns whether anything changed. Only the reload path calls this, so the
    /// load-compare-store needs no lock.
    pub fn apply(&self, s: &ProxySettings) -> bool {
        let old = self.live.load_full();
        let mut new = LiveProxy::new(s, self.sockets, old.http.dial.generation);
        if !new.differs(&old) {
            return false;
        }
        if new.sockets.connect_timeout != old.sockets.connect_timeout
            || new.http.dial.idle != old.http.dial.idle
        {
            new = LiveProxy::new(s, self.sockets, old.http.dial.generation + 1);
        }
        self.live.store(Arc::new(new));
        true
    }
}

#[cfg(test)]
impl ProxyContext {
    /// A context of settings `s` over an empty configuration, for unit tests.
    pub(crate) fn for_tests(s: &ProxySettings) -> ProxyContext {
        let resolver = Resolver::new(crate::resolve::ResolverConfig::default());
        ProxyContext::new(Arc::new(SnapshotCell::default()), resolver, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(s: &ProxySettings) -> ProxyContext {
        ProxyContext::for_tests(s)
    }

    #[tokio::test]
    async fn apply_changes_new_loads_and_leaves_loaded_values_alone() {
        let s = ProxySettings::default();
        let c = ctx(&s);
        let before = c.live();
        assert!(!c.apply(&s), "same settings: nothing to apply");
        let mut t = s.clone();
        t.header_read_timeout_ms = 700;
        t.max_body_size_bytes = 0;
        assert!(c.apply(&t));
        let after = c.live();
        assert_eq!(after.http.limits.head_timeout, Duration::from_millis(700));
        assert_eq!(after.hello_timeout, Duration::from_millis(700));
        assert_eq!(after.http.limits.max_body, None);
        // An established connection keeps what it loaded.
        assert_eq!(before.http.limits.head_timeout, Duration::from_secs(10));
        // Nothing about backend dialling changed: pooled backend clients stay.
        assert_eq!(after.http.dial.generation, before.http.dial.generation);
    }

    #[tokio::test]
    async fn a_new_connect_or_idle_timeout_bumps_the_dial_generation() {
        let s = ProxySettings::default();
        let c = ctx(&s);
        let mut t = s.clone();
        t.connection_timeout_ms = 250;
        assert!(c.apply(&t));
        let live = c.live();
        assert_eq!(live.http.dial.generation, 1);
        assert_eq!(live.sockets.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            live.http.dial.sockets.connect_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(c.sockets_now().connect_timeout, Duration::from_millis(250));
        t.http_idle_timeout_seconds = 5;
        assert!(c.apply(&t));
        assert_eq!(c.live().http.dial.generation, 2);
        assert_eq!(c.live().http.dial.idle, Duration::from_secs(5));
        // Settings that need a restart are not taken.
        t.tcp_nodelay = !s.tcp_nodelay;
        assert!(!c.apply(&t));
        assert_eq!(c.live().sockets.nodelay, s.tcp_nodelay);
    }

    #[tokio::test]
    async fn trusted_forwarders_default_to_everyone_and_apply_live() {
        let s = ProxySettings::default();
        let c = ctx(&s);
        let v4: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(c.live().trusts_forwarded_from(v4));
        assert!(c
            .live()
            .trusts_forwarded_from("2001:db8::1".parse().unwrap()));
        let mut t = s.clone();
        t.trusted_forwarders = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(c.apply(&t));
        assert!(!c.live().trusts_forwarded_from(v4));
        assert!(
            c.live().trusts_forwarded_from(mapped),
            "v4-mapped matches v4 nets"
        );
        t.trusted_forwarders.clear();
        assert!(c.apply(&t));
        assert!(!c.live().trusts_forwarded_from(mapped));
    }
}
