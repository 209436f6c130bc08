//! The BFF's HTTP/1.1 client to its upstreams (PostgREST, Supabase Auth): keep-alive
//! connections pooled per worker thread, each exchange driven by the request that makes it.
//!
//! Why not hyper's client (`hyper::client::conn::http1`, used here before, or `hyper_util`'s
//! pooled `legacy::Client` before that): hyper drives each connection in a task of its own and
//! hands requests, answers and every body chunk across channels to it, which wakes two tasks
//! per exchange and moved ~16,000 instructions per proxied request, a quarter of the BFF's
//! (callgrind, BENCHMARKS.md). A proxy's upstream exchange is narrower than what hyper serves:
//! one request at a time per connection, to a fixed origin, whose answer is handed on. So the
//! request is written, and its answer read, by the request's own task; the head is parsed by
//! httparse (hyper's own parser), and only the framing of RFC 9112 is ours (`wire`, tested
//! against the cases of its §6.3). The server side stays hyper's.

mod body;
mod connection;
pub mod wire;

pub use body::UpstreamBody;

use crate::body::BoxError;
use bytes::Bytes;
use connection::Connection;
use http::header::{HeaderName, HeaderValue};
use http::Response;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use wire::{RequestFraming, RequestHead, WireError};

/// Where an upstream listens, and the `Host` its requests carry.
#[derive(Debug)]
pub struct Origin {
    /// Keys this origin's connections in the pool.
    id: usize,
    /// `host:port`.
    address: String,
    host_header: HeaderValue,
    transport: Transport,
}

