//! Checks of single values (addresses, URLs, CIDRs, files, log filters), returning a
//! message without the key; `Settings::validate` attaches the key.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Two TCP listen addresses that cannot both be bound (port 0 never clashes).
pub(super) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

pub(super) fn usable_ip(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast()
}

pub(super) fn check_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("file {shown} does not exist"),
        _ => format!("cannot open {shown}: {e}"),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(format!("file {shown} is empty"));
    }
    Ok(())
}

pub(super) fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    ensure_plain(url, rest)
}

/// An etcd endpoint: an http(s) URL or a bare `host:port`.
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.contains("://") {
        check_url(endpoint)
    } else {
        check_host_port(endpoint)
    }
}

fn ensure_plain(whole: &str, host_part: &str) -> Result<(), String> {
    if host_part.is_empty() || host_part.starts_with('/') {
        return Err(format!("`{whole}` has no host"));
    }
    if whole.chars().any(char::is_whitespace) {
        return Err(format!("`{whole}` contains whitespace"));
    }
    Ok(())
}

/// `host:port` or `[v6]:port`, port 1..=65535.
pub(super) fn check_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok_and(|a| a.port() != 0) {
        return Ok(());
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not host:port"))?;
    ensure_plain(s, host)?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("`{s}`: write IPv6 addresses as [addr]:port"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("`{s}`: `{port}` is not a port in 1..=65535")),
    }
}

pub(super) fn check_cidr(pool: &str) -> Result<(), String> {
    let net: ipnet::IpNet = pool
        .trim()
        .parse()
        .map_err(|_| format!("`{pool}` is not a CIDR prefix such as 10.200.0.0/24"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{pool}` has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(())
}

/// EnvFilter accepts a bare word as a target name, so `verbose` would silently mean
/// "everything from a crate called verbose". A bare word must be a level here.
pub(super) fn check_log_level(level: &str) -> Result<(), String> {
    if level.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && directive.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "`{directive}` is not a log level (trace, debug, info, warn, error, off); \
                 filter a target with `target=level`"
            ));
        }
    }
    EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| format!("`{level}` is not a valid filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        for ok in ["a:1", "10.0.0.1:7946", "[::1]:7946", "node-2.example:65535"] {
            assert!(check_host_port(ok).is_ok(), "{ok}");
        }
        for bad in ["a", ":1", "a:0", "a:x", "::1:7946", "a b:1", "a:70000"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_endpoints() {
        assert!(check_url("https://iam:9090").is_ok());
        assert!(check_url("iam:9090").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_endpoint("10.0.0.1:2379").is_ok());
        assert!(check_endpoint("http://cf-1:2379").is_ok());
        assert!(check_endpoint("grpc://cf-1:2379").is_err());
    }

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "WARN",
            "info,fiberlb_node::proxy=debug",
            "fiberlb=trace",
            "off",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["", "verbose", "info,loud", "fiberlb=verbose"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert!(check_cidr("10.200.0.0/24").is_ok());
        assert!(check_cidr("2001:db8::/64").is_ok());
        assert!(check_cidr("10.200.0.1/24")
            .unwrap_err()
            .contains("10.200.0.0/24"));
        assert!(check_cidr("10.200.0.0/33").is_err());
        assert!(check_cidr("nope").is_err());
    }

    #[test]
    fn listen_clashes() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(clash(a("127.0.0.1:80"), a("0.0.0.0:80")));
        assert!(!clash(a("127.0.0.1:0"), a("127.0.0.1:0")));
        assert!(!clash(a("127.0.0.1:80"), a("127.0.0.2:80")));
    }
}
