//! Forwarding one request to a pool: session persistence, then the balancer, then the
//! backend's pooled client; errors become 502/503/504 with a log line saying why.
//!
//! Protocol towards the backend: HTTP/2 when the request is gRPC (`content-type:
//! application/grpc*`, which needs HTTP/2 end to end for trailers) or the backend is marked
//! `http2=true`; HTTP/1.1 otherwise and always for upgrades. A listener that got HTTP/2
//! from the client does not by itself switch the backend to HTTP/2: most backends speak
//! HTTP/1.1 only, and hyper converts between the two.
//!
//! Outcomes feed passive health and the backend's circuit breaker (connect failures,
//! timeouts, protocol errors and 5xx answers fail; the time to the response head is the
//! call's duration); a failure caused by the client, or a drain cut, counts for nothing.
//!
//! Retries: a request whose connect fails is sent once more to another backend if it is
//! idempotent (GET, HEAD, OPTIONS, PUT, DELETE) and has no body in flight; nothing was
//! sent, so it is safe. Other failures are never retried.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use tokio_util::sync::CancellationToken;

use super::access::Record;
use super::body::{self, Active, ClientBody, ProxyBody, RequestBody};
use super::client::Entry;
use super::h1client::Outgoing;
use super::headers::{self, Forwarded};
use super::respond::Reply;
use super::service::{fail, ConnCtx};
use super::tunnel;
use crate::balance::PickContext;
use crate::health::passive::{self, Outcome};
use crate::proxy::connect::{count_full, pick_addr, pool_plan, Picked};
use crate::resolve::Lookup;
use crate::snapshot::{PoolPlan, Snapshot};
use fiberlb_api::model::Listener;

/// Sends of one request at most (the second only after a failed connect).
const MAX_SENDS: usize = 2;

/// How often a request waiting for its response head looks at its backend's close token:
/// a drain deadline or the backend's removal cuts such a request within this.
const CLOSE_CHECK: Duration = Duration::from_millis(250);

/// Runs `send` for at most `timeout`; `None` when the backend was closed meanwhile.
///
/// The close token is looked at every [`CLOSE_CHECK`] rather than waited on: waiting
/// registers with the token, which takes its lock twice, and the token is one for every
/// request to the backend from every worker. Most requests are answered well within
/// one check, so they cost one timer and no lock.
///
/// `send` is pinned by the caller: taken by value, an async fn keeps its argument and
/// the pinned copy side by side, which doubled the request's future (2.1 KiB).
async fn send_within<F: std::future::Future>(
    mut send: Pin<&mut F>,
    timeout: Duration,
    close: &CancellationToken,
) -> Option<Result<F::Output, tokio::time::error::Elapsed>> {
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    let mut check = start + CLOSE_CHECK;
    loop {
        let until = check.min(deadline);
        match tokio::time::timeout_at(until, send.as_mut()).await {
            Ok(out) => return Some(Ok(out)),
            Err(_) if close.is_cancelled() => return None,
            Err(elapsed) if until == deadline => return Some(Err(elapsed)),
            Err(_) => check += CLOSE_CHECK,
        }
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/grpc") && !v.starts_with(b"application/grpc-web")
    })
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Backend `i`'s address from the resolver cache (never waits).
fn resolve(plan: &PoolPlan, i: usize, ctx: &ConnCtx) -> Picked {
    let b = &plan.backends[i];
    match ctx.ctx.resolver.lookup(&b.address, b.port) {
        Lookup::Ready(addrs) => match addrs.first() {
            Some(a) => Picked::Addr(i, *a),
            None => Picked::Unusable(format!("backend {} resolved to no address", b.name)),
        },
        Lookup::Pending => Picked::Unusable(format!(
            "backend {} address is still being resolved",
            b.name
        )),
        Lookup::Failed(e) => Picked::Unusable(format!("backend {}: {e}", b.name)),
    }
}

