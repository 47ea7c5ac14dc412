//! Backend `max_connections` end to end: a full backend gets no new connections, they go
//! to the backends with room; a pool whose every backend is full closes new TCP
//! connections (without reaching a backend) and answers HTTP requests with 503.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::{free_port, unique_loopback, wait_tcp};
use fiberlb_tests::l7::HttpBackend;
use fiberlb_tests::{bounded, Clients, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Deadline of one client step (connect, first byte).
const STEP: Duration = Duration::from_secs(5);

/// A TCP backend that counts the connections it accepts, writes its one-byte `tag` to
/// each and then holds it open until the client closes.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Counting {
    async fn start(tag: u8) -> anyhow::Result<Counting> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if s.write_all(&[tag]).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 64];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        Ok(Counting {
            addr,
            accepted,
            task,
        })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The accepted count once it has stopped moving: a connection the proxy opened (the
    /// listener's readiness probe) may still wait in this backend's accept queue after the
    /// node already counts it closed.
    async fn settled_count(&self) -> usize {
        let mut n = self.accepted();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.accepted();
            if now == n {
                return n;
            }
            n = now;
        }
    }
}

struct Lb {
    node: Node,
    _dir: tempfile::TempDir,
    api: Clients,
    lb: String,
    ip: IpAddr,
}

impl Lb {
    async fn start() -> anyhow::Result<Lb> {
        let dir = tempfile::tempdir()?;
        let ip = unique_loopback();
        let node = Node::start_with(dir.path(), &["--bind-address", &ip.to_string()]).await?;
        let mut api = node.admin()?;
        let lb = api
            .lb
            .create_load_balancer(fixtures::lb("limits", "acme"))
            .await?
            .into_inner()
            .id;
        Ok(Lb {
            node,
            _dir: dir,
            api,
            lb,
            ip,
        })
    }

    /// A round-robin pool of `backends` (name, address, max_connections); returns the
    /// pool id and the backend ids in order.
    async fn pool(
        &mut self,
        name: &str,
        backends: &[(&str, SocketAddr, Option<u32>)],
    ) -> anyhow::Result<(String, Vec<String>)> {
        let pool = self
            .api
            .pool
            .create_pool(fixtures::pool(&self.lb, name))
            .await?
            .into_inner()
            .id;
        let mut ids = Vec::new();
        for (b, addr, max) in backends {
            let req = pb::AddBackendRequest {
                max_connections: *max,
                ..backend(&pool, b, ip("127.0.0.1"), u32::from(addr.port()))
            };
            let got = self.api.backend.add_backend(req).await?.into_inner();
            assert_eq!(got.max_connections, *max);
            ids.push(got.id);
        }
        Ok((pool, ids))
    }

    async fn listener(
        &mut self,
        protocol: pb::ListenerProtocol,
        pool: &str,
    ) -> anyhow::Result<SocketAddr> {
        let port = free_port(self.ip, false)?;
        let mut req = fixtures::listener(&self.lb, &format!("l{port}"), protocol, u32::from(port));
        req.default_pool_id = Some(pool.to_string());
        self.api.listener.create_listener(req).await?;
        let addr = SocketAddr::new(self.ip, port);
        wait_tcp(addr, Duration::from_secs(10)).await?;
        Ok(addr)
    }

