//! The request's context (its id and its peer) and the access log.
//!
//! Every request gets an `X-Request-Id` (see [`REQUEST_ID`]) and its answer carries it back; in
//! one layer with the log line rather than tower-http's two request-id layers, whose futures and
//! request extension cost ~2,000 instructions per request more (BENCHMARKS.md). The id and the
//! peer's address travel to the proxy in one request extension, [`RequestContext`], which writes
//! them into the upstream's request head (no insert into the client's header map, which grew
//! and rehashed it: ~800 instructions).
//!
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
use std::net::SocketAddr;
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
            forwarded_for: None,
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    format: Option<LogFormat>,
    /// The connection's peer as an `X-Forwarded-For` value (see [`AccessLog::for_peer`]).
    forwarded_for: Option<HeaderValue>,
}

impl<S: Clone> AccessLog<S> {
    /// The service for one connection from `peer`: its address formatted once here, not per
    /// request.
    pub fn for_peer(&self, peer: SocketAddr) -> AccessLog<S> {
        AccessLog {
            forwarded_for: HeaderValue::from_str(&peer.ip().to_string()).ok(),
            ..self.clone()
        }
    }
}

/// What the BFF tells an upstream about a request it forwards, in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The client's own `X-Request-Id`, or the one minted for it.
    pub request_id: HeaderValue,
    /// The peer's address, for `X-Forwarded-For`.
    pub forwarded_for: Option<HeaderValue>,
}

/// What the line needs from the request (cheap clones: `Uri` and `HeaderValue` share bytes).
struct Pending {
    format: LogFormat,
    started: Instant,
    method: Method,
    uri: Uri,
    request_id: HeaderValue,
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let request_id = match request.headers().get(REQUEST_ID) {
            Some(given) => given.clone(),
            None => new_request_id(),
        };
        request.extensions_mut().insert(RequestContext {
            request_id: request_id.clone(),
            forwarded_for: self.forwarded_for.clone(),
        });
        let pending = self.format.map(|format| Pending {
            format,
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id: request_id.clone(),
        });
        AccessLogFuture {
            inner: self.inner.call(request),
            pending,
            request_id: Some(request_id),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
        request_id: Option<HeaderValue>,
    }
}

/// The request id header: the client's own when it sent one (so a trace spans its systems),
/// else a new random (v4) UUID; PostgREST gets it, and so does the answer.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A new request id, written into a stack buffer (no `fmt`, no `String`).
fn new_request_id() -> HeaderValue {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    HeaderValue::from_str(id).expect("a hyphenated uuid is a valid header value")
}

impl<F, RB, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut output = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut output {
            if let Some(id) = this.request_id.take() {
                if !response.headers().contains_key(REQUEST_ID) {
                    response.headers_mut().insert(REQUEST_ID, id);
                }
            }
            if let Some(pending) = this.pending.take() {
                write_line(&pending, response.status().as_u16());
            }
        }
        Poll::Ready(output)
    }
}

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The last second's `YYYY-MM-DDTHH:MM:SS`, by its Unix second: formatting a date costs
    /// more than the rest of the line, and it changes once a second.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Writes the UTC time as RFC 3339 with microseconds (`2026-11-23T10:00:00.123456Z`).
fn write_timestamp(line: &mut Vec<u8>, now: std::time::SystemTime) {
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != seconds || text.is_empty() {
            *cached = seconds;
            *text = chrono::DateTime::from_timestamp(seconds as i64, 0)
                .map(|time| time.format("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default();
        }
        line.extend_from_slice(text.as_bytes());
    });
    // The microseconds as six digits, written by hand: `write!` cost ~400 instructions.
    let mut micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 8];
    digits[0] = b'.';
    digits[7] = b'Z';
    for digit in digits[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    line.extend_from_slice(&digits);
}

