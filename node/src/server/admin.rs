//! Admin HTTP: `/health` (liveness), `/ready` (readiness), `/metrics` (Prometheus), and the
//! live status page (`/`, data at `/status.json`). With `[admin] require_auth`, the status
//! data needs the same credentials as the API (`authorization: Bearer …` or `x-api-key`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use fiberlb_api::auth::Authenticator;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::runtime::NodeRuntime;
use super::status;

/// What the admin server serves from.
#[derive(Clone)]
pub struct Admin {
    /// Node state.
    pub runtime: Arc<NodeRuntime>,
    /// Prometheus exporter.
    pub metrics: PrometheusHandle,
    /// Set when `[admin] require_auth`: checks credentials for the status data.
    pub auth: Option<Authenticator>,
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, admin: Admin, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let (tcp, _) = match accepted {
            None => return,
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                // Only the path and headers are needed; the body is never read.
                let (path, headers) = (req.uri().path().to_string(), req.headers().clone());
                async move { Ok::<_, Infallible>(route(&path, headers, &admin).await) }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(tcp), svc).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

async fn route(path: &str, headers: hyper::HeaderMap, admin: &Admin) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match path {
        "/health" | "/healthz" => text(StatusCode::OK, "ok\n", PLAIN),
        "/ready" | "/readyz" => {
            if admin.runtime.is_ready() {
                text(StatusCode::OK, "ready\n", PLAIN)
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", PLAIN)
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            admin.metrics.render(),
            "text/plain; version=0.0.4",
        ),
        // The page is a static shell; the data behind it is what needs credentials.
        "/" | "/status" => text(StatusCode::OK, status::PAGE, "text/html; charset=utf-8"),
        "/status.json" => {
            if let Some(auth) = &admin.auth {
                let md = tonic::metadata::MetadataMap::from_headers(headers);
                if let Err(e) = auth.authenticate(&md).await {
                    return text(StatusCode::UNAUTHORIZED, format!("{e}\n"), PLAIN);
                }
            }
            let body = serde_json::to_vec(&status::status_json(&admin.runtime)).unwrap_or_default();
            text(StatusCode::OK, body, "application/json")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n", PLAIN),
    }
}
