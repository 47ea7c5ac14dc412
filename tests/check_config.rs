//! `fiberlb check-config`: validates a server configuration file without starting anything.

use fiberlb_tests::bounded;
use fiberlb_tests::cli::run_raw;

async fn check(
    dir: &std::path::Path,
    name: &str,
    body: &str,
) -> anyhow::Result<(Option<i32>, String)> {
    let path = dir.join(name);
    std::fs::write(&path, body)?;
    let out = run_raw(&[
        "check-config".into(),
        "-c".into(),
        path.to_string_lossy().into_owned(),
    ])
    .await?;
    Ok((out.code, format!("{}{}", out.stdout, out.stderr)))
}

#[tokio::test]
async fn valid_files_pass_and_each_mistake_names_its_key_and_line() -> anyhow::Result<()> {
    bounded(async {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("cluster.key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")?;
        let (code, out) = check(
            dir.path(),
            "good.toml",
            &format!(
                "[server]\ngrpc_addr = \"127.0.0.1:6300\"\n[cluster]\nnode_id = \"node01\"\ngossip_addr = \"127.0.0.1:7946\"\nkey_file = \"{}\"\n",
                key.display()
            ),
        )
        .await?;
        assert_eq!(code, Some(0), "{out}");

        let cases = [
            ("unknown.toml", "[server]\ngrpc_addr = \"127.0.0.1:6300\"\nfrobnicate = true\n", "server.frobnicate", "line 3"),
            ("type.toml", "[proxy]\ntcp_nodelay = \"yes\"\n", "proxy.tcp_nodelay", "line 2"),
            ("addr.toml", "\n[server]\nmetrics_addr = \"not-an-address\"\n", "server.metrics_addr", "line 3"),
            (
                "keyfile.toml",
                "[cluster]\ngossip_addr = \"127.0.0.1:7946\"\nkey_file = \"/nonexistent/cluster.key\"\n",
                "cluster.key_file",
                "line 3",
            ),
        ];
        for (name, body, key, line) in cases {
            let (code, out) = check(dir.path(), name, body).await?;
            assert_eq!(code, Some(1), "{name}: {out}");
            assert!(out.contains(key) && out.contains(line), "{name} must name {key} and {line}: {out}");
        }
        Ok(())
    })
    .await
}
