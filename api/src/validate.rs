//! Field rules shared by the services: names (spec §3.1), identifiers used in store keys,
//! ports, weights, hostnames, label maps and timeouts. Each failure names the field.

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Spec §3.1: 1-63 characters of lower-case letters, digits and hyphens, starting with a
/// letter and ending with a letter or digit.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

const NAME_RULE: &str = "must be 1-63 characters of lower-case letters, digits and hyphens, start with a letter and end with a letter or digit";

/// A load balancer name (INVALID_LB_NAME).
pub fn lb_name(name: &str) -> ApiResult<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidLbName,
            format!("name {name:?} {NAME_RULE}"),
        ))
    }
}

/// The name of a listener, pool, backend, rule, certificate or token (INVALID_NAME).
pub fn object_name(field: &str, name: &str) -> ApiResult<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{field} {name:?} {NAME_RULE}"),
        ))
    }
}

/// An org or project id: it becomes part of store keys, so no `/` and a bounded length.
pub fn tenant_id(field: &str, id: &str) -> ApiResult<()> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("{id:?} must be 1-128 characters of letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// A reference to another object by id (non-empty, no `/`).
pub fn id_ref(field: &str, id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 128 || id.contains('/') {
        Err(ApiError::invalid(field, "must be an object id"))
    } else {
        Ok(())
    }
}

/// A TCP/UDP port, 1-65535.
pub fn port(field: &str, p: u32) -> ApiResult<u16> {
    match u16::try_from(p) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(ApiError::invalid(
            field,
            format!("port {p} is outside 1-65535"),
        )),
    }
}

/// A backend weight, 1-100.
pub fn weight(w: u32) -> ApiResult<u32> {
    if (1..=100).contains(&w) {
        Ok(w)
    } else {
        Err(ApiError::invalid("weight", format!("{w} is outside 1-100")))
    }
}

/// Largest backend `max_connections`: far above what one server takes, low enough that
/// a typo (an extra digit or two) is caught rather than silently meaning "unlimited".
pub const MAX_BACKEND_CONNECTIONS: u32 = 10_000_000;

/// A backend connection limit as a request gives it: 0 means unlimited (`None`),
/// otherwise 1-[`MAX_BACKEND_CONNECTIONS`].
pub fn max_connections(v: u32) -> ApiResult<Option<u32>> {
    match v {
        0 => Ok(None),
        v if v <= MAX_BACKEND_CONNECTIONS => Ok(Some(v)),
        v => Err(ApiError::invalid(
            "max_connections",
            format!("{v} is outside 0-{MAX_BACKEND_CONNECTIONS} (0 = unlimited)"),
        )),
    }
}

/// RFC 1123 host name (labels of letters, digits and hyphens, 253 characters at most).
pub fn is_valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            let b = l.as_bytes();
            (1..=63).contains(&b.len())
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// A host pattern for SNI or Host rules: a host name or `*.` followed by one.
pub fn host_pattern(field: &str, h: &str) -> ApiResult<String> {
    let lower = h.to_ascii_lowercase();
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    if is_valid_hostname(rest) {
        Ok(lower)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{h:?} is not a host name or *.wildcard"),
        ))
    }
}

/// Tags and metadata: at most 64 entries, keys 1-128 characters, values up to 1024.
pub fn labels(
    field: &str,
    m: &std::collections::HashMap<String, String>,
) -> ApiResult<BTreeMap<String, String>> {
    if m.len() > 64 {
        return Err(ApiError::invalid(field, "at most 64 entries"));
    }
    for (k, v) in m {
        if k.is_empty() || k.len() > 128 || k.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                field,
                format!("key {k:?} must be 1-128 printable characters"),
            ));
        }
        if v.len() > 1024 {
            return Err(ApiError::invalid(
                field,
                format!("value of {k:?} is longer than 1024 bytes"),
            ));
        }
    }
    Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A timeout in milliseconds: 1 ms to 1 hour.
pub fn timeout_ms(field: &str, v: u32) -> ApiResult<u32> {
    if (1..=3_600_000).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{v} ms is outside 1-3600000"),
        ))
    }
}

/// Free text such as descriptions: at most 1024 bytes, no control characters but newlines.
pub fn text(field: &str, s: &str) -> ApiResult<()> {
    if s.len() > 1024 || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        Err(ApiError::invalid(
            field,
            "at most 1024 bytes of printable text",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spec() {
        for ok in ["a", "web-lb", "a1", "x-1-y", &"a".repeat(63)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "a-",
            "Web",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "a b",
            "é",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn hostnames_and_patterns() {
        assert!(is_valid_hostname("api.example.com"));
        assert!(is_valid_hostname("localhost"));
        assert!(!is_valid_hostname("-bad.example.com"));
        assert!(!is_valid_hostname("a..b"));
        assert_eq!(host_pattern("f", "*.Example.com").unwrap(), "*.example.com");
        assert!(host_pattern("f", "*.*.com").is_err());
        assert!(host_pattern("f", "*").is_err());
    }

    #[test]
    fn ports_and_weights() {
        assert!(port("port", 0).is_err());
        assert!(port("port", 65536).is_err());
        assert_eq!(port("port", 443).unwrap(), 443);
        assert!(weight(0).is_err());
        assert!(weight(101).is_err());
        assert!(weight(100).is_ok());
    }

    #[test]
    fn backend_connection_limits() {
        assert_eq!(max_connections(0).unwrap(), None, "0 = unlimited");
        assert_eq!(max_connections(1).unwrap(), Some(1));
        assert_eq!(
            max_connections(MAX_BACKEND_CONNECTIONS).unwrap(),
            Some(MAX_BACKEND_CONNECTIONS)
        );
        let e = max_connections(MAX_BACKEND_CONNECTIONS + 1).unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
    }
}
