//! `/rest/v1/*` → PostgREST, as Supabase's gateway does it: the caller is authenticated first,
//! then the request streams through with `/rest/v1` stripped, and the response streams back.
//!
//! What changes on the way: hop-by-hop headers are dropped (RFC 9110 §7.6.1), the browser's
//! `Cookie` never goes upstream, `apikey` is not forwarded (PostgREST does not read it) and
//! `Authorization` carries the verified token. Everything else — `Prefer`, `Range`, `Accept`,
//! `Accept-Profile`, `Content-Profile`, and on the way back `Content-Range`, `Location`,
//! `Preference-Applied` — passes untouched.

use crate::app::App;
use crate::auth;
use crate::body::{Body, BoxError};
use crate::body_limit::{self, SharedBody};
use crate::error::ApiError;
use crate::settings::BffSettings;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::time::Duration;

const UPSTREAM: &str = "PostgREST";

/// The client end towards PostgREST: one pooled HTTP/1.1 client for every request.
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    /// PostgREST's base URL without a trailing slash.
    base: String,
    admin_ready: Option<String>,
    timeout: Duration,
    max_body_bytes: u64,
}

/// The peer address of the connection, put in request extensions by the server.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

impl Upstream {
    pub fn new(settings: &BffSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        let supabase = &settings.supabase;
        Self {
            client,
            base: supabase
                .postgrest_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            admin_ready: supabase
                .postgrest_admin_url
                .as_ref()
                .map(|u| format!("{}/ready", u.as_str().trim_end_matches('/'))),
            timeout: settings.upstream_timeout,
            max_body_bytes: settings.max_body_bytes,
        }
    }

    fn uri(&self, rest_path: &str, query: Option<&str>) -> Result<Uri, ApiError> {
        let path = if rest_path.is_empty() { "/" } else { rest_path };
        let uri = match query {
            Some(q) => format!("{}{path}?{q}", self.base),
            None => format!("{}{path}", self.base),
        };
        uri.parse().map_err(|e| ApiError::UpstreamFailed {
            upstream: UPSTREAM,
            details: format!("bad URI: {e}"),
        })
    }

