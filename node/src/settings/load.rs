//! Merging the layers: defaults < TOML file < `FIBERLB_*` environment < flags, while
//! remembering where each overridden key came from so validation errors can say so.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::{Origin, SettingsError};
use super::server::{LogFormat, StorageBackend};
use super::spans::{ancestors, KeySpans};
use super::Settings;

/// Variable naming the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "FIBERLB_CONFIG";

/// One overridable key: its dotted name, environment variable and flag.
struct Knob {
    key: &'static str,
    env: &'static str,
    flag: Option<&'static str>,
}

const KNOBS: &[Knob] = &[
    Knob {
        key: "server.grpc_addr",
        env: "FIBERLB_GRPC_ADDR",
        flag: Some("--grpc-addr"),
    },
    Knob {
        key: "server.metrics_addr",
        env: "FIBERLB_METRICS_ADDR",
        flag: Some("--metrics-addr"),
    },
    Knob {
        key: "logging.level",
        env: "FIBERLB_LOG_LEVEL",
        flag: Some("--log-level"),
    },
    Knob {
        key: "logging.format",
        env: "FIBERLB_LOG_FORMAT",
        flag: Some("--log-format"),
    },
    Knob {
        key: "storage.backend",
        env: "FIBERLB_STORE_BACKEND",
        flag: Some("--store-backend"),
    },
    Knob {
        key: "storage.data_dir",
        env: "FIBERLB_DATA_DIR",
        flag: Some("--data-dir"),
    },
    Knob {
        key: "storage.chainfire_endpoints",
        env: "FIBERLB_CHAINFIRE_ENDPOINTS",
        flag: Some("--chainfire-endpoints"),
    },
    Knob {
        key: "cluster.node_id",
        env: "FIBERLB_NODE_ID",
        flag: Some("--node-id"),
    },
    Knob {
        key: "cluster.gossip_addr",
        env: "FIBERLB_GOSSIP_ADDR",
        flag: Some("--gossip-addr"),
    },
    Knob {
        key: "cluster.peers",
        env: "FIBERLB_PEERS",
        flag: Some("--peer"),
    },
    Knob {
        key: "cluster.key_file",
        env: "FIBERLB_CLUSTER_KEY_FILE",
        flag: Some("--cluster-key-file"),
    },
    Knob {
        key: "cluster.probe_replicas",
        env: "FIBERLB_PROBE_REPLICAS",
        flag: Some("--probe-replicas"),
    },
    Knob {
        key: "proxy.bind_address",
        env: "FIBERLB_BIND_ADDRESS",
        flag: Some("--bind-address"),
    },
];

fn knob(key: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.key == key)
}

/// Flags of `fiberlb serve`. Environment variables are read by [`load`], not by clap, so
/// that a flag always beats a variable and a variable always beats the file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML config file (see node/src/settings/example.toml); else $FIBERLB_CONFIG.
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// gRPC management API listen address [default: 127.0.0.1:6300].
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Admin/metrics HTTP listen address [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log filter: a level or EnvFilter directives, e.g. `info,fiberlb_node=debug`.
    #[arg(short = 'l', long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Data directory of the embedded store [default: ./fiberlb-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration store backend [default: embedded].
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub store_backend: Option<StorageBackend>,
    /// ChainFire/etcd endpoints (`http(s)://host:port` or `host:port`), comma separated
    /// or repeated; replaces the file's list.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub chainfire_endpoints: Vec<String>,
    /// This node's id in the fleet [default: host name].
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// UDP address gossip binds; turns gossip on (needs a cluster key file).
    #[arg(long, value_name = "ADDR")]
    pub gossip_addr: Option<SocketAddr>,
    /// Gossip address of a member to join through; repeat it (or give a comma separated
    /// list) for several. Replaces the file's `cluster.peers`.
    #[arg(long = "peer", value_name = "HOST:PORT", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// File holding the 32-byte cluster key (hex or base64) that seals gossip.
    #[arg(long, value_name = "PATH")]
    pub cluster_key_file: Option<PathBuf>,
    /// Live members probing each backend [default: 2].
    #[arg(long, value_name = "N")]
    pub probe_replicas: Option<usize>,
    /// Bind every listener to this IP instead of its VIP.
    #[arg(long, value_name = "IP")]
    pub bind_address: Option<IpAddr>,
    /// Log format [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Loads settings with the process environment. See [`load_with_env`].
pub fn load(args: &ServeArgs) -> Result<Settings, SettingsError> {
    let mut env = HashMap::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("FIBERLB_")) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(name.to_owned(), value);
            }
            Err(_) if name == CONFIG_ENV || KNOBS.iter().any(|k| k.env == name) => {
                return Err(SettingsError::Invalid {
                    key: knob_key_of_env(name).to_owned(),
                    origin: Origin::Env(name.to_owned()),
                    message: "value is not valid UTF-8".to_owned(),
                });
            }
            // Not ours (e.g. a client-side variable): not our business.
            Err(_) => {}
        }
    }
    load_with_env(args, &env)
}

