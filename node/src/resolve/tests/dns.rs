//! Hostname backends against the fake DNS server.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fiberlb_api::model::BackendAddress;

use super::fake_dns::{FakeDns, Mode};
use super::{addrs, bounded, eventually, ready, resolver, state};
use crate::resolve::cache::Key;
use crate::resolve::{Lookup, ResolveError, Resolver, ResolverConfig};

fn answer(ip: [u8; 4], ttl: u32) -> Mode {
    Mode::Answer {
        ips: vec![Ipv4Addr::from(ip)],
        ttl,
    }
}

fn dns_resolver(dns: &FakeDns, min_ttl: Duration, max_ttl: Duration) -> Resolver {
    resolver(ResolverConfig {
        dns_server: Some(dns.addr),
        min_ttl,
        max_ttl,
        ..ResolverConfig::default()
    })
}

fn host(name: &str) -> BackendAddress {
    BackendAddress::Hostname(name.into())
}

#[tokio::test]
async fn follows_the_ttl_and_keeps_the_last_good_answer() {
    bounded(async {
        let dns = FakeDns::start(answer([10, 0, 0, 1], 1)).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(100), Duration::from_secs(60));
        let app = host("app.fiberlb.test");
        let t0 = Instant::now();

        assert_eq!(resolver.lookup(&app, 80), Lookup::Pending);
        let first = resolver.resolve_now(&app, 80).await.unwrap();
        assert_eq!(&first[..], &addrs(&["10.0.0.1:80"])[..]);
        assert_eq!(
            ready(&resolver.lookup(&app, 80)),
            Some(addrs(&["10.0.0.1:80"]))
        );

        // The new answer is picked up when the 1 s TTL runs out, not before.
        dns.set(answer([10, 0, 0, 2], 1));
        eventually(
            Duration::from_secs(5),
            "re-resolution after the TTL",
            || (ready(&resolver.lookup(&app, 80))? == addrs(&["10.0.0.2:80"])).then_some(()),
        )
        .await;
        assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());

        // SERVFAIL: retried with back-off, the last good answer stays.
        dns.set(Mode::ServFail);
        let key = Key::host("app.fiberlb.test".into());
        eventually(Duration::from_secs(5), "two failed refreshes", || {
            (state(&resolver, key.clone()).failures >= 2).then_some(())
        })
        .await;
        assert_eq!(
            ready(&resolver.lookup(&app, 80)),
            Some(addrs(&["10.0.0.2:80"]))
        );

        // Silence (timeouts): same.
        dns.set(Mode::Silent);
        let failures = state(&resolver, key.clone()).failures;
        eventually(Duration::from_secs(10), "a timed-out refresh", || {
            (state(&resolver, key.clone()).failures > failures).then_some(())
        })
        .await;
        assert_eq!(
            ready(&resolver.lookup(&app, 80)),
            Some(addrs(&["10.0.0.2:80"]))
        );
        assert_eq!(
            ready(&resolver.lookup(&app, 8443)),
            Some(addrs(&["10.0.0.2:8443"])),
            "a new port of a known name is ready at once"
        );

        // The server recovers: the next retry picks up its answer.
        dns.set(answer([10, 0, 0, 3], 60));
        eventually(Duration::from_secs(10), "recovery", || {
            (ready(&resolver.lookup(&app, 80))? == addrs(&["10.0.0.3:80"])).then_some(())
        })
        .await;
        assert_eq!(state(&resolver, key).failures, 0);
    })
    .await;
}

