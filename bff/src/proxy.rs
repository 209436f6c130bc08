//! Forwarding a request to an upstream HTTP service (PostgREST, Supabase Auth) and its answer
//! back, streamed both ways.
//!
//! What changes on the way: hop-by-hop headers are dropped (RFC 9110 §7.6.1), the browser's
//! `Cookie` and `X-CSRF` never go upstream, forwarding headers a client sent are dropped and
//! `X-Forwarded-For` is set from the peer, and the credentials are set by the route
//! ([`Credentials`]). Everything else passes untouched.

use crate::app::App;
use crate::body::{Body, BoxError};
use crate::body_limit::{self, SharedBody};
use crate::error::ApiError;
use crate::upstream_pool::{self, Origin, SendError, UnsupportedUrl};
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Duration;

/// The peer of the connection, put in request extensions by the server: its address as an
/// `X-Forwarded-For` value, formatted once per connection rather than per request.
#[derive(Clone, Debug)]
pub struct PeerAddr {
    pub forwarded_for: Option<HeaderValue>,
}

impl PeerAddr {
    pub fn new(address: SocketAddr) -> PeerAddr {
        PeerAddr {
            forwarded_for: HeaderValue::from_str(&address.ip().to_string()).ok(),
        }
    }
}

/// An upstream service at a base URL.
pub struct Upstream {
    /// Where requests go; an unsupported URL fails each request (and is named at start-up).
    origin: Result<Origin, UnsupportedUrl>,
    /// The base URL's path without a trailing slash ("" for a root).
    base_path: String,
    /// The base URL without a trailing slash.
    pub base: String,
    /// Its name in answers ("PostgREST is unreachable").
    pub name: &'static str,
    /// Its label in metrics.
    pub metric: &'static str,
    pub timeout: Duration,
    pub max_body_bytes: u64,
}

/// What the upstream gets as credentials.
pub enum Credentials {
    /// `Authorization: Bearer <verified token>`; `apikey` is dropped (PostgREST does not read it).
    Bearer(HeaderValue),
    /// `apikey` and `Authorization` as the client sent them (Supabase Auth checks them itself).
    AsSent,
}

impl Upstream {
    pub fn new(
        base: &url::Url,
        name: &'static str,
        metric: &'static str,
        timeout: Duration,
        max_body_bytes: u64,
    ) -> Upstream {
        let origin = Origin::new(base);
        if let Err(e) = &origin {
            tracing::error!(error = %e, upstream = name, "requests to this upstream will fail");
        }
        Upstream {
            origin,
            base_path: base.path().trim_end_matches('/').to_owned(),
            base: base.as_str().trim_end_matches('/').to_owned(),
            name,
            metric,
            timeout,
            max_body_bytes,
        }
    }

    /// The origin-form target (`/base/path?query`) of a request to `path` under the base.
    fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, ApiError> {
        let path = if path.is_empty() && self.base_path.is_empty() {
            "/"
        } else {
            path
        };
        let mut target = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        target.push_str(&self.base_path);
        target.push_str(path);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        Uri::try_from(target).map_err(|e| ApiError::UpstreamFailed {
            upstream: self.name,
            details: format!("bad URI: {e}"),
        })
    }