fn knob_key_of_env(var: &str) -> &'static str {
    KNOBS
        .iter()
        .find(|k| k.env == var)
        .map_or("config", |k| k.key)
}

/// Loads settings: defaults, then the file from `args.config` or `FIBERLB_CONFIG`, then the
/// `FIBERLB_*` variables in `env`, then the flags in `args`; then validates the result.
/// Empty variables count as unset (as systemd and compose files often leave them).
pub fn load_with_env(
    args: &ServeArgs,
    env: &HashMap<String, String>,
) -> Result<Settings, SettingsError> {
    let config = args
        .config
        .clone()
        .or_else(|| env_value(env, CONFIG_ENV).map(PathBuf::from));
    let (mut settings, mut provenance) = match config {
        Some(path) => read_file(&path)?,
        None => (Settings::default(), Provenance::default()),
    };
    Layer::from_env(env)?.apply(&mut settings, &mut provenance, Source::Env);
    Layer::from_args(args).apply(&mut settings, &mut provenance, Source::Flag);
    settings.validate().map_err(|e| provenance.locate(e))?;
    Ok(settings)
}

/// Parses and validates one file alone, with no environment or flags (`fiberlb check-config`).
pub fn check_file(path: &Path) -> Result<Settings, SettingsError> {
    let (settings, provenance) = read_file(path)?;
    settings.validate().map_err(|e| provenance.locate(e))?;
    Ok(settings)
}

/// Parses `text` as a config file named `path` (used by tests and `check_file`).
pub(crate) fn parse_file_text(
    path: &Path,
    text: &str,
) -> Result<(Settings, KeySpans), SettingsError> {
    let parse_error = |e: toml::de::Error, spans: Option<&KeySpans>| {
        let span = e.span();
        let line = span.as_ref().map(|s| match spans {
            Some(spans) => spans.line_of_offset(s.start),
            None => text[..s.start.min(text.len())].matches('\n').count() + 1,
        });
        let key = span
            .zip(spans)
            .and_then(|(s, spans)| spans.key_at(s.start).map(str::to_owned));
        SettingsError::Parse {
            path: path.to_owned(),
            line,
            key,
            message: e.message().trim_end().to_owned(),
        }
    };
    let spans = KeySpans::parse(text).map_err(|e| parse_error(e, None))?;
    let settings = toml::from_str::<Settings>(text).map_err(|e| parse_error(e, Some(&spans)))?;
    Ok((settings, spans))
}

fn read_file(path: &Path) -> Result<(Settings, Provenance), SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let (settings, spans) = parse_file_text(path, &text)?;
    let provenance = Provenance {
        file: Some((path.to_owned(), spans)),
        overridden: HashMap::new(),
    };
    Ok((settings, provenance))
}

/// A list given as one comma separated variable or as repeated/comma separated flags:
/// entries trimmed, empty ones skipped; `None` when nothing is left (the lower layer's list
/// stays, as for any unset knob).
fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    let v: Vec<String> = items
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    (!v.is_empty()).then_some(v)
}

fn env_value<'a>(env: &'a HashMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
}

#[derive(Clone, Copy)]
enum Source {
    Env,
    Flag,
}

/// Which keys the file, environment and flags set.
#[derive(Default)]
pub(crate) struct Provenance {
    file: Option<(PathBuf, KeySpans)>,
    overridden: HashMap<&'static str, Origin>,
}

impl Provenance {
    fn set(&mut self, key: &'static str, source: Source) {
        let origin = match (source, knob(key)) {
            (Source::Env, Some(k)) => Origin::Env(k.env.to_owned()),
            (Source::Flag, Some(Knob { flag: Some(f), .. })) => Origin::Flag((*f).to_owned()),
            _ => Origin::Unknown,
        };
        self.overridden.insert(key, origin);
    }

    /// Fills in where a validation error's value came from.
    pub(crate) fn locate(&self, error: SettingsError) -> SettingsError {
        let SettingsError::Invalid {
            key,
            origin: Origin::Unknown,
            message,
        } = error
        else {
            return error;
        };
        let origin = self.origin_of(&key);
        SettingsError::Invalid {
            key,
            origin,
            message,
        }
    }

    fn origin_of(&self, key: &str) -> Origin {
        for candidate in ancestors(key) {
            if let Some(origin) = self.overridden.get(candidate) {
                return origin.clone();
            }
            if let Some((path, spans)) = &self.file {
                if spans.contains(candidate) {
                    return Origin::File {
                        path: path.clone(),
                        line: spans.line_of_key(candidate),
                    };
                }
            }
        }
        Origin::Default
    }
}

