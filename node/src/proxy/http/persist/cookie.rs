//! Just enough cookie parsing for persistence, over raw header bytes and without
//! allocating: find one cookie's value in the request's `Cookie` headers, and one cookie in a
//! response's `Set-Cookie` headers. Anything malformed is skipped, never an error.

use http::header::{COOKIE, SET_COOKIE};
use http::HeaderMap;

/// The value of the first non-empty cookie called `name` among all `Cookie` headers (HTTP/2
/// clients may send one header per cookie), with optional surrounding double quotes removed.
pub(super) fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let (k, v) = split_pair(pair)?;
            (k == name.as_bytes() && !v.is_empty()).then_some(v)
        })
}

/// What a response's `Set-Cookie` says about one cookie.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SetCookie<'a> {
    /// The cookie is set to this (non-empty) value.
    Set(&'a [u8]),
    /// The cookie is deleted (`Max-Age` ≤ 0) or emptied; the old value, if it was given.
    Cleared(&'a [u8]),
}

/// Every `Set-Cookie` of `headers` for cookie `name`, in order.
pub(super) fn response_cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = SetCookie<'a>> + 'a {
    headers.get_all(SET_COOKIE).iter().filter_map(move |v| {
        let mut parts = v.as_bytes().split(|&b| b == b';');
        let (k, value) = split_pair(parts.next()?)?;
        if k != name.as_bytes() {
            return None;
        }
        let expired = parts.filter_map(split_pair).any(|(attr, v)| {
            attr.eq_ignore_ascii_case(b"max-age")
                && std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some_and(|n| n <= 0)
        });
        Some(if expired || value.is_empty() {
            SetCookie::Cleared(value)
        } else {
            SetCookie::Set(value)
        })
    })
}

/// `name=value` with blanks around both trimmed and quotes around the value removed; `None`
/// without `=` or with an empty name.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    let (k, v) = pair.split_at(eq);
    let k = trim(k);
    let v = trim(v.get(1..).unwrap_or_default());
    let v = match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    };
    (!k.is_empty()).then_some((k, v))
}

fn trim(s: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !blank(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod unit {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::HeaderName, values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_cookie_across_headers_spaces_quotes() {
        let h = headers(COOKIE, &[b"a=1; b=2", b"  SRV = \"tok\" ;c=3"]);
        assert_eq!(request_cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(request_cookie(&h, "SRV"), Some(&b"tok"[..]));
        assert_eq!(request_cookie(&h, "c"), Some(&b"3"[..]));
        assert_eq!(request_cookie(&h, "srv"), None);
        assert_eq!(request_cookie(&h, "d"), None);
        // The first non-empty instance wins.
        let h = headers(COOKIE, &[b"x=; x=first; x=second"]);
        assert_eq!(request_cookie(&h, "x"), Some(&b"first"[..]));
    }

    #[test]
    fn malformed_cookie_headers() {
        let bad: &[&[u8]] = &[
            b"",
            b";",
            b";;;",
            b"=",
            b"==",
            b"x",
            b"=v",
            b"\"",
            b"x=\"",
            b"x=\"\"",
            b" \t ",
            b"x=1;;=;y",
            b"\xff\xfe=\x80",
            b"x=\xc3",
        ];
        for v in bad {
            let h = headers(COOKIE, &[v]);
            let _ = request_cookie(&h, "x");
            let _ = request_cookie(&h, "");
            let h = headers(SET_COOKIE, &[v]);
            let _ = response_cookies(&h, "x").count();
        }
        let h = headers(COOKIE, &[b"x=\"", b"x=\"\""]);
        assert_eq!(request_cookie(&h, "x"), Some(&b"\""[..]));
    }

    #[test]
    fn set_cookie_values_and_deletions() {
        let h = headers(
            SET_COOKIE,
            &[
                b"other=1",
                b"JSESSIONID=abc; Path=/; HttpOnly",
                b"JSESSIONID=old; Max-Age=0",
                b"JSESSIONID=; Path=/",
                b"JSESSIONID=x; max-age=-1",
                b"JSESSIONID=y; Max-Age=junk",
            ],
        );
        let got: Vec<_> = response_cookies(&h, "JSESSIONID").collect();
        assert_eq!(
            got,
            vec![
                SetCookie::Set(b"abc"),
                SetCookie::Cleared(b"old"),
                SetCookie::Cleared(b""),
                SetCookie::Cleared(b"x"),
                SetCookie::Set(b"y"),
            ]
        );
    }
}
