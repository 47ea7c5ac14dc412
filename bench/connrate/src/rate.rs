//! New connections per second: workers loop connect → one exchange → close. The exchange
//! is a 1-byte echo, an HTTP/1.1 `GET` with `Connection: close`, or a full TLS handshake
//! followed by that `GET` (`--proto`).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::args::{Proto, RateOpts};
use crate::{http, sock, tls};

/// What each connection does, prepared once.
#[derive(Clone)]
enum Exchange {
    Echo,
    Http(Arc<[u8]>),
    Https(Arc<[u8]>, TlsConnector, ServerName<'static>),
}

impl Exchange {
    fn new(o: &RateOpts) -> io::Result<Self> {
        let req: Arc<[u8]> = http::request(&o.http, true).into();
        Ok(match o.proto {
            Proto::Echo => Exchange::Echo,
            Proto::Http => Exchange::Http(req),
            Proto::Https => {
                Exchange::Https(req, tls::connector()?, tls::server_name(&o.http.host)?)
            }
        })
    }

    /// One connection; `Ok(true)` when a TLS handshake was resumed.
    async fn once(&self, addr: SocketAddr, src: Option<IpAddr>) -> io::Result<bool> {
        match self {
            Exchange::Echo => sock::echo_round_trip(addr, src).await.map(|_| false),
            Exchange::Http(req) => http::close_get(addr, src, req).await.map(|()| false),
            Exchange::Https(req, connector, name) => {
                tls::handshake_get(addr, src, connector, name.clone(), req).await
            }
        }
    }
}

/// Counters shared by the workers.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    resumed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// What one measurement window saw.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Successful connect + echo + close per second over the window.
    pub per_sec: f64,
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Successes over the whole run, warm-up and wind-down included: the divisor for
    /// the CPU time a proxy spent during the run.
    pub total_ok: u64,
    /// TLS handshakes over the whole run that the server resumed (expected: none).
    pub resumed: u64,
}

/// Runs the loop and prints `connects_per_sec=… ok=… failed=… elapsed=… total_ok=…`
/// (and `resumed=…` with `--proto https`).
pub fn run(o: &RateOpts) -> io::Result<()> {
    let exchange = Exchange::new(o)?;
    let (report, first_error) = crate::runtime(o.threads)?.block_on(measure(o, exchange));
    if let Some(e) = first_error {
        eprintln!("connrate rate: first failure: {e}");
    }
    let mut out = io::stdout().lock();
    write!(
        out,
        "connects_per_sec={:.0} ok={} failed={} elapsed={:.3} total_ok={}",
        report.per_sec,
        report.ok,
        report.failed,
        report.elapsed.as_secs_f64(),
        report.total_ok
    )?;
    if o.proto == Proto::Https {
        write!(out, " resumed={}", report.resumed)?;
    }
    writeln!(out)?;
    out.flush()?;
    if report.ok == 0 {
        return Err(io::Error::other("no connection succeeded"));
    }
    Ok(())
}

