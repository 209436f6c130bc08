//! Keep-alive HTTP/1.1 connections to the upstreams (PostgREST, Supabase Auth), pooled per
//! worker thread.
//!
//! The HTTP is hyper's own client connection (`hyper::client::conn::http1`); only the pooling is
//! ours. Why not `hyper_util`'s `legacy::Client`, which pools too: it is built for any number of
//! origins shared by threads (a pool behind a mutex keyed by scheme and authority, SipHash of the
//! key, checkout futures, a connector service), and callgrind counted ~14,000 instructions of
//! it per proxied request, a seventh of the BFF's (BENCHMARKS.md). A worker here is one thread
//! with a current-thread runtime (server.rs) that talks to one or two fixed origins, so a
//! thread-local list of idle connections per origin is all the pooling that is needed, and a
//! connection stays driven by the thread that uses it.

use crate::body::Body;
use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long an idle connection stays reusable. Below the upstreams' own keep-alive timeout
/// (PostgREST closes a connection idle for 30 s): a connection the upstream is closing must not
/// be reused, or the request written on it meets a reset.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections kept per origin and thread; more in flight at once are closed after use.
const MAX_KEPT: usize = 256;

/// Where an upstream listens, and the `Host` its requests carry.
#[derive(Debug)]
pub struct Origin {
    /// `host:port`, which also keys the pool.
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
        Ok(Origin {
            // host_str keeps an IPv6 address's brackets, as a socket address string wants them.
            address: format!("{host}:{port}"),
            host_header: HeaderValue::from_str(&host_header).map_err(|_| unsupported())?,
            transport,
        })
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

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (refused, unresolvable, timed out); nothing was sent.
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection opened but its HTTP/1.1 handshake failed; nothing was sent.
    #[error("connecting to {address}: {source}")]
    Handshake {
        address: String,
        #[source]
        source: hyper::Error,
    },
    /// The request was (or may have been) sent, and failed: reset, closed early, a body error.
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

impl SendError {
    /// True when nothing reached the upstream.
    pub fn is_connect(&self) -> bool {
        !matches!(self, SendError::Request(_))
    }
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

thread_local! {
    /// This thread's connections, by origin address. A handful of origins at most, so a list.
    static POOL: RefCell<Vec<(String, Vec<Idle>)>> = const { RefCell::new(Vec::new()) };
}

/// Sends `request` (origin-form URI, e.g. `/rest?x=1`) to `origin` on a kept connection or a new
/// one, and answers with the response head; the body streams from the connection.
///
/// A kept connection that turns out closed before the request was written (the upstream closed
/// it while idle) costs nothing: the request comes back unsent and goes out on a new connection.
pub async fn send(
    origin: &Origin,
    mut request: Request<Body>,
) -> Result<Response<Incoming>, SendError> {
    request
        .headers_mut()
        .insert(HOST, origin.host_header.clone());
    loop {
        let (mut sender, kept) = match take_idle(origin) {
            Some(sender) => (sender, true),
            None => (connect(origin).await?, false),
        };
        let sent = sender.try_send_request(request);
        // Back at once: it serves the next request when this one is done (`is_ready`).
        keep(origin, sender);
        match sent.await {
            Ok(response) => return Ok(response),
            Err(mut failed) => match failed.take_message() {
                Some(unsent) if kept => request = unsent,
                _ => return Err(SendError::Request(failed.into_error())),
            },
        }
    }
}

/// A kept connection ready for a request, dropping those closed or idle too long.
fn take_idle(origin: &Origin) -> Option<SendRequest<Body>> {
    POOL.with_borrow_mut(|pool| {
        let (_, idle) = pool
            .iter_mut()
            .find(|(address, _)| *address == origin.address)?;
        let now = Instant::now();
        idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < IDLE_TIMEOUT);
        // The most recently used first: its socket is the warmest, and the oldest age out.
        let ready = idle.iter().rposition(|c| c.sender.is_ready())?;
        Some(idle.swap_remove(ready).sender)
    })
}

/// Keeps a connection for later requests (it may still be busy with this one).
fn keep(origin: &Origin, sender: SendRequest<Body>) {
    if sender.is_closed() {
        return;
    }
    let idle = Idle {
        sender,
        since: Instant::now(),
    };
    POOL.with_borrow_mut(|pool| {
        match pool
            .iter_mut()
            .find(|(address, _)| *address == origin.address)
        {
            Some((_, kept)) => {
                if kept.len() >= MAX_KEPT {
                    // The oldest goes; dropping its sender closes it once its response is done.
                    kept.remove(0);
                }
                kept.push(idle);
            }
            None => pool.push((origin.address.clone(), vec![idle])),
        }
    });
}

/// Opens a connection and waits until it takes a request.
async fn connect(origin: &Origin) -> Result<SendRequest<Body>, SendError> {
    let address = &origin.address;
    let connect_failed = |source| SendError::Connect {
        address: address.clone(),
        source,
    };
    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(address.as_str()),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(connect_failed(e)),
        Err(_) => {
            return Err(connect_failed(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            )))
        }
    };
    stream.set_nodelay(true).map_err(connect_failed)?;
    match &origin.transport {
        Transport::Plain => handshake(address, TokioIo::new(stream)).await,
        Transport::Tls { name, config } => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            // Certificate and name checked here: a failure is named like a refused connection.
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(connect_failed)?;
            handshake(address, TokioIo::new(stream)).await
        }
    }
}

/// HTTP/1.1 over an open connection, driven by a task of its own on this thread's runtime.
async fn handshake<I>(address: &str, io: I) -> Result<SendRequest<Body>, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handshake_failed = |source| SendError::Handshake {
        address: address.to_owned(),
        source,
    };
    let (mut sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(handshake_failed)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    sender.ready().await.map_err(handshake_failed)?;
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A request head read off a test upstream's connection; `None` once the client closed it.
    async fn read_head(io: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(head)
    }

    /// An upstream that answers each request on a connection with a fixed 200, and closes the
    /// connection after `per_connection` answers. Counts the connections it accepted.
    async fn upstream(per_connection: usize) -> (Origin, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        if read_head(&mut socket).await.is_none() {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    // Closed without a word, as an upstream ending an idle keep-alive does.
                });
            }
        });
        (Origin::new(&url).unwrap(), accepted)
    }

    async fn get(origin: &Origin) -> Result<http::StatusCode, SendError> {
        let mut request = Request::new(crate::body::full(""));
        *request.uri_mut() = "/x".parse().unwrap();
        let response = send(origin, request).await?;
        let status = response.status();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        Ok(status)
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
                    let Some(head) = read_head(&mut tls).await else {
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
        let mut request = Request::new(crate::body::full(""));
        *request.uri_mut() = "/x".parse().unwrap();
        let response = send(&origin, request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
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
