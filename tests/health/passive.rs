//! Passive detection under real traffic: a backend dies while a client keeps sending
//! idempotent requests; not one of them fails.

use super::*;
use bytes::Bytes;
use fiberlb_tests::bounded;
use http_body_util::Full;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// An HTTP/1.1 keep-alive backend answering its name; `kill` drops the listener and every
/// open connection at once, as the death of its process would.
struct Mortal {
    addr: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Mortal {
    async fn start(name: &'static str) -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let t = tasks.clone();
        tasks.lock().expect("not poisoned").spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                t.lock().expect("not poisoned").spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(name.as_bytes()),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Ok(Mortal { addr, tasks })
    }

    fn kill(&self) {
        self.tasks.lock().expect("not poisoned").abort_all();
    }
}

#[tokio::test]
async fn a_backend_dying_under_a_request_loop_fails_no_idempotent_request() -> anyhow::Result<()> {
    bounded(async {
        let a = Mortal::start("A").await?;
        let b = Mortal::start("B").await?;
        let mut lb = start(None).await?;
        // No active check: passive detection alone.
        let pool = lb.pool("web", None, None).await?;
        let ida = lb.add(&pool, "a", a.addr).await?;
        lb.add(&pool, "b", b.addr).await?;
        let front = lb.listener_of(&pool, pb::ListenerProtocol::Http).await?;

        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let (ok, failed, a_after) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (stop, killed) = (stop.clone(), killed.clone());
                let (ok, failed, a_after) = (ok.clone(), failed.clone(), a_after.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let r = tokio::time::timeout(
                            Duration::from_secs(5),
                            fiberlb_tests::l7::get(front, "app.example.com", "/", &[]),
                        )
                        .await;
                        match r {
                            Ok(Ok(r)) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                // A response that left A before the kill may land after it.
                                if killed.load(Ordering::Relaxed) && r.text() == "A" {
                                    a_after.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            other => {
                                eprintln!("failed request: {other:?}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        // Both serve, then A dies mid-traffic.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let before = ok.load(Ordering::Relaxed);
        a.kill();
        killed.store(true, Ordering::Relaxed);
        let (h, took) = lb
            .wait_health(&ida, Duration::from_secs(5), "A ejected", |h| !h.healthy)
            .await?;
        println!("A ejected by passive detection {took:?} after the kill: {h:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await?;
        }
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        println!(
            "requests: {before} before the kill, {} after, {failed} failed",
            ok - before
        );
        assert!(before > 0 && ok > before, "traffic flowed before and after");
        assert_eq!(failed, 0, "no client request failed");
        assert!(
            a_after.load(Ordering::Relaxed) <= 4,
            "A answered after its death"
        );
        assert!(
            h.last_error.as_deref().unwrap_or("").contains("ejected"),
            "passive ejection is what took A out: {h:?}"
        );
        drop(b);
        Ok(())
    })
    .await
}
