//! HELP text for every series the node exports (Prometheus tooling such as `promtool check
//! metrics` expects it), and histogram buckets for the latency metrics of spec §10.2.
//! The fleet series (`fiberlb_health_probes_owned`, `fiberlb_circuit_breaker_open_members`,
//! `fiberlb_backend_ejected_members`, `fiberlb_gossip_dropped_total`) are described by
//! `crate::fleet` and the BGP series (`fiberlb_bgp_*`) by `super::bgp`, beside the code that
//! sets them.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Latency buckets in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Makes the latency metrics real histograms (the exporter defaults to summaries).
pub fn with_buckets(b: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    b.set_buckets_for_metric(
        Matcher::Full("fiberlb_request_duration_seconds".into()),
        LATENCY_BUCKETS,
    )?
    .set_buckets_for_metric(
        Matcher::Full("fiberlb_health_check_duration_seconds".into()),
        LATENCY_BUCKETS,
    )
}

/// Registers the HELP text; call once after the recorder is installed.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "fiberlb_connections_total",
        "Client connections (TCP) and flows (UDP) proxied."
    );
    describe_gauge!(
        "fiberlb_connections_active",
        "Client connections and flows open now."
    );
    describe_counter!(
        "fiberlb_requests_total",
        "HTTP requests proxied, by status code."
    );
    describe_histogram!(
        "fiberlb_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency."
    );
    describe_counter!(
        "fiberlb_bytes_in_total",
        Unit::Bytes,
        "Bytes received from clients."
    );
    describe_counter!(
        "fiberlb_bytes_out_total",
        Unit::Bytes,
        "Bytes sent to clients."
    );
    describe_gauge!("fiberlb_backend_health", "Backends by health status.");
    describe_counter!(
        "fiberlb_health_checks_total",
        "Active health probes run, by kind and result."
    );
    describe_histogram!(
        "fiberlb_health_check_duration_seconds",
        Unit::Seconds,
        "Health probe latency."
    );
    describe_gauge!(
        "fiberlb_circuit_breaker_state",
        "Circuit breaker state per backend: 0 closed, 1 half-open, 2 open."
    );
    describe_gauge!("fiberlb_pools", "Pools this node serves.");
    describe_gauge!("fiberlb_backends", "Backends this node serves.");
    describe_counter!(
        "fiberlb_grpc_requests_total",
        "Management gRPC calls, by method and code."
    );
    describe_counter!(
        "fiberlb_backend_connect_failures_total",
        "Failed connects to backends."
    );
    describe_counter!(
        "fiberlb_backend_max_connections_reached_total",
        "New connections (L4) or requests (L7) a backend turned away because its connections, fleet-wide, had reached max_connections."
    );
    describe_counter!(
        "fiberlb_backend_ejections_total",
        "Backends ejected by passive outlier detection."
    );
    describe_counter!(
        "fiberlb_connections_rejected_total",
        "Client connections rejected."
    );
    describe_counter!(
        "fiberlb_http_header_timeouts_total",
        "Clients that did not send a request head in time."
    );
    describe_counter!(
        "fiberlb_http_rejected_requests_total",
        "HTTP requests rejected before proxying."
    );
    describe_counter!(
        "fiberlb_listener_bind_failures_total",
        "Listeners that could not bind."
    );
    describe_counter!(
        "fiberlb_listener_tls_errors_total",
        "Listener TLS configuration errors."
    );
    describe_counter!(
        "fiberlb_tls_handshake_failures_total",
        "Failed client TLS handshakes."
    );
    describe_counter!(
        "fiberlb_tls_passthrough_rejected_total",
        "TLS passthrough connections with no matching SNI route."
    );
    describe_counter!(
        "fiberlb_tunnel_bytes_total",
        Unit::Bytes,
        "Bytes relayed through upgraded (WebSocket/CONNECT) tunnels."
    );
    describe_counter!(
        "fiberlb_access_log_dropped_total",
        "Access log lines dropped because the writer thread's queue was full."
    );
    describe_counter!(
        "fiberlb_udp_flows_dropped_total",
        "UDP flows dropped (table full or no backend)."
    );
}
