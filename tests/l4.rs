//! L4 data plane end to end: real `fiberlb serve`, real backends, real sockets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::{
    free_port, tcp_echo, tls_hello, tls_server, udp_echo, unique_loopback, wait_tcp,
};
use fiberlb_tests::{bounded, Clients, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

struct Lb {
    node: Node,
    _dir: tempfile::TempDir,
    api: Clients,
    lb: String,
    ip: IpAddr,
}

async fn start() -> anyhow::Result<Lb> {
    let dir = tempfile::tempdir()?;
    let ip = unique_loopback();
    let node = Node::start_with(dir.path(), &["--bind-address", &ip.to_string()]).await?;
    let mut api = node.admin()?;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb("l4", "acme"))
        .await?
        .into_inner()
        .id;
    Ok(Lb {
        node,
        _dir: dir,
        api,
        lb,
        ip,
    })
}

impl Lb {
    async fn pool(&mut self, name: &str, backends: &[SocketAddr]) -> anyhow::Result<String> {
        let pool = self
            .api
            .pool
            .create_pool(fixtures::pool(&self.lb, name))
            .await?
            .into_inner()
            .id;
        for (i, b) in backends.iter().enumerate() {
            let req = backend(
                &pool,
                &format!("{name}-{i}"),
                ip(&b.ip().to_string()),
                b.port() as u32,
            );
            self.api.backend.add_backend(req).await?;
        }
        Ok(pool)
    }

    async fn listener(
        &mut self,
        protocol: pb::ListenerProtocol,
        pool: Option<&str>,
    ) -> anyhow::Result<(String, SocketAddr)> {
        let udp = protocol == pb::ListenerProtocol::Udp;
        let port = free_port(self.ip, udp)?;
        let mut req = fixtures::listener(&self.lb, &format!("l{port}"), protocol, port as u32);
        req.default_pool_id = pool.map(str::to_string);
        let id = self
            .api
            .listener
            .create_listener(req)
            .await?
            .into_inner()
            .id;
        let addr = SocketAddr::new(self.ip, port);
        if !udp {
            wait_tcp(addr, Duration::from_secs(10)).await?;
        }
        Ok((id, addr))
    }
}

#[tokio::test]
async fn tcp_echo_and_bulk_transfer_are_byte_exact() -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"").await?;
        let mut lb = start().await?;
        let pool = lb.pool("echo", &[echo.addr]).await?;
        let (lid, addr) = lb.listener(pb::ListenerProtocol::Tcp, Some(&pool)).await?;

        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut four = [0u8; 4];
        s.read_exact(&mut four).await?;
        assert_eq!(&four, b"ping");
        // The byte counters move while the connection is open, not only when it closes.
        fiberlb_tests::metrics::wait_for_bytes(
            lb.node.admin_addr(),
            &lid,
            4.0,
            4.0,
            "open connection's bytes not counted",
        )
        .await?;

        // 32 MiB of patterned bytes, written and read concurrently, then half-closed.
        let payload: Vec<u8> = (0..32u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (mut r, mut w) = s.into_split();
        let data = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&data).await?;
            w.shutdown().await?;
            anyhow::Ok(())
        });
        let mut got = Vec::with_capacity(payload.len());
        r.read_to_end(&mut got).await?;
        writer.await??;
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "bulk transfer corrupted");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn udp_clients_get_only_their_own_replies() -> anyhow::Result<()> {
    bounded(async {
        let a = udp_echo(b"A:").await?;
        let b = udp_echo(b"B:").await?;
        let mut lb = start().await?;
        let pool = lb.pool("dns", &[a.addr, b.addr]).await?;
        let (lid, addr) = lb.listener(pb::ListenerProtocol::Udp, Some(&pool)).await?;
        // The listener opens asynchronously: retry the first datagram until it answers.
        let probe = UdpSocket::bind("127.0.0.1:0").await?;
        let mut buf = [0u8; 1500];
        let mut up = false;
        for _ in 0..100 {
            probe.send_to(b"probe", addr).await?;
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buf)).await
            {
                up = true;
                break;
            }
        }
        assert!(up, "udp listener never answered");

        let mut clients = Vec::new();
        for c in 0..8u8 {
            clients.push(tokio::spawn(async move {
                let s = UdpSocket::bind("127.0.0.1:0").await?;
                s.connect(addr).await?;
                let mut tags = std::collections::HashSet::new();
                for i in 0..20u8 {
                    let msg = [b'c', c, b'-', i];
                    s.send(&msg).await?;
                    let mut buf = [0u8; 64];
                    let n =
                        tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await??;
                    anyhow::ensure!(
                        n == 6 && buf[2..6] == msg,
                        "client {c} got someone else's reply: {:?}",
                        &buf[..n]
                    );
                    tags.insert(buf[0]);
                }
                anyhow::ensure!(
                    tags.len() == 1,
                    "one client's flow must stay on one backend"
                );
                anyhow::Ok(buf_tag(&tags))
            }));
        }
        let mut seen = std::collections::HashSet::new();
        for c in clients {
            seen.insert(c.await??);
        }
        assert_eq!(seen.len(), 2, "8 flows round-robin over both backends");
        // Bytes are counted per datagram, while the flows are still open: the 8 clients
        // sent 160 four-byte datagrams and got 160 six-byte replies (plus the probes).
        let m = fiberlb_tests::http::get(lb.node.admin_addr(), "/metrics").await?;
        let listener = fiberlb_tests::metrics::listener_label(&lid);
        let sum = |name: &str| fiberlb_tests::metrics::sum(&m.body, name, &listener);
        assert!(
            sum("fiberlb_bytes_in_total") >= 640.0,
            "bytes in: {}",
            sum("fiberlb_bytes_in_total")
        );
        assert!(
            sum("fiberlb_bytes_out_total") >= 960.0,
            "bytes out: {}",
            sum("fiberlb_bytes_out_total")
        );
        assert!(
            sum("fiberlb_connections_active") >= 8.0,
            "flows open: {}",
            sum("fiberlb_connections_active")
        );
        Ok(())
    })
    .await
}

