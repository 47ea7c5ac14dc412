//! Log setup: `tracing` to stderr, text or JSON, filtered by `[logging] level`, with a
//! reload handle so SIGHUP can change the level without a restart.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::settings::{LogFormat, LoggingSettings};

/// Changes the active log filter.
#[derive(Clone)]
pub struct LogHandle(Option<reload::Handle<EnvFilter, Registry>>);

impl LogHandle {
    /// Applies a new `[logging] level`.
    pub fn set_level(&self, level: &str) -> anyhow::Result<()> {
        let filter =
            EnvFilter::try_new(level).with_context(|| format!("logging.level {level:?}"))?;
        if let Some(h) = &self.0 {
            h.reload(filter).context("reloading the log filter")?;
        }
        Ok(())
    }
}

/// Installs the global subscriber. A second call (tests running nodes in-process) keeps
/// the first subscriber and returns a handle that changes nothing.
pub fn init(s: &LoggingSettings) -> anyhow::Result<LogHandle> {
    let filter =
        EnvFilter::try_new(&s.level).with_context(|| format!("logging.level {:?}", s.level))?;
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let installed = match s.format {
        LogFormat::Json => Registry::default()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => Registry::default()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .try_init(),
    };
    Ok(LogHandle(installed.is_ok().then_some(handle)))
}
