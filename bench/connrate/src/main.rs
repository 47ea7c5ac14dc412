//! `connrate`: the compiled load tool of `bench/run.sh`.
//!
//! A script-level client (bash, Python) cannot open tens of thousands of connections a
//! second, so the proxies would all measure the client. This tool is epoll-driven (tokio)
//! and does three things:
//!
//! - `serve`: an echo backend on one or more addresses. It keeps every connection open
//!   until the peer closes it, so it also serves as the "hold" backend of the idle test.
//! - `rate`: `C` concurrent workers, each looping connect → send 1 byte → read the echoed
//!   byte → close, for `T` seconds (optionally paced to `N` connections/s in total). The
//!   echo proves that the proxy really reached a backend: a bare connect only measures
//!   the proxy's kernel accept queue. Prints the successful connections per second.
//!   `--proto http` makes the exchange an HTTP/1.1 `GET` with `Connection: close` (2xx
//!   required); `--proto https` does a full TLS handshake first, never a resumed one
//!   (see `tls`), which is what `bench/run-http.sh` measures handshakes per second with.
//! - `hold`: opens `K` connections, one echo round trip each (or one keep-alive HTTP
//!   request with `--proto http`), prints `held K`, and keeps them open and idle until
//!   killed (or `--hold-secs` elapse).
//!
//! It does not measure latency percentiles or retry: every failure is counted and
//! reported. Keep-alive HTTP load is wrk's and h2load's job.

mod args;
mod hold;
mod http;
mod rate;
mod serve;
mod sock;
mod tls;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  connrate serve --listen ADDR[,ADDR...] [--threads N]
  connrate rate  --addr ADDR [--concurrency C=64] [--duration SECS=5] [--warmup SECS=0.5]
                 [--rate N (total connections/s, default unlimited)] [--threads N=1]
                 [--sources S=0 (spread over S source IPs 127.1.x.y)]
                 [--proto echo|http|https] [--path /] [--host HOST (default ADDR; SNI too)]
  connrate hold  --addr ADDR --count K [--concurrency C=256] [--threads N=1]
                 [--sources S=0] [--hold-secs SECS=600]
                 [--proto echo|http] [--path /] [--host HOST]";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connrate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        args::Command::Serve(o) => serve::run(&o),
        args::Command::Rate(o) => rate::run(&o),
        args::Command::Hold(o) => hold::run(&o),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime with `threads` workers: one thread runs a current-thread runtime,
/// which avoids the work-stealing scheduler's cross-thread wake-ups.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
