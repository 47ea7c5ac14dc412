//! Responses the proxy makes itself: errors, redirects and fixed responses.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::body::{self, Active, ProxyBody};

/// What a request turned into, before the response body is wrapped.
pub struct Reply {
    /// The response.
    pub resp: Response<ProxyBody>,
    /// The backend's in-flight count, held until the body ends.
    pub active: Option<Active>,
    /// Cuts the response body off (the backend's drain deadline).
    pub cut: Option<Arc<CancellationToken>>,
}

impl Reply {
    /// A response made here.
    pub fn local(resp: Response<ProxyBody>) -> Self {
        Reply {
            resp,
            active: None,
            cut: None,
        }
    }
}

/// A short plain-text answer: `502 Bad Gateway` and so on.
pub fn status(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A redirect to `location` (checked to be a header value when the route was compiled).
pub fn redirect(location: &str, code: StatusCode) -> Response<ProxyBody> {
    let mut r = status(code);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    r
}

/// A rule's fixed response.
pub fn fixed(code: StatusCode, content_type: &str, body: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = code;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}
