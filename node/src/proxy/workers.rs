//! The data plane's threads: one tokio runtime with a single worker thread per core.
//!
//! A proxied connection never needs a second thread, so the data plane does not share one
//! work-stealing scheduler. Each worker thread is the only worker of a runtime of its own,
//! with its own reactor and timers; every TCP listener gets one `SO_REUSEPORT` acceptor per
//! worker, and a connection lives its whole life on the worker whose acceptor took it (the
//! kernel spreads new connections over the acceptors). That is the HAProxy/nginx model: no
//! task migrates between cores and no run queue is shared between threads. Measured by
//! hand, 2 threads, new TCP connections/s: 15,170 on one 2-worker runtime, 15,960 on
//! per-core runtimes (medians of 3).
//!
//! Why tokio's multi-thread scheduler with one worker rather than its current-thread
//! scheduler: the former runs a task spawned or woken by the running task next (its LIFO
//! slot), while its data is still in cache: the accept loop's new connection, the request
//! an HTTP connection task wakes. The current-thread scheduler queues it behind every
//! other ready task: a new HTTP connection per request cost 34 µs of CPU there against 30
//! (and a keep-alive request at 256 connections 17.5 µs against 15.7), measured by hand.
//!
//! The control plane (API, health checks, gossip, BGP, the listener manager) keeps the
//! runtime `main` builds. What the workers share (the snapshot, the backend pools,
//! counters) is `Send + Sync` anyway; a pooled backend connection opened on one worker may
//! be used by another (tokio I/O resources work across runtimes, woken through the runtime
//! that registered them).

use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// How long a stopping worker waits for its tasks' blocking work.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// The data plane's runtimes.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    runtimes: Vec<Runtime>,
}

impl Workers {
    /// Starts `n` workers (0: `TOKIO_WORKER_THREADS` if set, else one per core), each the
    /// single worker thread of its own runtime, named `fiberlb-worker-N`. `on_park` runs
    /// when a worker has nothing to do.
    pub fn start(n: usize, on_park: fn()) -> std::io::Result<Workers> {
        let n = match n {
            0 => std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n,
        };
        let mut runtimes = Vec::with_capacity(n);
        for i in 0..n {
            runtimes.push(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("fiberlb-worker-{i}"))
                    .enable_all()
                    .on_thread_park(on_park)
                    .build()?,
            );
        }
        Ok(Workers {
            handles: runtimes.iter().map(|r| r.handle().clone()).collect(),
            runtimes,
        })
    }

    /// The workers' runtimes; never empty.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops the workers, waiting up to a second each for blocking work (a blocking call:
    /// not from async code). Tasks still running on them are dropped: open connections
    /// close with their sockets.
    pub fn shutdown(mut self) {
        for runtime in std::mem::take(&mut self.runtimes) {
            runtime.shutdown_timeout(SHUTDOWN_WAIT);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Without waiting: a drop may happen on an async thread, which must not block.
        for runtime in self.runtimes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_stay_on_the_worker_they_were_spawned_on() {
        let workers = Workers::start(2, || {}).expect("workers");
        assert_eq!(workers.handles().len(), 2);
        let names: Vec<String> = workers
            .handles()
            .iter()
            .map(|h| {
                let (tx, rx) = std::sync::mpsc::channel();
                h.spawn(async move {
                    // A task spawned from a worker's task lands on the same worker.
                    let inner =
                        tokio::spawn(async { std::thread::current().name().map(str::to_string) });
                    let outer = std::thread::current().name().map(str::to_string);
                    let _ = tx.send((outer, inner.await.ok().flatten()));
                });
                let (outer, inner) = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("worker answers");
                assert_eq!(outer, inner);
                outer.unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["fiberlb-worker-0", "fiberlb-worker-1"]);
        workers.shutdown();
    }

    #[test]
    fn shutdown_drops_the_tasks_left_running() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = Workers::start(1, || {}).expect("workers");
        let flag = Flag(dropped.clone());
        workers.handles()[0].spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        workers.shutdown();
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
