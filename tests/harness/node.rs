//! A real `fiberlb serve` process on loopback ports chosen by the kernel.
//!
//! The process is started from the workspace's `target/debug/fiberlb` (built once per test
//! process when it is missing), announces its addresses on one stdout line, and is killed
//! by PID when the [`Node`] is dropped, so a panicking test leaves no orphan behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tempfile::TempDir;

use crate::client::{Clients, Credential};

/// How long a node may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The `fiberlb` binary: `$FIBERLB_BIN`, else `target/debug/fiberlb` next to the test
/// executable's `deps/` folder, built with cargo (once per process) when missing.
pub fn binary() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FIBERLB_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/debug/deps/<test>-<hash> → target/debug/fiberlb
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        anyhow!(
            "test executable {} is not under target/<profile>/deps",
            exe.display()
        )
    })?;
    let bin = profile_dir.join("fiberlb");
    if bin.is_file() {
        return Ok(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    build(workspace)?;
    // Normally cargo puts it where we looked; a test executable copied elsewhere finds it
    // in the target directory cargo used.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    [bin.clone(), target.join("debug").join("fiberlb")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "cargo built fiberlb but neither {} nor {} exists",
                bin.display(),
                target.display()
            )
        })
}

/// Longest the one-off build of the binary may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Runs `cargo build -p fiberlb-node --bin fiberlb` in `workspace`, bounded by [`BUILD_TIMEOUT`].
fn build(workspace: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "fiberlb-node", "--bin", "fiberlb"])
        .current_dir(workspace)
        .stdin(Stdio::null());
    // Cargo gives a test process its package's CARGO_PKG_* / CARGO_MANIFEST_* variables.
    // Build scripts that watch such variables (ring's does) would see them change and
    // rebuild, and the next ordinary build would rebuild again: pass the shell's view on.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*k,
                "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "LD_LIBRARY_PATH"
            )
        {
            cmd.env_remove(&*k);
        }
    }
    let mut child = cmd
        .spawn()
        .context("running cargo build for the fiberlb binary")?;
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(BUILD_TIMEOUT) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => bail!("cargo build -p fiberlb-node --bin fiberlb failed: {status}"),
        Ok(Err(e)) => bail!("waiting for cargo build: {e}"),
        Err(_) => {
            // SAFETY: kill(2) on the cargo process we spawned; the waiting thread reaps it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            bail!("cargo build -p fiberlb-node --bin fiberlb took longer than {BUILD_TIMEOUT:?}")
        }
    }
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    pid: i32,
    data_dir: PathBuf,
    grpc: SocketAddr,
    admin: SocketAddr,
    token: String,
    log: PathBuf,
    // Owned temporary directories, removed after the process is gone.
    _owned_data: Option<TempDir>,
    _logs: TempDir,
}

impl Node {
    /// Starts a node on a fresh data directory.
    pub async fn start() -> anyhow::Result<Node> {
        let dir = tempfile::Builder::new().prefix("fiberlb-data-").tempdir()?;
        let mut node = Self::spawn(dir.path(), &[], &[]).await?;
        node._owned_data = Some(dir);
        Ok(node)
    }

    /// Starts a node on an existing data directory (a restart); the caller keeps the
    /// directory alive.
    pub async fn start_in(dir: &Path) -> anyhow::Result<Node> {
        Self::spawn(dir, &[], &[]).await
    }

    /// Starts a node on `dir` with extra `serve` flags.
    pub async fn start_with(dir: &Path, extra: &[&str]) -> anyhow::Result<Node> {
        Self::spawn(dir, extra, &[]).await
    }

