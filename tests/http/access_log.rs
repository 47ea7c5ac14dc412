use crate::common::*;

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// One JSON line per request with the fields the issue lists, written to the configured
/// file; after the file is moved away (log rotation), SIGHUP makes the node write a new one.
#[tokio::test]
async fn writes_one_json_line_per_request_and_reopens_on_sighup() -> anyhow::Result<()> {
    bounded(async {
        let logs = tempfile::tempdir()?;
        let path = logs.path().join("access.log");
        let b = HttpBackend::start("app").await?;
        let mut lb =
            start_with(&format!("[logging]\naccess_log = \"{}\"\n", path.display())).await?;
        let pool = lb.pool("app", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;

        let r = get(
            addr,
            "www.example.com",
            "/a%22b?q=1",
            &[("x-request-id", "req-1")],
        )
        .await?;
        assert_eq!(r.status, 200);
        eventually("the access log line", || {
            let p = path.clone();
            async move { Ok(lines(&p).len() == 1) }
        })
        .await?;
        let l = &lines(&path)[0];
        assert_eq!(l["method"], "GET");
        assert_eq!(l["host"], "www.example.com");
        assert_eq!(l["path"], "/a%22b");
        assert_eq!(l["status"], 200);
        assert_eq!(l["request_id"], "req-1");
        assert_eq!(l["bytes_out"], 3);
        assert_eq!(l["backend_addr"], b.addr.to_string());
        assert!(l["client"].as_str().unwrap_or("").starts_with("127.0.0.1:"));
        assert!(l["time"].as_str().unwrap_or("").ends_with('Z'));
        assert!(l["duration_ms"].as_f64().is_some());
        assert!(!l["backend"].as_str().unwrap_or("").is_empty());

        let rotated = logs.path().join("access.log.1");
        std::fs::rename(&path, &rotated)?;
        lb.node.signal(libc::SIGHUP);
        // The reopen is asynchronous: keep sending until a line lands in the new file.
        eventually("a line in the reopened file", || {
            let p = path.clone();
            async move {
                let r = get(addr, "www.example.com", "/after", &[]).await?;
                anyhow::ensure!(r.status == 200);
                Ok(lines(&p).iter().any(|l| l["path"] == "/after"))
            }
        })
        .await?;
        assert_eq!(
            lines(&rotated)[0]["request_id"],
            "req-1",
            "the old file keeps its lines"
        );
        Ok(())
    })
    .await
}
