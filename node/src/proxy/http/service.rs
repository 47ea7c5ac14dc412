//! One request: route it by the listener's rule table, answer it here or forward it, and
//! wrap the response so the access log is written when it has been sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::access::{text, Record};
use super::body::{BodyStatus, ClientBody, Finish, ResponseBody};
use super::forward;
use super::headers::{self, X_REQUEST_ID};
use super::io::ConnShared;
use super::respond::{self, Reply};
use super::route::{RequestView, Route};
use crate::proxy::context::LiveProxy;
use crate::proxy::ProxyContext;
use crate::snapshot::Snapshot;

/// What the requests of one client connection share.
pub struct ConnCtx {
    /// The node's proxy context (shared by the listener's connections: a copy would
    /// cost every idle keep-alive connection 112 bytes more).
    pub ctx: Arc<ProxyContext>,
    /// Limits, timeouts and backend dialling as of the connection's start.
    pub live: Arc<LiveProxy>,
    /// The listener the connection came in on.
    pub listener_id: Arc<str>,
    /// The client.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub https: bool,
    /// The verified client certificate subject (mTLS).
    pub subject: Option<HeaderValue>,
    /// Connection state shared with the socket wrapper.
    pub shared: Arc<ConnShared>,
}

impl ConnCtx {
    /// The connection's timeouts (from its limits: kept here rather than in the idle
    /// connection's task, whose size every idle keep-alive connection pays).
    pub(crate) fn timeouts(&self) -> super::io::Timeouts {
        super::io::Timeouts {
            head: self.live.http.limits.head_timeout,
            idle: self.live.http.limits.idle_timeout,
        }
    }
}

/// The host a request is for: the URI authority (HTTP/2, absolute-form) or `Host`.
pub fn host_of<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

/// [`host_of`] as a header value (a clone of `Host`, which costs no allocation).
fn host_value<B>(req: &Request<B>) -> HeaderValue {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).unwrap_or(HeaderValue::from_static("")),
        None => req
            .headers()
            .get(header::HOST)
            .cloned()
            .unwrap_or(HeaderValue::from_static("")),
    }
}

/// hyper's service function.
pub async fn handle(
    conn: Arc<ConnCtx>,
    req: Request<ClientBody>,
) -> Result<Response<ResponseBody>, Infallible> {
    let in_flight = conn.shared.begin();
    let snapshot = conn.ctx.cell.load();
    let request_id = headers::request_id(req.headers());
    let mut record = Record {
        started: Instant::now(),
        client: conn.peer,
        lb: None,
        listener: conn.listener_id.clone(),
        method: req.method().clone(),
        version: req.version(),
        host: host_value(&req),
        uri: req.uri().clone(),
        request_id: request_id.clone(),
        status: StatusCode::OK,
        body: Arc::new(BodyStatus::default()),
        bytes_out: 0,
        backend: None,
        rule: None,
        error: None,
    };
    let Reply {
        mut resp,
        active,
        cut,
    } = dispatch(&conn, &snapshot, req, &request_id, &mut record).await;
    if !resp.headers().contains_key(&X_REQUEST_ID) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    }
    record.status = resp.status();
    let finish = Finish {
        record,
        in_flight: Some(in_flight),
        active,
    };
    Ok(resp.map(|b| ResponseBody::new(b, finish, cut, conn.ctx.clone())))
}

/// Logs why the proxy answers `status` itself and builds the answer.
pub fn fail(record: &mut Record, status: StatusCode, why: String) -> Reply {
    tracing::warn!(
        client = %record.client,
        listener = %record.listener,
        method = %record.method,
        host = %text(&record.host),
        path = %record.uri.path(),
        request_id = %text(&record.request_id),
        status = status.as_u16(),
        reason = %why,
        "request not forwarded"
    );
    record.error = Some(why);
    Reply::local(respond::status(status))
}

async fn dispatch(
    conn: &ConnCtx,
    snapshot: &Arc<Snapshot>,
    req: Request<ClientBody>,
    request_id: &HeaderValue,
    record: &mut Record,
) -> Reply {
    let Some((listener, lb)) = snapshot.active_listener(&conn.listener_id) else {
        let mut r = fail(
            record,
            StatusCode::SERVICE_UNAVAILABLE,
            "listener is no longer active".into(),
        );
        r.resp
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let routes = snapshot.routes.get(&*conn.listener_id);
    record.lb = Some(match routes {
        Some(r) => r.lb_id().clone(),
        None => Arc::from(lb.id.as_str()),
    });
    if req.method() == Method::CONNECT {
        return fail(
            record,
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not proxied".into(),
        );
    }
    if let Some(max) = conn.live.http.limits.max_body {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return fail(
                record,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Content-Length above the {max} byte limit"),
            );
        }
    }
    let Some(routes) = routes else {
        return fail(
            record,
            StatusCode::SERVICE_UNAVAILABLE,
            "listener has no route table".into(),
        );
    };
    let view = RequestView {
        method: req.method(),
        host: host_of(&req),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
        client_ip: conn.peer.ip().to_canonical(),
    };
    match routes.route(&view) {
        Route::Redirect { location, status } => Reply::local(respond::redirect(location, status)),
        Route::Fixed {
            status,
            content_type,
            body,
        } => Reply::local(respond::fixed(status, content_type, body)),
        Route::NotFound => fail(
            record,
            StatusCode::NOT_FOUND,
            "no rule matched and no default pool".into(),
        ),
        Route::Forward { pool_id, rule } => {
            record.rule = rule.map(str::to_string);
            forward::forward(conn, snapshot, listener, pool_id, req, request_id, record).await
        }
    }
}
