//! The circuit breaker on real connect failures, reported by the API and the metrics.

use super::*;
use fiberlb_tests::bounded;

#[tokio::test]
async fn connect_failures_open_the_circuit_and_a_recovered_backend_closes_it() -> anyhow::Result<()>
{
    bounded(async {
        let live = TagServer::start(b'L', "127.0.0.1:0".parse()?).await?;
        // A port with nothing listening: every connect is refused.
        let dead_addr = SocketAddr::new(
            "127.0.0.1".parse()?,
            free_port("127.0.0.1".parse()?, false)?,
        );
        let mut lb = start(None).await?;
        let cb = pb::CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 2,
            success_threshold: 1,
            timeout_seconds: 1,
            ..Default::default()
        };
        let pool = lb.pool("cb", None, Some(cb)).await?;
        let dead = lb.add(&pool, "dead", dead_addr).await?;
        lb.add(&pool, "live", live.addr).await?;
        let front = lb.listener(&pool).await?;
        let open = pb::CircuitState::Open as i32;
        let start = Instant::now();
        while lb.status(&pool).await?.circuit_state != open {
            // Round robin sends every other connection to the dead backend first; the
            // connect is retried on the live one, so clients never notice.
            assert_eq!(tag_via(front).await?, b'L');
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "the circuit never opened"
            );
        }
        let m = lb.metrics().await?;
        let label = format!("backend=\"{dead}\"");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut gauge = sample(&m, "fiberlb_circuit_breaker_state", &label);
        while gauge != 2.0 && gauge != 1.0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "fiberlb_circuit_breaker_state{{{label}}} = {gauge}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            gauge = sample(
                &lb.metrics().await?,
                "fiberlb_circuit_breaker_state",
                &label,
            );
        }
        // Two failures opened the circuit before passive ejection (5) could.
        assert!(lb.health(&dead).await?.healthy);

        // The backend comes back; after the 1 s timeout a probe connection closes it.
        let revived = TagServer::start(b'D', dead_addr).await?;
        let closed = pb::CircuitState::Closed as i32;
        let start = Instant::now();
        while lb.status(&pool).await?.circuit_state != closed {
            tag_via(front).await?;
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "the circuit never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let start = Instant::now();
        while revived.accepted.load(Ordering::Relaxed) == 0 {
            tag_via(front).await?;
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(5),
                "no traffic after the circuit closed"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_slow_http_backend_trips_the_slow_call_rule_and_traffic_moves_to_the_other(
) -> anyhow::Result<()> {
    use fiberlb_tests::l7::get;
    use fiberlb_tests::lifecycle::{metric, poll, SlowHttp};
    bounded(async {
        let slow = SlowHttp::start("slow", Duration::from_millis(400)).await?;
        let fast = SlowHttp::start("fast", Duration::ZERO).await?;
        let mut lb = start(None).await?;
        // Only the slow-call rule can trip: no failures happen, the rate rule is off.
        let cb = pb::CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 100,
            success_threshold: 1,
            timeout_seconds: 60,
            failure_rate_threshold: 0.0,
            min_request_volume: 4,
            slow_call_threshold_ms: 200,
            slow_call_rate_threshold: 0.5,
            half_open_max_requests: 1,
        };
        let pool = lb.pool("slowcb", None, Some(cb)).await?;
        let slow_id = lb.add(&pool, "slow", slow.addr).await?;
        lb.add(&pool, "fast", fast.addr).await?;
        let front = lb.listener_of(&pool, pb::ListenerProtocol::Http).await?;

        let open = pb::CircuitState::Open as i32;
        let started = Instant::now();
        let mut sent = 0;
        while lb.status(&pool).await?.circuit_state != open {
            // Every request is answered, slow or not: slowness alone fails nothing.
            let r = get(front, "x", "/", &[]).await?;
            assert_eq!(r.status, 200, "{}", r.text());
            sent += 1;
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "the circuit never opened after {sent} requests"
            );
        }
        println!(
            "slow-call rule opened the circuit after {sent} requests, {:?} ({} to the slow backend)",
            started.elapsed(),
            slow.hits()
        );
        let label = format!("backend=\"{slow_id}\"");
        poll("fiberlb_circuit_breaker_state = 2", Duration::from_secs(5), || async {
            let m = lb.metrics().await?;
            Ok((metric(&m, "fiberlb_circuit_breaker_state", &[&label]) == Some(2.0)).then_some(()))
        })
        .await?;

        // Open for 60 s: all traffic goes to the fast backend, none to the slow one.
        let before = slow.hits();
        for _ in 0..10 {
            let r = get(front, "x", "/", &[]).await?;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-backend"), "fast");
        }
        assert_eq!(slow.hits(), before, "the open circuit still let requests through");
        assert_eq!(lb.status(&pool).await?.circuit_state, open);
        // The circuit, not health, took it out.
        assert!(lb.health(&slow_id).await?.healthy);
        Ok(())
    })
    .await
}
