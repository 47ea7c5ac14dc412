//! Idle keep-alive connections without a task: a worker's parked HTTP/1 sockets wait in
//! one epoll set of their own, each costing a table entry instead of a task.
//!
//! A keep-alive connection spends most of its life between requests. After the busy
//! period hyper has let go of it (see `conn::http1`), what it still needs is its socket,
//! its connection context and a deadline. Waiting for the next request in a task of its
//! own costs the task (~0.6 KiB with its timer and cancellation wait) and tokio's
//! registration of the socket (a 128-byte-aligned slot); nginx keeps an idle connection
//! in ~0.6 KiB in all. Here the socket leaves tokio's reactor and joins a per-worker epoll
//! set (`mio::Poll`) that is itself registered with tokio: one driver task per worker
//! waits on that set and on the earliest deadline, and hands a socket that turns readable
//! back to tokio in a new connection task. A connection whose idle timeout passes, or
//! whose listener stops, is closed by the driver.
//!
//! The cost moves to the idle transitions, which happen at most once per idle spell (a
//! connection parks after 100 ms without a request): a park takes two `epoll_ctl` calls
//! (out of tokio's set, into ours) and a wake-up three (one `epoll_wait`, out of ours,
//! into tokio's). Requests on a busy connection never come here.

use std::any::Any;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::LocalKey;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// The table's vectors grow by this many slots at a time.
const GROW: usize = 1024;

/// What a parked connection keeps, by value: the set stores it in its table, so an idle
/// connection owns no heap allocation of its own (a small object that outlives the
/// request it was allocated beside pins that request's allocator page: measured, three
/// such objects per idle connection cost ~1 KiB of resident memory).
pub(crate) trait Dormant: Send + 'static {
    /// Continues serving the connection on `stream`, which has turned readable (a
    /// request, end of file or an error): spawns its task. The socket is non-blocking
    /// and registered with no reactor (the request that woke it is read at once).
    fn wake(self, stream: std::net::TcpStream);
    /// The listener's stop token (a child of the node's shutdown): once cancelled, the
    /// connection is closed instead.
    fn stop(&self) -> &CancellationToken;
    /// The connection's listener context, shared by the connections that share a stop
    /// token: one watcher per listener and worker follows the token, and holds this so
    /// that its address identifies the listener for as long as the watcher lives.
    fn group(&self) -> Arc<dyn Any + Send + Sync>;
}

/// A thread's set, kept in a `thread_local!` of the caller's (one per payload type).
pub(crate) type Local<T> = LocalKey<RefCell<Option<Arc<IdleSet<T>>>>>;

/// Parks `stream` in this thread's set `local` (started on first use, on the current
/// runtime) until it turns readable (then `dormant` wakes with it), `deadline` passes or
/// the listener stops (then both are dropped: the socket closes).
pub(crate) fn park<T: Dormant>(
    local: &'static Local<T>,
    stream: std::net::TcpStream,
    deadline: Instant,
    dormant: T,
) {
    match IdleSet::current(local) {
        Ok(set) => set.park(stream, deadline, dormant),
        Err(e) => {
            // Out of descriptors, say: the connection goes on in a task of its own, as
            // if the request had come; it parks again at its next idle spell.
            tracing::debug!(error = %e, "no idle set; connection stays in its task");
            dormant.wake(stream);
        }
    }
}

/// Connections parked in this thread's set `local`.
#[cfg(test)]
pub(crate) fn parked_here<T: Dormant>(local: &'static Local<T>) -> usize {
    local.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|s| s.alive.load(Ordering::Acquire))
            .map_or(0, |s| s.lock().entries.len())
    })
}

/// One parked connection.
struct Entry<T> {
    stream: std::net::TcpStream,
    deadline: Instant,
    /// Which park this is (a slab key is reused; a park's deadline entry is not).
    seq: u64,
    dormant: T,
}

