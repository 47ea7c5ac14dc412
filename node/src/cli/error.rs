//! The client's error type. Every failure ends as `error: <message>` on stderr and exit
//! code 1 (`main` does that); usage errors are clap's (exit code 2).

use std::path::Path;

use super::apply::plan::PlanError;
use super::document::DocumentError;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error; its message starts with the API error code
    /// (e.g. `LB_NOT_FOUND: ...`).
    #[error("{}", status_message(.0))]
    Status(#[from] tonic::Status),
    /// No connection could be made.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The endpoint dialled.
        endpoint: String,
        /// Why (the transport error with its causes).
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Flags or arguments that parse but make no sense together.
    #[error("{0}")]
    Invalid(String),
    /// A declarative document that cannot be parsed or is inconsistent.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A document that cannot be applied to the current state.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Output could not be encoded.
    #[error("cannot encode output: {0}")]
    Encode(String),
    /// `fiberlb serve` failed.
    #[error("{0:#}")]
    Serve(anyhow::Error),
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A usage error detected after parsing.
    pub fn invalid(msg: impl Into<String>) -> Self {
        CliError::Invalid(msg.into())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Encode(e.to_string())
    }
}

impl From<serde_yaml::Error> for CliError {
    fn from(e: serde_yaml::Error) -> Self {
        CliError::Encode(e.to_string())
    }
}

/// The status message (which carries the API error code), or the gRPC code when the
/// server sent no message.
fn status_message(status: &tonic::Status) -> String {
    let base = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    };
    // Transport failures (a refused TLS client certificate, say) carry the reason only in
    // the source chain; server errors have none.
    match std::error::Error::source(status) {
        Some(src) => format!("{base}: {}", with_causes(src)),
        None => base,
    }
}

/// An error and its causes on one line, `a: b: c`, for transport errors whose top-level
/// message alone ("transport error") says nothing.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        source = s.source();
    }
    msg
}
