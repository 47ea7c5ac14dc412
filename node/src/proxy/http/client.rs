//! Pooled keep-alive clients towards backends.
//!
//! One entry per backend holds two hyper-util clients over a connector that always dials
//! the address our balancer resolved (never DNS at request time): an HTTP/1.1 one and an
//! HTTP/2-only one (h2c by prior knowledge, or ALPN `h2` over TLS). Which one a request
//! takes is decided by the caller (see `forward::use_h2`). HTTP/1.1 requests carry the
//! backend address as URI authority, so the pool is per backend and the client's `Host`
//! header goes through untouched; HTTP/2 requests carry the client's host as authority
//! (it becomes `:authority`). Entries outlive configuration snapshots (that is the point
//! of pooling) and are rebuilt only when the backend's address or TLS settings change, or
//! a configuration reload changed the connect or idle timeout ([`Dial`]).
//!
//! TLS to backends (re-encryption) is set by backend metadata, as the API has no fields
//! for it yet (documented in docs/http.md):
//! - `tls=true`: speak TLS to the backend, verifying its certificate against the Mozilla
//!   roots (webpki-roots) plus the CA bundle of `tls_ca`;
//! - `tls_ca=<certificate id>`: a CA bundle uploaded through CertificateService (same org);
//! - `tls_sni=<name>`: the server name to send and verify (default: the backend's host
//!   name, or its IP address, which rustls verifies against IP SANs and sends no SNI for);
//! - `tls_skip_verify=true`: accept any certificate (handshake signatures are still
//!   checked). For lab use only.
//! - `http2=true`: the backend speaks HTTP/2 (h2c, or ALPN h2 over TLS): every request but
//!   upgrades goes over HTTP/2.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use fiberlb_api::model::{Backend, BackendAddress};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::body::ProxyBody;
use super::tls_client;
use crate::proxy::connect::SocketOptions;
use crate::snapshot::Snapshot;

/// Why a backend client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Backend TLS metadata is unusable.
    #[error("backend {backend}: {reason}")]
    Tls {
        /// Backend name.
        backend: String,
        /// What is wrong.
        reason: String,
    },
}

/// TLS settings of a backend, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsKey {
    /// Server name to send and verify.
    pub server_name: String,
    /// Accept any certificate.
    pub skip_verify: bool,
    /// Extra CA bundle: certificate id and its store revision.
    pub ca: Option<(String, u64)>,
}

/// What an entry was built for; a change rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    addr: SocketAddr,
    tls: Option<TlsKey>,
}

/// How backend connections are dialled and pooled (`[proxy] connection_timeout_ms` and
/// `http_idle_timeout_seconds`, which SIGHUP may change).
#[derive(Debug, Clone, Copy)]
pub struct Dial {
    /// Socket options, with the connect timeout (also the backend TLS handshake's).
    pub sockets: SocketOptions,
    /// Pooled idle connections are closed after this.
    pub idle: Duration,
    /// Bumped each time `sockets.connect_timeout` or `idle` change: an entry built for an
    /// older generation is rebuilt on its next use by a connection with a newer one.
    /// (Comparing the values instead would make old and new connections rebuild each
    /// other's entries back and forth.)
    pub generation: u64,
}

/// The clients of one backend.
#[derive(Debug)]
pub struct Entry {
    key: Key,
    /// The [`Dial::generation`] it was built with.
    generation: u64,
    /// HTTP/1.1, ours: every request but upgrades and HTTP/2 ones.
    pub http1: super::h1client::Client,
    /// HTTP/1.1, hyper's: upgrades (hyper hands over the upgraded connection).
    pub h1: Client<Connector, ProxyBody>,
    /// HTTP/2 only.
    pub h2: Client<Connector, ProxyBody>,
    /// Whether the backend speaks HTTP/2 for everything (`http2=true`).
    pub h2_always: bool,
}

