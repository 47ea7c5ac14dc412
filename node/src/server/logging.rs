//! Log setup: `tracing` to stderr, text or JSON, filtered by `[logging] level`.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LoggingSettings};

/// Installs the global subscriber (a second call, e.g. in tests, is a no-op).
pub fn init(s: &LoggingSettings) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&s.level).with_context(|| format!("logging.level {:?}", s.level))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match s.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}