/// Forwards `req` to pool `pool_id`.
pub async fn forward(
    conn: &ConnCtx,
    snapshot: &Arc<Snapshot>,
    listener: &Listener,
    pool_id: &str,
    mut req: Request<ClientBody>,
    request_id: &HeaderValue,
    record: &mut Record,
) -> Reply {
    let plan = match pool_plan(snapshot, Some(pool_id)) {
        Ok(p) => p,
        Err(e) => return fail(record, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let upgrade = req.version() < Version::HTTP_2 && headers::wants_upgrade(req.headers());
    // Our HTTP/1 server put the connection's upgrade in the request (see `h1::upgrade`).
    let client_upgrade = upgrade
        .then(|| req.extensions_mut().remove::<super::h1::OnUpgrade>())
        .flatten();
    let grpc = is_grpc(req.headers());
    // The Host the record already holds (a reference-counted clone, not a copy).
    let host_value = record.host.clone();
    let host = Some(super::access::text(&host_value)).filter(|h| !h.is_empty());
    let (parts, incoming) = req.into_parts();
    let limits = conn.live.http.limits;
    let mut body = RequestBody::new(incoming, limits.max_body, record.body.clone());
    // A chunked HTTP/1 body: read its first chunk before anything goes to a backend, so a
    // malformed one is refused with 400 instead of reaching the backend half-sent.
    if parts.version < Version::HTTP_2
        && !upgrade
        && !body.is_end_stream()
        && body.size_hint().exact().is_none()
    {
        match tokio::time::timeout(limits.head_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => body.unread(frame),
            Ok(Some(Err(e))) => {
                let status = if record
                    .body
                    .too_large
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return fail(record, status, format!("request body: {e}"));
            }
            // Empty, or the client is slow to send: forward and let the body stream.
            Ok(None) | Err(_) => {}
        }
    }
    let retryable = body.is_end_stream() && idempotent(&parts.method);
    let mut body: Option<ProxyBody> = Some(body.boxed_unsync());
    let client_ip = conn.peer.ip().to_canonical();
    // Persistence ages entries from the request's start (no clock read of its own).
    let now = record.started;
    let sticky = conn.ctx.http.sticky(&plan);
    let mut eligible = plan.eligible();
    let mut pinned = sticky
        .as_ref()
        .and_then(|s| s.lookup(&plan, &eligible, &parts, client_ip, now));
    let pick_ctx = PickContext { client: conn.peer };
    let backend_timeout = Duration::from_millis(u64::from(listener.timeout_backend_ms.max(1)));
    let mut sends = 0;
    let mut last_err: Option<String> = None;
    loop {
        let picked = match pinned.take() {
            Some(i) if plan.has_room(i) => {
                eligible[i] = false;
                resolve(&plan, i, conn)
            }
            // A sticky client whose backend is at its max_connections is balanced
            // afresh (and re-pinned by the response's cookie): there is no queue to wait in.
            Some(i) => {
                eligible[i] = false;
                count_full(&plan, i);
                continue;
            }
            None => pick_addr(&plan, &mut eligible, &pick_ctx, &conn.ctx.resolver),
        };
        let (i, addr) = match picked {
            Picked::Addr(i, a) => (i, a),
            Picked::Unusable(why) => {
                last_err = Some(why);
                continue;
            }
            Picked::Nothing => break,
        };
        let backend = &plan.backends[i];
        // Takes the request's slot with one compare-and-swap: the pick saw room, but a
        // request on another connection or thread may have taken the last slot since.
        let Some(active) = Active::acquire(plan.states[i].clone(), backend.max_connections) else {
            count_full(&plan, i);
            continue;
        };
        // The circuit breaker may refuse (half-open with its probe slots taken); asked
        // before the body is taken, so the next backend can still get it.
        let Some(admission) = passive::admit(&plan.states[i]) else {
            last_err = Some(format!("backend {}: circuit breaker open", backend.name));
            continue;
        };
        let entry = match conn
            .ctx
            .http
            .clients
            .get(backend, addr, snapshot, &conn.live.http.dial)
        {
            Ok(e) => e,
            Err(e) => {
                last_err = Some(e.to_string());
                continue;
            }
        };
        record.backend = Some((plan.endpoints[i].id.clone(), addr));
        let h2 = !upgrade && (grpc || entry.h2_always);
        let fwd = Forwarded {
            client_ip,
            https: conn.https,
            host,
            request_id,
            subject: conn.subject.as_ref(),
            upgrade,
            h2_backend: h2,
            keep_forwarded_for: conn.live.trusts_forwarded_from(client_ip),
        };
        let send_body = body.take().unwrap_or_else(body::empty);
        let breq = match backend_request(&parts, &entry, addr, &fwd, send_body) {
            Ok(r) => r,
            Err(why) => return fail(record, StatusCode::BAD_REQUEST, why),
        };
        let close = plan.states[i].close_token();
        let started = Instant::now();
        active.sent();
        sends += 1;
        let sending = std::pin::pin!(send(&entry, breq));
        let Some(result) = send_within(sending, backend_timeout, &close).await else {
            return fail(
                record,
                StatusCode::BAD_GATEWAY,
                format!(
                    "backend {} was closed (drain deadline or removal)",
                    backend.name
                ),
            );
        };
        let sent = match result {
            Ok(Ok(sent)) => sent,
            Ok(Err(e)) if e.connect => {
                admission.finish(Outcome::ConnectFailed);
                metrics::counter!("fiberlb_backend_connect_failures_total", "backend" => backend.id.clone()).increment(1);
                let why = format!("connecting to backend {} ({addr}): {}", backend.name, e.why);
                tracing::debug!(request_id = %super::access::text(&record.request_id), reason = %why, "backend connect failed");
                last_err = Some(why);
                if retryable && sends < MAX_SENDS {
                    continue;
                }
                break;
            }
            Ok(Err(e)) => {
                let (status, side) = if record
                    .body
                    .too_large
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                } else if record
                    .body
                    .client_failed
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    (
                        StatusCode::BAD_REQUEST,
                        "reading the request body from the client failed",
                    )
                } else {
                    // Only this one is the backend's fault.
                    admission.finish(Outcome::Reset);
                    // No response head came back (the backend died or reset the
                    // connection mid-request): an idempotent request without a body is
                    // safe to send again, to another backend (as HAProxy's
                    // `retry-on empty-response`), so a backend dying under load fails no
                    // client request.
                    if retryable && sends < MAX_SENDS {
                        let why = format!(
                            "backend {} ({addr}) closed without a response: {}",
                            backend.name, e.why
                        );
                        tracing::debug!(request_id = %super::access::text(&record.request_id), reason = %why, "retrying on another backend");
                        last_err = Some(why);
                        continue;
                    }
                    (StatusCode::BAD_GATEWAY, "backend protocol error")
                };
                return fail(
                    record,
                    status,
                    format!("{side}: backend {} ({addr}): {}", backend.name, e.why),
                );
            }
            Err(_) => {
                admission.finish(Outcome::Timeout);
                return fail(
                    record,
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "backend {} ({addr}) sent no response head within {backend_timeout:?}",
                        backend.name
                    ),
                );
            }
        };
        // hyper's answer to an upgrade keeps its connection for the tunnel.
        let (backend_upgrade, resp): (
            Option<hyper::upgrade::OnUpgrade>,
            http::Response<ProxyBody>,
        ) = match sent {
            Sent::Hyper(mut r) => {
                let up = (r.status() == StatusCode::SWITCHING_PROTOCOLS)
                    .then(|| hyper::upgrade::on(&mut r));
                let r = r.map(|b| {
                    b.map_err(|e| -> super::BoxError { Box::new(e) })
                        .boxed_unsync()
                });
                (up, r)
            }
            Sent::Own(r) => (None, r.map(BodyExt::boxed_unsync)),
        };
        let took = started.elapsed();
        plan.states[i].stats.observe_latency(took);
        // Passive health and the circuit breaker: 5xx answers count as failures, and the
        // time to the response head is what the slow-call rule measures.
        admission.finish(if resp.status().is_server_error() {
            Outcome::ServerError(resp.status().as_u16())
        } else {
            Outcome::Success(took)
        });
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let (Some(client_side), Some(backend_side)) = (client_upgrade, backend_upgrade) else {
                return fail(
                    record,
                    StatusCode::BAD_GATEWAY,
                    "backend switched protocols unasked".into(),
                );
            };
            let idle = Duration::from_millis(u64::from(listener.timeout_client_ms.max(1)));
            tunnel::spawn(
                client_side,
                backend_side,
                idle,
                conn.ctx.shutdown.clone(),
                CancellationToken::clone(&close),
                active,
                conn.peer,
                addr,
                tunnel::Counters::new(
                    record.lb.as_deref().unwrap_or(""),
                    &conn.listener_id,
                    &backend.id,
                ),
            );
            let (mut rparts, _) = resp.into_parts();
            rparts.version = own_version(parts.version);
            headers::clean_response(&mut rparts.headers, true);
            return Reply::local(http::Response::from_parts(rparts, body::empty()));
        }
        let (mut rparts, rbody) = resp.into_parts();
        rparts.version = own_version(parts.version);
        headers::clean_response(&mut rparts.headers, false);
        if let Some(s) = &sticky {
            if let Some(cookie) = s.on_chosen(&plan, i, &parts, client_ip, conn.https, now) {
                rparts.headers.append(header::SET_COOKIE, cookie);
            }
            s.on_response(&plan, i, &rparts, now);
        }
        return Reply {
            resp: http::Response::from_parts(rparts, rbody),
            active: Some(active),
            cut: Some(close),
        };
    }
    match last_err {
        Some(why) => fail(record, StatusCode::BAD_GATEWAY, why),
        None if plan.at_capacity() => {
            let why = format!(
                "pool {} is at capacity: every backend has reached its max_connections",
                plan.pool.name
            );
            let mut reply = fail(record, StatusCode::SERVICE_UNAVAILABLE, why);
            // Tells the client it is load, not an outage (without naming the pool).
            reply.resp = super::respond::fixed(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                bytes::Bytes::from_static(b"503 Service Unavailable: the pool is at capacity\n"),
            );
            reply
        }
        None => fail(
            record,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no healthy backend in pool {}", plan.pool.name),
        ),
    }
}