#[tokio::test]
async fn ttl_is_clamped_to_min_and_max() {
    bounded(async {
        // TTL 0 is raised to min_ttl: the change cannot show before min_ttl has passed.
        let dns = FakeDns::start(answer([10, 0, 1, 1], 0)).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(700), Duration::from_secs(60));
        let app = host("zero.fiberlb.test");
        let t0 = Instant::now();
        resolver.resolve_now(&app, 80).await.unwrap();
        dns.set(answer([10, 0, 1, 2], 0));
        eventually(
            Duration::from_secs(5),
            "re-resolution after min_ttl",
            || (ready(&resolver.lookup(&app, 80))? == addrs(&["10.0.1.2:80"])).then_some(()),
        )
        .await;
        assert!(
            t0.elapsed() >= Duration::from_millis(700),
            "{:?}",
            t0.elapsed()
        );
        assert!(dns.a_queries() <= 4, "{} queries", dns.a_queries());

        // A day-long TTL is cut to max_ttl.
        let dns = FakeDns::start(answer([10, 0, 2, 1], 86_400)).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(100), Duration::from_millis(400));
        let app = host("long.fiberlb.test");
        resolver.resolve_now(&app, 80).await.unwrap();
        dns.set(answer([10, 0, 2, 2], 86_400));
        eventually(
            Duration::from_secs(5),
            "re-resolution after max_ttl",
            || (ready(&resolver.lookup(&app, 80))? == addrs(&["10.0.2.2:80"])).then_some(()),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_name_that_never_resolved_is_failed_until_it_does() {
    bounded(async {
        let dns = FakeDns::start(Mode::ServFail).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(100), Duration::from_secs(60));
        let app = host("broken.fiberlb.test");
        let err = resolver.resolve_now(&app, 80).await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::Dns { name, .. } if name == "broken.fiberlb.test"),
            "{err:?}"
        );
        assert!(matches!(resolver.lookup(&app, 80), Lookup::Failed(m) if m.contains("broken.fiberlb.test")));

        dns.set(answer([10, 0, 3, 1], 60));
        eventually(Duration::from_secs(5), "first success", || {
            ready(&resolver.lookup(&app, 80))
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_misses_share_one_resolution() {
    bounded(async {
        let dns = FakeDns::start(answer([10, 0, 4, 1], 3600)).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(100), Duration::from_secs(300));
        let app = host("shared.fiberlb.test");
        for port in 0..100 {
            assert_eq!(resolver.lookup(&app, 1000 + port % 3), Lookup::Pending);
        }
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let resolver = resolver.clone();
                let app = app.clone();
                tokio::spawn(async move { resolver.resolve_now(&app, 80).await })
            })
            .collect();
        for waiter in waiters {
            assert_eq!(
                &waiter.await.unwrap().unwrap()[..],
                &addrs(&["10.0.4.1:80"])[..]
            );
        }
        assert_eq!(dns.a_queries(), 1);
        assert_eq!(resolver.cache.tracked(), 1);
        assert_eq!(
            ready(&resolver.lookup(&app, 1002)),
            Some(addrs(&["10.0.4.1:1002"]))
        );
    })
    .await;
}

#[tokio::test]
async fn retain_drops_unwanted_names_and_prefetches_wanted_ones() {
    bounded(async {
        let dns = FakeDns::start(answer([10, 0, 5, 1], 3600)).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(100), Duration::from_secs(300));
        let (a, b, c) = (
            host("a.fiberlb.test"),
            host("b.fiberlb.test"),
            host("c.fiberlb.test"),
        );
        resolver.resolve_now(&a, 80).await.unwrap();
        resolver.resolve_now(&b, 80).await.unwrap();
        assert_eq!(resolver.cache.tracked(), 2);

        let ip = BackendAddress::Ip("192.0.2.1".parse().unwrap());
        resolver.retain([a.clone(), c.clone(), ip]);
        assert_eq!(resolver.cache.tracked(), 2, "a kept, b dropped, c added");
        assert!(
            ready(&resolver.lookup(&a, 80)).is_some(),
            "a keeps its answer"
        );
        // c was prefetched by retain: its first lookup finds an answer without a wait.
        eventually(Duration::from_secs(5), "prefetch of c", || {
            state_of(&resolver, "c.fiberlb.test")?.answer
        })
        .await
        .unwrap();
        assert!(ready(&resolver.lookup(&c, 80)).is_some());
        // b is forgotten: asking again starts from scratch.
        assert!(state_of(&resolver, "b.fiberlb.test").is_none());
        assert_eq!(resolver.lookup(&b, 80), Lookup::Pending);

        resolver.retain([]);
        assert_eq!(resolver.cache.tracked(), 0);
        assert_eq!(resolver.lookup(&a, 80), Lookup::Pending);
    })
    .await;
}

fn state_of(resolver: &Resolver, name: &str) -> Option<crate::resolve::cache::State> {
    resolver.cache.state(&Key::host(name.into()))
}

#[tokio::test]
async fn waiters_learn_when_their_name_is_dropped() {
    bounded(async {
        let dns = FakeDns::start(Mode::Silent).await;
        let resolver = dns_resolver(&dns, Duration::from_millis(100), Duration::from_secs(60));
        let app = host("dropped.fiberlb.test");
        let waiter = {
            let resolver = resolver.clone();
            let app = app.clone();
            tokio::spawn(async move { resolver.resolve_now(&app, 80).await })
        };
        eventually(Duration::from_secs(5), "the query to go out", || {
            (dns.a_queries() > 0).then_some(())
        })
        .await;
        resolver.retain([]);
        assert!(matches!(
            waiter.await.unwrap(),
            Err(ResolveError::Removed { .. })
        ));
    })
    .await;
}
