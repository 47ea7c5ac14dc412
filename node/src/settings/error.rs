//! Errors of settings loading, each saying where the bad value came from so an operator
//! can fix it without guessing which of file, environment or flag won.

use std::fmt;
use std::path::PathBuf;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Not known: the error came from [`super::Settings::validate`] on settings that were
    /// not loaded through [`super::load()`] (e.g. built in code).
    Unknown,
    /// The built-in default (the key was in no file, variable or flag).
    Default,
    /// A TOML file; `line` is 1-based and points at the key (or its enclosing table).
    File {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the key, when the key (or its table) appears in the file.
        line: Option<usize>,
    },
    /// An environment variable, e.g. `FIBERLB_GRPC_ADDR`.
    Env(String),
    /// A command-line flag, e.g. `--grpc-addr`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Unknown => f.write_str("unknown origin"),
            Origin::Default => f.write_str("built-in default"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{} line {line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

impl Origin {
    /// " (from …)" or nothing when unknown, for embedding in messages.
    fn suffix(&self) -> String {
        match self {
            Origin::Unknown => String::new(),
            other => format!(" (from {other})"),
        }
    }
}

/// Everything that can go wrong while loading or validating settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file is missing or cannot be read (permissions, not UTF-8, a directory).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type, or a key is unknown.
    #[error("config file {}{}: {message}", path.display(), parse_location(.line, .key))]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the error, when toml reported a position.
        line: Option<usize>,
        /// Dotted key at the error position, e.g. `proxy.tcp_nodelay` or `bgp.peers[0].asn`.
        key: Option<String>,
        /// toml's message, e.g. "unknown field `foo`, expected one of …".
        message: String,
    },
    /// A value of the right type that is still wrong (bad CIDR, missing file, hold time 1…).
    #[error("invalid value for `{key}`{}: {message}", origin.suffix())]
    Invalid {
        /// Dotted key, e.g. `cluster.vip_pool` or `bgp.peers[1].hold_time`.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong and, where useful, what is expected.
        message: String,
    },
}

fn parse_location(line: &Option<usize>, key: &Option<String>) -> String {
    let mut out = String::new();
    if let Some(line) = line {
        out.push_str(&format!(" line {line}"));
    }
    if let Some(key) = key {
        out.push_str(&format!(" key `{key}`"));
    }
    out
}

impl SettingsError {
    /// A validation error whose origin is filled in later by the loader.
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError::Invalid {
            key: key.into(),
            origin: Origin::Unknown,
            message: message.into(),
        }
    }

    /// The dotted key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            SettingsError::Read { .. } => None,
            SettingsError::Parse { key, .. } => key.as_deref(),
            SettingsError::Invalid { key, .. } => Some(key),
        }
    }

    /// The 1-based line in the config file, if the error points into one.
    pub fn line(&self) -> Option<usize> {
        match self {
            SettingsError::Read { .. } => None,
            SettingsError::Parse { line, .. } => *line,
            SettingsError::Invalid {
                origin: Origin::File { line, .. },
                ..
            } => *line,
            SettingsError::Invalid { .. } => None,
        }
    }
}
