//! Structured logs: `RUST_LOG` filters (default `info`), `BFF_LOG_FORMAT=json` for log shippers.
//!
//! Lines are formatted on the request's thread into one shared buffer; a background thread writes
//! the buffer to stdout every [`FLUSH_EVERY`]. So a slow disk or pipe never stalls a request, and
//! a request costs no wake-up of another thread (tracing-appender's non-blocking writer sends
//! each line over a channel and wakes its writer thread per line: callgrind and the gateway
//! benchmark put that among the BFF's per-request costs, BENCHMARKS.md). Lines are lost only when
//! stdout stays blocked past [`MAX_BUFFERED`]; the loss is counted and reported.
//! Keep the returned guard alive until exit so the last lines are written.

use crate::settings::LogFormat;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How often buffered lines go out.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Lines beyond this much unwritten output are dropped (and counted).
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Shared {
    buffer: Mutex<(Vec<u8>, bool)>,
    wake: Condvar,
    dropped: AtomicU64,
}

/// The log sink the subscriber writes into.
#[derive(Clone, Default)]
struct BatchedStdout(Arc<Shared>);

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = BatchedStdout;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for BatchedStdout {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut guard = self.0.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0.len() + line.len() > MAX_BUFFERED {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            guard.0.extend_from_slice(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes what was buffered when dropped, and stops the writer thread.
pub struct LogGuard {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared
            .buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_out(shared: &Shared) -> bool {
    let (pending, stop) = {
        let mut guard = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::take(&mut guard.0);
        (pending, guard.1)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&pending);
    let dropped = shared.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(
            stdout,
            "dana-bff: {dropped} log lines dropped (stdout blocked)"
        );
    }
    let _ = stdout.flush();
    stop
}

/// The sink of this process's logs, once `init_logs` ran.
static SINK: std::sync::OnceLock<BatchedStdout> = std::sync::OnceLock::new();

/// Writes a formatted line (ending in a newline) to the log sink; dropped before `init_logs`.
pub fn write_line(line: &[u8]) {
    if let Some(sink) = SINK.get() {
        let _ = sink.clone().write(line);
    }
}

pub fn init_logs(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let sink = BatchedStdout::default();
    let shared = sink.0.clone();
    let _ = SINK.set(sink.clone());
    let writer = std::thread::Builder::new()
        .name("dana-bff-log".into())
        .spawn({
            let shared = shared.clone();
            move || loop {
                {
                    let guard = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
                    if !guard.1 {
                        let _ = shared.wake.wait_timeout(guard, FLUSH_EVERY);
                    }
                }
                if write_out(&shared) {
                    break;
                }
            }
        })
        .expect("the log writer thread starts");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(sink);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
    LogGuard {
        shared,
        writer: Some(writer),
    }
}
