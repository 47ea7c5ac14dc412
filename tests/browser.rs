//! The status page in a real browser: headless Chromium (Debian `chromium`) driven over
//! the DevTools protocol shows a load balancer and its backend healthy, then — without a
//! reload — the backend unhealthy once it is killed. A screenshot is kept in
//! `target/test-artifacts/status-page.png`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fiberlb_proto::v1 as pb;
use fiberlb_proto::v1::health_check::CheckType;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::tcp_echo;
use fiberlb_tests::{bounded, Node};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium process, killed (with its whole process group) on drop.
struct Chromium {
    pid: i32,
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    ws_url: String,
}

impl Chromium {
    async fn launch() -> anyhow::Result<Chromium> {
        let profile = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1000,900",
                &format!("--user-data-dir={}", profile.path().display()),
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("starting chromium ({e}): install Debian's `chromium` package")
            })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| anyhow::anyhow!("chromium has no pid"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("chromium stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let find = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    return anyhow::Ok(url.trim().to_string());
                }
                seen.push(line);
            }
            anyhow::bail!("chromium exited before listening")
        };
        let ws_url = match tokio::time::timeout(Duration::from_secs(30), find).await {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => anyhow::bail!("{e}: {}", seen.join("\n")),
            Err(_) => anyhow::bail!("no DevTools URL within 30 s: {}", seen.join("\n")),
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Chromium {
            pid,
            _child: child,
            _profile: profile,
            ws_url,
        })
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The renderer and helper processes share the browser's process group.
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
    }
}

/// A DevTools session on one page (flattened target session).
struct Page {
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Page {
    async fn open(browser: &Chromium, url: &str) -> anyhow::Result<Page> {
        let (ws, _) = tokio_tungstenite::connect_async(browser.ws_url.as_str()).await?;
        let mut page = Page {
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = page
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        page.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no sessionId in {attached}"))?
            .to_string();
        page.call("Page.enable", json!({})).await?;
        page.call("Page.navigate", json!({ "url": url })).await?;
        Ok(page)
    }

    /// Sends one command and waits for its reply (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        let reply = async {
            while let Some(frame) = self.ws.next().await {
                let Message::Text(text) = frame? else {
                    continue;
                };
                let v: Value = serde_json::from_str(text.as_str())?;
                if v["id"] == json!(id) {
                    if let Some(err) = v.get("error") {
                        anyhow::bail!("{method}: {err}");
                    }
                    return Ok(v["result"].clone());
                }
            }
            anyhow::bail!("DevTools connection closed during {method}")
        };
        tokio::time::timeout(Duration::from_secs(20), reply)
            .await
            .map_err(|_| anyhow::anyhow!("{method}: no reply within 20 s"))?
    }

    async fn inner_text(&mut self) -> anyhow::Result<String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": "document.body ? document.body.innerText : ''", "returnByValue": true }),
            )
            .await?;
        Ok(r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Polls the page text until `ok` holds; the page refreshes itself every 2 s.
    async fn wait_text(
        &mut self,
        within: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let text = self.inner_text().await?;
            if ok(&text) {
                return Ok(text);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "page never showed {what}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The Health cell of `backend`'s row: table cells are tab-separated in `innerText`
/// (Backend, Address, Weight, Health, …).
fn health_of(text: &str, backend: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split('\t').map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&backend))
        .and_then(|cells| cells.get(3).map(|c| c.to_string()))
}

#[tokio::test]
async fn status_page_shows_a_backend_turn_unhealthy_without_reload() -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"").await?;
        let dir = tempfile::tempdir()?;
        let node = Node::start_in(dir.path()).await?;
        let mut api = node.admin()?;
        let lb = api
            .lb
            .create_load_balancer(fixtures::lb("storefront", "acme"))
            .await?
            .into_inner()
            .id;
        let mut pool_req = fixtures::pool(&lb, "web");
        pool_req.health_check = Some(pb::HealthCheck {
            check_type: Some(CheckType::Tcp(pb::TcpCheck {})),
            interval: 1,
            timeout: 1,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            enabled: true,
            ..Default::default()
        });
        let pool = api.pool.create_pool(pool_req).await?.into_inner().id;
        api.backend
            .add_backend(backend(
                &pool,
                "app-1",
                ip(&echo.addr.ip().to_string()),
                u32::from(echo.addr.port()),
            ))
            .await?;

        let browser = Chromium::launch().await?;
        let mut page = Page::open(&browser, &format!("http://{}/", node.admin_addr())).await?;
        page.wait_text(
            Duration::from_secs(20),
            "storefront with app-1 healthy",
            |t| {
                t.contains("storefront")
                    && t.contains("Pool web")
                    && health_of(t, "app-1").as_deref() == Some("healthy")
            },
        )
        .await?;

        drop(echo);
        let text = page
            .wait_text(Duration::from_secs(20), "app-1 unhealthy", |t| {
                health_of(t, "app-1").as_deref() == Some("unhealthy")
            })
            .await?;
        assert!(text.contains("storefront"), "the LB is still shown");

        let shot = page
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())?;
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("status-page.png"), png)?;
        Ok(())
    })
    .await
}
