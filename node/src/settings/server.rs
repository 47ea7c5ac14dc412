//! `[server]`, `[storage]`, `[logging]` and `[admin]`: the node's own endpoints, where its
//! configuration lives, how it logs, and who may administer it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `[server]`: the management endpoints of this node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// gRPC management API listen address. Default `127.0.0.1:6300` (local only, so a
    /// fresh node is not exposed before auth is set up). Env `FIBERLB_GRPC_ADDR`,
    /// flag `--grpc-addr`. Port 0 picks a free port (tests).
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address: `/health`, `/ready`, `/metrics`, status page.
    /// Default `127.0.0.1:9090`. Env `FIBERLB_METRICS_ADDR`, flag `--metrics-addr`.
    pub metrics_addr: SocketAddr,
    /// `[server.tls]`: TLS for the gRPC API. Off unless `cert_file` is set.
    pub tls: ServerTlsSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            grpc_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 6300)),
            metrics_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)),
            tls: ServerTlsSettings::default(),
        }
    }
}

/// `[server.tls]`: TLS (and optionally mTLS) for the gRPC API.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsSettings {
    /// PEM certificate chain of the API server. Default none (plaintext gRPC).
    /// Must be set together with `key_file`; the file must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate signed by it (mTLS).
    /// Default none (no client certificates asked for). Needs `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl ServerTlsSettings {
    /// True when the gRPC API serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// Which `ConfigStore` implementation holds the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Single-file ACID store under `storage.data_dir` (single node).
    #[default]
    Embedded,
    /// ChainFire / etcd v3 cluster at `storage.chainfire_endpoints` (a fleet).
    Chainfire,
    /// In memory, lost on exit: tests and demos only.
    Memory,
}

impl StorageBackend {
    /// The spelling used in TOML, env and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Embedded => "embedded",
            StorageBackend::Chainfire => "chainfire",
            StorageBackend::Memory => "memory",
        }
    }
}

impl FromStr for StorageBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "embedded" => Ok(StorageBackend::Embedded),
            "chainfire" => Ok(StorageBackend::Chainfire),
            "memory" => Ok(StorageBackend::Memory),
            other => Err(format!(
                "unknown storage backend `{other}`, expected embedded, chainfire or memory"
            )),
        }
    }
}

/// `[storage]`: where configuration is stored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Store backend. Default `embedded`. Env `FIBERLB_STORE_BACKEND`, flag `--store-backend`.
    pub backend: StorageBackend,
    /// Directory for the embedded store and the bootstrap admin credential; created if
    /// missing. Default `./fiberlb-data` (relative to the working directory).
    /// Env `FIBERLB_DATA_DIR`, flag `--data-dir`.
    pub data_dir: PathBuf,
    /// ChainFire/etcd endpoints, `http(s)://host:port` or `host:port`. Default empty;
    /// required when `backend = "chainfire"`. Env `FIBERLB_CHAINFIRE_ENDPOINTS` (comma separated).
    /// Flag `--chainfire-endpoints` (repeated or comma separated).
    pub chainfire_endpoints: Vec<String>,
    /// ChainFire user name. Default none (no authentication). Needs `chainfire_password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chainfire_username: Option<String>,
    /// File holding the ChainFire password (a file, so it is not in the config or `ps`).
    /// Default none. Needs `chainfire_username`; must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chainfire_password_file: Option<PathBuf>,
    /// PEM CA bundle to verify `https://` ChainFire endpoints. Default none (system roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chainfire_ca_file: Option<PathBuf>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            backend: StorageBackend::Embedded,
            data_dir: PathBuf::from("./fiberlb-data"),
            chainfire_endpoints: Vec::new(),
            chainfire_username: None,
            chainfire_password_file: None,
            chainfire_ca_file: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`, expected text or json"
            )),
        }
    }
}

/// `[logging]`: how the node logs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    /// A `tracing` EnvFilter directive string: a level (`trace`, `debug`, `info`, `warn`,
    /// `error`, `off`) optionally followed by `target=level` pairs, comma separated, e.g.
    /// `info,fiberlb_node::proxy=debug`. Default `info`. Env `FIBERLB_LOG_LEVEL`,
    /// flag `-l/--log-level`.
    pub level: String,
    /// `text` or `json`. Default `text`. Env `FIBERLB_LOG_FORMAT`, flag `--log-format`.
    pub format: LogFormat,
    /// Where the HTTP access log goes (one JSON line per request): `stdout`, `off`, or a
    /// file path (appended to; reopened on SIGHUP for log rotation). Default `stdout`.
    pub access_log: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            level: "info".to_owned(),
            format: LogFormat::Text,
            access_log: "stdout".to_owned(),
        }
    }
}

/// `[admin]`: authentication of the management API.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Reject unauthenticated gRPC calls. Default `false` (the API listens on loopback by
    /// default; set this before exposing it).
    pub require_auth: bool,
    /// File whose content (trimmed) is the bootstrap admin token, instead of one generated
    /// into the data dir on first start. Default none; must exist and be non-empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_token_file: Option<PathBuf>,
}