/// Plain TCP for `http://`, TLS for `https://` (a Supabase project's own URLs).
#[derive(Debug)]
enum Transport {
    Plain,
    Tls {
        /// The name the certificate must carry.
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

/// An upstream URL the pool cannot dial.
#[derive(Debug, thiserror::Error)]
#[error("{0}: only http:// and https:// upstreams with a host are supported")]
pub struct UnsupportedUrl(String);

impl Origin {
    /// The origin of `url`; https is verified against the public web PKI's roots.
    pub fn new(url: &url::Url) -> Result<Origin, UnsupportedUrl> {
        Origin::with_tls(url, public_tls)
    }

    fn with_tls(
        url: &url::Url,
        tls: impl FnOnce() -> Arc<rustls::ClientConfig>,
    ) -> Result<Origin, UnsupportedUrl> {
        let unsupported = || UnsupportedUrl(url.to_string());
        let host = url.host_str().ok_or_else(unsupported)?;
        let port = url.port_or_known_default().ok_or_else(unsupported)?;
        let transport = match url.scheme() {
            "http" => Transport::Plain,
            "https" => {
                let name = match url.host().ok_or_else(unsupported)? {
                    url::Host::Domain(domain) => {
                        ServerName::try_from(domain.to_owned()).map_err(|_| unsupported())?
                    }
                    url::Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                    url::Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
                };
                Transport::Tls {
                    name,
                    config: tls(),
                }
            }
            _ => return Err(unsupported()),
        };
        // The Host header as an HTTP client writes it: the port only when not the default.
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Ok(Origin {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            // host_str keeps an IPv6 address's brackets, as a socket address string wants them.
            address: format!("{host}:{port}"),
            host_header: HeaderValue::from_str(&host_header).map_err(|_| unsupported())?,
            transport,
        })
    }
}

impl Origin {
    /// The `Host` its requests carry.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }
}

/// TLS to upstreams: the public web PKI's roots (webpki-roots, as reqwest here uses), HTTP/1.1
/// by ALPN, rustls on ring. Built once.
fn public_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            tls_config(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

fn tls_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports rustls's default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (refused, unresolvable, timed out, TLS refused); nothing
    /// was sent.
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The request was (or may have been) sent, and no answer came.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No answer's head within the exchange's timeout.
    #[error("no answer within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

impl SendError {
    /// True when nothing reached the upstream.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect { .. })
    }
}

/// What went wrong after a connection was open.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("writing the request: {0}")]
    Write(#[source] std::io::Error),
    /// The client's body failed (it went away, or passed the size limit): its error is the source.
    #[error("reading the request body: {0}")]
    Body(#[source] BoxError),
    #[error("reading the answer: {0}")]
    Read(#[source] std::io::Error),
    #[error("the upstream closed the connection without answering")]
    Closed,
    #[error("the upstream closed the connection in the middle of its answer's head")]
    ClosedInHead,
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// One request to send: its head, and what may be done with it.
pub struct Exchange<'a> {
    pub head: &'a RequestHead,
    /// A kept connection that turns out closed or reset before any answer sends the request
    /// once more, on a new connection: for requests without a body that change nothing (GET,
    /// HEAD, OPTIONS), as nginx's `proxy_next_upstream` does. A request whose head could not be
    /// written at all is always sent again: the upstream cannot have acted on it.
    pub resend_if_reset: bool,
    /// Answer header fields not to hand on, besides those of the connection itself.
    pub drop_response_field: fn(&HeaderName) -> bool,
    /// How long the answer's head may take, from the call to [`send`]: connecting, writing the
    /// request and its body, and reading the head.
    pub timeout: Duration,
}

/// Sends a request to `origin` on a kept connection or a new one, with `body` after the head
/// (`None`: no body), and answers with the response head; the body is read as it is polled.
pub async fn send<B>(
    origin: &Origin,
    exchange: &Exchange<'_>,
    mut body: Option<B>,
) -> Result<Response<UpstreamBody>, SendError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let deadline = tokio::time::Instant::now() + exchange.timeout;
    let timed_out = || SendError::TimedOut(exchange.timeout);
    loop {
        let (mut connection, kept) = match connection::take_idle(origin) {
            Some(connection) => (connection, true),
            None => match tokio::time::timeout_at(deadline, Connection::open(origin)).await {
                Ok(opened) => (opened?, false),
                Err(_) => return Err(timed_out()),
            },
        };
        // The connection's own timer, pushed to this request's deadline: a timer created and
        // dropped per request cost ~1,000 instructions (tokio's wheel entry, BENCHMARKS.md);
        // one that only moves later is not touched in the wheel.
        let mut timer = connection.take_timer(deadline);
        let exchanged = tokio::select! {
            biased;
            exchanged = exchange_on(&mut connection, exchange, body.as_mut()) => Some(exchanged),
            () = timer.as_mut() => None,
        };
        connection.put_timer(timer);
        match exchanged {
            Some(Ok(answer)) => return Ok(answer.into_response(connection, origin)),
            Some(Err(failed)) if kept && failed.may_resend => {
                tracing::debug!(error = %failed.error, "sending again on another connection");
            }
            Some(Err(failed)) => return Err(failed.error.into()),
            // The connection is in the middle of an exchange: it goes with the request.
            None => return Err(timed_out()),
        }
    }
}

/// An exchange that failed, and whether the request may go out again.
struct Failed {
    error: RequestError,
    may_resend: bool,
}

impl Failed {
    fn fatal(error: RequestError) -> Failed {
        Failed {
            error,
            may_resend: false,
        }
    }
}

/// The answer's head, parsed, and whether the connection can carry another request after it.
struct Answered {
    answer: wire::Answer,
    reusable: bool,
}

impl Answered {
    fn into_response(self, connection: Connection, origin: &Origin) -> Response<UpstreamBody> {
        let Answered { answer, reusable } = self;
        let mut response = Response::new(UpstreamBody::new(
            connection,
            answer.framing,
            reusable,
            origin.id,
        ));
        *response.status_mut() = answer.status;
        *response.headers_mut() = answer.headers;
        response
    }
}

async fn exchange_on<B>(
    connection: &mut Connection,
    exchange: &Exchange<'_>,
    body: Option<&mut B>,
) -> Result<Answered, Failed>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let head = exchange.head;
    let written = match connection.write_all(head.bytes()).await {
        Ok(()) if body.is_none() => connection.flush().await,
        other => other,
    };
    if let Err(e) = written {
        return Err(Failed {
            error: RequestError::Write(e),
            may_resend: true,
        });
    }
    let has_body = body.is_some();
    // A body the upstream stopped reading (it may have answered early and closed): its answer,
    // if one came, is still the answer.
    let mut body_unwritten = None;
    if let Some(body) = body {
        match write_body(connection, body, head.framing()).await {
            Ok(()) => {}
            Err(BodyFailed::Client(e)) => return Err(Failed::fatal(RequestError::Body(e))),
            Err(BodyFailed::Upstream(e)) => body_unwritten = Some(e),
        }
    }
    let parsed = match read_head(connection).await {
        Ok(parsed) => parsed,
        Err((error, nothing_came)) => {
            let error = match body_unwritten {
                Some(e) => RequestError::Write(e),
                None => error,
            };
            return Err(Failed {
                may_resend: nothing_came && exchange.resend_if_reset && !has_body,
                error,
            });
        }
    };
    let answer = wire::answer(&parsed, head, exchange.drop_response_field)
        .map_err(|e| Failed::fatal(e.into()))?;
    let reusable = answer.reusable && body_unwritten.is_none();
    Ok(Answered { answer, reusable })
}

enum BodyFailed {
    /// The client's body: gone, or over the limit.
    Client(BoxError),
    /// Writing to the upstream.
    Upstream(std::io::Error),
}

/// Writes the client's body as it arrives, chunk-encoded when its length is unknown.
async fn write_body<B>(
    connection: &mut Connection,
    body: &mut B,
    framing: RequestFraming,
) -> Result<(), BodyFailed>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    use std::io::Write;
    let chunked = framing == RequestFraming::Chunked;
    let mut framed = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyFailed::Client(e.into()))?;
        // Request trailers are not forwarded.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let written = if chunked {
            framed.clear();
            let _ = write!(framed, "{:x}\r\n", data.len());
            framed.extend_from_slice(&data);
            framed.extend_from_slice(b"\r\n");
            connection.write_all(&framed).await
        } else {
            connection.write_all(&data).await
        };
        written.map_err(BodyFailed::Upstream)?;
    }
    if chunked {
        connection
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(BodyFailed::Upstream)?;
    }
    connection.flush().await.map_err(BodyFailed::Upstream)
}

