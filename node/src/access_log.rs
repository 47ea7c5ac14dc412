//! The access log sink: one line per request, written off the data plane.
//!
//! A request handler formats its line and hands it to a bounded queue; a dedicated thread
//! writes whatever is queued in one `write` and flushes when the queue runs dry. So a
//! request costs a formatted string and a channel send, never a system call, and a slow
//! or blocked destination (a full disk, a stdout pipe nobody reads) never stalls traffic:
//! when the queue is full the line is dropped and counted in
//! `fiberlb_access_log_dropped_total`. `[logging] access_log` picks the destination:
//! `stdout` (default), `off`, or a file path (appended to, reopened on SIGHUP so log
//! rotation works).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

/// Lines that may wait for the writer thread.
const QUEUE: usize = 65_536;
/// Write buffer of the writer thread.
const BUFFER: usize = 256 * 1024;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nowhere.
    Off,
    /// The process's standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

impl Target {
    /// Parses `[logging] access_log`: `off`, `stdout`, or a path.
    pub fn parse(s: &str) -> Self {
        match s {
            "off" | "" => Self::Off,
            "stdout" | "-" => Self::Stdout,
            path => Self::File(PathBuf::from(path)),
        }
    }
}

enum Msg {
    Line(String),
    Reopen,
    Flush(SyncSender<()>),
}

static SINK: OnceLock<SyncSender<Msg>> = OnceLock::new();

/// Starts the writer for `target`. A file that cannot be opened is an error at start-up,
/// not a silent loss later. Only the first call in a process takes effect.
pub fn init(target: &Target) -> io::Result<()> {
    if SINK.get().is_some() {
        return Ok(());
    }
    let out = match target {
        Target::Off => return Ok(()),
        Target::Stdout => Out::Stdout,
        Target::File(p) => Out::File(p.clone(), open(p)?),
    };
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer(rx, out))?;
    let _ = SINK.set(tx);
    Ok(())
}

/// Whether lines are wanted (so callers can skip formatting them).
pub fn enabled() -> bool {
    SINK.get().is_some()
}

/// Queues one line (it must end with `\n`); dropped and counted when the queue is full.
pub fn write(line: String) {
    let Some(tx) = SINK.get() else { return };
    if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Line(line)) {
        metrics::counter!("fiberlb_access_log_dropped_total").increment(1);
    }
}

/// Reopens a file destination (after log rotation moved the old file away).
pub fn reopen() {
    if let Some(tx) = SINK.get() {
        let _ = tx.try_send(Msg::Reopen);
    }
}

/// Waits up to `timeout` for queued lines to be written (at shutdown).
pub fn flush(timeout: Duration) {
    let Some(tx) = SINK.get() else { return };
    let (done_tx, done_rx) = sync_channel(1);
    if tx.try_send(Msg::Flush(done_tx)).is_ok() {
        let _ = done_rx.recv_timeout(timeout);
    }
}

enum Out {
    Stdout,
    File(PathBuf, File),
}

fn open(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", p.display())))
}

fn writer(rx: Receiver<Msg>, out: Out) {
    let (path, mut w): (Option<PathBuf>, BufWriter<Box<dyn Write + Send>>) = match out {
        Out::Stdout => (
            None,
            BufWriter::with_capacity(BUFFER, Box::new(io::stdout())),
        ),
        Out::File(p, f) => (Some(p), BufWriter::with_capacity(BUFFER, Box::new(f))),
    };
    let mut failed = false;
    loop {
        // Block for the first message, then take everything already queued before flushing.
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut next = Some(first);
        while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
            match msg {
                Msg::Line(l) => {
                    if let Err(e) = w.write_all(l.as_bytes()) {
                        if !failed {
                            tracing::error!(error = %e, "writing the access log failed; lines are lost until it works again");
                        }
                        failed = true;
                    } else {
                        failed = false;
                    }
                }
                Msg::Reopen => {
                    if let Some(p) = path.as_ref() {
                        let _ = w.flush();
                        match open(p) {
                            Ok(f) => w = BufWriter::with_capacity(BUFFER, Box::new(f)),
                            Err(e) => {
                                tracing::error!(error = %e, "reopening the access log failed; keeping the old file")
                            }
                        }
                    }
                }
                Msg::Flush(done) => {
                    let _ = w.flush();
                    let _ = done.try_send(());
                }
            }
        }
        let _ = w.flush();
    }
}

/// Appends `s` to `out` as the body of a JSON string (without quotes).
pub fn json_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T19:05:00.123Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_ms(1_795_460_700_123), "2026-11-23T19:05:00.123Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn escapes_json_strings() {
        let mut s = String::new();
        json_escape(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001é");
        let v: serde_json::Value = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn parses_targets() {
        assert_eq!(Target::parse("off"), Target::Off);
        assert_eq!(Target::parse("stdout"), Target::Stdout);
        assert_eq!(
            Target::parse("/var/log/fiberlb/access.log"),
            Target::File("/var/log/fiberlb/access.log".into())
        );
    }
}
