//! Network namespaces for tests that need real routing (tests/anycast.rs).
//!
//! A [`NetNs`] is created with `ip netns add` and deleted when dropped, so a failing test
//! leaves nothing behind (its veth pairs go with it). Processes start inside one by
//! `setns(2)` between fork and exec ([`NetNs::command`]); the test's own sockets are created
//! inside one by a short-lived thread that joined it ([`NetNs::connect`], [`NetNs::bind`]),
//! so the test process itself never leaves the root namespace. [`NetNs::forward`] makes a
//! TCP service inside a namespace reachable on the root namespace's 127.0.0.1 (how the
//! gRPC clients and the CLI talk to a node in a namespace).

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Why namespace tests cannot run here, or `None` when they can (root, `ip` installed).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    if !have("ip", "-V") {
        return Some("`ip` (iproute2) is not installed".into());
    }
    None
}

/// Whether `bin` runs (`bin arg` exits, whatever its status).
pub fn have(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs a command to completion, failing with its stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on drop.
pub struct NetNs {
    name: String,
    file: Arc<File>,
}

impl NetNs {
    /// Creates namespace `name` with `lo` up.
    pub fn create(name: &str) -> anyhow::Result<NetNs> {
        // A namespace of the same name left by a crashed run of the same PID: replace it.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = NetNs {
            name: name.to_owned(),
            file: Arc::new(
                File::open(format!("/var/run/netns/{name}"))
                    .with_context(|| format!("opening namespace {name}"))?,
            ),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args…`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets sysctls (`net.ipv4.ip_forward=1`, …) inside the namespace.
    pub fn sysctl(&self, settings: &[&str]) -> anyhow::Result<()> {
        let mut cmd = self.command("sysctl");
        cmd.arg("-qw").args(settings);
        run(&mut cmd).map(drop)
    }

    /// A command that runs inside the namespace (and is killed if the thread that started it
    /// exits first, so a test that dies leaves no process behind).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        let file = self.file.clone();
        // SAFETY: between fork and exec the closure calls only setns(2) and prctl(2), both
        // async-signal-safe; `fd` stays open because `file` is kept alive by the closure.
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &file;
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd
    }

    /// Runs `f` on a fresh thread that joined the namespace (sockets it creates live there).
    async fn inside<T, F>(&self, f: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        let file = self.file.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            // SAFETY: setns(2) on a namespace fd we hold; it only affects this thread.
            let res = if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                f()
            } else {
                Err(std::io::Error::last_os_error())
            };
            let _ = tx.send(res);
        });
        rx.await
            .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread died")))
    }

    /// A TCP connection made from inside the namespace, bounded by `within`.
    pub async fn connect(&self, addr: SocketAddr, within: Duration) -> std::io::Result<TcpStream> {
        let s = self
            .inside(move || {
                let s = std::net::TcpStream::connect_timeout(&addr, within)?;
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await?;
        TcpStream::from_std(s)
    }

    /// A TCP connection made from inside the namespace that has already sent `first` (written
    /// right after the handshake on the same thread, so it leaves with the handshake's ACK
    /// as closely as a client can manage).
    pub async fn connect_send(
        &self,
        addr: SocketAddr,
        first: &'static [u8],
        within: Duration,
    ) -> Result<TcpStream, ConnectError> {
        let s = self
            .inside(move || {
                let mut s = match std::net::TcpStream::connect_timeout(&addr, within) {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(ConnectError::Connect(e))),
                };
                let sent = std::io::Write::write_all(&mut s, first)
                    .and_then(|()| s.set_nonblocking(true))
                    .map(|()| s)
                    .map_err(ConnectError::Send);
                Ok(sent)
            })
            .await
            .map_err(ConnectError::Connect)??;
        TcpStream::from_std(s).map_err(ConnectError::Send)
    }

    /// A TCP listener bound inside the namespace.
    pub async fn bind(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let l = self
            .inside(move || {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .await?;
        TcpListener::from_std(l)
    }

    /// Makes `target` (inside the namespace) reachable at the returned 127.0.0.1 address of
    /// the root namespace, until the [`Forward`] is dropped.
    pub async fn forward(self: &Arc<Self>, target: SocketAddr) -> anyhow::Result<Forward> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let ns = self.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut outer, _)) = l.accept().await {
                let ns = ns.clone();
                tokio::spawn(async move {
                    if let Ok(mut inner) = ns.connect(target, Duration::from_secs(5)).await {
                        let _ = tokio::io::copy_bidirectional(&mut outer, &mut inner).await;
                    }
                });
            }
        });
        Ok(Forward { addr, task })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Why [`NetNs::connect_send`] failed: before the connection was established (refused,
/// unreachable, timed out) or after.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The handshake failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Connected, then sending failed.
    #[error("send: {0}")]
    Send(std::io::Error),
}

/// A port forward into a namespace; stops accepting when dropped.
pub struct Forward {
    /// The root-namespace address (127.0.0.1:port).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Joins namespaces `a` and `b` with a veth pair named `a_if`/`b_if` (created inside `a`,
/// so nothing ever appears in the root namespace), both up.
pub fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) -> anyhow::Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// A process started in a namespace, killed (SIGKILL, by PID) and reaped when dropped.
pub struct NsProcess {
    child: Option<std::process::Child>,
    /// Its PID.
    pub pid: i32,
}

impl NsProcess {
    /// Spawns `cmd` (usually from [`NetNs::command`]).
    pub fn spawn(mut cmd: Command) -> anyhow::Result<NsProcess> {
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(NsProcess {
            pid: child.id() as i32,
            child: Some(child),
        })
    }

    /// Wraps an already spawned child.
    pub fn from_child(child: std::process::Child) -> NsProcess {
        NsProcess {
            pid: child.id() as i32,
            child: Some(child),
        }
    }

    /// Sends `sig` if the process has not been reaped.
    pub fn signal(&self, sig: i32) {
        if self.child.is_some() {
            // SAFETY: kill(2) on our own unreaped child (its PID cannot have been reused).
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        self.try_wait().is_some()
    }

    /// `Some(exit code)` once it has exited (the code is `None` when a signal ended it, or
    /// when it was reaped earlier); `None` while it runs.
    pub fn try_wait(&mut self) -> Option<Option<i32>> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                self.child = None;
                Some(status.code())
            }
            Some(_) => None,
            None => Some(None),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
