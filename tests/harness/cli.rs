//! Runs the `fiberlb` command-line client against a node, as an operator would.

use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::node::{binary, Node};

/// Deadline of one CLI invocation.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// What a CLI run produced.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Fails unless the command exited 0; returns stdout.
    pub fn ok(self) -> anyhow::Result<String> {
        if self.code == Some(0) {
            Ok(self.stdout)
        } else {
            Err(anyhow!(
                "fiberlb exited with {:?}\nstdout:\n{}\nstderr:\n{}",
                self.code,
                self.stdout,
                self.stderr
            ))
        }
    }
}

/// Runs `fiberlb --endpoint <node> --token <admin> <args…>`.
pub async fn run(node: &Node, args: &[&str]) -> anyhow::Result<CliOutput> {
    let mut full = vec![
        "--endpoint".to_string(),
        node.grpc_url(),
        "--token".to_string(),
        node.admin_token().to_string(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    run_raw(&full).await
}

/// Runs `fiberlb <args…>` with exactly these arguments.
pub async fn run_raw(args: &[String]) -> anyhow::Result<CliOutput> {
    let bin = tokio::task::spawn_blocking(binary).await??;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FIBERLB_") {
            cmd.env_remove(k);
        }
    }
    let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("fiberlb {args:?} did not finish within {CLI_TIMEOUT:?}"))?
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