    /// PostgREST's readiness: its admin `/ready` when configured (it also checks PostgREST's own
    /// database connection), else that its API answers at all.
    pub async fn ready(&self, within: Duration) -> Result<(), String> {
        let (method, uri) = match &self.admin_ready {
            Some(ready) => (http::Method::GET, ready.clone()),
            None => (http::Method::HEAD, format!("{}/", self.base)),
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .body(crate::body::full(""))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(within, self.client.request(request)).await {
            Err(_) => Err(format!(
                "PostgREST did not answer within {} s ({uri})",
                within.as_secs()
            )),
            Ok(Err(e)) => Err(format!(
                "PostgREST is unreachable ({uri}): {}",
                root_cause(&e)
            )),
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(format!(
                "PostgREST is not ready ({uri}): HTTP {}",
                response.status()
            )),
        }
    }
}

/// Handles one `/rest/v1` request.
pub async fn proxy(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let caller = auth::authenticate(request.headers(), &app.api_keys, &app.verifier).await?;
    tracing::debug!(role = %caller.claims.role, user = caller.claims.user_id(), "forwarding to PostgREST");
    let upstream = &app.upstream;
    if declared_length(request.headers()).is_some_and(|len| len > upstream.max_body_bytes) {
        // Answer at once; the body is read and thrown away behind the answer (within caps), so
        // a client still sending can read it before the connection closes.
        tokio::spawn(body_limit::drain_unshared(request.into_body()));
        return Err(ApiError::BodyTooLarge {
            limit: upstream.max_body_bytes,
        });
    }

    let (parts, body) = request.into_parts();
    let rest_path = parts
        .uri
        .path()
        .strip_prefix("/rest/v1")
        .unwrap_or_default();
    let uri = upstream.uri(rest_path, parts.uri.query())?;
    let mut headers = parts.headers;
    strip_request_headers(&mut headers);
    let authorization = HeaderValue::from_str(&format!("Bearer {}", caller.token))
        .map_err(|_| ApiError::NotBearer)?;
    headers.insert(header::AUTHORIZATION, authorization);
    if let Some(PeerAddr(peer)) = parts.extensions.get::<PeerAddr>() {
        if let Ok(value) = HeaderValue::from_str(&peer.ip().to_string()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    // A chunked body that runs past the limit fails while streaming; see `classify`.
    let shared = SharedBody::new(body);
    let limited: Body = shared.limited(upstream.max_body_bytes).boxed();

    let mut upstream_request = Request::new(limited);
    *upstream_request.method_mut() = parts.method;
    *upstream_request.uri_mut() = uri;
    *upstream_request.headers_mut() = headers;

    let response =
        match tokio::time::timeout(upstream.timeout, upstream.client.request(upstream_request))
            .await
        {
            Err(_) => {
                app.metrics.upstream_error("postgrest", "timeout");
                return Err(ApiError::UpstreamTimeout {
                    upstream: UPSTREAM,
                    seconds: upstream.timeout.as_secs_f64(),
                });
            }
            Ok(Err(error)) => {
                let error = classify(app, error, upstream.max_body_bytes);
                if matches!(error, ApiError::BodyTooLarge { .. }) {
                    body_limit::drain(shared).await;
                }
                return Err(error);
            }
            Ok(Ok(response)) => response,
        };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = coalesce_small_body(body, upstream.timeout)
        .await
        .map_err(|e| body_failed(app, upstream, e))?;
    Ok(Response::from_parts(parts, body))
}

/// Up to this much of a response is gathered before the first byte goes out.
const COALESCE_LIMIT: usize = 64 * 1024;

/// PostgREST answers in chunked encoding even for a few bytes, so passing frames through one by
/// one costs a write to the client per frame plus one for the terminator. A response that ends
/// within [`COALESCE_LIMIT`] is gathered and sent as one body with a `Content-Length` (one
/// write, as nginx's `proxy_buffering` does); a longer one sends what was gathered and streams
/// the rest, so memory stays bounded by the limit per request.
///
/// PostgREST must keep the body coming: a pause longer than `idle` between two pieces ends the
/// response (the client sees it cut short, as it would from PostgREST itself).
///
/// Errors come back while nothing has gone to the client yet, so the caller can still answer
/// with a status of its own.
async fn coalesce_small_body(mut body: Incoming, idle: Duration) -> Result<Body, BoxError> {
    let mut gathered = bytes::BytesMut::new();
    let mut held_back = None;
    while gathered.len() <= COALESCE_LIMIT {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(frame) => frame.map(|f| f.map_err(BoxError::from)),
            Err(_) => Some(Err(BoxError::from(crate::body::Stalled(idle)))),
        };
        match frame {
            None => return Ok(crate::body::full(gathered.freeze())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => gathered.extend_from_slice(&data),
                // Trailers (PostgREST sends none) end the gathering and pass on as they came.
                Err(trailers) => {
                    held_back = Some(Ok(Frame::trailers(
                        trailers.into_trailers().unwrap_or_default(),
                    )));
                    break;
                }
            },
            Some(Err(e)) => return Err(e),
        }
    }
    let head = futures_util::stream::iter(
        std::iter::once(Ok(Frame::data(gathered.freeze()))).chain(held_back),
    );
    let rest = BodyStream::new(crate::body::IdleTimeout::new(
        body.map_err(BoxError::from),
        idle,
    ));
    Ok(BodyExt::boxed(StreamBody::new(head.chain(rest))))
}

/// The answer when PostgREST's body failed before anything went to the client.
fn body_failed(app: &App, upstream: &Upstream, error: BoxError) -> ApiError {
    if error.is::<crate::body::Stalled>() {
        app.metrics.upstream_error("postgrest", "timeout");
        return ApiError::UpstreamTimeout {
            upstream: UPSTREAM,
            seconds: upstream.timeout.as_secs_f64(),
        };
    }
    app.metrics.upstream_error("postgrest", "other");
    ApiError::UpstreamFailed {
        upstream: UPSTREAM,
        details: root_cause(&*error),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn classify(app: &App, error: hyper_util::client::legacy::Error, limit: u64) -> ApiError {
    if has_source::<body_limit::TooLarge>(&error) {
        return ApiError::BodyTooLarge { limit };
    }
    if error.is_connect() {
        app.metrics.upstream_error("postgrest", "connect");
        return ApiError::UpstreamDown {
            upstream: UPSTREAM,
            details: root_cause(&error),
        };
    }
    app.metrics.upstream_error("postgrest", "other");
    ApiError::UpstreamFailed {
        upstream: UPSTREAM,
        details: root_cause(&error),
    }
}

fn has_source<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus any the
/// `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
}

/// What of the browser's request must not reach PostgREST.
fn strip_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    // The session cookie belongs to the BFF; PostgREST would expose it to SQL as request.cookies.
    headers.remove(header::COOKIE);
    headers.remove("apikey");
    // The client sets Host for the upstream; Expect is answered by our own server.
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
    // Only the BFF may say who the peer is, and by what name and path it was reached.
    let forwarding: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_forwarding_header(name.as_str()))
        .cloned()
        .collect();
    for name in forwarding {
        headers.remove(name);
    }
}

/// Headers by which proxies and CDNs tell an upstream about the client (its address, the host,
/// scheme, port and path prefix it used): a client must not be able to claim any of them.
fn is_forwarding_header(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded"
                | "x-real-ip"
                | "true-client-ip"
                | "x-client-ip"
                | "x-cluster-client-ip"
                | "cf-connecting-ip"
                | "fastly-client-ip"
                | "x-original-forwarded-for"
                | "x-original-host"
                | "x-original-url"
                | "x-rewrite-url"
                | "x-host"
                | "via"
        )
}

