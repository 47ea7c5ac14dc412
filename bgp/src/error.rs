//! Errors of the BGP crate.

use ipnet::IpNet;

use crate::codec::Notification;

/// Everything that can go wrong in the codec, the session core and the driver.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    /// A peer sent bytes that are not a valid BGP message; `notification` is the answer
    /// RFC 4271 §6 prescribes before closing the connection.
    #[error("malformed BGP message: {reason} (answer {notification})")]
    Malformed {
        /// What was wrong, for logs.
        reason: &'static str,
        /// NOTIFICATION to send to the peer.
        notification: Notification,
    },
    /// A message we were asked to encode would exceed its size limit.
    #[error("BGP message or field of {len} bytes exceeds its limit")]
    TooLong {
        /// Offending length.
        len: usize,
    },
    /// A route handed to `set_routes` cannot be announced.
    #[error("invalid route {prefix}: {reason}")]
    InvalidRoute {
        /// The route's prefix.
        prefix: IpNet,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Invalid speaker or peer configuration.
    #[error("invalid BGP configuration: {0}")]
    Config(String),
    /// Socket error in the driver (binding the listener).
    #[error("BGP socket error: {0}")]
    Io(#[from] std::io::Error),
}
