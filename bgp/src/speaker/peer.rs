//! The task that drives one peer's [`Session`]: it owns the socket and the timers, feeds
//! events into the state machine and carries out the actions it returns.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{PeerConfig, SessionInfo, SpeakerConfig};
use crate::fsm::{Action, Input, Session, SessionConfig, State, Timer};
use crate::route::Route;

/// A write that takes longer than this means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed connection is drained so our last NOTIFICATION is not lost to a RST.
const LINGER: Duration = Duration::from_secs(1);

/// Session state as published by the task; uptime is derived when read.
#[derive(Debug, Clone)]
pub(super) struct Published {
    peer: SocketAddr,
    peer_asn: u32,
    state: State,
    established_at: Option<Instant>,
    routes_announced: usize,
    routes_received: Vec<ipnet::IpNet>,
    last_error: Option<String>,
}

impl Published {
    pub(super) fn to_info(&self) -> SessionInfo {
        SessionInfo {
            peer: self.peer,
            peer_asn: self.peer_asn,
            state: self.state,
            uptime: self.established_at.map(|t| t.elapsed()),
            routes_announced: self.routes_announced,
            routes_received: self.routes_received.clone(),
            last_error: self.last_error.clone(),
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

pub(super) fn spawn(
    speaker: &SpeakerConfig,
    cfg: PeerConfig,
    routes: watch::Receiver<Arc<Vec<Route>>>,
    shutdown: watch::Receiver<bool>,
    incoming: mpsc::Receiver<TcpStream>,
) -> (watch::Receiver<Published>, JoinHandle<()>) {
    let mut scfg = SessionConfig::new(speaker.asn, cfg.asn, speaker.router_id);
    scfg.hold_time = cfg.hold_time;
    scfg.passive = cfg.passive;
    let peer = SocketAddr::new(cfg.address, cfg.port);
    let (info_tx, info_rx) = watch::channel(Published {
        peer,
        peer_asn: cfg.asn,
        state: State::Idle,
        established_at: None,
        routes_announced: 0,
        routes_received: Vec::new(),
        last_error: None,
    });
    let task = PeerTask {
        cfg,
        peer,
        fsm: Session::new(scfg),
        info: info_tx,
        stream: None,
        connecting: None,
        timers: BTreeMap::new(),
    };
    let handle = tokio::spawn(task.run(routes, shutdown, incoming));
    (info_rx, handle)
}

struct PeerTask {
    cfg: PeerConfig,
    peer: SocketAddr,
    fsm: Session,
    info: watch::Sender<Published>,
    stream: Option<TcpStream>,
    connecting: Option<Connecting>,
    timers: BTreeMap<Timer, Instant>,
}

enum Event {
    Shutdown,
    Routes(Option<Arc<Vec<Route>>>),
    ConnectDone(io::Result<TcpStream>),
    Incoming(Option<TcpStream>),
    Read(io::Result<usize>),
    Timers,
}

impl PeerTask {
    async fn run(
        mut self,
        mut routes: watch::Receiver<Arc<Vec<Route>>>,
        mut shutdown: watch::Receiver<bool>,
        mut incoming: mpsc::Receiver<TcpStream>,
    ) {
        let initial = routes.borrow_and_update().to_vec();
        self.input(Input::SetRoutes(initial)).await;
        self.input(Input::Start).await;
        let mut routes_open = true;
        let mut incoming_open = true;
        let mut buf = vec![0u8; 8192];
        loop {
            let deadline = self.timers.values().min().copied();
            let (connecting, stream) = (&mut self.connecting, &mut self.stream);
            let event = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => Event::Shutdown,
                r = routes.changed(), if routes_open => {
                    Event::Routes(r.ok().map(|_| routes.borrow_and_update().clone()))
                }
                r = async { match connecting.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                } } => Event::ConnectDone(r),
                s = incoming.recv(), if incoming_open => Event::Incoming(s),
                r = async { match stream.as_mut() {
                    Some(s) => s.read(&mut buf).await,
                    None => std::future::pending().await,
                } } => Event::Read(r),
                _ = async { match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                } } => Event::Timers,
            };
            match event {
                Event::Shutdown => {
                    self.input(Input::Stop).await;
                    return;
                }
                Event::Routes(Some(r)) => self.input(Input::SetRoutes(r.to_vec())).await,
                Event::Routes(None) => routes_open = false,
                Event::ConnectDone(r) => {
                    self.connecting = None;
                    match r.and_then(|s| s.local_addr().map(|l| (s, l))) {
                        Ok((s, local)) => {
                            let _ = s.set_nodelay(true);
                            self.stream = Some(s);
                            self.input(Input::Connected { local }).await;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %self.peer, error = %e, "BGP connect failed");
                            self.input(Input::ConnectFailed).await;
                        }
                    }
                }
                Event::Incoming(None) => incoming_open = false,
                Event::Incoming(Some(s)) => {
                    let local = s.local_addr();
                    match local {
                        Ok(local) if self.fsm.accepts_connection() => {
                            let _ = s.set_nodelay(true);
                            self.stream = Some(s);
                            self.input(Input::Connected { local }).await;
                        }
                        _ => {
                            tracing::debug!(peer = %self.peer, "BGP connection refused: session busy");
                            linger(s);
                        }
                    }
                }
                Event::Read(Ok(0)) | Event::Read(Err(_)) => {
                    self.stream = None;
                    self.input(Input::Closed).await;
                }
                Event::Read(Ok(n)) => {
                    let data = buf.get(..n).unwrap_or_default().to_vec();
                    self.input(Input::Bytes(&data)).await;
                }
                Event::Timers => {
                    let now = Instant::now();
                    let due: Vec<Timer> = self
                        .timers
                        .iter()
                        .filter(|(_, d)| **d <= now)
                        .map(|(t, _)| *t)
                        .collect();
                    for t in due {
                        self.timers.remove(&t);
                        self.input(Input::Timer(t)).await;
                    }
                }
            }
        }
    }

    /// Feeds one input and carries out the resulting actions (and those of any follow-up
    /// input a failed write causes), then publishes the session state.
    async fn input(&mut self, input: Input<'_>) {
        let mut queue: VecDeque<Action> = self.fsm.handle(input).into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Connect => self.connecting = Some(self.connect()),
                Action::Send(bytes) => {
                    let Some(stream) = self.stream.as_mut() else {
                        continue;
                    };
                    let res = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await;
                    if !matches!(res, Ok(Ok(()))) {
                        tracing::debug!(peer = %self.peer, "BGP write failed");
                        self.stream = None;
                        queue.extend(self.fsm.handle(Input::Closed));
                    }
                }
                Action::Close => {
                    self.connecting = None;
                    if let Some(s) = self.stream.take() {
                        linger(s);
                    }
                }
                Action::Arm(t, d) => {
                    self.timers.insert(t, Instant::now() + d);
                }
                Action::Cancel(t) => {
                    self.timers.remove(&t);
                }
                Action::StateChanged(s) => {
                    tracing::info!(peer = %self.peer, state = %s, "BGP session state");
                    self.info.send_modify(|p| {
                        p.state = s;
                        p.established_at = (s == State::Established).then(Instant::now);
                    });
                }
                Action::Down(reason) => {
                    tracing::warn!(peer = %self.peer, %reason, "BGP session down");
                    self.info.send_modify(|p| p.last_error = Some(reason));
                }
            }
        }
        let announced = self.fsm.announced();
        let received: Vec<_> = self.fsm.received().copied().collect();
        self.info.send_if_modified(|p| {
            let changed = p.routes_announced != announced || p.routes_received != received;
            p.routes_announced = announced;
            p.routes_received = received;
            changed
        });
    }

    fn connect(&self) -> Connecting {
        let peer = self.peer;
        let local = self.cfg.local_address;
        let password = self.cfg.password.clone();
        Box::pin(async move {
            let socket = if peer.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(ip) = local {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            if let Some(key) = &password {
                // Only the family matters here; the socket is not bound yet.
                let family = SocketAddr::new(peer.ip(), 0);
                super::md5::set_key(&socket, family, peer.ip(), key.as_bytes())?;
            }
            socket.connect(peer).await
        })
    }
}

/// Closes gracefully: FIN after pending data, then reads until the peer closes (or
/// [`LINGER`] passes) so unread input does not turn our close into a RST that could
/// discard the NOTIFICATION we just sent.
fn linger(mut s: TcpStream) {
    tokio::spawn(async move {
        let _ = s.shutdown().await;
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
}