impl Entry {
    /// URI scheme for requests to it.
    pub fn scheme(&self) -> &'static str {
        if self.key.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Backend clients of the node, by backend id.
#[derive(Debug, Default)]
pub struct Clients {
    map: Arc<DashMap<String, Arc<Entry>>>,
    /// Set once the task closing stale idle connections runs.
    sweeper: std::sync::OnceLock<()>,
}

/// How often idle backend connections are checked (timed out, or closed by the backend).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn meta_true(b: &Backend, key: &str) -> bool {
    b.metadata
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl Clients {
    /// The clients for `backend` at `addr` (built on first use, after a change of the
    /// backend, or when `dial` is newer than the entry).
    pub fn get(
        &self,
        backend: &Backend,
        addr: SocketAddr,
        snapshot: &Snapshot,
        dial: &Dial,
    ) -> Result<Arc<Entry>, ClientError> {
        let key = Key {
            addr,
            tls: tls_key(backend, addr, snapshot)?,
        };
        let h2_always = meta_true(backend, "http2");
        if let Some(e) = self.map.get(&backend.id) {
            if e.key == key && e.h2_always == h2_always && e.generation >= dial.generation {
                return Ok(e.clone());
            }
        }
        let entry = Arc::new(Self::build(backend, key, h2_always, snapshot, dial)?);
        self.map.insert(backend.id.clone(), entry.clone());
        self.sweeper.get_or_init(|| self.spawn_sweeper());
        Ok(entry)
    }

    /// Closes stale idle connections of our HTTP/1 clients every [`SWEEP_EVERY`] (hyper's
    /// clients run their own idle timers), until the node's clients are dropped.
    fn spawn_sweeper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let map = Arc::downgrade(&self.map);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(map) = map.upgrade() else { break };
                let entries: Vec<Arc<Entry>> = map.iter().map(|e| e.value().clone()).collect();
                drop(map);
                for e in entries {
                    e.http1.purge();
                }
            }
        });
    }

    /// Forgets the clients of backends for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.map.retain(|id, _| keep(id));
    }

    fn build(
        backend: &Backend,
        key: Key,
        h2_always: bool,
        snapshot: &Snapshot,
        dial: &Dial,
    ) -> Result<Entry, ClientError> {
        let tls = match &key.tls {
            None => None,
            Some(t) => {
                let ca_pem =
                    t.ca.as_ref()
                        .and_then(|(id, _)| snapshot.certificates.get(id))
                        .map(|c| c.certificate_pem.as_str());
                let err = |reason: String| ClientError::Tls {
                    backend: backend.name.clone(),
                    reason,
                };
                let name = ServerName::try_from(t.server_name.clone())
                    .map_err(|e| err(format!("tls_sni {:?}: {e}", t.server_name)))?;
                let h1 = tls_client::config(t.skip_verify, ca_pem, b"http/1.1").map_err(err)?;
                let h2 = tls_client::config(t.skip_verify, ca_pem, b"h2").map_err(err)?;
                Some((
                    name,
                    TlsConnector::from(Arc::new(h1)),
                    TlsConnector::from(Arc::new(h2)),
                ))
            }
        };
        let addr = key.addr;
        let connector = |h2: bool| Connector {
            addr,
            sockets: dial.sockets,
            tls: tls
                .as_ref()
                .map(|(name, c1, c2)| (if h2 { c2.clone() } else { c1.clone() }, name.clone())),
        };
        let mut b1 = Client::builder(TokioExecutor::new());
        b1.pool_idle_timeout(dial.idle)
            .pool_timer(TokioTimer::new())
            .set_host(false);
        let mut b2 = Client::builder(TokioExecutor::new());
        b2.pool_idle_timeout(dial.idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .http2_only(true);
        Ok(Entry {
            key,
            generation: dial.generation,
            http1: super::h1client::Client::new(connector(false), dial.idle),
            h1: b1.build(connector(false)),
            h2: b2.build(connector(true)),
            h2_always,
        })
    }
}

/// The TLS settings of `backend`, or `None` for plain TCP.
fn tls_key(
    backend: &Backend,
    addr: SocketAddr,
    snapshot: &Snapshot,
) -> Result<Option<TlsKey>, ClientError> {
    if !meta_true(backend, "tls") {
        return Ok(None);
    }
    let ca = match backend.metadata.get("tls_ca").filter(|v| !v.is_empty()) {
        None => None,
        Some(id) => {
            let cert = snapshot
                .certificates
                .get(id)
                .filter(|c| c.scope.org_id == backend.scope.org_id)
                .ok_or_else(|| ClientError::Tls {
                    backend: backend.name.clone(),
                    reason: format!("tls_ca certificate {id} not found"),
                })?;
            Some((id.clone(), cert.revision))
        }
    };
    let server_name = match (
        backend.metadata.get("tls_sni").filter(|v| !v.is_empty()),
        &backend.address,
    ) {
        (Some(sni), _) => sni.clone(),
        (None, BackendAddress::Hostname(h)) => h.clone(),
        (None, _) => addr.ip().to_string(),
    };
    Ok(Some(TlsKey {
        server_name,
        skip_verify: meta_true(backend, "tls_skip_verify"),
        ca,
    }))
}

/// Dials one backend address, with TLS when configured.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    sockets: SocketOptions,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<BackendStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.dial().await.map(TokioIo::new) })
    }
}

impl Connector {
    /// A plain-TCP connector to `addr` (tests of the clients).
    #[cfg(test)]
    pub fn plain(addr: SocketAddr) -> Self {
        Connector {
            addr,
            sockets: SocketOptions {
                nodelay: true,
                keepalive: None,
                connect_timeout: Duration::from_secs(2),
            },
            tls: None,
        }
    }

    /// A new connection to the backend: TCP with our socket options, then TLS when
    /// configured, each bounded by the connect timeout.
    pub async fn dial(&self) -> io::Result<BackendStream> {
        let (addr, sockets) = (self.addr, self.sockets);
        let tcp = match tokio::time::timeout(
            sockets.connect_timeout,
            crate::proxy::connect::open(addr, sockets),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", sockets.connect_timeout),
                ))
            }
        };
        Ok(match &self.tls {
            None => BackendStream::Plain(tcp),
            Some((connector, name)) => {
                let s = tokio::time::timeout(
                    sockets.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
                BackendStream::Tls(Box::new(s))
            }
        })
    }
}

/// A connection to a backend.
#[derive(Debug)]
pub enum BackendStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for BackendStream {
    fn connected(&self) -> Connected {
        match self {
            BackendStream::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendStream::Plain(s) => s.is_write_vectored(),
            BackendStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