/// A backend's answer, from our HTTP/1 client or hyper's (HTTP/2, upgrades).
enum Sent {
    Own(http::Response<super::h1client::BackendBody>),
    Hyper(http::Response<Incoming>),
}

/// Why a request got no answer from a backend.
struct SendFailed {
    /// No connection could be made: nothing was sent.
    connect: bool,
    /// The error and its causes.
    why: String,
}

impl SendFailed {
    fn new(connect: bool, e: &dyn std::error::Error) -> Self {
        SendFailed {
            connect,
            why: error_chain(e),
        }
    }
}

/// A request ready for a backend.
enum BackendRequest {
    /// For our HTTP/1 client, its head written.
    Own(Outgoing),
    /// For hyper's clients (HTTP/2, upgrades).
    Hyper(Request<ProxyBody>),
}

/// Sends `req` to the backend of `entry`, through our client or hyper's.
async fn send(entry: &Entry, req: BackendRequest) -> Result<Sent, SendFailed> {
    match req {
        BackendRequest::Hyper(req) => {
            let client = if req.version() == Version::HTTP_2 {
                &entry.h2
            } else {
                &entry.h1
            };
            client
                .request(req)
                .await
                .map(Sent::Hyper)
                .map_err(|e| SendFailed::new(e.is_connect(), &e))
        }
        BackendRequest::Own(out) => entry
            .http1
            .send_outgoing(out)
            .await
            .map(Sent::Own)
            .map_err(|e| SendFailed::new(e.is_connect(), &e)),
    }
}