/// True when a path has a `.` or `..` segment, literally or percent-encoded: `/rest/v1/../x`
/// must not reach PostgREST (or anything else) as some other path.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn cookies_credentials_and_hop_by_hop_headers_stay_behind() {
        let mut h = map(&[
            ("cookie", "dana_session=secret"),
            ("apikey", "anon"),
            ("connection", "keep-alive, x-private-hop"),
            ("x-private-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
            ("true-client-ip", "6.6.6.6"),
            ("cf-connecting-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("host", "bff.example.com"),
            ("prefer", "return=representation,count=exact"),
            ("range", "0-9"),
            ("range-unit", "items"),
            ("accept", "application/vnd.pgrst.object+json"),
            ("accept-profile", "public"),
            ("content-profile", "public"),
            ("content-type", "application/json"),
            ("x-client-info", "supabase-js/2"),
        ]);
        strip_request_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "accept",
                "accept-profile",
                "content-profile",
                "content-type",
                "prefer",
                "range",
                "range-unit",
                "x-client-info"
            ]
        );
    }

    #[test]
    fn dot_segments_are_found_in_any_spelling() {
        for path in [
            "/rest/v1/../x",
            "/rest/v1/./tasks",
            "/rest/v1/%2e%2e/x",
            "/rest/v1/.%2E/x",
            "/rest/v1/tasks/..",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/rest/v1/tasks",
            "/rest/v1/rpc/a.b",
            "/rest/v1/...",
            "/rest/v1/",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn postgrest_response_headers_pass() {
        let mut h = map(&[
            ("content-range", "0-9/42"),
            ("range-unit", "items"),
            ("location", "/notes?id=eq.1"),
            ("preference-applied", "return=representation"),
            ("content-profile", "public"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 5);
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none());
    }
}