fn buf_tag(tags: &std::collections::HashSet<u8>) -> u8 {
    tags.iter().copied().next().unwrap_or(0)
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_and_shows_backend_certificates() -> anyhow::Result<()> {
    bounded(async {
        let ca = fixtures::self_signed(&["a.test"]);
        let cb = fixtures::self_signed(&["b.test"]);
        let sa = tls_server(&ca.cert_pem, &ca.key_pem, b"from-a").await?;
        let sb = tls_server(&cb.cert_pem, &cb.key_pem, b"from-b").await?;
        let mut lb = start().await?;
        let pa = lb.pool("pa", &[sa.addr]).await?;
        let pb_ = lb.pool("pb", &[sb.addr]).await?;
        let (lid, addr) = lb.listener(pb::ListenerProtocol::TcpTls, None).await?;
        for (name, host, pool) in [
            ("to-a", "a.test", &pa),
            ("to-b", "*.b-wild.test", &pb_),
            ("to-b2", "b.test", &pb_),
        ] {
            let rule = pb::RoutingRule {
                name: name.into(),
                priority: 10,
                enabled: true,
                conditions: vec![pb::RuleCondition {
                    condition: Some(pb::rule_condition::Condition::HostHeader(
                        pb::HostHeaderCondition {
                            values: vec![host.into()],
                        },
                    )),
                }],
                action: Some(pb::RuleAction {
                    action: Some(pb::rule_action::Action::ForwardToPool(
                        pb::ForwardToPoolAction {
                            pool_id: pool.clone(),
                        },
                    )),
                }),
                ..Default::default()
            };
            lb.api
                .listener
                .add_routing_rule(pb::AddRoutingRuleRequest {
                    listener_id: lid.clone(),
                    rule: Some(rule),
                    revision: None,
                })
                .await?;
        }
        // Rule changes reach the data plane through the store watch: retry briefly.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = tls_hello(addr, "a.test", &ca.cert_pem, 6).await;
            let b = tls_hello(addr, "b.test", &cb.cert_pem, 6).await;
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b"from-a");
                    assert_eq!(b, b"from-b");
                    break;
                }
                other if std::time::Instant::now() > deadline => {
                    anyhow::bail!("routing never converged: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        // An unknown name has no rule and no default pool: the connection is closed.
        assert!(tls_hello(addr, "c.test", &ca.cert_pem, 6).await.is_err());
        // Non-TLS bytes are closed cleanly and the listener keeps serving.
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await?;
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await?;
        assert!(
            n.is_err() || rest.is_empty(),
            "non-TLS first flight must be closed without a reply"
        );
        assert_eq!(tls_hello(addr, "a.test", &ca.cert_pem, 6).await?, b"from-a");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stream_survives_one_hundred_config_changes() -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"").await?;
        let spare = tcp_echo(b"").await?;
        let mut lb = start().await?;
        let pool = lb.pool("main", &[echo.addr]).await?;
        let (_, addr) = lb.listener(pb::ListenerProtocol::Tcp, Some(&pool)).await?;
        let other_pool = lb.pool("other", &[spare.addr]).await?;

        let stream = TcpStream::connect(addr).await?;
        let (mut r, mut w) = stream.into_split();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(async move {
            let mut sent = 0u64;
            let mut i = 0u32;
            loop {
                let chunk: Vec<u8> = (0..4096u32)
                    .map(|k| ((i.wrapping_mul(31) ^ k) & 0xff) as u8)
                    .collect();
                w.write_all(&chunk).await?;
                sent += chunk.len() as u64;
                i += 1;
                if *stop_rx.borrow() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                    _ = stop_rx.changed() => {}
                }
            }
            w.shutdown().await?;
            anyhow::Ok((sent, i))
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await?;
            anyhow::Ok(got)
        });

        let algorithms = [
            pb::Algorithm::LeastConnections,
            pb::Algorithm::Maglev,
            pb::Algorithm::WeightedRoundRobin,
            pb::Algorithm::RoundRobin,
        ];
        let mut extra_backends = Vec::new();
        let mut extra_listeners = Vec::new();
        for step in 0..100usize {
            match step % 4 {
                0 => {
                    let req = backend(
                        &pool,
                        &format!("extra-{step}"),
                        ip("127.0.0.1"),
                        spare.addr.port() as u32,
                    );
                    extra_backends.push(lb.api.backend.add_backend(req).await?.into_inner().id);
                }
                1 => {
                    if let Some(id) = extra_backends.pop() {
                        let req = pb::RemoveBackendRequest {
                            backend_id: id,
                            ..Default::default()
                        };
                        lb.api.backend.remove_backend(req).await?;
                    }
                }
                2 => {
                    let req = pb::UpdatePoolRequest {
                        pool_id: pool.clone(),
                        algorithm: Some(algorithms[step / 4 % algorithms.len()] as i32),
                        ..Default::default()
                    };
                    lb.api.pool.update_pool(req).await?;
                }
                _ => {
                    if extra_listeners.len() < 3 {
                        let (id, _) = lb
                            .listener(pb::ListenerProtocol::Tcp, Some(&other_pool))
                            .await?;
                        extra_listeners.push(id);
                    } else {
                        let id = extra_listeners.remove(0);
                        lb.api
                            .listener
                            .delete_listener(pb::DeleteListenerRequest {
                                listener_id: id,
                                revision: None,
                            })
                            .await?;
                    }
                }
            }
        }
        let _ = stop_tx.send(true);
        let (sent, chunks) = writer.await??;
        let got = reader.await??;
        assert_eq!(got.len() as u64, sent, "every byte came back");
        let expected: Vec<u8> = (0..chunks)
            .flat_map(|i| (0..4096u32).map(move |k| ((i.wrapping_mul(31) ^ k) & 0xff) as u8))
            .collect();
        assert!(got == expected, "the stream stayed byte-exact");
        drop(lb.node);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn bad_clients_affect_only_their_own_connection() -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"").await?;
        let mut lb = start().await?;
        let pool = lb.pool("echo", &[echo.addr]).await?;
        let (_, tcp_addr) = lb.listener(pb::ListenerProtocol::Tcp, Some(&pool)).await?;
        let (_, tls_addr) = lb
            .listener(pb::ListenerProtocol::TcpTls, Some(&pool))
            .await?;

        // A healthy long-lived connection that must keep working throughout.
        let mut good = TcpStream::connect(tcp_addr).await?;
        let roundtrip = async |s: &mut TcpStream, msg: &[u8]| -> anyhow::Result<()> {
            s.write_all(msg).await?;
            let mut back = vec![0u8; msg.len()];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await??;
            anyhow::ensure!(back == msg);
            Ok(())
        };
        roundtrip(&mut good, b"before").await?;

        for i in 0..20u32 {
            // Garbage to the TLS passthrough listener: closed.
            let mut g = TcpStream::connect(tls_addr).await?;
            let junk: Vec<u8> = (0..512u32).map(|k| (k * 7 + i) as u8).collect();
            let _ = g.write_all(&junk).await;
            // Vanish mid-stream on the TCP listener.
            let mut v = TcpStream::connect(tcp_addr).await?;
            v.write_all(&junk).await?;
            drop(v);
            // Half-open: write, shut down writing, still read the echo.
            let mut h = TcpStream::connect(tcp_addr).await?;
            h.write_all(b"half").await?;
            h.shutdown().await?;
            let mut back = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), h.read_to_end(&mut back)).await??;
            assert_eq!(back, b"half");
            // A reset with data in flight.
            let r = TcpStream::connect(tcp_addr).await?;
            // Zero linger sends a RST at once; it does not block the thread.
            #[allow(deprecated)]
            r.set_linger(Some(Duration::ZERO))?;
            drop(r);
        }
        roundtrip(&mut good, b"after").await?;
        let mut fresh = TcpStream::connect(tcp_addr).await?;
        roundtrip(&mut fresh, b"fresh").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn drain_stops_new_connections_then_closes_at_the_deadline() -> anyhow::Result<()> {
    bounded(async {
        let a = tcp_echo(b"A").await?;
        let b = tcp_echo(b"B").await?;
        let mut lb = start().await?;
        let pool = lb.pool("pair", &[a.addr, b.addr]).await?;
        let (_, addr) = lb.listener(pb::ListenerProtocol::Tcp, Some(&pool)).await?;
        let banner = async |addr| -> anyhow::Result<(TcpStream, u8)> {
            let mut s = TcpStream::connect(addr).await?;
            let mut one = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut one)).await??;
            Ok((s, one[0]))
        };
        // Find a connection held by backend A.
        let mut held = None;
        for _ in 0..10 {
            let (s, who) = banner(addr).await?;
            if who == b'A' {
                held = Some(s);
                break;
            }
        }
        let mut held = held.ok_or_else(|| anyhow::anyhow!("round robin never chose A"))?;
        let backends = lb
            .api
            .backend
            .list_backends(pb::ListBackendsRequest {
                pool_id: pool.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .backends;
        let a_id = backends
            .iter()
            .find(|x| x.name == "pair-0")
            .map(|x| x.id.clone())
            .ok_or_else(|| anyhow::anyhow!("no pair-0"))?;
        lb.api
            .backend
            .drain_backend(pb::DrainBackendRequest {
                backend_id: a_id.clone(),
                timeout_seconds: Some(2),
                revision: None,
            })
            .await?;
        // New connections go to B only (once the snapshot has the drain).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut b_in_a_row = 0;
        while b_in_a_row < 10 {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "new connections still reach the draining backend"
            );
            let (_, who) = banner(addr).await?;
            b_in_a_row = if who == b'B' { b_in_a_row + 1 } else { 0 };
        }
        // The existing connection still works before the deadline...
        held.write_all(b"x").await?;
        let mut one = [0u8; 1];
        held.read_exact(&mut one).await?;
        assert_eq!(&one, b"x");
        let got = lb
            .api
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: a_id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(got.status, pb::BackendStatus::Draining as i32);
        assert_eq!(got.active_connections, 1);
        assert!(!got.drained);
        // ...and is closed after it.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(6), held.read_to_end(&mut rest)).await??;
        let got = lb
            .api
            .backend
            .get_backend(pb::GetBackendRequest { backend_id: a_id })
            .await?
            .into_inner();
        assert!(got.drained, "a drained backend reports drained");
        assert_eq!(got.active_connections, 0);
        Ok(())
    })
    .await
}

