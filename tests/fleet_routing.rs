//! Fleet-wide balancing decisions: IP hash and Maglev map a client to the same backend on
//! every node, and least-connections counts the connections other nodes hold.

use super::*;
use fiberlb_tests::bounded;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::{tcp_echo, wait_tcp, Backend};
use tokio::net::TcpSocket;

/// A load balancer with one pool of `backends` (algorithm `alg`) behind a TCP listener on
/// every node; returns the pool id and each node's listener.
async fn tcp_pool(
    f: &Fleet,
    name: &str,
    alg: pb::Algorithm,
    backends: &[&Backend],
) -> anyhow::Result<(String, Vec<SocketAddr>)> {
    let mut api = f.api(0)?;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb(name, "acme"))
        .await?
        .into_inner()
        .id;
    let mut req = fixtures::pool(&lb, "p");
    req.algorithm = alg as i32;
    let pool = api.pool.create_pool(req).await?.into_inner().id;
    for (i, b) in backends.iter().enumerate() {
        add(&mut api, &pool, &format!("b{i}"), b).await?;
    }
    let port = f.common_port()?;
    let mut req = fixtures::listener(&lb, "t", pb::ListenerProtocol::Tcp, u32::from(port));
    req.default_pool_id = Some(pool.clone());
    api.listener.create_listener(req).await?;
    let fronts: Vec<SocketAddr> = f.ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    for front in &fronts {
        wait_tcp(*front, Duration::from_secs(10)).await?;
    }
    Ok((pool, fronts))
}

async fn add(api: &mut Clients, pool: &str, name: &str, b: &Backend) -> anyhow::Result<()> {
    let req = backend(pool, name, ip("127.0.0.1"), u32::from(b.addr.port()));
    api.backend.add_backend(req).await?;
    Ok(())
}

/// Connects to `front` from `src` (port 0 = any) and reads the backend's one-byte banner;
/// returns it with the connection (still open) and the local address used.
async fn banner_from(
    src: SocketAddr,
    front: SocketAddr,
) -> anyhow::Result<(u8, TcpStream, SocketAddr)> {
    let sock = TcpSocket::new_v4()?;
    // The same source address and port again for the next node (a new 4-tuple) while the
    // previous connection may still be in TIME_WAIT.
    sock.set_reuseaddr(true)?;
    sock.bind(src)?;
    let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(front)).await??;
    let local = s.local_addr()?;
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await??;
    Ok((b[0], s, local))
}

