//! Request and response headers across the proxy: hop-by-hop headers are removed (they
//! describe one connection, not the message), forwarding headers are added.
//!
//! Towards the backend:
//! - `X-Forwarded-For`: the incoming value (if any) with the client IP appended;
//! - `X-Forwarded-Proto`: `http` or `https` (replaced);
//! - `X-Forwarded-Host`: the host the client asked for (replaced);
//! - `X-Request-Id`: kept when the client sent a sane one, else a new UUID v4 (also put on
//!   the response);
//! - `X-Client-Cert-Subject`: the verified mTLS client certificate subject; an incoming one
//!   is always removed, so a client cannot claim an identity.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `x-client-cert-subject`.
pub static X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");

/// Longest client-supplied request id kept.
const MAX_REQUEST_ID: usize = 128;

/// The request id: the client's when it is short visible ASCII, else a fresh UUID v4.
///
/// Marked sensitive, which only HTTP/2 looks at: HPACK then sends it as a literal that is
/// never indexed. A value unique to each request is never sent again, so indexing it
/// would only push the connection's reusable entries (server, content-type, date) out
/// of the 4 KiB dynamic table (about every 50 responses), to be sent as literals again.
/// No CPU difference showed in h2load runs by hand; it saves the client's table churn.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut id = headers
        .get(&X_REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            // Owned by its bytes' one allocation: the value is cloned into the backend
            // request, the response and the access log, and a copied value would be
            // allocated again (shared) at its first clone.
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        });
    id.set_sensitive(true);
    id
}

/// Whether a header only concerns one connection and is never forwarded as is.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
    ) || name.as_str().starts_with("proxy-")
}

/// The names one `Connection` value lists, as written (none if it is not visible ASCII).
fn connection_names(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .ok()
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `name` is listed in one of the `Connection` headers `listed`.
fn named_in(listed: &http::header::GetAll<'_, HeaderValue>, name: &HeaderName) -> bool {
    listed
        .iter()
        .flat_map(connection_names)
        .any(|t| t.eq_ignore_ascii_case(name.as_str()))
}

/// Whether `headers` ask for a protocol upgrade (`Connection: upgrade` plus `Upgrade`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(connection_names)
            .any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// What the forwarding headers say.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// The client's IP.
    pub client_ip: IpAddr,
    /// Whether the client came over TLS.
    pub https: bool,
    /// The host the client asked for.
    pub host: Option<&'a str>,
    /// The request id.
    pub request_id: &'a HeaderValue,
    /// The verified client certificate subject.
    pub subject: Option<&'a HeaderValue>,
    /// Keep `Upgrade` and `Connection: upgrade` (a tunnel is being set up).
    pub upgrade: bool,
    /// The backend speaks HTTP/2: the host travels as `:authority`, not `Host`.
    pub h2_backend: bool,
    /// The client is a trusted forwarder: its `X-Forwarded-For` chain is kept and
    /// appended to; otherwise the chain restarts at the client.
    pub keep_forwarded_for: bool,
}

/// Where [`forward_headers`] puts the backend's headers: a header map (hyper's clients),
/// or straight into the HTTP/1 request head our client writes, so that no second map is
/// built, hashed and dropped for every request. Each name comes once, except the names
/// the client itself repeated.
pub trait Sink {
    /// A header whose value is shared with the request (or made for it).
    fn put(&mut self, name: &HeaderName, value: &HeaderValue);
    /// A header whose value was composed here (`X-Forwarded-For`).
    fn put_bytes(&mut self, name: &HeaderName, value: &[u8]);
}

impl Sink for HeaderMap {
    fn put(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append(name.clone(), value.clone());
    }

    fn put_bytes(&mut self, name: &HeaderName, value: &[u8]) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            self.append(name.clone(), v);
        }
    }
}

/// The headers to send to the backend, built from the client's, as a map.
pub fn to_backend(src: &HeaderMap, f: &Forwarded<'_>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(src.len() + 6);
    forward_headers(src, f, &mut out);
    out
}