    /// Starts a node on `dir` with extra `serve` flags and environment variables.
    pub async fn start_with_env(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Node> {
        Self::spawn(dir, extra, env).await
    }

    /// Sends a signal to the node (SIGTERM, SIGHUP, SIGSTOP…).
    pub fn signal(&self, sig: i32) {
        if self.child.is_some() {
            // SAFETY: kill(2) on our own child, not yet reaped (so the PID is not reused).
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Waits (bounded) for the node to exit and returns its exit code (None: by signal).
    pub async fn wait_exit(&mut self, within: std::time::Duration) -> anyhow::Result<Option<i32>> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Ok(status.code());
                }
            } else {
                anyhow::bail!("node already reaped");
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "node did not exit within {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn spawn(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Node> {
        let bin = tokio::task::spawn_blocking(binary).await??;
        let logs = tempfile::Builder::new().prefix("fiberlb-log-").tempdir()?;
        let log = logs.path().join("stderr.log");
        let stderr = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // Environment settings of the developer's shell must not change what is tested.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FIBERLB_") && k != "FIBERLB_BIN" {
                cmd.env_remove(k);
            }
        }
        // If this test process dies without running destructors (SIGKILL, abort), the
        // kernel kills the node too. (Strictly, when the *thread* that started it exits: the
        // test's own thread or a runtime worker, both outliving the Node; never start a node
        // from inside spawn_blocking, whose threads retire when idle.)
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id() as i32;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<Option<String>>();
        // Reads the ready line, then keeps draining stdout so the node never blocks on it.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            for _ in lines {}
        });
        let mut node = Node {
            child: Some(child),
            pid,
            data_dir: dir.to_path_buf(),
            grpc: ([127, 0, 0, 1], 0).into(),
            admin: ([127, 0, 0, 1], 0).into(),
            token: String::new(),
            log,
            _owned_data: None,
            _logs: logs,
        };
        let line = match tokio::time::timeout(READY_TIMEOUT, rx).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => {
                let status = node.reap();
                bail!(
                    "fiberlb serve exited before it was ready ({status}); stderr:\n{}",
                    node.stderr_tail(60)
                );
            }
            Err(_) => bail!(
                "fiberlb serve printed no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                node.stderr_tail(60)
            ),
        };
        let (grpc, admin) = parse_ready(&line).ok_or_else(|| {
            anyhow!(
                "unexpected ready line {line:?}; stderr:\n{}",
                node.stderr_tail(60)
            )
        })?;
        node.grpc = grpc;
        node.admin = admin;
        let token_file = dir.join("bootstrap-token");
        node.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(node)
    }

    /// `http://127.0.0.1:PORT` of the gRPC API.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The gRPC API address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The admin HTTP address (`/health`, `/ready`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The bootstrap admin secret (system scope, `fiberlb:*`).
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Clients authenticated with the bootstrap admin token.
    pub fn admin(&self) -> anyhow::Result<Clients> {
        Clients::connect(&self.grpc_url(), Credential::Bearer(self.token.clone()))
    }

    /// Clients presenting `cred`.
    pub fn clients(&self, cred: Credential) -> anyhow::Result<Clients> {
        Clients::connect(&self.grpc_url(), cred)
    }

    /// The last `lines` lines the node wrote to stderr (its logs).
    pub fn stderr_tail(&self, lines: usize) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = all.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits for it.
    pub fn kill9(&mut self) {
        if self.child.is_some() {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it cannot have
            // been reused); it has no memory-safety preconditions.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
        self.reap();
    }

    /// Waits for an exited (or killed) child; describes how it ended.
    fn reap(&mut self) -> String {
        match self.child.take() {
            Some(mut c) => match c.wait() {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            },
            None => "already reaped".to_string(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- fiberlb node {} (pid {}) stderr tail ---\n{}",
                self.grpc,
                self.pid,
                self.stderr_tail(40)
            );
        }
        self.kill9();
    }
}

/// Parses `fiberlb ready grpc=ADDR admin=ADDR`.
fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut words = line.split_whitespace();
    if words.next()? != "fiberlb" || words.next()? != "ready" {
        return None;
    }
    let (mut grpc, mut admin) = (None, None);
    for w in words {
        if let Some(v) = w.strip_prefix("grpc=") {
            grpc = v.parse().ok();
        } else if let Some(v) = w.strip_prefix("admin=") {
            admin = v.parse().ok();
        }
    }
    Some((grpc?, admin?))
}

#[cfg(test)]
mod tests {
    use super::parse_ready;

    #[test]
    fn ready_line() {
        let (g, a) = parse_ready("fiberlb ready grpc=127.0.0.1:4000 admin=127.0.0.1:4001").unwrap();
        assert_eq!(g.port(), 4000);
        assert_eq!(a.port(), 4001);
        assert!(parse_ready("something else").is_none());
        assert!(parse_ready("fiberlb ready grpc=x admin=127.0.0.1:1").is_none());
    }
}
