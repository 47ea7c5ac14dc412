//! Harness of the FiberLB integration tests: starts real `fiberlb serve` processes
//! ([`Node`]), talks to them over gRPC ([`Clients`]), the admin HTTP port ([`http`]) and the
//! command-line client ([`cli`]), and offers the assertions and fixtures the tests share.
//!
//! Every wait is bounded: node start-up by [`node::READY_TIMEOUT`], each RPC by
//! [`client::RPC_TIMEOUT`], each admin request by [`http::HTTP_TIMEOUT`], each CLI run by
//! [`cli::CLI_TIMEOUT`], and a whole test by [`bounded`].

pub mod anycast;
pub mod cli;
pub mod client;
pub mod dns;
pub mod etcd;
pub mod fixtures;
pub mod http;
pub mod l4;
pub mod l7;
pub mod lifecycle;
pub mod metrics;
pub mod netns;
pub mod node;
pub mod pki;

use std::future::Future;
use std::time::Duration;

pub use client::{Clients, Credential};
pub use node::Node;
pub use tonic::{Code, Status};

/// Longest a single test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs a test body, failing it if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<F>(body: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    match tokio::time::timeout(TEST_TIMEOUT, body).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// Asserts that `res` failed with gRPC `code` and a message starting with `prefix`
/// (an error code such as `LB_NOT_FOUND`, or "" to check the gRPC code only); returns the
/// status for further checks.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(res: Result<T, Status>, code: Code, prefix: &str) -> Status {
    match res {
        Ok(v) => panic!("expected {code:?} {prefix}, got success: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "wrong gRPC code; message: {}", s.message());
            assert!(
                s.message().starts_with(prefix),
                "message {:?} does not start with {prefix:?}",
                s.message()
            );
            if !prefix.is_empty() {
                assert!(
                    s.message()[prefix.len()..].starts_with(": "),
                    "message {:?} has no `{prefix}: ` code prefix",
                    s.message()
                );
            }
            s
        }
    }
}

/// A name no other test of this process uses: `{prefix}-{n}`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}
