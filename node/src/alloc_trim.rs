//! Hands memory the allocator keeps back to the operating system once a worker thread
//! has nothing to do.
//!
//! mimalloc frees unused pages lazily (`purge_delay`), and only while the thread that owns
//! them keeps allocating: after a burst of requests, a thread that goes quiet keeps the
//! burst's buffers resident for good. Measured with 5,000 idle keep-alive connections
//! after one request each: 13.7 KB of RSS per connection, of which about 3.3 KB is live.
//! Purging at once (`MIMALLOC_PURGE_DELAY=0`) costs ~7% more CPU per request under load,
//! so instead each worker asks for a collection when it parks, at most once per
//! [`EVERY`]: free under load (one clock read per park), and the memory goes back
//! within a second of the thread going idle.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Collections per worker thread at most this often.
const EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    /// A park came too soon after a collection and was let go without one.
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Turns transparent huge pages off for this process.
///
/// mimalloc asks for huge pages on the memory it maps (`madvise(MADV_HUGEPAGE)`), and the
/// kernel's khugepaged then fills every 2 MiB region the process has touched at all: RSS
/// grows by megabytes every ten seconds while nothing is allocated, and memory freed at
/// 4 KiB granularity is taken back only when whole huge pages are. Measured (1 worker,
/// 10,000 idle keep-alive connections): the process's baseline RSS 30 MB with huge pages
/// and 17 MB without, and with huge pages the idle connections' RSS kept growing by
/// ~13 MB per khugepaged pass; CPU per keep-alive request unchanged within noise (medians
/// of 4: 15.3 and 15.8 µs). A proxy's working set is small; TLB reach does not pay for it.
/// Best effort: an old kernel without `PR_SET_THP_DISABLE` keeps them.
pub fn disable_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
    }
}

/// The runtime's `on_thread_park` hook.
pub fn on_park() {
    let now = Instant::now();
    let due = LAST.with(|last| {
        let due = last.get().is_none_or(|t| now.duration_since(t) >= EVERY);
        if due {
            last.set(Some(now));
        }
        due
    });
    PENDING.with(|p| p.set(!due));
    if due {
        collect();
    }
}

/// Runs on each data-plane worker: once per [`EVERY`], collects if the thread's last park
/// skipped it. Without this, the frees after a thread's last collection stay resident
/// for as long as the thread sleeps, and an idle worker can sleep for minutes (the idle
/// connections' next deadline): by hand, RSS per idle keep-alive connection then varied
/// between 0.3 and 0.7 KB from run to run with where the last collection fell.
pub async fn collect_pending() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if PENDING.with(|p| p.replace(false)) {
            LAST.with(|last| last.set(Some(Instant::now())));
            collect();
        }
    }
}

fn collect() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any
    // time; `false` asks for the cheap collection (expired purges, delayed frees).
    unsafe { libmimalloc_sys::mi_collect(false) };
}
