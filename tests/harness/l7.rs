//! L7 test backends and clients: an HTTP backend speaking HTTP/1.1 and h2c that records
//! what it received, a WebSocket echo server, a gRPC health server (tonic), and HTTP/1,
//! h2c and TLS (h1 or h2) clients built on hyper. Every client call is bounded by
//! [`CALL_TIMEOUT`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Deadline of one client call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// What an [`HttpBackend`] saw of the last request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Protocol version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
}

/// An HTTP/1.1 + h2c backend. Paths:
/// - `/big/<n>`: streams `n` zero bytes in 64 KiB chunks;
/// - `/slow/<ms>`: answers after `ms` milliseconds;
/// - `/echo`: answers with the request body;
/// - anything else: `200` with body and `x-backend` = the backend's name.
pub struct HttpBackend {
    /// Its address.
    pub addr: SocketAddr,
    /// Its name (body of its default answer).
    pub name: String,
    /// Requests received (heads parsed by hyper).
    pub hits: Arc<AtomicUsize>,
    /// The last request.
    pub last: Arc<Mutex<Option<Seen>>>,
    /// Requests being answered now, and the most there ever were at once.
    load: Arc<Load>,
    task: JoinHandle<()>,
}

/// Concurrent requests of one backend.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// One request being answered; counts itself out when dropped.
struct Answering(Arc<Load>);

impl Answering {
    fn new(load: &Arc<Load>) -> Self {
        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.peak.fetch_max(now, Ordering::SeqCst);
        Answering(load.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpBackend {
    /// Starts a backend on 127.0.0.1.
    pub async fn start(name: &str) -> anyhow::Result<HttpBackend> {
        Self::spawn(name, None).await
    }

    /// Starts a backend on 127.0.0.1 speaking TLS with `cert_pem`/`key_pem` (ALPN h2 and
    /// http/1.1).
    pub async fn start_tls(
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<HttpBackend> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::spawn(
            name,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn spawn(
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> anyhow::Result<HttpBackend> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let hits = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(None));
        let load = Arc::new(Load::default());
        let (n, h, s, ld) = (name.to_string(), hits.clone(), last.clone(), load.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let (n, h, s, ld, tls) = (n.clone(), h.clone(), s.clone(), ld.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let busy = Answering::new(&ld);
                        let answer = answer(req, n.clone(), h.clone(), s.clone());
                        async move {
                            let r = answer.await;
                            drop(busy);
                            r
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(sock), svc)
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(sock).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Ok(HttpBackend {
            addr,
            name: name.to_string(),
            hits,
            last,
            load,
            task,
        })
    }

    /// The last request seen.
    pub fn last(&self) -> Option<Seen> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    /// Requests seen so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The most requests it was answering at once (until each response head was ready).
    pub fn peak(&self) -> usize {
        self.load.peak.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: Request<Incoming>,
    name: String,
    hits: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Seen>>>,
) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let seen = Seen {
        method: req.method().to_string(),
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        version: req.version(),
        headers: req.headers().clone(),
    };
    if let Ok(mut g) = last.lock() {
        *g = Some(seen);
    }
    let path = req.uri().path().to_string();
    let mut resp = if let Some(n) = path
        .strip_prefix("/big/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let chunks = futures::stream::unfold(n, |left| async move {
            if left == 0 {
                return None;
            }
            let take = left.min(64 * 1024);
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![0u8; take as usize]))),
                left - take,
            ))
        });
        let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(chunks)));
        r.headers_mut().insert("content-length", n.into());
        r
    } else if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Response::new(full(name.clone()))
    } else if path == "/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Response::new(full(body))
    } else {
        Response::new(full(name.clone()))
    };
    resp.headers_mut().insert(
        "x-backend",
        name.parse().unwrap_or(http::HeaderValue::from_static("?")),
    );
    Ok(resp)
}

fn full(b: impl Into<Bytes>) -> Body {
    BodyExt::boxed_unsync(Full::new(b.into()).map_err(|never| match never {}))
}

/// A server task that stops when dropped.
pub struct Server {
    /// Its address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A WebSocket server echoing every message.
pub async fn ws_echo() -> anyhow::Result<Server> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(Server { addr, task })
}

/// A gRPC server offering `grpc.health.v1.Health` with service `svc` SERVING; returns the
/// reporter to change its status.
pub async fn grpc_health(
    svc: &str,
) -> anyhow::Result<(Server, tonic_health::server::HealthReporter)> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(svc, tonic_health::ServingStatus::Serving)
        .await;
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let incoming = tokio_stream_from(l);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok((Server { addr, task }, reporter))
}

fn tokio_stream_from(l: TcpListener) -> impl futures::Stream<Item = std::io::Result<TcpStream>> {
    futures::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

/// A response read by a test client.
#[derive(Debug)]
pub struct Got {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Protocol version.
    pub version: Version,
}

impl Got {
    /// Header `name` as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` over a new connection `io` with HTTP/1.1 or HTTP/2 and reads the response.
pub async fn send_on<I>(io: I, h2: bool, req: Request<Full<Bytes>>) -> anyhow::Result<Got>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let work = async move {
        let resp = if h2 {
            let (mut tx, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            tx.send_request(req).await?
        } else {
            let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            tx.send_request(req).await?
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(Got {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("request took longer than {CALL_TIMEOUT:?}"))?
}

/// A request for `path` with `host` and extra headers.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    h2: bool,
) -> Request<Full<Bytes>> {
    let uri = if h2 {
        format!("http://{host}{path}")
    } else {
        path.to_string()
    };
    let mut b = Request::builder().method(method).uri(uri);
    if h2 {
        b = b.version(Version::HTTP_2);
    } else {
        b = b.header("host", host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("valid test request")
}

/// `GET path` over plain HTTP/1.1 to `addr` with `Host: host`.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Got> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    send_on(s, false, request("GET", host, path, headers, "", false)).await
}

/// `GET path` over h2c (prior knowledge).
pub async fn get_h2c(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Got> {
    let s = TcpStream::connect(addr).await?;
    send_on(s, true, request("GET", host, path, &[], "", true)).await
}

/// A TLS client config trusting `ca_pems`, offering `alpn`, optionally presenting a
/// client certificate.
pub fn tls_client(
    ca_pems: &[&str],
    alpn: &[&[u8]],
    identity: Option<(&str, &str)>,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut c = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            b.with_client_auth_cert(certs, PrivateKeyDer::from_pem_slice(key.as_bytes())?)?
        }
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(c)
}

/// Connects with TLS to `addr` sending `sni`; returns the stream and the peer
/// certificate's DER.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: rustls::ClientConfig,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string())?;
    let s = tokio::time::timeout(CALL_TIMEOUT, connector.connect(name, tcp)).await??;
    Ok(s)
}

/// Writes `raw` to `addr` and reads until the server closes (or `CALL_TIMEOUT`).
pub async fn raw(addr: SocketAddr, raw: &[u8]) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(CALL_TIMEOUT, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Query parameters of a URI path (`/x?a=1&b=2`).
pub fn query(uri: &str) -> HashMap<String, String> {
    uri.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.into(), v.into()))
                .collect()
        })
        .unwrap_or_default()
}

/// An empty body for requests without one.
pub fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}