/// Reads up to the end of the final response head (interim 1xx answers are skipped). On
/// failure, also says whether nothing at all had come back.
async fn read_head(
    connection: &mut Connection,
) -> Result<wire::ResponseHead, (RequestError, bool)> {
    let mut received = false;
    loop {
        if !connection.read_buf.is_empty() {
            received = true;
            match wire::parse_response_head(&mut connection.read_buf) {
                Ok(Some(parsed)) if parsed.is_interim() => continue,
                Ok(Some(parsed)) => return Ok(parsed),
                Ok(None) => {}
                Err(e) => return Err((e.into(), false)),
            }
        }
        match connection.fill().await {
            Ok(0) if received => return Err((RequestError::ClosedInHead, false)),
            Ok(0) => return Err((RequestError::Closed, true)),
            Ok(_) => {}
            Err(e) => return Err((RequestError::Read(e), !received)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A request (head and body) read off a test upstream's connection; `None` once the client
    /// closed it. Bodies are read by their `content-length`, or up to the last chunk.
    async fn read_request(io: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        let mut request = Vec::new();
        let complete = |request: &[u8]| {
            let end = request.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|n| n.trim().parse::<usize>().unwrap());
            let done = match length {
                Some(length) => request.len() >= end + length,
                None if head.contains("transfer-encoding: chunked") => {
                    request.ends_with(b"\r\n0\r\n\r\n")
                }
                None => true,
            };
            done.then_some(())
        };
        while complete(&request).is_none() {
            let n = io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            request.extend_from_slice(&buf[..n]);
        }
        Some(request)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// What a scripted upstream does with the n-th request on a connection.
    enum Step {
        Answer(&'static str),
        /// Answers, then closes the connection.
        AnswerAndClose(&'static str),
        /// Closes the connection without a word, as an upstream ending a keep-alive does.
        HangUp,
        /// Answers after a pause.
        AnswerAfter(Duration, &'static str),
        /// Reads the request and never answers.
        Silent,
    }

    /// An upstream that follows `script` on each connection; it counts the connections it
    /// accepted and keeps every request it read.
    async fn scripted(
        script: fn(usize) -> Step,
    ) -> (Origin, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counter, seen) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    for index in 0.. {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&request).into_owned());
                        match script(index) {
                            Step::Answer(answer) => {
                                if socket.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Step::AnswerAndClose(answer) => {
                                let _ = socket.write_all(answer.as_bytes()).await;
                                return;
                            }
                            Step::HangUp => return,
                            Step::AnswerAfter(pause, answer) => {
                                tokio::time::sleep(pause).await;
                                if socket.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Step::Silent => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        (Origin::new(&url).unwrap(), accepted, requests)
    }

    /// An upstream answering every request with `OK`, closing each connection after
    /// `per_connection` answers.
    async fn upstream(per_connection: usize) -> (Origin, Arc<AtomicUsize>) {
        let (origin, accepted, _) = match per_connection {
            1 => {
                scripted(|i| {
                    if i == 0 {
                        Step::Answer(OK)
                    } else {
                        Step::HangUp
                    }
                })
                .await
            }
            _ => scripted(|_| Step::Answer(OK)).await,
        };
        (origin, accepted)
    }

    /// A request without a body, and its answer read whole.
    async fn call(
        origin: &Origin,
        method: http::Method,
        body: Option<&'static str>,
    ) -> Result<(http::StatusCode, Bytes), SendError> {
        call_within(origin, method, body, Duration::from_secs(5)).await
    }

    /// A request to `/x`, with `body` if any, and its answer read whole; `timeout` for the head.
    async fn call_within(
        origin: &Origin,
        method: http::Method,
        body: Option<&'static str>,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), SendError> {
        let mut head = RequestHead::new(&method, &["/x"], origin.host_header()).unwrap();
        let framing = match body {
            Some(body) => {
                head.header(
                    &http::header::CONTENT_LENGTH,
                    &HeaderValue::from(body.len()),
                );
                RequestFraming::Length
            }
            None => RequestFraming::None,
        };
        let head = head.finish(framing);
        let exchange = Exchange {
            head: &head,
            resend_if_reset: body.is_none(),
            drop_response_field: |_| false,
            timeout,
        };
        let body = body.map(|b| http_body_util::Full::new(Bytes::from_static(b.as_bytes())));
        let response = send(origin, &exchange, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok((status, body))
    }

    async fn get(origin: &Origin) -> Result<http::StatusCode, SendError> {
        call(origin, http::Method::GET, None)
            .await
            .map(|(status, _)| status)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sequential_requests_share_one_connection() {
        let (origin, accepted) = upstream(usize::MAX).await;
        for _ in 0..5 {
            assert_eq!(get(&origin).await.unwrap(), 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_kept_connection_the_upstream_closed_is_replaced() {
        let (origin, accepted) = upstream(1).await;
        for _ in 0..3 {
            assert_eq!(get(&origin).await.unwrap(), 200);
            // Let the closing connection's task see the end of its socket.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_get_on_a_connection_closed_before_answering_is_sent_again() {
        let (origin, accepted) = upstream(1).await;
        assert_eq!(get(&origin).await.unwrap(), 200);
        // The kept connection is open and quiet; the upstream hangs up on the request it reads.
        assert_eq!(get(&origin).await.unwrap(), 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_with_a_body_is_never_sent_twice() {
        let (origin, accepted, requests) = scripted(|i| {
            if i == 0 {
                Step::Answer(OK)
            } else {
                Step::HangUp
            }
        })
        .await;
        assert_eq!(get(&origin).await.unwrap(), 200);
        let error = call(&origin, http::Method::POST, Some("{}"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, SendError::Request(RequestError::Closed)),
            "{error}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(requests.lock().unwrap().len(), 2);
        assert!(requests.lock().unwrap()[1].ends_with("\r\n\r\n{}"));
    }

    /// The body of a GET of `/x` with `timeout`.
    async fn get_within(origin: &Origin, timeout: Duration) -> Result<Bytes, SendError> {
        call_within(origin, http::Method::GET, None, timeout)
            .await
            .map(|(_, body)| body)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_request_on_a_kept_connection_gets_the_whole_timeout() {
        // Five answers of 100 ms each on one connection, 300 ms allowed each: the connection's
        // timer moves with every request, so the fifth is not cut off by the first's deadline.
        let (origin, accepted, _) =
            scripted(|_| Step::AnswerAfter(Duration::from_millis(100), OK)).await;
        for _ in 0..5 {
            let body = get_within(&origin, Duration::from_millis(300))
                .await
                .unwrap();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_upstream_that_does_not_answer_times_out_and_its_connection_is_not_kept() {
        let (origin, accepted, _) = scripted(|i| {
            if i == 0 {
                Step::Answer(OK)
            } else {
                Step::Silent
            }
        })
        .await;
        assert_eq!(
            &get_within(&origin, Duration::from_secs(5)).await.unwrap()[..],
            b"ok"
        );
        let started = std::time::Instant::now();
        let error = get_within(&origin, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::TimedOut(_)), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(connection::idle_count(&origin), 0);
        // The next request goes on a new connection, and is answered there.
        assert_eq!(
            &get_within(&origin, Duration::from_secs(5)).await.unwrap()[..],
            b"ok"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn chunked_answers_are_read_whole_and_the_connection_kept() {
        let (origin, accepted, _) = scripted(|_| {
            Step::Answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n")
        })
        .await;
        for _ in 0..3 {
            let (status, body) = call(&origin, http::Method::GET, None).await.unwrap();
            assert_eq!((status.as_u16(), &body[..]), (200, &b"ok!!!"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(connection::idle_count(&origin), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn interim_answers_are_skipped() {
        let (origin, _, _) = scripted(|_| {
            Step::Answer("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
        })
        .await;
        let (status, body) = call(&origin, http::Method::GET, None).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (201, &b"ok"[..]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_whose_framing_is_in_doubt_is_not_kept() {
        // Bytes after the announced end.
        let (origin, _, _) =
            scripted(|_| Step::Answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")).await;
        let (_, body) = call(&origin, http::Method::GET, None).await.unwrap();
        assert_eq!(&body[..], b"ok");
        assert_eq!(connection::idle_count(&origin), 0);
        // A body left unread: its connection closes with it.
        let (origin, _, _) = scripted(|_| Step::Answer(OK)).await;
        let head = RequestHead::new(&http::Method::GET, &["/"], origin.host_header())
            .unwrap()
            .finish(RequestFraming::None);
        let exchange = Exchange {
            head: &head,
            resend_if_reset: true,
            drop_response_field: |_| false,
            timeout: Duration::from_secs(5),
        };
        let response = send(&origin, &exchange, None::<http_body_util::Empty<Bytes>>)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        assert_eq!(connection::idle_count(&origin), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_of_unknown_length_goes_in_chunks() {
        let (origin, _, requests) = scripted(|_| Step::Answer(OK)).await;
        let head = RequestHead::new(&http::Method::POST, &["/rpc/f"], origin.host_header())
            .unwrap()
            .finish(RequestFraming::Chunked);
        let exchange = Exchange {
            head: &head,
            resend_if_reset: false,
            drop_response_field: |_| false,
            timeout: Duration::from_secs(5),
        };
        let frames = futures_util::stream::iter([
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(
                b"{\"a\":",
            ))),
            Ok(hyper::body::Frame::data(Bytes::from_static(b"1}"))),
        ]);
        let body = http_body_util::StreamBody::new(frames);
        let response = send(&origin, &exchange, Some(body)).await.unwrap();
        assert_eq!(response.status(), 200);
        let request = requests.lock().unwrap()[0].clone();
        assert!(
            request.ends_with(
                "transfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"
            ),
            "{request}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_that_does_not_parse_is_an_error_naming_it() {
        let (origin, _, _) =
            scripted(|_| Step::Answer("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n")).await;
        let error = get(&origin).await.unwrap_err();
        assert!(!error.is_connect());
        assert!(error.to_string().contains("Content-Length"), "{error}");
        let (origin, _, _) =
            scripted(|_| Step::AnswerAndClose("HTTP/1.1 200 OK\r\ncontent-len")).await;
        let error = get(&origin).await.unwrap_err();
        assert!(
            matches!(error, SendError::Request(RequestError::ClosedInHead)),
            "{error}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_cut_short_is_an_error_not_a_short_body() {
        let (origin, _, _) = scripted(|_| {
            Step::AnswerAndClose("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
        })
        .await;
        let head = RequestHead::new(&http::Method::GET, &["/"], origin.host_header())
            .unwrap()
            .finish(RequestFraming::None);
        let exchange = Exchange {
            head: &head,
            resend_if_reset: true,
            drop_response_field: |_| false,
            timeout: Duration::from_secs(5),
        };
        let response = send(&origin, &exchange, None::<http_body_util::Empty<Bytes>>)
            .await
            .unwrap();
        let error = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
            .await
            .expect("no hang")
            .unwrap_err();
        assert!(error.is::<body::CutShort>(), "{error}");
    }

    /// An https upstream with a certificate from the test CA (src/testdata), answering 200.
    async fn tls_upstream() -> url::Url {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs =
            vec![CertificateDer::from_pem_slice(include_bytes!("testdata/localhost.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/localhost.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Some(head) = read_request(&mut tls).await else {
                        return;
                    };
                    // The Host header as sent, echoed back in the body.
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let host = head
                        .lines()
                        .find_map(|l| l.strip_prefix("host: "))
                        .unwrap_or("")
                        .to_owned();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{host}",
                        host.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        format!("https://localhost:{port}/").parse().unwrap()
    }

    fn test_ca() -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                rustls::pki_types::CertificateDer::from_pem_slice(include_bytes!(
                    "testdata/ca.pem"
                ))
                .unwrap(),
            )
            .unwrap();
        tls_config(roots)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn https_upstreams_are_reached_over_verified_tls() {
        let url = tls_upstream().await;
        let origin = Origin::with_tls(&url, test_ca).unwrap();
        let (status, body) = call(&origin, http::Method::GET, None).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, format!("localhost:{}", url.port().unwrap()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_untrusted_certificate_is_a_connect_error() {
        let url = tls_upstream().await;
        // The public roots do not include the test CA.
        let error = get(&Origin::new(&url).unwrap()).await.unwrap_err();
        assert!(error.is_connect(), "{error}");
        assert!(
            crate::proxy::root_cause(&error).contains("certificate"),
            "{}",
            crate::proxy::root_cause(&error)
        );
        // Nor does a certificate for localhost serve another name.
        let other: url::Url = url
            .as_str()
            .replace("localhost", "127.0.0.2")
            .parse()
            .unwrap();
        let error = get(&Origin::with_tls(&other, test_ca).unwrap())
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nobody_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: url::Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let error = get(&Origin::new(&url).unwrap()).await.unwrap_err();
        assert!(error.is_connect(), "{error}");
    }

    #[test]
    fn origins_of_upstream_urls() {
        let origin = Origin::new(&"http://127.0.0.1:3000/".parse().unwrap()).unwrap();
        assert_eq!(origin.address, "127.0.0.1:3000");
        assert_eq!(origin.host_header, "127.0.0.1:3000");
        let origin = Origin::new(&"http://postgrest/rest".parse().unwrap()).unwrap();
        assert_eq!(origin.address, "postgrest:80");
        assert_eq!(origin.host_header, "postgrest");
        let origin = Origin::new(&"http://[::1]:9999".parse().unwrap()).unwrap();
        assert_eq!(origin.address, "[::1]:9999");
        assert!(origin.address.parse::<std::net::SocketAddr>().is_ok());
        let origin = Origin::new(&"https://ref.supabase.co/auth/v1".parse().unwrap()).unwrap();
        assert_eq!(origin.address, "ref.supabase.co:443");
        assert_eq!(origin.host_header, "ref.supabase.co");
        assert!(matches!(origin.transport, Transport::Tls { .. }));
        assert!(Origin::new(&"ftp://files.example.com".parse().unwrap()).is_err());
    }
}
