//! Resolver tests against a fake DNS server and a fake PlasmaVMC API, both on 127.0.0.1:0.

mod dns;
mod fake_dns;
mod fake_vmc;
mod vm;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fiberlb_api::model::BackendAddress;

use super::cache::{Key, State, Tuning};
use super::{Lookup, Resolver, ResolverConfig};

/// Short timeouts so failure paths finish in well under a second.
fn fast() -> Tuning {
    Tuning {
        dns_timeout: Duration::from_millis(300),
        http_timeout: Duration::from_millis(300),
        retry_base: Duration::from_millis(50),
    }
}

fn resolver(cfg: ResolverConfig) -> Resolver {
    Resolver::with_tuning(cfg, fast())
}

/// Runs a test body with an overall deadline, so a bug shows as a failure, not a hang.
async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("test did not finish within 30 s")
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `within`.
async fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn ready(lookup: &Lookup) -> Option<Vec<SocketAddr>> {
    match lookup {
        Lookup::Ready(addrs) => Some(addrs.to_vec()),
        _ => None,
    }
}

fn state(resolver: &Resolver, key: Key) -> State {
    resolver.cache.state(&key).expect("name is tracked")
}

#[tokio::test]
async fn ip_addresses_are_ready_at_once() {
    let resolver = Resolver::new(ResolverConfig::default());
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(
        resolver.lookup(&BackendAddress::Ip(ip), 8080),
        Lookup::Ready(addrs(&["192.0.2.7:8080"]).into())
    );
    // A "hostname" that is an IP literal needs no DNS either.
    let v6 = BackendAddress::Hostname("2001:db8::1".into());
    assert_eq!(
        resolver.lookup(&v6, 443),
        Lookup::Ready(addrs(&["[2001:db8::1]:443"]).into())
    );
    let resolved = resolver
        .resolve_now(&BackendAddress::Ip(ip), 1)
        .await
        .unwrap();
    assert_eq!(&resolved[..], &addrs(&["192.0.2.7:1"])[..]);
    assert_eq!(resolver.cache.tracked(), 0);
}

#[tokio::test]
async fn localhost_resolves_to_loopback() {
    bounded(async {
        let resolver = Resolver::new(ResolverConfig::default());
        let localhost = BackendAddress::Hostname("localhost".into());
        let resolved = resolver.resolve_now(&localhost, 80).await.unwrap();
        assert!(!resolved.is_empty());
        // /etc/hosts may list 127.0.0.1, ::1, or both (and some list 127.0.1.1).
        assert!(
            resolved
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 80),
            "{resolved:?}"
        );
        assert!(
            resolved
                .iter()
                .any(|a| a.ip() == IpAddr::from([127, 0, 0, 1])
                    || a.ip() == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            "{resolved:?}"
        );
        assert_eq!(
            resolver.lookup(&localhost, 80),
            Lookup::Ready(resolved.into())
        );
    })
    .await;
}

#[test]
fn lookup_without_a_runtime_fails_instead_of_panicking() {
    let resolver = Resolver::new(ResolverConfig::default());
    let lookup = resolver.lookup(&BackendAddress::Hostname("example.invalid".into()), 80);
    assert_eq!(
        lookup,
        Lookup::Failed("resolver used outside a tokio runtime".into())
    );
}
