//! `[iam]`, `[plasmavmc]` and `[flashdns]`: optional integrations with other services of
//! the platform. Each is off while its `endpoint` is unset, so a standalone node needs none.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[iam]`: the platform IAM service (aegis) that validates bearer tokens.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IamSettings {
    /// IAM base URL, `http://` or `https://`. Default none: only tokens and API keys
    /// issued by this FiberLB fleet are accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The service account FiberLB authenticates to IAM as. Default `fiberlb`.
    pub service_account: String,
    /// File with this node's own IAM token (re-read when it changes). Default none;
    /// must exist when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_path: Option<PathBuf>,
}

impl Default for IamSettings {
    fn default() -> Self {
        IamSettings {
            endpoint: None,
            service_account: "fiberlb".to_owned(),
            token_path: None,
        }
    }
}

/// `[plasmavmc]`: the VM service, to resolve backends given as VM ids.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PlasmaVmcSettings {
    /// PlasmaVMC base URL, `http://` or `https://`. Default none (VM backends unsupported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How long a resolved VM address is cached, seconds. Default 30; 0 = no cache.
    pub cache_ttl_seconds: u64,
}

impl Default for PlasmaVmcSettings {
    fn default() -> Self {
        PlasmaVmcSettings {
            endpoint: None,
            cache_ttl_seconds: 30,
        }
    }
}

/// `[flashdns]`: the platform DNS service.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FlashDnsSettings {
    /// FlashDNS API base URL, `http://` or `https://`, to publish LB names. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// DNS server (UDP/TCP `ip:port`) used by DNS health checks and hostname backends.
    /// Default none: the system resolver (`/etc/resolv.conf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_addr: Option<SocketAddr>,
}