/// The table behind the set's lock.
struct Table<T> {
    poll: Poll,
    events: Events,
    /// Entries by value, keyed by the epoll token. A slab's storage is one vector: the
    /// slots in use are dense, and capacity never touched is never resident.
    entries: Slab<Entry<T>>,
    /// Deadlines, the earliest first: (deadline, park, key). One contiguous heap (a
    /// tree's nodes would each pin an allocator page among freed request memory); an
    /// entry woken before its deadline leaves its item behind, skipped when it comes up
    /// and dropped when the heap is rebuilt (`compact`).
    deadlines: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_seq: u64,
    /// The deadline the driver sleeps until (it is told when an earlier one comes).
    sleeping_until: Option<Instant>,
    /// Listener groups with a watcher on their stop token.
    watched: HashSet<usize>,
}

impl<T> Table<T> {
    /// Makes room for one more entry and its deadline, [`GROW`] at a time. Doubling
    /// would leave up to half of each vector allocated but unused, and that half is
    /// resident when the allocator hands out memory that requests used moments before
    /// (the common case: connections park right after their busy period).
    fn grow(&mut self) {
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact(GROW);
        }
        if self.deadlines.len() == self.deadlines.capacity() {
            self.deadlines.reserve_exact(GROW);
        }
    }

    /// Rebuilds the deadline heap from the entries once items of woken entries make up
    /// most of it: the heap stays within twice the parked connections (plus a little).
    fn compact(&mut self) {
        if self.deadlines.len() > 2 * self.entries.len() + 64 {
            self.deadlines = self
                .entries
                .iter()
                .map(|(k, e)| Reverse((e.deadline, e.seq, k)))
                .collect();
        }
    }

    /// Takes entry `key` out of the table and out of the epoll set.
    fn take(&mut self, key: usize) -> Option<Entry<T>> {
        let e = self.entries.try_remove(key)?;
        if let Err(err) = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&e.stream.as_raw_fd()))
        {
            tracing::debug!(error = %err, "idle socket left the epoll set with an error");
        }
        Some(e)
    }
}

/// The table with its epoll descriptor at hand, for tokio's registration.
struct Locked<T> {
    /// `table.poll`'s descriptor.
    fd: RawFd,
    table: Mutex<Table<T>>,
}

impl<T> AsRawFd for Locked<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// A worker's parked connections. See the module documentation.
pub(crate) struct IdleSet<T> {
    /// The epoll set, registered with tokio's reactor.
    epoll: AsyncFd<Locked<T>>,
    /// An entry with an earlier deadline than the driver's came in.
    sooner: Notify,
    /// False once the driver has gone (its runtime stopped).
    alive: AtomicBool,
    /// Cancelled when the driver goes: the watchers go with it.
    gone: CancellationToken,
}

