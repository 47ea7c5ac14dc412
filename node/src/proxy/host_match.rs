//! Host name patterns of rules and SNI maps: exact names, or `*.suffix` matching exactly
//! one more label (the rule TLS wildcard certificates follow), case-insensitive.

/// Whether `host` (a Host header without port, or an SNI name) matches `pattern`.
pub fn matches(pattern: &str, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn exact_and_wildcard() {
        assert!(matches("api.example.com", "API.example.com"));
        assert!(matches("api.example.com", "api.example.com."));
        assert!(!matches("api.example.com", "example.com"));
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", ".example.com"));
    }
}