/// Warms up for `o.warmup`, then counts completions over `o.duration`.
async fn measure(o: &RateOpts, exchange: Exchange) -> (Report, Option<String>) {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Each worker gets an equal share of the total rate, as a fixed period between starts.
    let period = o
        .rate
        .map(|r| Duration::from_secs_f64(o.concurrency as f64 / r));
    let mut workers = Vec::with_capacity(o.concurrency);
    for i in 0..o.concurrency {
        let (counters, stop, exchange) = (counters.clone(), stop.clone(), exchange.clone());
        let (addr, src) = (o.addr, sock::source(i, o.sources, o.addr));
        workers.push(tokio::spawn(async move {
            let mut tick = period.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                match exchange.once(addr, src).await {
                    Ok(resumed) => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        if resumed {
                            counters.resumed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = counters
                            .first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }));
    }
    tokio::time::sleep(o.warmup).await;
    let (ok0, failed0, t0) = (
        counters.ok.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(o.duration).await;
    let (ok1, failed1, elapsed) = (
        counters.ok.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        // A worker finishes its round trip (bounded by ROUND_TRIP_TIMEOUT) and stops.
        let _ = w.await;
    }
    let ok = ok1 - ok0;
    let report = Report {
        per_sec: ok as f64 / elapsed.as_secs_f64(),
        ok,
        failed: failed1 - failed0,
        elapsed,
        total_ok: counters.ok.load(Ordering::Relaxed),
        resumed: counters.resumed.load(Ordering::Relaxed),
    };
    let first = counters
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    (report, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::HttpTarget;

    fn target() -> HttpTarget {
        HttpTarget {
            path: "/".into(),
            host: "bench.local".into(),
        }
    }

    #[tokio::test]
    async fn counts_http_requests_with_connection_close() {
        let addr = http::testserver::spawn(200, "length").await;
        let o = RateOpts {
            addr,
            concurrency: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            rate: None,
            threads: 1,
            sources: 4,
            proto: Proto::Http,
            http: target(),
        };
        let ex = Exchange::new(&o).unwrap();
        let (r, first) = tokio::time::timeout(Duration::from_secs(20), measure(&o, ex))
            .await
            .unwrap();
        assert!(r.ok > 0, "{r:?} {first:?}");
        assert_eq!((r.failed, r.resumed), (0, 0), "{first:?}");
    }

    #[tokio::test]
    async fn every_https_handshake_is_a_full_one() {
        let addr = tls::testserver::spawn().await;
        let o = RateOpts {
            addr,
            concurrency: 2,
            duration: Duration::from_millis(400),
            warmup: Duration::from_millis(50),
            rate: None,
            threads: 1,
            sources: 0,
            proto: Proto::Https,
            http: target(),
        };
        let ex = Exchange::new(&o).unwrap();
        let (r, first) = tokio::time::timeout(Duration::from_secs(20), measure(&o, ex))
            .await
            .unwrap();
        assert!(r.ok > 1, "{r:?} {first:?}");
        assert_eq!((r.failed, r.resumed), (0, 0), "{first:?}");
    }

    #[tokio::test]
    async fn counts_round_trips_through_an_echo_server() {
        let l = crate::serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(crate::serve::accept_loop(l));
        let o = RateOpts {
            addr,
            concurrency: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            rate: None,
            threads: 1,
            sources: 8,
            proto: Proto::Echo,
            http: target(),
        };
        let (r, first) = tokio::time::timeout(Duration::from_secs(20), measure(&o, Exchange::Echo))
            .await
            .unwrap();
        assert!(r.ok > 0, "{r:?} {first:?}");
        assert!(r.total_ok >= r.ok);
        assert_eq!(r.failed, 0, "{first:?}");
    }

    #[tokio::test]
    async fn paced_rate_stays_near_the_target() {
        let l = crate::serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(crate::serve::accept_loop(l));
        let o = RateOpts {
            addr,
            concurrency: 2,
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
            rate: Some(100.0),
            threads: 1,
            sources: 0,
            proto: Proto::Echo,
            http: target(),
        };
        let (r, _) = tokio::time::timeout(Duration::from_secs(20), measure(&o, Exchange::Echo))
            .await
            .unwrap();
        assert!(r.per_sec <= 130.0, "{r:?}");
    }

    #[tokio::test]
    async fn a_closed_port_counts_failures() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let o = RateOpts {
            addr,
            concurrency: 1,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            rate: None,
            threads: 1,
            sources: 0,
            proto: Proto::Echo,
            http: target(),
        };
        let (r, first) = tokio::time::timeout(Duration::from_secs(20), measure(&o, Exchange::Echo))
            .await
            .unwrap();
        assert_eq!(r.ok, 0);
        assert!(r.failed > 0);
        assert!(first.is_some());
    }
}
