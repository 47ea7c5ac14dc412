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