/// A DNS query for `name` (type A, recursion desired) with id `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[tokio::test]
async fn a_dns_query_through_a_udp_listener_reaches_a_real_dns_server() -> anyhow::Result<()> {
    bounded(async {
        // Started on a port it answers on (a port picked a moment ago may be taken since).
        let (mut dns, port) = fiberlb_tests::dns::dnsmasq().await?;
        let server: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut lb = start().await?;
        let pool = lb.pool("dns", &[server]).await?;
        let (_, addr) = lb.listener(pb::ListenerProtocol::Udp, Some(&pool)).await?;
        let client = UdpSocket::bind("127.0.0.1:0").await?;
        let mut buf = [0u8; 512];
        let mut answer = None;
        for id in 1..=100u16 {
            client.send_to(&dns_query(id, "svc.test"), addr).await?;
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(100), client.recv_from(&mut buf)).await
            {
                answer = Some((id, buf[..n].to_vec()));
                break;
            }
        }
        let (id, answer) =
            answer.ok_or_else(|| anyhow::anyhow!("no DNS answer through the listener"))?;
        assert_eq!(
            &answer[..2],
            &id.to_be_bytes(),
            "the reply answers our query"
        );
        assert_eq!(
            u16::from_be_bytes([answer[6], answer[7]]),
            1,
            "one answer record"
        );
        assert_eq!(
            &answer[answer.len() - 4..],
            &[10, 1, 2, 3],
            "dnsmasq's address for svc.test"
        );
        dns.kill().await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn proxy_protocol_headers_carry_the_client_address() -> anyhow::Result<()> {
    bounded(async {
        // A backend that captures the first bytes of each connection.
        let cap = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let cap_addr = cap.local_addr()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let _capture = tokio::spawn(async move {
            while let Ok((mut s, _)) = cap.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
                    let _ = tx.send(got).await;
                });
            }
        });
        let mut lb = start().await?;
        let pool = lb.pool("pp", &[cap_addr]).await?;
        let (_, addr) = lb.listener(pb::ListenerProtocol::Tcp, Some(&pool)).await?;
        for (version, check) in [(pb::ProxyProtocol::V1, 1), (pb::ProxyProtocol::V2, 2)] {
            let req = pb::UpdatePoolRequest {
                pool_id: pool.clone(),
                proxy_protocol: Some(version as i32),
                ..Default::default()
            };
            lb.api.pool.update_pool(req).await?;
            // Wait until the header shows up (the snapshot follows the store asynchronously).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let mut c = TcpStream::connect(addr).await?;
                let me = c.local_addr()?;
                c.write_all(b"payload").await?;
                c.shutdown().await?;
                let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("capture ended"))?;
                let ok = if check == 1 {
                    let line = format!(
                        "PROXY TCP4 {} {} {} {}\r\npayload",
                        me.ip(),
                        addr.ip(),
                        me.port(),
                        addr.port()
                    );
                    got == line.as_bytes()
                } else {
                    let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
                    want.extend_from_slice(&[0x21, 0x11, 0, 12]);
                    for ip in [me.ip(), addr.ip()] {
                        match ip {
                            IpAddr::V4(v4) => want.extend_from_slice(&v4.octets()),
                            IpAddr::V6(_) => anyhow::bail!("test uses IPv4"),
                        }
                    }
                    want.extend_from_slice(&me.port().to_be_bytes());
                    want.extend_from_slice(&addr.port().to_be_bytes());
                    want.extend_from_slice(b"payload");
                    got == want
                };
                if ok {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "PROXY v{check} header never appeared; last: {got:?}"
                );
            }
        }
        // Per-listener/backend metrics exist.
        let m = fiberlb_tests::http::get(lb.node.admin_addr(), "/metrics").await?;
        for name in [
            "fiberlb_connections_total",
            "fiberlb_connections_active",
            "fiberlb_bytes_in_total",
            "fiberlb_bytes_out_total",
        ] {
            assert!(m.body.contains(name), "{name} missing from /metrics");
        }
        assert!(
            m.body.contains(&format!("lb=\"{}\"", lb.lb)),
            "metrics are labelled by lb"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn vm_id_backends_resolve_through_plasmavmc() -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"vm!").await?;
        // A minimal PlasmaVMC: one running VM whose private address is the echo server's.
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api_addr = api.local_addr()?;
        let _vmc = tokio::spawn(async move {
            while let Ok((mut s, _)) = api.accept().await {
                tokio::spawn(async move {
                    let mut req = vec![0u8; 4096];
                    let n = s.read(&mut req).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&req[..n]).to_string();
                    let (status, body) = if head.starts_with("GET /v1/vms/vm-007 ") {
                        ("200 OK", r#"{"id":"vm-007","state":"running","interfaces":[{"name":"eth0","ipv4":"127.0.0.1","ipv6":null,"private":true}]}"#)
                    } else {
                        ("404 Not Found", r#"{"error":"not found"}"#)
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("fiberlb.toml");
        std::fs::write(&cfg, format!("[plasmavmc]\nendpoint = \"http://{api_addr}\"\ncache_ttl_seconds = 5\n"))?;
        let ip = unique_loopback();
        let node = Node::start_with(dir.path(), &["-c", &cfg.to_string_lossy(), "--bind-address", &ip.to_string()]).await?;
        let mut api = node.admin()?;
        let lb_id = api.lb.create_load_balancer(fixtures::lb("vm", "acme")).await?.into_inner().id;
        let pool = api.pool.create_pool(fixtures::pool(&lb_id, "vms")).await?.into_inner().id;
        api.backend.add_backend(backend(&pool, "vm7", fixtures::vm("vm-007"), echo.addr.port() as u32)).await?;
        let port = free_port(ip, false)?;
        let mut req = fixtures::listener(&lb_id, "t", pb::ListenerProtocol::Tcp, port as u32);
        req.default_pool_id = Some(pool);
        api.listener.create_listener(req).await?;
        let addr = SocketAddr::new(ip, port);
        wait_tcp(addr, Duration::from_secs(10)).await?;
        // The first connections may find the VM still being resolved: retry briefly.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = TcpStream::connect(addr).await?;
            let mut three = [0u8; 3];
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut three)).await {
                assert_eq!(&three, b"vm!");
                break;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "the VM backend never became reachable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
    .await
}