/// The request for the backend. Plain HTTP/1 goes to our client with the backend's
/// headers written straight from the client's into the head; HTTP/2 and upgrades go to
/// hyper's clients with an absolute URI (the pool key) and a header map.
fn backend_request(
    parts: &http::request::Parts,
    entry: &Entry,
    addr: std::net::SocketAddr,
    fwd: &Forwarded<'_>,
    body: ProxyBody,
) -> Result<BackendRequest, String> {
    let (h2, upgrade) = (fwd.h2_backend, fwd.upgrade);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    if !(h2 || upgrade) {
        return Ok(BackendRequest::Own(Outgoing::new(
            parts.method.clone(),
            path,
            parts.headers.contains_key(header::CONTENT_LENGTH),
            body,
            |lines| headers::forward_headers(&parts.headers, fwd, lines),
        )));
    }
    let addr_s = addr.to_string();
    let authority = match (h2, fwd.host) {
        (true, Some(h)) if h.parse::<http::uri::Authority>().is_ok() => h,
        _ => addr_s.as_str(),
    };
    let uri = Uri::builder()
        .scheme(entry.scheme())
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("cannot build the backend URI: {e}"))?;
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    *req.headers_mut() = headers::to_backend(&parts.headers, fwd);
    Ok(BackendRequest::Hyper(req))
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The version of our response to a client that asked in `client`: our own, whatever the
/// backend spoke (RFC 9110, section 6.2: an intermediary sends its own HTTP-version). A
/// backend's `HTTP/1.0` passed on would make an HTTP/1.1 client close its connection
/// after every response.
fn own_version(client: Version) -> Version {
    if client == Version::HTTP_2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    }
}