fn write_line(pending: &Pending, status: u16) {
    // Whole microseconds, written as milliseconds with three decimals. The line is put together
    // from its pieces: `write!` with float formatting cost ~4,000 instructions per request.
    let micros = pending.started.elapsed().as_micros();
    let (whole_ms, fraction) = (micros / 1000, (micros % 1000) as u16);
    let fraction = [
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    let request_id = pending.request_id.to_str().unwrap_or("");
    let path = pending.uri.path();
    let mut number = itoa::Buffer::new();
    LINE.with_borrow_mut(|line| {
        line.clear();
        match pending.format {
            LogFormat::Text => {
                write_timestamp(line, std::time::SystemTime::now());
                line.extend_from_slice(b"  INFO request: method=");
                line.extend_from_slice(pending.method.as_str().as_bytes());
                line.extend_from_slice(b" path=");
                line.extend_from_slice(path.as_bytes());
                line.extend_from_slice(b" status=");
                line.extend_from_slice(number.format(status).as_bytes());
                line.extend_from_slice(b" latency_ms=");
                line.extend_from_slice(number.format(whole_ms).as_bytes());
                line.push(b'.');
                line.extend_from_slice(&fraction);
                line.extend_from_slice(b" request_id=");
                line.extend_from_slice(request_id.as_bytes());
                line.push(b'\n');
            }
            LogFormat::Json => {
                line.extend_from_slice(br#"{"timestamp":""#);
                write_timestamp(line, std::time::SystemTime::now());
                line.extend_from_slice(br#"","level":"INFO","message":"request","method":"#);
                let _ = serde_json::to_writer(&mut *line, pending.method.as_str());
                line.extend_from_slice(br#","path":"#);
                let _ = serde_json::to_writer(&mut *line, path);
                line.extend_from_slice(br#","status":"#);
                line.extend_from_slice(number.format(status).as_bytes());
                line.extend_from_slice(br#","latency_ms":"#);
                line.extend_from_slice(number.format(whole_ms).as_bytes());
                line.push(b'.');
                line.extend_from_slice(&fraction);
                line.extend_from_slice(br#","request_id":"#);
                let _ = serde_json::to_writer(&mut *line, request_id);
                line.extend_from_slice(b"}\n");
            }
        }
        crate::telemetry::write_line(line);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_795_394_977_000_042);
        let mut line = Vec::new();
        write_timestamp(&mut line, at);
        // The cached second is reused within the same second, and replaced on the next.
        write_timestamp(&mut line, at + std::time::Duration::from_micros(5));
        write_timestamp(&mut line, at + std::time::Duration::from_secs(1));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "2026-11-23T00:49:37.000042Z2026-11-23T00:49:37.000047Z2026-11-23T00:49:38.000042Z"
        );
    }

    #[test]
    fn json_lines_escape_the_path() {
        let pending = Pending {
            format: LogFormat::Json,
            started: Instant::now(),
            method: Method::GET,
            uri: "/rest/v1/a%22b".parse().unwrap(),
            request_id: HeaderValue::from_static("id-1"),
        };
        write_line(&pending, 200);
        let line = LINE.with_borrow(|l| String::from_utf8(l.clone()).unwrap());
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["path"], "/rest/v1/a%22b");
        assert_eq!(value["status"], 200);
        assert_eq!(value["request_id"], "id-1");
        assert!(value["latency_ms"].as_f64().is_some());
    }

    #[test]
    fn text_lines_carry_every_field() {
        let pending = Pending {
            format: LogFormat::Text,
            started: Instant::now() - std::time::Duration::from_micros(12_045),
            method: Method::POST,
            uri: "/rest/v1/items?secret=1".parse().unwrap(),
            request_id: HeaderValue::from_static("id-2"),
        };
        write_line(&pending, 201);
        let line = LINE.with_borrow(|l| String::from_utf8(l.clone()).unwrap());
        let (_, rest) = line.split_once("  INFO request: ").unwrap();
        assert!(
            rest.starts_with("method=POST path=/rest/v1/items status=201 latency_ms=12.0"),
            "{rest}"
        );
        assert!(rest.ends_with(" request_id=id-2\n"), "{rest}");
        assert!(
            !line.contains("secret"),
            "the query string stays out: {line}"
        );
    }
}
