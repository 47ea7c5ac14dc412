//! The access log and request metrics: one record per request, written when the response
//! has been sent completely (or abandoned), so sizes and durations are final.
//!
//! The log line is one JSON object handed to [`crate::access_log`] (destination
//! `[logging] access_log`: stdout by default, a file, or off). Metrics:
//! `fiberlb_requests_total{lb,listener,backend,code}`,
//! `fiberlb_request_duration_seconds{lb,listener}` (time to the last response byte) and
//! `fiberlb_bytes_in_total` / `fiberlb_bytes_out_total{lb,listener,backend}` (body bytes,
//! the same names the L4 proxy counts with; response bytes count as they are sent,
//! request bytes when the request ends).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode, Version};
use metrics::{Counter, Histogram};

use crate::proxy::label_cache::{self, LabelCache};

use super::body::BodyStatus;

/// Everything the access log line says about one request.
#[derive(Debug)]
pub struct Record {
    /// When the request head was received (the log line's wall-clock time is derived from
    /// it when the line is written: one clock read per request fewer, and none at all with
    /// the log off).
    pub started: Instant,
    /// Client address.
    pub client: SocketAddr,
    /// Load balancer id (`None` until the listener is found).
    pub lb: Option<Arc<str>>,
    /// Listener id.
    pub listener: Arc<str>,
    /// Request method.
    pub method: Method,
    /// Client protocol version.
    pub version: Version,
    /// Host header or authority (empty when none). Header values and the URI are cheap
    /// to clone (reference-counted slices of the request head), unlike Strings.
    pub host: HeaderValue,
    /// Request URI (the log shows its path).
    pub uri: http::Uri,
    /// Request id (propagated or generated).
    pub request_id: HeaderValue,
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

/// A header value as text for logs ("" when not visible ASCII).
pub fn text(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

impl Record {
    /// Whether the response has no body by definition (HEAD, 1xx, 204, 304).
    pub fn bodyless(&self) -> bool {
        self.method == Method::HEAD
            || self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
    }

    /// The metric handles of this request's label set (its status must be final).
    pub fn metrics(&self) -> Arc<RequestMetrics> {
        let backend_id = self.backend.as_ref().map_or("", |(id, _)| &**id);
        let lb = self.lb.as_deref().unwrap_or("");
        request_metrics(lb, &self.listener, backend_id, self.status)
    }

    /// Writes the log line and the metrics `m` (from [`Record::metrics`]); the response's
    /// bytes were counted as they went out ([`RequestMetrics::sent`]).
    pub fn emit(&self, m: &RequestMetrics) {
        let elapsed = self.started.elapsed();
        let bytes_in = self.body.bytes.load(Ordering::Relaxed);
        if crate::access_log::enabled() {
            crate::access_log::write(self.line(elapsed, bytes_in));
        }
        m.requests.increment(1);
        m.duration.record(elapsed.as_secs_f64());
        m.bytes_in.increment(bytes_in);
    }

    /// The access log line: one JSON object and a newline.
    fn line(&self, elapsed: Duration, bytes_in: u64) -> String {
        use crate::access_log::json_escape;
        use std::fmt::Write as _;
        let mut l = String::with_capacity(384);
        l.push_str("{\"time\":\"");
        let start_ms = unix_ms().saturating_sub(elapsed.as_millis() as u64);
        l.push_str(&crate::access_log::rfc3339_ms(start_ms));
        let _ = write!(l, "\",\"client\":\"{}\",\"lb\":\"", self.client);
        json_escape(&mut l, self.lb.as_deref().unwrap_or(""));
        l.push_str("\",\"listener\":\"");
        json_escape(&mut l, &self.listener);
        l.push_str("\",\"method\":\"");
        json_escape(&mut l, self.method.as_str());
        let _ = write!(l, "\",\"version\":\"{:?}\",\"host\":\"", self.version);
        json_escape(&mut l, text(&self.host));
        l.push_str("\",\"path\":\"");
        json_escape(&mut l, self.uri.path());
        let _ = write!(
            l,
            "\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"backend\":\"",
            self.status.as_u16(),
            bytes_in,
            self.bytes_out,
            elapsed.as_secs_f64() * 1000.0
        );
        if let Some((id, addr)) = &self.backend {
            json_escape(&mut l, id);
            let _ = write!(l, "\",\"backend_addr\":\"{addr}");
        } else {
            l.push_str("\",\"backend_addr\":\"");
        }
        l.push_str("\",\"rule\":\"");
        json_escape(&mut l, self.rule.as_deref().unwrap_or(""));
        l.push_str("\",\"request_id\":\"");
        json_escape(&mut l, text(&self.request_id));
        l.push_str("\",\"error\":\"");
        json_escape(&mut l, self.error.as_deref().unwrap_or(""));
        l.push_str("\"}\n");
        l
    }
}

/// The request metrics of one label set, registered once per thread (label strings and the
/// registry lookup cost more than the request's own bookkeeping).
pub struct RequestMetrics {
    requests: Counter,
    duration: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl RequestMetrics {
    /// Counts response body bytes as they are sent, so a long download shows while it
    /// lasts.
    pub fn sent(&self, n: u64) {
        self.bytes_out.increment(n);
    }
}

thread_local! {
    static REQUEST_METRICS: LabelCache<RequestMetrics> = LabelCache::default();
}

fn request_metrics(
    lb: &str,
    listener: &str,
    backend: &str,
    status: StatusCode,
) -> Arc<RequestMetrics> {
    let key = label_cache::key((lb, listener, backend, status.as_u16()));
    REQUEST_METRICS.with(|cache| {
        cache.get(key, || {
            let labels = [
                ("lb", lb.to_string()),
                ("listener", listener.to_string()),
                ("backend", backend.to_string()),
            ];
            RequestMetrics {
                requests: metrics::counter!(
                    "fiberlb_requests_total",
                    "lb" => lb.to_string(),
                    "listener" => listener.to_string(),
                    "backend" => backend.to_string(),
                    "code" => status.as_str().to_string()
                ),
                duration: metrics::histogram!("fiberlb_request_duration_seconds", "lb" => lb.to_string(), "listener" => listener.to_string()),
                bytes_in: metrics::counter!("fiberlb_bytes_in_total", &labels),
                bytes_out: metrics::counter!("fiberlb_bytes_out_total", &labels),
            }
        })
    })
}

/// Now as Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
