//! Reading the node's Prometheus text: sums over label sets, and waiting for the byte
//! counters of a listener.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The sum of every sample of `name` whose label set contains `label` (such as
/// `listener="…"`): a listener's series, one per backend, added up.
pub fn sum(text: &str, name: &str, label: &str) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `listener="id"` label of listener `id`.
pub fn listener_label(id: &str) -> String {
    format!("listener=\"{id}\"")
}

/// Polls `/metrics` on `admin` until listener `listener`'s `fiberlb_bytes_in_total` and
/// `fiberlb_bytes_out_total` reach `min_in` and `min_out`; after 5 s fails with `what`
/// and the last values.
pub async fn wait_for_bytes(
    admin: SocketAddr,
    listener: &str,
    min_in: f64,
    min_out: f64,
    what: &str,
) -> anyhow::Result<()> {
    let label = listener_label(listener);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = crate::http::get(admin, "/metrics").await?;
        let b_in = sum(&m.body, "fiberlb_bytes_in_total", &label);
        let b_out = sum(&m.body, "fiberlb_bytes_out_total", &label);
        if b_in >= min_in && b_out >= min_out {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: in {b_in}, out {b_out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