/// The keys that environment variables and flags can override, each optional.
#[derive(Default)]
struct Layer {
    grpc_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    store_backend: Option<StorageBackend>,
    data_dir: Option<PathBuf>,
    chainfire_endpoints: Option<Vec<String>>,
    node_id: Option<String>,
    gossip_addr: Option<SocketAddr>,
    peers: Option<Vec<String>>,
    key_file: Option<PathBuf>,
    probe_replicas: Option<usize>,
    bind_address: Option<IpAddr>,
}

impl Layer {
    fn from_env(env: &HashMap<String, String>) -> Result<Layer, SettingsError> {
        fn parse<T: FromStr>(
            env: &HashMap<String, String>,
            key: &str,
        ) -> Result<Option<T>, SettingsError>
        where
            T::Err: std::fmt::Display,
        {
            let var = knob(key).map_or("", |k| k.env);
            env_value(env, var)
                .map(|raw| {
                    raw.parse::<T>().map_err(|e| SettingsError::Invalid {
                        key: key.to_owned(),
                        origin: Origin::Env(var.to_owned()),
                        message: format!("`{raw}`: {e}"),
                    })
                })
                .transpose()
        }
        let env_list = |key: &str| {
            let var = knob(key).map_or("", |k| k.env);
            env_value(env, var).and_then(|raw| list(raw.split(',')))
        };
        Ok(Layer {
            grpc_addr: parse(env, "server.grpc_addr")?,
            metrics_addr: parse(env, "server.metrics_addr")?,
            log_level: parse(env, "logging.level")?,
            log_format: parse(env, "logging.format")?,
            store_backend: parse(env, "storage.backend")?,
            data_dir: parse(env, "storage.data_dir")?,
            chainfire_endpoints: env_list("storage.chainfire_endpoints"),
            node_id: parse(env, "cluster.node_id")?,
            gossip_addr: parse(env, "cluster.gossip_addr")?,
            peers: env_list("cluster.peers"),
            key_file: parse(env, "cluster.key_file")?,
            probe_replicas: parse(env, "cluster.probe_replicas")?,
            bind_address: parse(env, "proxy.bind_address")?,
        })
    }

    fn from_args(args: &ServeArgs) -> Layer {
        Layer {
            grpc_addr: args.grpc_addr,
            metrics_addr: args.metrics_addr,
            log_level: args.log_level.clone(),
            log_format: args.log_format,
            store_backend: args.store_backend,
            data_dir: args.data_dir.clone(),
            chainfire_endpoints: list(args.chainfire_endpoints.iter().map(String::as_str)),
            node_id: args.node_id.clone(),
            gossip_addr: args.gossip_addr,
            peers: list(args.peers.iter().map(String::as_str)),
            key_file: args.cluster_key_file.clone(),
            probe_replicas: args.probe_replicas,
            bind_address: args.bind_address,
        }
    }

    fn apply(self, s: &mut Settings, provenance: &mut Provenance, source: Source) {
        let mut set = |key: &'static str| provenance.set(key, source);
        if let Some(v) = self.grpc_addr {
            s.server.grpc_addr = v;
            set("server.grpc_addr");
        }
        if let Some(v) = self.metrics_addr {
            s.server.metrics_addr = v;
            set("server.metrics_addr");
        }
        if let Some(v) = self.log_level {
            s.logging.level = v;
            set("logging.level");
        }
        if let Some(v) = self.log_format {
            s.logging.format = v;
            set("logging.format");
        }
        if let Some(v) = self.store_backend {
            s.storage.backend = v;
            set("storage.backend");
        }
        if let Some(v) = self.data_dir {
            s.storage.data_dir = v;
            set("storage.data_dir");
        }
        if let Some(v) = self.chainfire_endpoints {
            s.storage.chainfire_endpoints = v;
            set("storage.chainfire_endpoints");
        }
        if let Some(v) = self.node_id {
            s.cluster.node_id = v;
            set("cluster.node_id");
        }
        if let Some(v) = self.gossip_addr {
            s.cluster.gossip_addr = Some(v);
            set("cluster.gossip_addr");
        }
        if let Some(v) = self.peers {
            s.cluster.peers = v;
            set("cluster.peers");
        }
        if let Some(v) = self.key_file {
            s.cluster.key_file = Some(v);
            set("cluster.key_file");
        }
        if let Some(v) = self.probe_replicas {
            s.cluster.probe_replicas = v;
            set("cluster.probe_replicas");
        }
        if let Some(v) = self.bind_address {
            s.proxy.bind_address = Some(v);
            set("proxy.bind_address");
        }
    }
}
