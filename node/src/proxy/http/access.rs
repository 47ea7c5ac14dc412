//! The access log and request metrics: one record per request, written when the response
//! has been sent completely (or abandoned), so sizes and durations are final.
//!
//! The log line goes to the `fiberlb::access` tracing target at INFO: select or silence
//! it with the log filter (e.g. `info,fiberlb::access=off`). Metrics:
//! `fiberlb_requests_total{lb,listener,backend,code}`,
//! `fiberlb_request_duration_seconds{lb,listener}` (time to the last response byte) and
//! `fiberlb_bytes_in_total` / `fiberlb_bytes_out_total{lb,listener,backend}` (body bytes,
//! the same names the L4 proxy counts with).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode, Version};

use super::body::BodyStatus;

/// Everything the access log line says about one request.
#[derive(Debug)]
pub struct Record {
    /// When the request head was received.
    pub started: Instant,
    /// Wall-clock start, Unix ms.
    pub start_ms: u64,
    /// Client address.
    pub client: SocketAddr,
    /// Load balancer id.
    pub lb: Arc<str>,
    /// Listener id.
    pub listener: Arc<str>,
    /// Request method.
    pub method: Method,
    /// Client protocol version.
    pub version: Version,
    /// Host header or authority ("" when none).
    pub host: String,
    /// Request path.
    pub path: String,
    /// Request id (propagated or generated).
    pub request_id: String,
    /// Response status.
    pub status: StatusCode,
    /// Request body accounting.
    pub body: Arc<BodyStatus>,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Backend id and address that served it, if any.
    pub backend: Option<(Arc<str>, SocketAddr)>,
    /// Rule that routed it (`None` = default pool or no rule).
    pub rule: Option<String>,
    /// Why the request failed or ended early, if it did.
    pub error: Option<String>,
}

impl Record {
    /// Whether the response has no body by definition (HEAD, 1xx, 204, 304).
    pub fn bodyless(&self) -> bool {
        self.method == Method::HEAD
            || self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
    }

    /// Writes the log line and the metrics.
    pub fn emit(&self) {
        let elapsed = self.started.elapsed();
        let bytes_in = self.body.bytes.load(Ordering::Relaxed);
        let backend_id = self.backend.as_ref().map_or("", |(id, _)| &**id);
        let backend_addr = self
            .backend
            .as_ref()
            .map(|(_, a)| a.to_string())
            .unwrap_or_default();
        tracing::info!(
            target: "fiberlb::access",
            time = self.start_ms,
            client = %self.client,
            lb = %self.lb,
            listener = %self.listener,
            method = %self.method,
            version = ?self.version,
            host = %self.host,
            path = %self.path,
            status = self.status.as_u16(),
            bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            backend = backend_id,
            backend_addr = %backend_addr,
            rule = self.rule.as_deref().unwrap_or(""),
            request_id = %self.request_id,
            error = self.error.as_deref().unwrap_or(""),
            "request"
        );
        let (lb, listener, backend) = (
            self.lb.to_string(),
            self.listener.to_string(),
            backend_id.to_string(),
        );
        metrics::counter!(
            "fiberlb_requests_total",
            "lb" => lb.clone(),
            "listener" => listener.clone(),
            "backend" => backend.clone(),
            "code" => self.status.as_str().to_string()
        )
        .increment(1);
        metrics::histogram!("fiberlb_request_duration_seconds", "lb" => lb.clone(), "listener" => listener.clone())
            .record(elapsed.as_secs_f64());
        let labels = [("lb", lb), ("listener", listener), ("backend", backend)];
        metrics::counter!("fiberlb_bytes_in_total", &labels).increment(bytes_in);
        metrics::counter!("fiberlb_bytes_out_total", &labels).increment(self.bytes_out);
    }
}

/// Now as Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
