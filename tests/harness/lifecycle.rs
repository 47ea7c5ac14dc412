//! Helpers of the lifecycle tests (drain, shutdown, reload, slow backends): a load
//! balancer with one pool behind one listener, an HTTP backend that answers every request
//! after a set delay and counts what is in flight, a Prometheus sample reader, and a
//! bounded poll.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::l4::{free_port, wait_tcp};
use crate::{fixtures, Clients};
use fiberlb_proto::v1 as pb;

/// What [`service`] created.
pub struct Service {
    /// Load balancer id.
    pub lb: String,
    /// Pool id.
    pub pool: String,
    /// Backend ids, in the order given (names `b0`, `b1`, …).
    pub backends: Vec<String>,
    /// Where the listener accepts.
    pub addr: SocketAddr,
}

/// Creates a load balancer (org `acme`) with one round-robin pool of `backends` behind a
/// `protocol` listener on `ip`, and waits until the listener accepts.
pub async fn service(
    api: &mut Clients,
    backends: &[SocketAddr],
    protocol: pb::ListenerProtocol,
    ip: IpAddr,
) -> anyhow::Result<Service> {
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb(&crate::unique("life"), "acme"))
        .await?
        .into_inner()
        .id;
    let pool = api
        .pool
        .create_pool(fixtures::pool(&lb, "p"))
        .await?
        .into_inner()
        .id;
    let mut ids = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let req = fixtures::backend(
            &pool,
            &format!("b{i}"),
            fixtures::ip(&b.ip().to_string()),
            b.port() as u32,
        );
        ids.push(api.backend.add_backend(req).await?.into_inner().id);
    }
    let port = free_port(ip, false)?;
    let mut req = fixtures::listener(&lb, "front", protocol, port as u32);
    req.default_pool_id = Some(pool.clone());
    api.listener.create_listener(req).await?;
    let addr = SocketAddr::new(ip, port);
    wait_tcp(addr, Duration::from_secs(10)).await?;
    Ok(Service {
        lb,
        pool,
        backends: ids,
        addr,
    })
}

/// An HTTP/1.1 backend on 127.0.0.1 that answers every request `200` with its name as
/// body and `x-backend` header, after the current delay.
pub struct SlowHttp {
    /// Its address.
    pub addr: SocketAddr,
    /// Its name.
    pub name: String,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for SlowHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decrements a counter when the request ends, however it ends.
struct Gauge(Arc<AtomicUsize>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SlowHttp {
    /// Starts a backend answering after `delay`.
    pub async fn start(name: &str, delay: Duration) -> anyhow::Result<SlowHttp> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let hits = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (n, d, h, f) = (
            name.to_string(),
            delay_ms.clone(),
            hits.clone(),
            in_flight.clone(),
        );
        let task = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the accept task drops them all.
            let mut conns = JoinSet::new();
            while let Ok((sock, _)) = l.accept().await {
                while conns.try_join_next().is_some() {}
                let (n, d, h, f) = (n.clone(), d.clone(), h.clone(), f.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (n, d, h, f) = (n.clone(), d.clone(), h.clone(), f.clone());
                        async move {
                            drop(req);
                            h.fetch_add(1, Ordering::SeqCst);
                            f.fetch_add(1, Ordering::SeqCst);
                            let _g = Gauge(f);
                            let ms = d.load(Ordering::SeqCst);
                            if ms > 0 {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            let mut r = Response::new(Full::new(Bytes::from(n.clone())));
                            if let Ok(v) = http::HeaderValue::from_str(&n) {
                                r.headers_mut().insert("x-backend", v);
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Ok(SlowHttp {
            addr,
            name: name.to_string(),
            delay_ms,
            hits,
            in_flight,
            task,
        })
    }

    /// Changes the delay of requests that arrive from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests received and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// The value of the first sample of `name` whose label set contains every one of
/// `labels` (such as `backend="b-1"`); `None` when there is none.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (set, v) = r.split_once('}')?;
                    (set, v)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            labels
                .iter()
                .all(|want| set.split(',').any(|have| have == *want))
                .then(|| value.trim().parse().ok())?
        })
        .next()
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `within`.
pub async fn poll<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