impl<T: Dormant> IdleSet<T> {
    /// This thread's set, started if there is none or its driver has gone.
    fn current(local: &'static Local<T>) -> io::Result<Arc<IdleSet<T>>> {
        local.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(set) = c.as_ref().filter(|s| s.alive.load(Ordering::Acquire)) {
                return Ok(set.clone());
            }
            let set = IdleSet::start()?;
            *c = Some(set.clone());
            Ok(set)
        })
    }

    fn start() -> io::Result<Arc<IdleSet<T>>> {
        let poll = Poll::new()?;
        let locked = Locked {
            fd: poll.as_raw_fd(),
            table: Mutex::new(Table {
                poll,
                events: Events::with_capacity(EVENTS),
                entries: Slab::new(),
                deadlines: BinaryHeap::new(),
                next_seq: 0,
                sleeping_until: None,
                watched: HashSet::new(),
            }),
        };
        // SAFETY: the descriptor is the `Poll`'s, which the `AsyncFd` owns (inside
        // `locked`) and never replaces: it stays open, and the same, until the `AsyncFd`
        // is dropped.
        let epoll =
            unsafe { AsyncFd::register_with_interest(locked, tokio::io::Interest::READABLE)? };
        let set = Arc::new(IdleSet {
            epoll,
            sooner: Notify::new(),
            alive: AtomicBool::new(true),
            gone: CancellationToken::new(),
        });
        tokio::spawn(drive(set.clone()));
        Ok(set)
    }

    fn lock(&self) -> MutexGuard<'_, Table<T>> {
        // The table is consistent between statements: a panic elsewhere leaves it usable.
        self.epoll
            .get_ref()
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn park(self: &Arc<Self>, stream: std::net::TcpStream, deadline: Instant, dormant: T) {
        let mut t = self.lock();
        t.grow();
        let slot = t.entries.vacant_entry();
        let key = slot.key();
        // A socket that already has data is reported at once.
        if let Err(e) = t.poll.registry().register(
            &mut SourceFd(&stream.as_raw_fd()),
            Token(key),
            Interest::READABLE,
        ) {
            drop(t);
            tracing::debug!(error = %e, "idle socket not parked; connection stays in its task");
            resume(stream, dormant);
            return;
        }
        let group = dormant.group();
        if t.watched.insert(group_id(&group)) {
            tokio::spawn(watch(self.clone(), group, dormant.stop().clone()));
        }
        let seq = t.next_seq;
        t.next_seq += 1;
        t.entries.insert(Entry {
            stream,
            deadline,
            seq,
            dormant,
        });
        t.compact();
        t.deadlines.push(Reverse((deadline, seq, key)));
        let sooner = t.sleeping_until.is_none_or(|at| deadline < at);
        drop(t);
        if sooner {
            self.sooner.notify_one();
        }
    }

    /// Takes the entries whose sockets turned readable; returns how many events came.
    fn take_ready(&self, woke: &mut Vec<Entry<T>>) -> io::Result<usize> {
        let mut t = self.lock();
        let t = &mut *t;
        t.poll.poll(&mut t.events, Some(Duration::ZERO))?;
        let keys: Vec<usize> = t.events.iter().map(|e| e.token().0).collect();
        // Every event is for a different socket, and all are taken under this lock
        // (nothing parks in between to reuse a key).
        woke.extend(keys.iter().filter_map(|&k| t.take(k)));
        Ok(keys.len())
    }

    /// Takes the entries whose deadline is at or before `now`; returns the next deadline.
    fn take_expired(&self, now: Instant, expired: &mut Vec<Entry<T>>) -> Option<Instant> {
        let mut t = self.lock();
        while let Some(&Reverse((at, seq, key))) = t.deadlines.peek() {
            if at > now {
                t.sleeping_until = Some(at);
                return Some(at);
            }
            t.deadlines.pop();
            if t.entries.get(key).is_some_and(|e| e.seq == seq) {
                expired.extend(t.take(key));
            }
        }
        t.sleeping_until = None;
        None
    }

    /// Takes the entries of `group` whose stop token is cancelled.
    fn take_stopped(&self, group: usize) -> Vec<Entry<T>> {
        let mut t = self.lock();
        t.watched.remove(&group);
        let keys: Vec<usize> = t
            .entries
            .iter()
            .filter(|(_, e)| {
                e.dormant.stop().is_cancelled() && group_id(&e.dormant.group()) == group
            })
            .map(|(k, _)| k)
            .collect();
        keys.into_iter().filter_map(|k| t.take(k)).collect()
    }
}

/// Gives a socket back to its connection, in a task.
fn resume<T: Dormant>(stream: std::net::TcpStream, dormant: T) {
    dormant.wake(stream);
}

/// The driver of a set: wakes readable sockets, closes expired ones.
async fn drive<T: Dormant>(set: Arc<IdleSet<T>>) {
    /// Marks the set dead however the driver ends (its runtime dropping it included).
    struct Gone<'a, T>(&'a IdleSet<T>);
    impl<T> Drop for Gone<'_, T> {
        fn drop(&mut self) {
            self.0.alive.store(false, Ordering::Release);
            self.0.gone.cancel();
        }
    }
    let _gone = Gone(&set);
    let mut batch = Vec::new();
    loop {
        let next = set.take_expired(Instant::now(), &mut batch);
        for e in batch.drain(..) {
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(client = ?e.stream.peer_addr().ok(), "closing client connection: idle timeout");
            }
        }
        let sleep = tokio::time::sleep_until(next.unwrap_or_else(far_future));
        tokio::select! {
            r = set.epoll.readable() => {
                let mut guard = match r {
                    Ok(g) => g,
                    Err(e) => {
                        // Not expected from an epoll descriptor; the parked connections
                        // close with the set rather than wait forever.
                        tracing::warn!(error = %e, "idle connection set failed; closing its connections");
                        return;
                    }
                };
                loop {
                    match set.take_ready(&mut batch) {
                        Ok(0) => {
                            guard.clear_ready();
                            break;
                        }
                        Ok(_) => {
                            for e in batch.drain(..) {
                                resume(e.stream, e.dormant);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "idle connection set failed; closing its connections");
                            return;
                        }
                    }
                }
            }
            _ = sleep, if next.is_some() => {}
            _ = set.sooner.notified() => {}
        }
    }
}