    /// Waits until the node holds no connection to any of `ids`: the readiness probe of
    /// [`Lb::listener`] went through to a backend, and its count must not linger into the
    /// test.
    async fn settle(&mut self, ids: &[String]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for id in ids {
            loop {
                let b = self
                    .api
                    .backend
                    .get_backend(pb::GetBackendRequest {
                        backend_id: id.clone(),
                    })
                    .await?
                    .into_inner();
                if b.active_connections == 0 {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "backend {id} kept its connections"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    /// `fiberlb_backend_max_connections_reached_total` of `backend_id`, 0 when absent.
    async fn reached(&self, backend_id: &str) -> anyhow::Result<f64> {
        let text = fiberlb_tests::http::get(self.node.admin_addr(), "/metrics")
            .await?
            .body;
        let label = format!("backend=\"{backend_id}\"");
        Ok(text
            .lines()
            .filter(|l| l.starts_with("fiberlb_backend_max_connections_reached_total{"))
            .filter(|l| l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// Connects through `front` and reads the backend's tag; `None` when the proxy closed
/// the connection without a backend.
async fn tag_of(front: SocketAddr) -> anyhow::Result<(Option<u8>, TcpStream)> {
    let mut s = tokio::time::timeout(STEP, TcpStream::connect(front)).await??;
    let mut b = [0u8; 1];
    let n = match tokio::time::timeout(STEP, s.read(&mut b)).await? {
        Ok(n) => n,
        // A reset is as closed as a FIN.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(((n == 1).then_some(b[0]), s))
}

/// Connects through `front` until a connection reaches a backend tagged `want`.
async fn wait_for_tag(front: SocketAddr, want: u8, what: &str) -> anyhow::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (tag, s) = tag_of(front).await?;
        if tag == Some(want) {
            return Ok(s);
        }
        drop(s);
        anyhow::ensure!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_full_backend_sends_new_connections_to_the_others() -> anyhow::Result<()> {
    bounded(async {
        let a = Counting::start(b'A').await?;
        let b = Counting::start(b'B').await?;
        let mut lb = Lb::start().await?;
        let (pool, ids) = lb
            .pool("rr", &[("a", a.addr, Some(2)), ("b", b.addr, None)])
            .await?;
        let front = lb.listener(pb::ListenerProtocol::Tcp, &pool).await?;
        lb.settle(&ids).await?;
        let base = a.settled_count().await;

        // Round robin: connections alternate until a holds its two.
        let mut on_a = Vec::new();
        let mut on_b = Vec::new();
        while on_a.len() < 2 {
            anyhow::ensure!(on_a.len() + on_b.len() < 10, "a never got two connections");
            match tag_of(front).await? {
                (Some(b'A'), s) => on_a.push(s),
                (Some(b'B'), s) => on_b.push(s),
                (other, _) => anyhow::bail!("unexpected answer {other:?}"),
            }
        }
        // a is full: every further connection goes to b, none is refused.
        for i in 0..6 {
            let (tag, s) = tag_of(front).await?;
            assert_eq!(tag, Some(b'B'), "connection {i} after a filled up");
            on_b.push(s);
        }
        assert_eq!(a.accepted() - base, 2, "a never saw a third connection");
        let reached = lb.reached(&ids[0]).await?;
        assert!(reached >= 1.0, "the limit was counted: {reached}");
        eprintln!(
            "a held 2 of max 2; 6 more went to b; a turned away {reached} picks (round robin offers it every other time)"
        );

        // A connection to a ends: a takes new ones again.
        drop(on_a.pop());
        let again = wait_for_tag(front, b'A', "a took a connection after one closed").await?;
        assert_eq!(a.accepted() - base, 3);
        drop(again);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_pool_whose_backends_are_all_full_closes_new_connections() -> anyhow::Result<()> {
    bounded(async {
        let a = Counting::start(b'A').await?;
        let mut lb = Lb::start().await?;
        let (pool, ids) = lb.pool("solo", &[("a", a.addr, Some(2))]).await?;
        let front = lb.listener(pb::ListenerProtocol::Tcp, &pool).await?;
        lb.settle(&ids).await?;
        let base = a.settled_count().await;

        let mut held = Vec::new();
        for _ in 0..2 {
            let (tag, s) = tag_of(front).await?;
            assert_eq!(tag, Some(b'A'));
            held.push(s);
        }
        for i in 0..3 {
            let (tag, _) = tag_of(front).await?;
            assert_eq!(tag, None, "extra connection {i} was closed by the proxy");
        }
        assert_eq!(
            a.accepted() - base,
            2,
            "no extra connection reached the backend"
        );
        assert!(lb.reached(&ids[0]).await? >= 3.0);

        // Raising the limit through the API lets a third in (once the node has the change).
        let updated = lb
            .api
            .backend
            .update_backend(pb::UpdateBackendRequest {
                backend_id: ids[0].clone(),
                max_connections: Some(3),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(updated.max_connections, Some(3));
        held.push(wait_for_tag(front, b'A', "a third connection after raising the limit").await?);
        let (tag, _) = tag_of(front).await?;
        assert_eq!(tag, None, "3 of 3");
        assert_eq!(a.accepted() - base, 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn http_to_a_pool_at_capacity_gets_503() -> anyhow::Result<()> {
    bounded(async {
        let web = HttpBackend::start("web").await?;
        let mut lb = Lb::start().await?;
        let (pool, ids) = lb.pool("web", &[("web", web.addr, Some(1))]).await?;
        let front = lb.listener(pb::ListenerProtocol::Http, &pool).await?;
        lb.settle(&ids).await?;
        let ok = fiberlb_tests::http::get(front, "/").await?;
        assert_eq!((ok.status, ok.body.as_str()), (200, "web"));

        // One request in flight fills the backend (L7 counts in-flight requests).
        let hits = web.hits.load(Ordering::SeqCst);
        let slow = tokio::spawn(fiberlb_tests::http::get(front, "/slow/4000"));
        let deadline = Instant::now() + STEP;
        while web.hits.load(Ordering::SeqCst) == hits {
            anyhow::ensure!(Instant::now() < deadline, "the slow request never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let full = fiberlb_tests::http::get(front, "/").await?;
        assert_eq!(full.status, 503, "{full:?}");
        assert!(full.body.contains("at capacity"), "{:?}", full.body);
        assert_eq!(slow.await??.status, 200);
        let after = fiberlb_tests::http::get(front, "/").await?;
        assert_eq!(after.status, 200, "the slot is free again");
        Ok(())
    })
    .await
}
