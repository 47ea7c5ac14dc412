use crate::common::*;

/// `[proxy] trusted_forwarders`: the incoming X-Forwarded-For chain is kept only from
/// trusted clients; a SIGHUP with a new list applies to the next connection.
#[tokio::test]
async fn x_forwarded_for_is_kept_only_from_trusted_forwarders() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("app").await?;
        let mut lb = start_with("[proxy]\ntrusted_forwarders = [\"10.0.0.0/8\"]\n").await?;
        let pool = lb.pool("app", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let xff_seen = || {
            b.last()
                .and_then(|r| r.headers.get("x-forwarded-for").cloned())
                .and_then(|v| v.to_str().ok().map(str::to_string))
                .unwrap_or_default()
        };
        let spoof = [("x-forwarded-for", "203.0.113.9")];

        let r = get(addr, "app.example.com", "/", &spoof).await?;
        assert_eq!(r.status, 200);
        assert_eq!(
            xff_seen(),
            "127.0.0.1",
            "an untrusted client's chain is dropped"
        );

        std::fs::write(
            lb.config_path(),
            "[proxy]\ntrusted_forwarders = [\"127.0.0.0/8\"]\n",
        )?;
        lb.node.signal(libc::SIGHUP);
        eventually("the reloaded trust list", || {
            let seen = &xff_seen;
            async move {
                let r = get(addr, "app.example.com", "/", &spoof).await?;
                anyhow::ensure!(r.status == 200);
                Ok(seen() == "203.0.113.9, 127.0.0.1")
            }
        })
        .await?;
        Ok(())
    })
    .await
}