/// Follows a listener's stop token for the set: closes that listener's parked
/// connections when it is cancelled.
async fn watch<T: Dormant>(
    set: Arc<IdleSet<T>>,
    group: Arc<dyn Any + Send + Sync>,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = set.gone.cancelled() => return,
    }
    let closed = set.take_stopped(group_id(&group));
    tracing::debug!(
        connections = closed.len(),
        "listener stopped: closing its idle connections"
    );
}

/// A listener group's identity: the address of its shared context.
fn group_id(group: &Arc<dyn Any + Send + Sync>) -> usize {
    Arc::as_ptr(group) as *const () as usize
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    struct Probe {
        woke: tokio::sync::mpsc::UnboundedSender<TcpStream>,
        stop: CancellationToken,
        group: Arc<dyn Any + Send + Sync>,
    }

    thread_local! {
        static SET: RefCell<Option<Arc<IdleSet<Probe>>>> = const { RefCell::new(None) };
    }

    fn park(stream: TcpStream, deadline: Instant, p: Probe) {
        super::park(&SET, stream.into_std().unwrap(), deadline, p)
    }

    fn parked_here() -> usize {
        super::parked_here(&SET)
    }

    impl Dormant for Probe {
        fn wake(self, stream: std::net::TcpStream) {
            let _ = self.woke.send(TcpStream::from_std(stream).unwrap());
        }
        fn stop(&self) -> &CancellationToken {
            &self.stop
        }
        fn group(&self) -> Arc<dyn Any + Send + Sync> {
            self.group.clone()
        }
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    fn probe(stop: &CancellationToken) -> (Probe, tokio::sync::mpsc::UnboundedReceiver<TcpStream>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Probe {
                woke: tx,
                stop: stop.clone(),
                group: GROUP.with(|g| g.clone()),
            },
            rx,
        )
    }

    thread_local! {
        static GROUP: Arc<dyn Any + Send + Sync> = Arc::new(());
    }

    /// The stream a probe's connection woke with (within `WAIT`).
    async fn woken(woke: &mut tokio::sync::mpsc::UnboundedReceiver<TcpStream>) -> TcpStream {
        tokio::time::timeout(WAIT, woke.recv())
            .await
            .expect("woken in time")
            .expect("woken")
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_parked_socket_wakes_with_its_data_intact() {
        let stop = CancellationToken::new();
        let (mut client, server) = pair().await;
        let (p, mut woke) = probe(&stop);
        park(server, Instant::now() + WAIT, p);
        assert_eq!(parked_here(), 1);
        // Nothing to read: it stays parked.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(woke.try_recv().is_err());
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut server = woken(&mut woke).await;
        assert_eq!(parked_here(), 0);
        let mut buf = [0u8; 16];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");
        // Back in tokio's hands: it works both ways.
        server.write_all(b"ok").await.unwrap();
        let mut two = [0u8; 2];
        client.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
    }

    #[tokio::test]
    async fn data_that_came_before_the_park_wakes_it_at_once() {
        let stop = CancellationToken::new();
        let (mut client, server) = pair().await;
        client.write_all(b"x").await.unwrap();
        server.readable().await.unwrap();
        let (p, mut woke) = probe(&stop);
        park(server, Instant::now() + WAIT, p);
        let mut server = woken(&mut woke).await;
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }

    #[tokio::test]
    async fn the_deadline_closes_the_socket_and_a_sooner_one_is_not_missed() {
        let stop = CancellationToken::new();
        let (mut late_client, late) = pair().await;
        let (mut soon_client, soon) = pair().await;
        let (p1, mut woke1) = probe(&stop);
        let (p2, mut woke2) = probe(&stop);
        // The driver first sleeps until the later deadline; the sooner one must cut in.
        park(late, Instant::now() + Duration::from_millis(600), p1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = std::time::Instant::now();
        park(soon, Instant::now() + Duration::from_millis(100), p2);
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(WAIT, soon_client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "closed at its deadline");
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "closed after {:?}",
            t0.elapsed()
        );
        let n = tokio::time::timeout(WAIT, late_client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        assert!(
            woke1.try_recv().is_err() && woke2.try_recv().is_err(),
            "expired, not woken"
        );
        assert_eq!(parked_here(), 0);
    }

    #[tokio::test]
    async fn a_stopped_listener_closes_its_parked_connections() {
        let stop = CancellationToken::new();
        let (mut client, server) = pair().await;
        let (p, mut woke) = probe(&stop);
        park(server, Instant::now() + WAIT * 6, p);
        stop.cancel();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(WAIT, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        assert!(woke.try_recv().is_err());
        assert_eq!(parked_here(), 0);
    }

    #[tokio::test]
    async fn a_client_that_leaves_wakes_its_connection_to_end() {
        let stop = CancellationToken::new();
        let (client, server) = pair().await;
        let (p, mut woke) = probe(&stop);
        park(server, Instant::now() + WAIT * 6, p);
        drop(client);
        let mut server = woken(&mut woke).await;
        let mut buf = [0u8; 1];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_old_deadline_does_not_close_the_next_connection_on_its_slot() {
        let stop = CancellationToken::new();
        let (mut a_client, a) = pair().await;
        let (p, mut woke) = probe(&stop);
        park(a, Instant::now() + Duration::from_millis(100), p);
        a_client.write_all(b"a").await.unwrap();
        let _a = woken(&mut woke).await;
        // Same slab slot, a later deadline: the first park's deadline passes meanwhile.
        let (mut b_client, b) = pair().await;
        let (p, mut woke) = probe(&stop);
        park(b, Instant::now() + WAIT, p);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(parked_here(), 1, "still parked after the old deadline");
        b_client.write_all(b"b").await.unwrap();
        woken(&mut woke).await;
    }

    #[tokio::test]
    async fn deadlines_of_woken_connections_do_not_pile_up() {
        let stop = CancellationToken::new();
        let (mut client, mut server) = pair().await;
        for _ in 0..500 {
            let (p, mut woke) = probe(&stop);
            park(server, Instant::now() + WAIT * 6, p);
            client.write_all(b"z").await.unwrap();
            server = woken(&mut woke).await;
            let mut one = [0u8; 1];
            server.read_exact(&mut one).await.unwrap();
        }
        let set = IdleSet::current(&SET).unwrap();
        let t = set.lock();
        assert!(
            t.deadlines.len() <= 2 * t.entries.len() + 65,
            "{} deadline items for {} parked connections",
            t.deadlines.len(),
            t.entries.len()
        );
    }

    #[tokio::test]
    async fn many_sockets_park_and_wake_independently() {
        let stop = CancellationToken::new();
        let mut clients = Vec::new();
        let mut probes = Vec::new();
        for _ in 0..300 {
            let (c, s) = pair().await;
            let (p, woke) = probe(&stop);
            park(s, Instant::now() + WAIT * 6, p);
            clients.push(c);
            probes.push(woke);
        }
        assert_eq!(parked_here(), 300);
        // Every other client speaks: exactly those wake.
        for c in clients.iter_mut().step_by(2) {
            c.write_all(b"y").await.unwrap();
        }
        for woke in probes.iter_mut().step_by(2) {
            woken(woke).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for woke in probes.iter_mut().skip(1).step_by(2) {
            assert!(woke.try_recv().is_err());
        }
        assert_eq!(parked_here(), 150);
    }
}