    /// Sends `request` to `path` under the base and answers with the upstream's response.
    pub async fn forward(
        &self,
        app: &App,
        request: Request<Incoming>,
        path: &str,
        credentials: Credentials,
    ) -> Result<Response<Body>, ApiError> {
        if declared_length(request.headers()).is_some_and(|len| len > self.max_body_bytes) {
            // Answer at once; the body is read and thrown away behind the answer (within caps),
            // so a client still sending can read it before the connection closes.
            tokio::spawn(body_limit::drain_unshared(request.into_body()));
            return Err(ApiError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let (parts, body) = request.into_parts();
        let uri = self.uri(path, parts.uri.query())?;
        let mut headers = parts.headers;
        strip_request_headers(&mut headers);
        if let Credentials::Bearer(authorization) = credentials {
            headers.remove("apikey");
            headers.insert(header::AUTHORIZATION, authorization);
        }
        if parts.method == http::Method::HEAD {
            // PostgREST answers HEAD with neither Content-Length nor chunked encoding and then
            // closes the connection; hyper would pool it as reusable and the next request on it
            // would meet a reset. Asking for the close keeps it out of the pool.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(value) = parts
            .extensions
            .get::<PeerAddr>()
            .and_then(|peer| peer.forwarded_for.clone())
        {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        // A pooled connection the upstream has just closed fails the request written on it
        // ("connection reset"). A request without a body that changes nothing is sent once more,
        // on another connection, as nginx's proxy_next_upstream does; anything else is answered.
        let retry = is_bodiless_and_safe(&parts.method, &headers)
            .then(|| HeadCopy::of(&parts.method, &uri, &headers));

        // A chunked body that runs past the limit fails while streaming; see `classify`.
        let shared = SharedBody::new(body);
        let limited: Body = shared.limited(self.max_body_bytes).boxed();
        let mut upstream_request = Request::new(limited);
        *upstream_request.method_mut() = parts.method;
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = headers;

        let mut sent = self.send(upstream_request).await;
        if let (Ok(Err(error)), Some(copy)) = (&sent, retry) {
            if !error.is_connect() {
                tracing::debug!(error = %root_cause(error), "retrying a bodiless request on another connection");
                sent = self.send(copy.into_request()).await;
            }
        }
        let response = match sent {
            Err(_) => {
                app.metrics.upstream_error(self.metric, "timeout");
                return Err(ApiError::UpstreamTimeout {
                    upstream: self.name,
                    seconds: self.timeout.as_secs_f64(),
                });
            }
            Ok(Err(error)) => {
                let error = classify(app, self, error);
                if matches!(error, ApiError::BodyTooLarge { .. }) {
                    body_limit::drain(shared).await;
                }
                return Err(error);
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        strip_response_headers(&mut parts.headers);
        let body = coalesce_small_body(body, self.timeout)
            .await
            .map_err(|e| body_failed(app, self, e))?;
        Ok(Response::from_parts(parts, body))
    }
}

impl Upstream {
    /// A bodiless request of the BFF's own (readiness), answered with the status or why none
    /// came within `within`.
    pub async fn probe(
        &self,
        method: http::Method,
        path: &str,
        within: Duration,
    ) -> Result<http::StatusCode, String> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::new(crate::body::full(""));
        *request.method_mut() = method;
        *request.uri_mut() = self.uri(path, None).map_err(|e| e.to_string())?;
        // See `forward`: PostgREST closes the connection after a HEAD.
        request
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let origin = self.origin.as_ref().map_err(|e| e.to_string())?;
        match tokio::time::timeout(within, upstream_pool::send(origin, request)).await {
            Err(_) => Err(format!(
                "{} did not answer within {} s ({url})",
                self.name,
                within.as_secs()
            )),
            Ok(Err(e)) => Err(format!(
                "{} is unreachable ({url}): {}",
                self.name,
                root_cause(&e)
            )),
            Ok(Ok(response)) => Ok(response.status()),
        }
    }

    /// One attempt, within the upstream's timeout (`Err` when it ran out).
    async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<Result<Response<Incoming>, SendError>, tokio::time::error::Elapsed> {
        let origin = match &self.origin {
            Ok(origin) => origin,
            Err(unsupported) => {
                return Ok(Err(SendError::Connect {
                    address: self.base.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        unsupported.to_string(),
                    ),
                }))
            }
        };
        tokio::time::timeout(self.timeout, upstream_pool::send(origin, request)).await
    }
}

/// A bodiless request's head, kept to send it once more (see `forward`). The target and the
/// headers are copied into one buffer: a clone of the `HeaderMap` and `Uri` cost ~2,300
/// instructions per request (the first clone of each value parsed off the wire allocates), for
/// a copy that is almost never used.
struct HeadCopy {
    method: http::Method,
    /// The origin-form target, then each header's name and value.
    bytes: Vec<u8>,
    target_end: usize,
    /// Per header: where its name ends and its value ends in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl HeadCopy {
    fn of(method: &http::Method, uri: &Uri, headers: &HeaderMap) -> HeadCopy {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let size = target.len()
            + headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(target.as_bytes());
        let target_end = bytes.len();
        let mut ends = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            bytes.extend_from_slice(name.as_str().as_bytes());
            let name_end = bytes.len();
            bytes.extend_from_slice(value.as_bytes());
            ends.push((name_end, bytes.len()));
        }
        HeadCopy {
            method: method.clone(),
            bytes,
            target_end,
            ends,
        }
    }

    /// The same request again. Every part was valid when copied, so none is dropped.
    fn into_request(self) -> Request<Body> {
        let mut request = Request::new(crate::body::full(""));
        *request.method_mut() = self.method;
        if let Ok(uri) = Uri::try_from(&self.bytes[..self.target_end]) {
            *request.uri_mut() = uri;
        }
        let headers = request.headers_mut();
        let mut start = self.target_end;
        for (name_end, value_end) in self.ends {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&self.bytes[start..name_end]),
                HeaderValue::from_bytes(&self.bytes[name_end..value_end]),
            ) {
                headers.append(name, value);
            }
            start = value_end;
        }
        request
    }
}

/// GET, HEAD and OPTIONS without a body: safe to send twice.
fn is_bodiless_and_safe(method: &http::Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) && !headers.contains_key(header::TRANSFER_ENCODING)
        && declared_length(headers).is_none_or(|len| len == 0)
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
        app.metrics.upstream_error(upstream.metric, "timeout");
        return ApiError::UpstreamTimeout {
            upstream: upstream.name,
            seconds: upstream.timeout.as_secs_f64(),
        };
    }
    app.metrics.upstream_error(upstream.metric, "other");
    ApiError::UpstreamFailed {
        upstream: upstream.name,
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

fn classify(app: &App, upstream: &Upstream, error: SendError) -> ApiError {
    if has_source::<body_limit::TooLarge>(&error) {
        return ApiError::BodyTooLarge {
            limit: upstream.max_body_bytes,
        };
    }
    if error.is_connect() {
        app.metrics.upstream_error(upstream.metric, "connect");
        return ApiError::UpstreamDown {
            upstream: upstream.name,
            details: root_cause(&error),
        };
    }
    app.metrics.upstream_error(upstream.metric, "other");
    ApiError::UpstreamFailed {
        upstream: upstream.name,
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

pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// What of an upstream's answer must not reach the browser: besides the hop-by-hop headers,
/// the upstream's own CORS headers (PostgREST answers any `Origin` with
/// `Access-Control-Allow-Origin: *`). The BFF alone decides CORS, from `BFF_CORS_ORIGINS`.
fn strip_response_headers(headers: &mut HeaderMap) {
    strip(headers, |name| name.as_str().starts_with("access-control-"));
}

/// What of the browser's request must not reach PostgREST.
fn strip_request_headers(headers: &mut HeaderMap) {
    strip(headers, |name| {
        // The session cookie belongs to the BFF (PostgREST would expose it to SQL as
        // request.cookies); the client's Host and Expect are for our own server; only the BFF
        // may say who the peer is, and by what name and path it was reached.
        *name == header::COOKIE
            || *name == crate::auth::CSRF_HEADER
            || *name == header::HOST
            || *name == header::EXPECT
            || is_forwarding_header(name.as_str())
    });
}

/// Removes the headers that describe one connection, not the message (RFC 9110 §7.6.1), those
/// `Connection` names, and those `also` picks. One pass
/// over the names finds them, so a message with none to drop costs no lookups (a `remove` per
/// listed name cost ~18 hash lookups per proxied request: BENCHMARKS.md).
fn strip(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut doomed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    doomed.extend(
        headers
            .keys()
            .filter(|name| is_hop_by_hop(name) || also(name))
            .cloned(),
    );
    for name in doomed {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::PROXY_AUTHENTICATE
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
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
    // A segment that is one or two dots, each written `.` or `%2e`/`%2E`; read in place (every
    // request's path passes here, so no decoded copy is made).
    path.split('/').any(|segment| {
        let mut rest = segment.as_bytes();
        let mut dots = 0;
        while let Some(&first) = rest.first() {
            if first == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3 && first == b'%' && rest[1] == b'2' && rest[2] | 0x20 == b'e'
            {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
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
            ("x-csrf", "1"),
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
    fn a_head_copy_gives_back_the_same_request() {
        let mut headers = map(&[("accept", "application/json"), ("apikey", "k")]);
        headers.append("x-twice", HeaderValue::from_static("1"));
        headers.append("x-twice", HeaderValue::from_static("2"));
        let uri: Uri = "/items?select=id&id=eq.1".parse().unwrap();
        let again = HeadCopy::of(&http::Method::HEAD, &uri, &headers).into_request();
        assert_eq!(again.method(), http::Method::HEAD);
        assert_eq!(again.uri(), &uri);
        assert_eq!(again.headers(), &headers);
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
        strip_response_headers(&mut h);
        assert_eq!(h.len(), 5);
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none());
    }

    #[test]
    fn an_upstreams_cors_headers_stay_behind() {
        let mut h = map(&[
            ("content-type", "application/json"),
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "Content-Range"),
        ]);
        strip_response_headers(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }
}
