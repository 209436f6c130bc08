//! The access log: one line per request — method, path (never the query string: it carries
//! filter values, which may be personal data), status, latency, request id — in the log format of
//! the rest (`text` or `json`), written into the same batched sink (see `telemetry`).
//!
//! A tower layer of its own rather than tower-http's `TraceLayer`: that one opens a `tracing`
//! span per request and formats the response as a `tracing` event, which callgrind put at ~17,000
//! instructions of the ~125,000 a proxied request cost (BENCHMARKS.md); this formats one line
//! with no span, no event dispatch and no per-field `Debug`. On at the `info` level (`RUST_LOG`).

use crate::settings::LogFormat;
use http::{HeaderValue, Method, Request, Response, Uri};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[derive(Clone, Copy)]
pub struct AccessLogLayer {
    format: Option<LogFormat>,
}

impl AccessLogLayer {
    /// Logs in `format` when the `info` level is enabled.
    pub fn new(format: LogFormat) -> Self {
        let enabled = tracing::enabled!(tracing::Level::INFO);
        Self {
            format: enabled.then_some(format),
        }
    }
}

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            format: self.format,
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    format: Option<LogFormat>,
}

/// What the line needs from the request (cheap clones: `Uri` and `HeaderValue` share bytes).
struct Pending {
    format: LogFormat,
    started: Instant,
    method: Method,
    uri: Uri,
    request_id: Option<HeaderValue>,
}

impl<S, B, RB> tower::Service<Request<B>> for AccessLog<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pending = self.format.map(|format| Pending {
            format,
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id: request.headers().get(crate::server::REQUEST_ID).cloned(),
        });
        AccessLogFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, RB, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Some(pending), Ok(response)) = (this.pending.take(), &output) {
            write_line(&pending, response.status().as_u16());
        }
        Poll::Ready(output)
    }
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn write_line(pending: &Pending, status: u16) {
    use std::fmt::Write;
    let latency_ms = pending.started.elapsed().as_secs_f64() * 1000.0;
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let request_id = pending
        .request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = pending.uri.path();
    LINE.with_borrow_mut(|line| {
        line.clear();
        let _ = match pending.format {
            LogFormat::Text => writeln!(
                line,
                "{timestamp}  INFO request: method={} path={path} status={status} latency_ms={latency_ms:.3} request_id={request_id}",
                pending.method
            ),
            LogFormat::Json => writeln!(
                line,
                r#"{{"timestamp":"{timestamp}","level":"INFO","message":"request","method":"{}","path":{},"status":{status},"latency_ms":{latency_ms:.3},"request_id":{}}}"#,
                pending.method,
                serde_json::Value::from(path),
                serde_json::Value::from(request_id)
            ),
        };
        crate::telemetry::write_line(line.as_bytes());
    });
}
