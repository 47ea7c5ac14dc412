//! One compiled rule condition and its per-request test.

use std::net::IpAddr;

use fiberlb_api::model::{Condition, HttpMethod};
use http::{HeaderName, Method};
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};

use super::RequestView;

/// Longest regex compiled (the API refuses longer ones too): bounds the memory every node's
/// route table may spend on one pattern.
const MAX_REGEX_LEN: usize = 1024;
/// Compiled-program size limit, the same as the API's validation uses.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A condition ready to test.
#[derive(Debug)]
pub(super) enum Matcher {
    /// Host patterns, lower-case (exact or `*.suffix`).
    Host(Vec<String>),
    PathPrefix(String),
    PathExact(String),
    PathRegex(Regex),
    Header {
        name: HeaderName,
        values: Vec<String>,
    },
    Method(Vec<Method>),
    Query {
        name: String,
        value: String,
    },
    Source(Vec<IpNet>),
    /// Stands for a condition that did not compile: the rule never matches.
    Never,
}

impl Matcher {
    /// Compiles `c`, or says why it cannot be.
    pub(super) fn compile(c: &Condition) -> Result<Matcher, String> {
        Ok(match c {
            Condition::HostHeader { values } => Matcher::Host(
                values
                    .iter()
                    .map(|v| {
                        let v = v.strip_suffix('.').unwrap_or(v);
                        v.to_ascii_lowercase()
                    })
                    .collect(),
            ),
            Condition::PathPrefix { value } => Matcher::PathPrefix(value.clone()),
            Condition::PathExact { value } => Matcher::PathExact(value.clone()),
            Condition::PathRegex { pattern } => {
                if pattern.len() > MAX_REGEX_LEN {
                    return Err(format!("path regex longer than {MAX_REGEX_LEN} bytes"));
                }
                let re = RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("path regex {pattern:?} does not compile: {e}"))?;
                Matcher::PathRegex(re)
            }
            Condition::Header { name, values } => {
                let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                Matcher::Header {
                    name,
                    values: values.clone(),
                }
            }
            Condition::Method { methods } => {
                Matcher::Method(methods.iter().map(|&m| method(m)).collect())
            }
            Condition::QueryParam { name, value } => Matcher::Query {
                name: name.clone(),
                value: value.clone(),
            },
            Condition::SourceIp { cidrs } => {
                Matcher::Source(cidrs.iter().map(IpNet::trunc).collect())
            }
        })
    }

    /// Whether the request satisfies the condition. Does not allocate.
    pub(super) fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Matcher::Host(patterns) => req.host.is_some_and(|h| {
                patterns
                    .iter()
                    .any(|p| crate::proxy::host_match::matches(p, h))
            }),
            Matcher::PathPrefix(prefix) => req.path.starts_with(prefix.as_str()),
            Matcher::PathExact(path) => req.path == path,
            Matcher::PathRegex(re) => re.is_match(req.path),
            Matcher::Header { name, values } => req
                .headers
                .get_all(name)
                .iter()
                .any(|v| values.iter().any(|want| v.as_bytes() == want.as_bytes())),
            Matcher::Method(methods) => methods.iter().any(|m| m == req.method),
            Matcher::Query { name, value } => req
                .query
                .is_some_and(|q| query_has(q.as_bytes(), name.as_bytes(), value.as_bytes())),
            Matcher::Source(nets) => source_in(nets, req.client_ip),
            Matcher::Never => false,
        }
    }
}

fn method(m: HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Options => Method::OPTIONS,
    }
}

/// Whether `ip` is inside one of `nets`. An IPv4 client arriving on a dual-stack socket
/// shows up as `::ffff:a.b.c.d`; it matches IPv4 networks (and a plain IPv4 address matches
/// a `::ffff:0:0/96`-style IPv6 network), so one rule serves both socket kinds.
fn source_in(nets: &[IpNet], ip: IpAddr) -> bool {
    let alt = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
    };
    nets.iter()
        .any(|n| n.contains(&ip) || alt.is_some_and(|a| n.contains(&a)))
}

/// Whether the `&`-separated query `q` has a parameter `name` equal to `value`, both sides of
/// the query percent-decoded. A raw `+` in the query matches either `+` or a space in the
/// rule: form encoding means a space by it, but clients also send literal pluses unescaped,
/// and either reading is what the rule's author may have meant.
fn query_has(q: &[u8], name: &[u8], value: &[u8]) -> bool {
    q.split(|&b| b == b'&').any(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        decoded_eq(k, name) && decoded_eq(v, value)
    })
}

/// Compares the percent-decoding of `raw` with `want` byte by byte, without allocating.
/// An invalid escape (`%zz`, a trailing `%`) stands for itself, as in form decoding.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut want = want.iter();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let Some(&w) = want.next() else { return false };
        let ok = match b {
            b'%' => match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    ((hi << 4) | lo) == w
                }
                _ => w == b'%',
            },
            b'+' => w == b'+' || w == b' ',
            _ => b == w,
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    want.next().is_none()
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn decoding_comparison() {
        assert!(decoded_eq(b"a%20b", b"a b"));
        assert!(decoded_eq(b"a+b", b"a b"));
        assert!(decoded_eq(b"a+b", b"a+b"));
        assert!(decoded_eq(b"a%2Bb", b"a+b"));
        assert!(!decoded_eq(b"a%2Bb", b"a b"));
        assert!(decoded_eq(b"%zz", b"%zz"));
        assert!(decoded_eq(b"50%", b"50%"));
        assert!(decoded_eq(b"%4", b"%4"));
        assert!(decoded_eq(b"%C3%A9", "é".as_bytes()));
        assert!(!decoded_eq(b"abc", b"ab"));
        assert!(!decoded_eq(b"ab", b"abc"));
        assert!(decoded_eq(b"", b""));
    }

    #[test]
    fn query_pairs() {
        assert!(query_has(b"a=1&b=2", b"b", b"2"));
        assert!(query_has(b"a=1&&b=2&", b"b", b"2"));
        assert!(query_has(b"flag&x=1", b"flag", b""));
        assert!(query_has(b"flag=&x=1", b"flag", b""));
        assert!(!query_has(b"flag&x=1", b"flag", b"1"));
        assert!(query_has(b"my%20key=v=w", b"my key", b"v=w"));
        assert!(!query_has(b"ab=1", b"a", b"1"));
        assert!(!query_has(b"", b"a", b""));
    }

    #[test]
    fn source_mapping() {
        let v4: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(source_in(&v4, "10.1.2.3".parse().unwrap()));
        assert!(source_in(&v4, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!source_in(&v4, "::ffff:11.1.2.3".parse().unwrap()));
        assert!(!source_in(&v4, "::1".parse().unwrap()));
        let mapped: Vec<IpNet> = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
        assert!(source_in(&mapped, "10.9.9.9".parse().unwrap()));
    }
}
