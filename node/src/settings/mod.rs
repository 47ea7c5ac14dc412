//! Settings of `fiberlb serve`: what a node listens on, where its configuration is stored,
//! data-plane defaults, fleet membership and BGP.
//!
//! Layers, lowest first: built-in defaults < TOML file (`-c/--config` or `FIBERLB_CONFIG`)
//! < `FIBERLB_*` environment variables < command-line flags. The merged result is
//! validated once ([`Settings::validate`]) before anything starts, and every error names
//! the dotted key and where its value came from (file and line, variable, or flag).
//!
//! This module only reads and checks settings; it opens no sockets and creates no
//! directories. Load-balancer objects (listeners, pools, …) are not settings: they are
//! data in the store, written through the API. `example.toml` beside this file documents
//! every key.

mod checks;
mod cluster;
mod error;
mod external;
mod load;
mod proxy;
mod server;
mod spans;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_load;

use serde::{Deserialize, Serialize};

pub use cluster::{BgpPeerSettings, BgpSettings, ClusterSettings};
pub use error::{Origin, SettingsError};
pub use external::{FlashDnsSettings, IamSettings, PlasmaVmcSettings};
pub use load::{check_file, load, load_with_env, ServeArgs, CONFIG_ENV};
pub use proxy::{
    CircuitBreakerSettings, HealthCheckSettings, ProxySettings, ProxyTlsSettings, TlsVersion,
};
pub use server::{
    AdminSettings, LogFormat, LoggingSettings, ServerSettings, ServerTlsSettings, StorageBackend,
    StorageSettings,
};

/// The example config file with every key and a comment per key (`fiberlb` can print it).
pub const EXAMPLE_TOML: &str = include_str!("example.toml");

/// What [`Settings::to_toml`] shows instead of secrets.
const REDACTED: &str = "********";

/// All settings of one node; one field per TOML section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[server]`: gRPC API and admin/metrics addresses, API TLS.
    pub server: ServerSettings,
    /// `[storage]`: configuration store backend.
    pub storage: StorageSettings,
    /// `[proxy]`: data-plane socket and protocol limits.
    pub proxy: ProxySettings,
    /// `[health_check]`: health check defaults and limits.
    pub health_check: HealthCheckSettings,
    /// `[circuit_breaker]`: circuit breaker defaults.
    pub circuit_breaker: CircuitBreakerSettings,
    /// `[iam]`: external IAM integration (off by default).
    pub iam: IamSettings,
    /// `[plasmavmc]`: VM service integration (off by default).
    pub plasmavmc: PlasmaVmcSettings,
    /// `[flashdns]`: DNS service integration (off by default).
    pub flashdns: FlashDnsSettings,
    /// `[logging]`: log filter and format.
    pub logging: LoggingSettings,
    /// `[admin]`: API authentication.
    pub admin: AdminSettings,
    /// `[cluster]`: node id, gossip, VIP pool.
    pub cluster: ClusterSettings,
    /// `[bgp]`: VIP announcement (off by default).
    pub bgp: BgpSettings,
}

impl Settings {
    /// The settings as TOML, for printing the effective configuration. Secrets (BGP
    /// passwords) are replaced by `********`; files holding secrets are shown by path only.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for peer in &mut shown.bgp.peers {
            if peer.password.is_some() {
                peer.password = Some(REDACTED.to_owned());
            }
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# the settings cannot be shown as TOML: {e}\n"))
    }
}
