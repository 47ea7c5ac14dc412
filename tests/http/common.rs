//! What every L7 test shares: a node with one load balancer, and builders for pools,
//! listeners, rules and certificates through the API.

pub use std::collections::HashMap;
pub use std::net::{IpAddr, SocketAddr};
pub use std::time::{Duration, Instant};

pub use fiberlb_proto::v1 as pb;
pub use fiberlb_tests::fixtures::{self, backend, ip};
pub use fiberlb_tests::l4::{free_port, unique_loopback, wait_tcp};
pub use fiberlb_tests::l7::{
    self, get, get_h2c, raw, request, send_on, tls_client, tls_connect, HttpBackend,
};
pub use fiberlb_tests::{bounded, Clients, Node};
pub use futures::{SinkExt, StreamExt};
pub use pb::rule_action::Action;
pub use pb::rule_condition::Condition;
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use tokio::net::TcpStream;

/// A running node with one load balancer (org `acme`) whose listeners bind `ip`.
pub struct Lb {
    pub node: Node,
    _dir: tempfile::TempDir,
    pub api: Clients,
    pub lb: String,
    pub ip: IpAddr,
}

pub async fn start() -> anyhow::Result<Lb> {
    start_with("").await
}

/// A node whose settings file holds `toml`.
pub async fn start_with(toml: &str) -> anyhow::Result<Lb> {
    let dir = tempfile::tempdir()?;
    let ip = unique_loopback();
    let conf = dir.path().join("fiberlb.toml");
    std::fs::write(&conf, toml)?;
    let conf = conf.to_string_lossy().into_owned();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let node = Node::start_with(&data, &["-c", &conf, "--bind-address", &ip.to_string()]).await?;
    let mut api = node.admin()?;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb("web", "acme"))
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
    /// The settings file the node was started with (rewrite it, then SIGHUP).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("fiberlb.toml")
    }

    /// A pool with the given backends (and backend metadata); returns pool and backend ids.
    pub async fn pool_with(
        &mut self,
        mut req: pb::CreatePoolRequest,
        backends: &[(SocketAddr, &[(&str, &str)])],
    ) -> anyhow::Result<(String, Vec<String>)> {
        req.lb_id = self.lb.clone();
        let name = req.name.clone();
        let pool = self.api.pool.create_pool(req).await?.into_inner().id;
        let mut ids = Vec::new();
        for (i, (b, meta)) in backends.iter().enumerate() {
            let mut req = backend(
                &pool,
                &format!("{name}-{i}"),
                ip(&b.ip().to_string()),
                b.port() as u32,
            );
            req.metadata = meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ids.push(self.api.backend.add_backend(req).await?.into_inner().id);
        }
        Ok((pool, ids))
    }

    pub async fn pool(&mut self, name: &str, backends: &[SocketAddr]) -> anyhow::Result<String> {
        let list: Vec<(SocketAddr, &[(&str, &str)])> =
            backends.iter().map(|b| (*b, &[][..])).collect();
        Ok(self.pool_with(fixtures::pool("", name), &list).await?.0)
    }

    pub async fn listener_with(
        &mut self,
        mut req: pb::CreateListenerRequest,
    ) -> anyhow::Result<(String, SocketAddr)> {
        let port = free_port(self.ip, false)?;
        req.lb_id = self.lb.clone();
        req.name = format!("l{port}");
        req.port = port as u32;
        let id = self
            .api
            .listener
            .create_listener(req)
            .await?
            .into_inner()
            .id;
        let addr = SocketAddr::new(self.ip, port);
        wait_tcp(addr, Duration::from_secs(10)).await?;
        Ok((id, addr))
    }

    pub async fn http_listener(
        &mut self,
        pool: Option<&str>,
    ) -> anyhow::Result<(String, SocketAddr)> {
        let mut req = fixtures::listener("", "", pb::ListenerProtocol::Http, 0);
        req.default_pool_id = pool.map(str::to_string);
        self.listener_with(req).await
    }

    pub async fn rule(
        &mut self,
        listener: &str,
        name: &str,
        priority: u32,
        conditions: Vec<Condition>,
        action: Action,
    ) -> anyhow::Result<()> {
        let rule = pb::RoutingRule {
            name: name.into(),
            priority,
            conditions: conditions
                .into_iter()
                .map(|c| pb::RuleCondition { condition: Some(c) })
                .collect(),
            action: Some(pb::RuleAction {
                action: Some(action),
            }),
            enabled: true,
            ..Default::default()
        };
        let req = pb::AddRoutingRuleRequest {
            listener_id: listener.into(),
            rule: Some(rule),
            revision: None,
        };
        self.api.listener.add_routing_rule(req).await?;
        Ok(())
    }

    pub async fn cert(
        &mut self,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<String> {
        let req = pb::CreateCertificateRequest {
            name: name.into(),
            org_id: "acme".into(),
            certificate_pem: cert_pem.into(),
            private_key_pem: key_pem.into(),
            ..Default::default()
        };
        Ok(self.api.cert.create_certificate(req).await?.into_inner().id)
    }
}

/// Retries `f` until it returns true (configuration changes apply asynchronously).
pub async fn eventually<F, Fut>(what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if f().await.unwrap_or(false) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not happen within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Method, host, path, headers, expected backend.
pub type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

pub fn host(v: &str) -> Condition {
    Condition::HostHeader(pb::HostHeaderCondition {
        values: vec![v.into()],
    })
}

pub fn forward(pool: &str) -> Action {
    Action::ForwardToPool(pb::ForwardToPoolAction {
        pool_id: pool.into(),
    })
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// Reads one HTTP/1 response (head and `content-length` body) from `s`, keeping what
/// follows it in `rest` (pipelined responses). Returns the head, lower-cased, and the body.
pub async fn response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    rest: &mut Vec<u8>,
) -> anyhow::Result<(String, String)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse())
                .transpose()?
                .unwrap_or(0);
            if rest.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&rest[end + 4..end + 4 + len]).into_owned();
                rest.drain(..end + 4 + len);
                return Ok((head, body));
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await??;
        anyhow::ensure!(
            n > 0,
            "connection closed with {:?} unread",
            String::from_utf8_lossy(rest)
        );
        rest.extend_from_slice(&chunk[..n]);
    }
}
