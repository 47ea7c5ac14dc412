//! Real backends and helpers for data-plane tests: a TCP echo server, a UDP echo server,
//! a TLS server presenting its own certificate, free ports and readiness waits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// A loopback address of its own for one node's listeners (127.0.0.0/8 is all loopback),
/// so parallel tests never share a listener address.
pub fn unique_loopback() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 200) * 256;
    IpAddr::V4(Ipv4Addr::new(
        127,
        77,
        ((n >> 8) & 0xff) as u8,
        (n & 0xff).max(1) as u8,
    ))
}

/// A port that was free on `ip` a moment ago (the listener port is chosen by the test,
/// because the API takes a port number).
pub fn free_port(ip: IpAddr, udp: bool) -> anyhow::Result<u16> {
    let addr = SocketAddr::new(ip, 0);
    Ok(if udp {
        std::net::UdpSocket::bind(addr)?.local_addr()?.port()
    } else {
        std::net::TcpListener::bind(addr)?.local_addr()?.port()
    })
}

/// Waits until a TCP connect to `addr` succeeds (the listener is open).
pub async fn wait_tcp(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{addr} did not start listening within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A backend task that stops when dropped.
pub struct Backend {
    /// Its address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TCP echo server; each connection first writes `banner` (may be empty), then echoes.
pub async fn tcp_echo(banner: &'static [u8]) -> anyhow::Result<Backend> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if !banner.is_empty() && s.write_all(banner).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(Backend { addr, task })
}

/// UDP echo server; replies are prefixed with `tag` so a test can tell backends apart.
pub async fn udp_echo(tag: &'static [u8]) -> anyhow::Result<Backend> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = s.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let mut reply = tag.to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, peer).await;
        }
    });
    Ok(Backend { addr, task })
}

/// TLS server presenting `cert`/`key` (PEM); after the handshake it writes `hello` and
/// echoes what it reads.
pub async fn tls_server(
    cert_pem: &str,
    key_pem: &str,
    hello: &'static [u8],
) -> anyhow::Result<Backend> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                if tls.write_all(hello).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(Backend { addr, task })
}

/// Connects with TLS to `addr` sending `sni`, trusting only `ca_pem`; returns the first
/// `n` bytes the server sends.
pub async fn tls_hello(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    n: usize,
) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from(sni.to_string())?, tcp)
        .await?;
    let mut buf = vec![0u8; n];
    tls.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A load balancer `name` (org `acme`) whose pool `p` has one backend at `backend`, behind
/// an open TCP listener on `bind_ip`.
pub struct TcpService {
    /// Load balancer id.
    pub lb: String,
    /// Pool id.
    pub pool: String,
    /// Where the listener accepts.
    pub addr: SocketAddr,
}

/// Creates a [`TcpService`] through the API and waits until its listener accepts.
pub async fn tcp_service(
    api: &mut crate::Clients,
    name: &str,
    backend: SocketAddr,
    bind_ip: IpAddr,
) -> anyhow::Result<TcpService> {
    use crate::fixtures;
    use fiberlb_proto::v1 as pb;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb(name, "acme"))
        .await?
        .into_inner()
        .id;
    let pool = api
        .pool
        .create_pool(fixtures::pool(&lb, "p"))
        .await?
        .into_inner()
        .id;
    let b = fixtures::backend(
        &pool,
        "e",
        fixtures::ip(&backend.ip().to_string()),
        backend.port() as u32,
    );
    api.backend.add_backend(b).await?;
    let port = free_port(bind_ip, false)?;
    let mut req = fixtures::listener(&lb, "t", pb::ListenerProtocol::Tcp, port as u32);
    req.default_pool_id = Some(pool.clone());
    api.listener.create_listener(req).await?;
    let addr = SocketAddr::new(bind_ip, port);
    wait_tcp(addr, Duration::from_secs(10)).await?;
    Ok(TcpService { lb, pool, addr })
}
