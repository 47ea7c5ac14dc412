//! The status page on the admin port: a self-contained page and its live JSON, behind the
//! API's credentials when `[admin] require_auth` is set.

use fiberlb_tests::{bounded, fixtures, http, Node};

#[tokio::test]
async fn status_page_shows_load_balancers_and_needs_credentials_when_asked() -> anyhow::Result<()> {
    bounded(async {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("fiberlb.toml");
        std::fs::write(&cfg, "[admin]\nrequire_auth = true\n")?;
        let node = Node::start_with(dir.path(), &["-c", &cfg.to_string_lossy()]).await?;
        let mut api = node.admin()?;
        let lb = api
            .lb
            .create_load_balancer(fixtures::lb("shown", "acme"))
            .await?
            .into_inner()
            .id;
        api.pool.create_pool(fixtures::pool(&lb, "web")).await?;

        let page = http::get(node.admin_addr(), "/").await?;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("<title>FiberLB"), "an HTML page");
        assert!(
            !page.body.contains("http://") && !page.body.contains("https://"),
            "no external assets"
        );

        let denied = http::get(node.admin_addr(), "/status.json").await?;
        assert_eq!(denied.status, 401);
        let bearer = format!("authorization: Bearer {}", node.admin_token());
        // The snapshot follows the store asynchronously: poll until the LB shows.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let ok = http::get_with(node.admin_addr(), "/status.json", &[&bearer]).await?;
            assert_eq!(ok.status, 200);
            let v: serde_json::Value = serde_json::from_str(&ok.body)?;
            let names: Vec<&str> = v["load_balancers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["name"].as_str())
                .collect();
            if names.contains(&"shown") && v["load_balancers"][0]["pools"][0]["name"] == "web" {
                assert_eq!(v["node"]["ready"], true);
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "status never showed the LB: {}",
                ok.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    })
    .await
}