#[tokio::test]
async fn hashing_and_least_connections_agree_across_the_fleet() -> anyhow::Result<()> {
    let f = Fleet::start(3).await?;
    bounded(async {
        f.wait_members(&[0, 1, 2], Duration::from_secs(15)).await?;
        let echoes = [tcp_echo(b"1").await?, tcp_echo(b"2").await?, tcp_echo(b"3").await?];
        let refs: Vec<&Backend> = echoes.iter().collect();

        // IP hash (client IP) and Maglev (client IP and port): the same backend through
        // every node for each of 24 clients.
        for (name, alg, port_matters) in [
            ("iphash", pb::Algorithm::IpHash, false),
            ("maglev", pb::Algorithm::Maglev, true),
        ] {
            let (_, fronts) = tcp_pool(&f, name, alg, &refs).await?;
            let mut spread = std::collections::HashSet::new();
            for c in 1..=24u8 {
                let mut src: SocketAddr = format!("127.66.{}.{c}", u8::from(port_matters)).parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0))?;
                let mut tags = Vec::new();
                for front in &fronts {
                    let (tag, conn, local) = banner_from(src, *front).await?;
                    drop(conn);
                    if port_matters {
                        src = local;
                    }
                    tags.push(tag);
                }
                assert!(
                    tags.iter().all(|t| *t == tags[0]),
                    "{name}: client {src} got backends {tags:?} through node0..node2"
                );
                spread.insert(tags[0]);
            }
            eprintln!("{name}: 24 clients mapped identically by all three nodes, onto backends {spread:?}");
            assert!(spread.len() >= 2, "{name}: every client on one backend");
        }

        // Least connections: four connections held through node0 on X, then Y joins.
        let x = tcp_echo(b"X").await?;
        let y = tcp_echo(b"Y").await?;
        let (pool, fronts) = tcp_pool(&f, "leastconn", pb::Algorithm::LeastConnections, &[&x]).await?;
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        let mut held = Vec::new();
        for _ in 0..4 {
            let (tag, conn, _) = banner_from(any, fronts[0]).await?;
            assert_eq!(tag, b'X');
            held.push(conn);
        }
        let mut api = f.api(0)?;
        add(&mut api, &pool, "y", &y).await?;
        // Node1 has no connection of its own: once node0's count arrives, X counts 4 and
        // every new connection goes to Y (without it, the two tie and alternate).
        let mut in_a_row = 0;
        let took = wait_until(Duration::from_secs(10), "node1 prefers Y", async || {
            let (tag, _, _) = banner_from(any, fronts[1]).await?;
            in_a_row = if tag == b'Y' { in_a_row + 1 } else { 0 };
            Ok(in_a_row >= 5)
        })
        .await?;
        let mut on_b = Vec::new();
        for _ in 0..3 {
            let (tag, conn, _) = banner_from(any, fronts[1]).await?;
            on_b.push(tag);
            held.push(conn);
        }
        eprintln!(
            "least connections: node1 sent 5 in a row to Y {took:?} after Y was added; then held connections went to {:?}",
            String::from_utf8_lossy(&on_b)
        );
        assert_eq!(on_b, b"YYY", "node1 counts node0's connections on X");

        // Backend max_connections counts the fleet: two connections held through node0
        // fill M (max 2); once node0's count arrives, node1's round robin skips M.
        let m = tcp_echo(b"M").await?;
        let n = tcp_echo(b"N").await?;
        // The listener first, with no backend: its readiness probes reach nothing.
        let (pool, fronts) = tcp_pool(&f, "maxconn", pb::Algorithm::RoundRobin, &[]).await?;
        let req = pb::AddBackendRequest {
            max_connections: Some(2),
            ..backend(&pool, "m", ip("127.0.0.1"), u32::from(m.addr.port()))
        };
        let m_id = api.backend.add_backend(req).await?.into_inner().id;
        let mut on_m = Vec::new();
        wait_until(Duration::from_secs(10), "node0 holds two connections on M", async || {
            if let Ok((b'M', conn, _)) = banner_from(any, fronts[0]).await {
                on_m.push(conn);
            }
            Ok(on_m.len() == 2)
        })
        .await?;
        add(&mut api, &pool, "n", &n).await?;
        // Without node0's count node1 would alternate M and N.
        let mut in_a_row = 0;
        let took = wait_until(Duration::from_secs(10), "node1 skips the full M", async || {
            let (tag, _, _) = banner_from(any, fronts[1]).await?;
            in_a_row = if tag == b'N' { in_a_row + 1 } else { 0 };
            Ok(in_a_row >= 6)
        })
        .await?;
        let mut through_1 = Vec::new();
        for _ in 0..3 {
            let (tag, conn, _) = banner_from(any, fronts[1]).await?;
            through_1.push(tag);
            held.push(conn);
        }
        let reached = sample(
            &metrics(f.node(1)).await?,
            "fiberlb_backend_max_connections_reached_total",
            &format!("backend=\"{m_id}\""),
        );
        eprintln!(
            "max connections: node1 sent 6 in a row to N {took:?} after N was added (M full through node0); held connections went to {:?}; node1 turned M away {reached} times",
            String::from_utf8_lossy(&through_1)
        );
        assert_eq!(through_1, b"NNN", "node1 counts node0's connections against M's limit");
        assert!(reached >= 3.0, "node1 counted M at its limit: {reached}");
        drop(on_m);
        Ok(())
    })
    .await
}
