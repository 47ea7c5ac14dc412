//! The data plane's threads: one single-threaded tokio runtime per worker.
//!
//! A proxied connection never needs a second thread, so the data plane does not run on a
//! work-stealing scheduler. Each worker thread owns a current-thread runtime with its own
//! reactor and timers; every TCP listener gets one `SO_REUSEPORT` acceptor per worker, and
//! a connection lives its whole life on the worker whose acceptor took it (the kernel
//! spreads new connections over the acceptors). That is the HAProxy/nginx model: no task
//! migrates between cores, no queue is shared between threads, and spawning or waking a
//! task costs no cross-thread synchronisation. The control plane (API, health checks,
//! gossip, BGP, the listener manager) keeps the multi-thread runtime `main` builds.
//!
//! What the workers share (the snapshot, the backend pools, counters) is `Send + Sync`
//! anyway; a pooled backend connection opened on one worker may be used by another (tokio
//! I/O resources work across runtimes, woken through the runtime that registered them).

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a stopping worker waits for its tasks' blocking work.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// The data plane's runtimes.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Each thread's stop signal and join handle.
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Workers {
    /// Starts `n` worker threads (0: `TOKIO_WORKER_THREADS` if set, else one per core),
    /// each with a current-thread runtime, named `fiberlb-worker-N`. `on_park` runs when a
    /// worker has nothing to do.
    pub fn start(n: usize, on_park: fn()) -> std::io::Result<Workers> {
        let n = match n {
            0 => std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n,
        };
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(on_park)
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("fiberlb-worker-{i}"))
                .spawn(move || {
                    // Runs the tasks spawned onto the handle until told to stop (or until
                    // the `Workers` is gone), then drops what is left: open connections
                    // close with their sockets.
                    let _ = runtime.block_on(stopped);
                    runtime.shutdown_timeout(SHUTDOWN_WAIT);
                })?;
            threads.push((stop, thread));
        }
        Ok(Workers { handles, threads })
    }

    /// The workers' runtimes; never empty.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops the worker threads and waits for them (a blocking call: from async code,
    /// run it with `spawn_blocking`). Tasks still running on them are dropped.
    pub fn shutdown(mut self) {
        for (stop, thread) in std::mem::take(&mut self.threads) {
            let _ = stop.send(());
            if thread.join().is_err() {
                tracing::error!("a data-plane worker thread panicked");
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Without joining: a drop may happen on an async thread, which must not block.
        for (stop, _) in self.threads.drain(..) {
            let _ = stop.send(());
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