/// Puts the headers to send to the backend, built from the client's `src`, into `out`.
pub fn forward_headers(src: &HeaderMap, f: &Forwarded<'_>, out: &mut impl Sink) {
    let listed = src.get_all(header::CONNECTION);
    let mut xff: Vec<&[u8]> = Vec::new();
    let mut has_host = false;
    let mut te_trailers = false;
    // The client's `Host` value, shared (not copied) into `X-Forwarded-Host` when it is
    // the host the request is for (HTTP/1, the common case).
    let mut host_src: Option<&HeaderValue> = None;
    for (name, value) in src {
        if *name == header::TE {
            // gRPC needs `te: trailers`; every other TE value is hop-by-hop.
            te_trailers |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
            continue;
        }
        if is_hop_by_hop(name) || named_in(&listed, name) {
            continue;
        }
        if *name == X_FORWARDED_FOR {
            if f.keep_forwarded_for {
                xff.push(value.as_bytes());
            }
            continue;
        }
        if *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || *name == X_CLIENT_CERT_SUBJECT
            || *name == X_REQUEST_ID
        {
            continue;
        }
        if *name == header::HOST {
            has_host = true;
            host_src = Some(value);
            if f.h2_backend {
                continue;
            }
        }
        out.put(name, value);
    }
    if te_trailers {
        out.put(&header::TE, &HeaderValue::from_static("trailers"));
    }
    if !has_host && !f.h2_backend {
        if let Some(v) = f.host.and_then(|h| HeaderValue::from_str(h).ok()) {
            out.put(&header::HOST, &v);
        }
    }
    if let Some(v) = forwarded_for(&xff, f.client_ip) {
        out.put_bytes(&X_FORWARDED_FOR, v.as_bytes());
    }
    out.put(
        &X_FORWARDED_PROTO,
        &HeaderValue::from_static(if f.https { "https" } else { "http" }),
    );
    match (f.host, host_src) {
        (Some(h), Some(v)) if v.as_bytes() == h.as_bytes() => out.put(&X_FORWARDED_HOST, v),
        (h, _) => {
            if let Some(v) = h.and_then(|h| HeaderValue::from_str(h).ok()) {
                out.put(&X_FORWARDED_HOST, &v);
            }
        }
    }
    out.put(&X_REQUEST_ID, f.request_id);
    if let Some(s) = f.subject {
        out.put(&X_CLIENT_CERT_SUBJECT, s);
    }
    if f.upgrade {
        if let Some(u) = src.get(header::UPGRADE) {
            out.put(&header::UPGRADE, u);
            out.put(&header::CONNECTION, &HeaderValue::from_static("upgrade"));
        }
    }
}

/// An `X-Forwarded-For` value: a lone client address stays on the stack.
enum ForwardedFor {
    Lone([u8; 48], usize),
    Chain(Vec<u8>),
}

impl ForwardedFor {
    fn as_bytes(&self) -> &[u8] {
        match self {
            ForwardedFor::Lone(buf, n) => &buf[..*n],
            ForwardedFor::Chain(v) => v,
        }
    }
}

