//! Idle connections: open `count` connections, one echo round trip each (so the proxy
//! has connected to a backend and moved data) or one keep-alive HTTP request each, then
//! keep them open without traffic.

use std::io::{self, Write};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::args::{HoldOpts, Proto};
use crate::{http, sock};

/// Opens the connections, prints `held N failed F`, and holds them for `o.hold`
/// (the caller normally kills the process once it has measured).
pub fn run(o: &HoldOpts) -> io::Result<()> {
    crate::runtime(o.threads)?.block_on(async {
        let (held, failed, first) = open(o).await;
        if let Some(e) = first {
            eprintln!("connrate hold: first failure: {e}");
        }
        let mut out = io::stdout().lock();
        writeln!(out, "held {} failed {}", held.len(), failed)?;
        out.flush()?;
        drop(out);
        tokio::time::sleep(o.hold).await;
        drop(held);
        Ok(())
    })
}

/// Opens `o.count` connections, at most `o.concurrency` in flight.
async fn open(o: &HoldOpts) -> (Vec<TcpStream>, usize, Option<String>) {
    let gate = Arc::new(Semaphore::new(o.concurrency));
    let req: Option<Arc<[u8]>> =
        (o.proto == Proto::Http).then(|| http::request(&o.http, false).into());
    let mut tasks = Vec::with_capacity(o.count);
    for i in 0..o.count {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let (addr, src, req) = (o.addr, sock::source(i, o.sources, o.addr), req.clone());
        tasks.push(tokio::spawn(async move {
            let r = match req {
                Some(req) => http::keepalive_get(addr, src, &req).await,
                None => sock::echo_round_trip(addr, src).await,
            };
            drop(permit);
            r
        }));
    }
    let (mut held, mut failed, mut first) = (Vec::with_capacity(o.count), 0, None);
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                failed += 1;
                first.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                failed += 1;
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (held, failed, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holds_every_connection_open() {
        let l = crate::serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(crate::serve::accept_loop(l));
        let o = HoldOpts {
            addr,
            count: 200,
            concurrency: 16,
            threads: 1,
            sources: 4,
            hold: Duration::ZERO,
            proto: Proto::Echo,
            http: crate::args::HttpTarget {
                path: "/".into(),
                host: "x".into(),
            },
        };
        let (held, failed, first) = tokio::time::timeout(Duration::from_secs(20), open(&o))
            .await
            .unwrap();
        assert_eq!((held.len(), failed), (200, 0), "{first:?}");
        // Still open: a further round trip on a held connection works.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = held.into_iter().next().unwrap();
        s.write_all(b"y").await.unwrap();
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"y");
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holds_http_connections_after_one_request_each() {
        let addr = http::testserver::spawn(200, "length").await;
        let o = HoldOpts {
            addr,
            count: 50,
            concurrency: 8,
            threads: 1,
            sources: 2,
            hold: Duration::ZERO,
            proto: Proto::Http,
            http: crate::args::HttpTarget {
                path: "/".into(),
                host: "bench.local".into(),
            },
        };
        let (held, failed, first) = tokio::time::timeout(Duration::from_secs(20), open(&o))
            .await
            .unwrap();
        assert_eq!((held.len(), failed), (50, 0), "{first:?}");
        // Kept alive: another request on a held connection is answered.
        let mut s = held.into_iter().next().unwrap();
        let req = http::request(&o.http, false);
        tokio::time::timeout(Duration::from_secs(5), http::exchange(&mut s, &req, false))
            .await
            .unwrap()
            .unwrap();
    }
}