/// `X-Forwarded-For`: the kept chain (trusted forwarders only) and the client, written
/// without intermediate strings (this runs for every request).
fn forwarded_for(chain: &[&[u8]], client: IpAddr) -> Option<ForwardedFor> {
    use std::io::Write as _;
    let mut buf = [0u8; 48];
    let left = {
        let mut w = &mut buf[..];
        write!(w, "{}", client.to_canonical()).ok()?;
        w.len()
    };
    let n = buf.len() - left;
    if chain.iter().all(|v| v.trim_ascii().is_empty()) {
        return Some(ForwardedFor::Lone(buf, n));
    }
    let mut out = Vec::with_capacity(64);
    for v in chain {
        let v = v.trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(&buf[..n]);
    Some(ForwardedFor::Chain(out))
}

/// Removes hop-by-hop headers from a backend response; a `101 Switching Protocols` keeps
/// `Upgrade` and `Connection: upgrade`. Allocates nothing in the common case (a
/// `Connection: keep-alive` answer): the listed names are removed straight from the
/// shared bytes of the `Connection` value.
pub fn clean_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    let mut listed = headers.get_all(header::CONNECTION).iter();
    let first = listed.next().cloned();
    let more: Vec<HeaderValue> = listed.cloned().collect();
    for name in first.iter().chain(&more).flat_map(connection_names) {
        headers.remove(name);
    }
    while let Some(n) = headers.keys().find(|n| is_hop_by_hop(n)).cloned() {
        headers.remove(n);
    }
    if switching {
        if let Some(u) = upgrade {
            headers.insert(header::UPGRADE, u);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn forwarding_headers_are_set_and_hop_by_hop_removed() {
        let src = map(&[
            ("host", "app.example.com"),
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-authorization", "x"),
            ("te", "trailers, gzip"),
            ("transfer-encoding", "chunked"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-client-cert-subject", "CN=admin"),
            ("accept", "*/*"),
        ]);
        let id = HeaderValue::from_static("abc");
        let f = Forwarded {
            client_ip: "192.0.2.7".parse().unwrap(),
            https: false,
            host: Some("app.example.com"),
            request_id: &id,
            subject: None,
            upgrade: false,
            h2_backend: false,
            keep_forwarded_for: true,
        };
        let out = to_backend(&src, &f);
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "proxy-authorization",
            "transfer-encoding",
            "x-client-cert-subject",
        ] {
            assert!(!out.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(out["te"], "trailers");
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-host"], "app.example.com");
        assert_eq!(out["x-request-id"], "abc");
        assert_eq!(out["host"], "app.example.com");
        assert_eq!(out["accept"], "*/*");

        // From an untrusted client the chain restarts at the client.
        let untrusted = Forwarded {
            keep_forwarded_for: false,
            ..f
        };
        assert_eq!(to_backend(&src, &untrusted)["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn h2_backends_get_no_host_and_upgrades_keep_their_headers() {
        let src = map(&[
            ("host", "a"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let id = HeaderValue::from_static("x");
        let mut f = Forwarded {
            client_ip: "::ffff:192.0.2.1".parse().unwrap(),
            https: true,
            host: Some("a"),
            request_id: &id,
            subject: None,
            upgrade: true,
            h2_backend: false,
            keep_forwarded_for: true,
        };
        assert!(wants_upgrade(&src));
        let out = to_backend(&src, &f);
        assert_eq!(out["upgrade"], "websocket");
        assert_eq!(out["connection"], "upgrade");
        assert_eq!(out["x-forwarded-for"], "192.0.2.1");
        f.upgrade = false;
        f.h2_backend = true;
        let out = to_backend(&src, &f);
        assert!(!out.contains_key("host") && !out.contains_key("upgrade"));
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        assert_eq!(request_id(&map(&[("x-request-id", "req-1")])), "req-1");
        let fresh = request_id(&map(&[("x-request-id", "has space")]));
        assert_eq!(fresh.len(), 36);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        // Never indexed by HPACK, kept or generated.
        assert!(request_id(&map(&[("x-request-id", "req-1")])).is_sensitive());
        assert!(fresh.is_sensitive());
    }

    #[test]
    fn responses_lose_hop_by_hop_headers() {
        let mut h = map(&[
            ("connection", "close, x-a"),
            ("x-a", "1"),
            ("keep-alive", "x"),
            ("content-type", "text/plain"),
        ]);
        clean_response(&mut h, false);
        assert_eq!(h.len(), 1);
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        clean_response(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        // Names listed in any of several Connection headers, in any case, go; so do all
        // values of a repeated hop-by-hop header and proxy-* ones.
        let mut h = map(&[
            ("connection", "X-One ,,"),
            ("connection", "x-TWO"),
            ("x-one", "1"),
            ("x-two", "2"),
            ("x-two", "3"),
            ("trailer", "a"),
            ("trailer", "b"),
            ("proxy-thing", "p"),
            ("x-kept", "k"),
        ]);
        clean_response(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn forwarded_for_appends_the_client_to_a_trusted_chain() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_for(&[], v6).unwrap().as_bytes(), b"2001:db8::1");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            forwarded_for(&[b" "], mapped).unwrap().as_bytes(),
            b"192.0.2.7"
        );
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap();
        assert_eq!(
            forwarded_for(&[b" 10.0.0.1, 10.0.0.2 ", b"10.0.0.3"], long)
                .unwrap()
                .as_bytes(),
            b"10.0.0.1, 10.0.0.2, 10.0.0.3, ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
        );
    }
}
