//! Forwarding a request to an upstream HTTP service (PostgREST, Supabase Auth) and its answer
//! back, streamed both ways.
//!
//! What changes on the way: hop-by-hop headers are dropped (RFC 9110 §7.6.1), the browser's
//! `Cookie` and `X-CSRF` never go upstream, forwarding headers a client sent are dropped and
//! `X-Forwarded-For` is set from the peer, and the credentials are set by the route
//! ([`Credentials`]). Everything else passes untouched.

use crate::access_log::{RequestContext, REQUEST_ID};
use crate::app::App;
use crate::body::{Body, BoxError};
use crate::body_limit::{self, SharedBody};
use crate::error::ApiError;
use crate::upstream::wire::{self, RequestFraming, RequestHead};
use crate::upstream::{self, Origin, SendError, UnsupportedUrl, UpstreamBody};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use std::time::Duration;

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

    /// Sends `request`, its path with `prefix` replaced by the base URL's path, and answers
    /// with the upstream's response.
    pub async fn forward(
        &self,
        app: &App,
        request: Request<Incoming>,
        prefix: &str,
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
        let origin = self.origin(app)?;
        let (parts, body) = request.into_parts();
        let has_body = !body.is_end_stream();
        let head = self.request_head(origin, &parts, prefix, credentials, has_body)?;
        let exchange = upstream::Exchange {
            head: &head,
            // A pooled connection the upstream has just closed fails the request written on it.
            // One that changes nothing is sent once more, on another connection; anything else
            // is answered.
            resend_if_reset: matches!(
                parts.method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            ),
            drop_response_field: is_upstream_private_field,
            timeout: self.timeout,
        };
        // A body that runs past the limit fails while streaming; see `classify`.
        let shared = has_body.then(|| SharedBody::new(body));
        let limited = shared
            .as_ref()
            .map(|shared| shared.limited(self.max_body_bytes));
        let response = match upstream::send(origin, &exchange, limited).await {
            Err(error) => {
                let error = classify(app, self, error);
                if let (ApiError::BodyTooLarge { .. }, Some(shared)) = (&error, shared) {
                    body_limit::drain(shared).await;
                }
                return Err(error);
            }
            Ok(response) => response,
        };
        let (parts, body) = response.into_parts();
        let body = coalesce_small_body(body, self.timeout)
            .await
            .map_err(|e| body_failed(app, self, e))?;
        Ok(Response::from_parts(parts, body))
    }

    /// The origin to dial; an unsupported URL answers as an unreachable upstream.
    fn origin(&self, app: &App) -> Result<&Origin, ApiError> {
        self.origin
            .as_ref()
            .map_err(|unsupported| self.unreachable(app, unsupported.to_string()))
    }

    /// The answer (503) when the upstream cannot be reached, counted.
    fn unreachable(&self, app: &App, details: String) -> ApiError {
        app.metrics.upstream_error(self.metric, "connect");
        ApiError::UpstreamDown {
            upstream: self.name,
            details,
        }
    }

    /// The answer (502) when the upstream failed otherwise, counted.
    fn failed(&self, app: &App, details: String) -> ApiError {
        app.metrics.upstream_error(self.metric, "other");
        ApiError::UpstreamFailed {
            upstream: self.name,
            details,
        }
    }

    /// The answer (504) when the upstream took longer than its timeout, counted.
    fn timed_out(&self, app: &App) -> ApiError {
        app.metrics.upstream_error(self.metric, "timeout");
        ApiError::UpstreamTimeout {
            upstream: self.name,
            seconds: self.timeout.as_secs_f64(),
        }
    }

    /// The head PostgREST (or Supabase Auth) gets: the client's, less what must not go
    /// upstream (hop-by-hop fields, the browser's cookie and CSRF header, forwarding fields, the
    /// client's `Host`), with the route's credentials and the peer's `X-Forwarded-For`. Written
    /// out in one pass over the client's fields.
    fn request_head(
        &self,
        origin: &Origin,
        parts: &http::request::Parts,
        prefix: &str,
        credentials: Credentials,
        has_body: bool,
    ) -> Result<RequestHead, ApiError> {
        let path = parts.uri.path().strip_prefix(prefix).unwrap_or_default();
        let path = if path.is_empty() && self.base_path.is_empty() {
            "/"
        } else {
            path
        };
        let query = parts.uri.query();
        let target = [
            self.base_path.as_str(),
            path,
            if query.is_some() { "?" } else { "" },
            query.unwrap_or_default(),
        ];
        let mut head =
            RequestHead::new(&parts.method, &target, origin.host_header()).map_err(|e| {
                ApiError::UpstreamFailed {
                    upstream: self.name,
                    details: e.to_string(),
                }
            })?;
        // Nearly always none: no list to build then.
        let named = if parts.headers.contains_key(header::CONNECTION) {
            fields_named_by_connection(&parts.headers)
        } else {
            Vec::new()
        };
        let bearer = match credentials {
            Credentials::Bearer(authorization) => Some(authorization),
            Credentials::AsSent => None,
        };
        let context = parts.extensions.get::<RequestContext>();
        let (mut length, mut transfer_coded) = (None, false);
        for (name, value) in &parts.headers {
            if *name == header::CONTENT_LENGTH {
                length = Some(value);
                continue;
            }
            transfer_coded |= *name == header::TRANSFER_ENCODING;
            if wire::is_connection_field(name)
                || is_private_request_field(name)
                // The context's id is this one, or one minted because there was none.
                || context.is_some() && *name == REQUEST_ID
                || named.contains(name)
                || bearer.is_some()
                    && (*name == header::AUTHORIZATION || *name == crate::auth::APIKEY)
            {
                continue;
            }
            head.header(name, value);
        }
        if let Some(authorization) = &bearer {
            head.header(&header::AUTHORIZATION, authorization);
        }
        if let Some(context) = context {
            head.header(&REQUEST_ID, &context.request_id);
            if let Some(forwarded_for) = &context.forwarded_for {
                head.header(&X_FORWARDED_FOR, forwarded_for);
            }
        }
        if parts.method == http::Method::HEAD {
            // PostgREST answers HEAD and then closes the connection: asking for the close keeps
            // a closing connection out of the pool.
            head.close_after();
        }
        // A body the client framed by chunks goes on in chunks, whatever length it also claimed
        // (RFC 9112 §6.3: the length is to be ignored then).
        let framing = match length {
            Some(length) if !transfer_coded => {
                head.header(&header::CONTENT_LENGTH, length);
                RequestFraming::Length
            }
            _ if has_body => RequestFraming::Chunked,
            _ => RequestFraming::None,
        };
        Ok(head.finish(framing))
    }

    /// A bodiless request of the BFF's own (readiness), answered with the status or why none
    /// came within `within`.
    pub async fn probe(
        &self,
        method: http::Method,
        path: &str,
        within: Duration,
    ) -> Result<http::StatusCode, String> {
        let url = format!("{}{path}", self.base);
        let origin = self.origin.as_ref().map_err(|e| e.to_string())?;
        let mut head = RequestHead::new(&method, &[&self.base_path, path], origin.host_header())
            .map_err(|e| e.to_string())?;
        // See `request_head`: PostgREST closes the connection after a HEAD.
        head.close_after();
        let head = head.finish(RequestFraming::None);
        let exchange = upstream::Exchange {
            head: &head,
            resend_if_reset: true,
            drop_response_field: |_| false,
            timeout: within,
        };
        match upstream::send(origin, &exchange, None::<http_body_util::Empty<Bytes>>).await {
            Err(SendError::TimedOut(_)) => Err(format!(
                "{} did not answer within {} s ({url})",
                self.name,
                within.as_secs()
            )),
            Err(e) => Err(format!(
                "{} is unreachable ({url}): {}",
                self.name,
                root_cause(&e)
            )),
            Ok(response) => Ok(response.status()),
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The fields a request's `Connection` header names (none, nearly always): hop-by-hop too.
fn fields_named_by_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .iter()
        .filter(|(name, _)| **name == header::CONNECTION)
        .filter_map(|(_, value)| value.to_str().ok())
        .flat_map(|value| wire::connection_options(value.as_bytes()))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect()
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
async fn coalesce_small_body(mut body: UpstreamBody, idle: Duration) -> Result<Body, BoxError> {
    // The first piece as it came (an answer in one piece is not copied), then all of them.
    let mut first: Option<Bytes> = None;
    let mut gathered = bytes::BytesMut::new();
    let mut size = 0;
    while size <= COALESCE_LIMIT {
        if body.is_end_stream() {
            return Ok(crate::body::full(gathered_bytes(first, gathered)));
        }
        // Most answers are read already: no timer for a piece that is there.
        let frame = match futures_util::FutureExt::now_or_never(body.frame()) {
            Some(frame) => frame,
            None => match tokio::time::timeout(idle, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Err(BoxError::from(crate::body::Stalled(idle))),
            },
        };
        let Some(frame) = frame else {
            return Ok(crate::body::full(gathered_bytes(first, gathered)));
        };
        // An upstream body yields data only (trailers are dropped by the client).
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        size += data.len();
        match first.take() {
            None if gathered.is_empty() => first = Some(data),
            earlier => {
                gathered.extend_from_slice(&earlier.unwrap_or_default());
                gathered.extend_from_slice(&data);
            }
        }
    }
    let head = futures_util::stream::once(std::future::ready(Ok(Frame::data(gathered_bytes(
        first, gathered,
    )))));
    let rest = BodyStream::new(crate::body::IdleTimeout::new(body, idle));
    Ok(BodyExt::boxed(StreamBody::new(head.chain(rest))))
}

fn gathered_bytes(first: Option<Bytes>, gathered: bytes::BytesMut) -> Bytes {
    first.unwrap_or_else(|| gathered.freeze())
}

/// The answer when PostgREST's body failed before anything went to the client.
fn body_failed(app: &App, upstream: &Upstream, error: BoxError) -> ApiError {
    if error.is::<crate::body::Stalled>() {
        return upstream.timed_out(app);
    }
    upstream.failed(app, root_cause(&*error))
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
    if let SendError::TimedOut(_) = error {
        return upstream.timed_out(app);
    }
    if error.is_connect() {
        return upstream.unreachable(app, root_cause(&error));
    }
    upstream.failed(app, root_cause(&error))
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

/// What of an upstream's answer must not reach the browser besides the fields of the
/// connection: the upstream's own CORS headers (PostgREST answers any `Origin` with
/// `Access-Control-Allow-Origin: *`; the BFF alone decides CORS, from `BFF_CORS_ORIGINS`), and
/// its `Server` (PostgREST names itself and its version; nginx's proxy hides it too).
fn is_upstream_private_field(name: &HeaderName) -> bool {
    *name == header::SERVER || name.as_str().starts_with("access-control-")
}

/// What of the browser's request must not reach PostgREST besides the fields of the connection.
/// The session cookie belongs to the BFF (PostgREST would expose it to SQL as
/// request.cookies); the client's Host and Expect are for our own server; only the BFF may say
/// who the peer is, and by what name and path it was reached.
fn is_private_request_field(name: &HeaderName) -> bool {
    *name == header::COOKIE
        || *name == crate::auth::CSRF_HEADER
        || *name == header::HOST
        || *name == header::EXPECT
        || is_forwarding_header(name.as_str())
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
    // Most paths have neither a dot nor a percent sign: one pass over the bytes settles those.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return false;
    }
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

    fn postgrest(base: &str) -> Upstream {
        Upstream::new(
            &base.parse().unwrap(),
            "PostgREST",
            "postgrest",
            Duration::from_secs(1),
            1024,
        )
    }

    /// The head `postgrest` would send for `request`: its request line and its fields, in order.
    fn sent_head(
        upstream: &Upstream,
        request: Request<()>,
        credentials: Credentials,
        has_body: bool,
    ) -> (String, Vec<(String, String)>) {
        let (parts, ()) = request.into_parts();
        let origin = upstream.origin.as_ref().unwrap();
        let head = upstream
            .request_head(origin, &parts, "/rest/v1", credentials, has_body)
            .unwrap();
        let text = String::from_utf8(head.bytes().to_vec()).unwrap();
        let (line, fields) = text.split_once("\r\n").unwrap();
        assert!(fields.ends_with("\r\n\r\n"), "{text}");
        let fields = fields
            .trim_end()
            .lines()
            .map(|field| {
                let (name, value) = field.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        (line.to_owned(), fields)
    }

    fn request(
        method: http::Method,
        uri: &str,
        fields: &[(&'static str, &'static str)],
    ) -> Request<()> {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).unwrap();
        request.extensions_mut().insert(RequestContext {
            request_id: HeaderValue::from_static("minted-id"),
            forwarded_for: Some(HeaderValue::from_static("10.1.2.3")),
        });
        request
    }

    fn names(fields: &[(String, String)]) -> Vec<&str> {
        let mut names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn cookies_credentials_and_hop_by_hop_headers_stay_behind() {
        let fields = [
            ("cookie", "dana_session=secret"),
            ("x-csrf", "1"),
            ("connection", "keep-alive, x-private-hop"),
            ("x-private-hop", "1"),
            ("keep-alive", "timeout=5"),
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
            ("expect", "100-continue"),
            ("prefer", "return=representation,count=exact"),
            ("range", "0-9"),
            ("range-unit", "items"),
            ("accept", "application/vnd.pgrst.object+json"),
            ("accept-profile", "public"),
            ("content-profile", "public"),
            ("content-type", "application/json"),
            ("x-client-info", "supabase-js/2"),
            ("apikey", "the-anon-key"),
            ("authorization", "Bearer the-anon-key"),
            // The request's context holds the id that goes upstream (the access log put this
            // one there, or a minted one when the client sent none): never two.
            ("x-request-id", "minted-id"),
        ];
        let upstream = postgrest("http://127.0.0.1:3000");
        let (line, sent) = sent_head(
            &upstream,
            request(http::Method::GET, "/rest/v1/items?id=eq.1", &fields),
            Credentials::AsSent,
            false,
        );
        assert_eq!(line, "GET /items?id=eq.1 HTTP/1.1");
        assert_eq!(
            names(&sent),
            [
                "accept",
                "accept-profile",
                "apikey",
                "authorization",
                "content-profile",
                "content-type",
                "host",
                "prefer",
                "range",
                "range-unit",
                "x-client-info",
                "x-forwarded-for",
                "x-request-id"
            ]
        );
        let value = |name: &str| {
            sent.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("host"), Some("127.0.0.1:3000"));
        assert_eq!(value("x-forwarded-for"), Some("10.1.2.3"));
        assert_eq!(value("x-request-id"), Some("minted-id"));
    }

    #[test]
    fn a_minted_request_id_goes_upstream_and_without_a_context_the_clients_passes() {
        let upstream = postgrest("http://127.0.0.1:3000");
        let (_, sent) = sent_head(
            &upstream,
            request(http::Method::GET, "/rest/v1/items", &[]),
            Credentials::AsSent,
            false,
        );
        assert!(sent.contains(&("x-request-id".into(), "minted-id".into())));
        let mut bare = Request::builder()
            .uri("/rest/v1/items")
            .header("x-request-id", "given")
            .body(())
            .unwrap();
        bare.extensions_mut().clear();
        let (_, sent) = sent_head(&upstream, bare, Credentials::AsSent, false);
        assert_eq!(names(&sent), ["host", "x-request-id"]);
        assert!(sent.contains(&("x-request-id".into(), "given".into())));
    }

    #[test]
    fn a_verified_token_replaces_the_clients_credentials() {
        let upstream = postgrest("http://127.0.0.1:3000/base/");
        let (line, sent) = sent_head(
            &upstream,
            request(
                http::Method::GET,
                "/rest/v1",
                &[("apikey", "k"), ("authorization", "Bearer client")],
            ),
            Credentials::Bearer(HeaderValue::from_static("Bearer verified")),
            false,
        );
        assert_eq!(line, "GET /base HTTP/1.1");
        assert_eq!(
            names(&sent),
            ["authorization", "host", "x-forwarded-for", "x-request-id"]
        );
        assert!(sent.contains(&("authorization".into(), "Bearer verified".into())));
    }

    #[test]
    fn bodies_are_framed_by_length_or_else_by_chunks() {
        let upstream = postgrest("http://127.0.0.1:3000");
        let framed = |fields: &[(&'static str, &'static str)], has_body: bool| {
            let (_, sent) = sent_head(
                &upstream,
                request(http::Method::POST, "/rest/v1/items", fields),
                Credentials::AsSent,
                has_body,
            );
            sent.into_iter()
                .filter(|(name, _)| name == "content-length" || name == "transfer-encoding")
                .collect::<Vec<_>>()
        };
        assert_eq!(
            framed(&[("content-length", "2")], true),
            [("content-length".to_owned(), "2".to_owned())]
        );
        // Chunked by the client, whatever length it claimed too: chunked upstream, no length.
        assert_eq!(
            framed(
                &[("content-length", "4"), ("transfer-encoding", "chunked")],
                true
            ),
            [("transfer-encoding".to_owned(), "chunked".to_owned())]
        );
        assert_eq!(
            framed(&[], true),
            [("transfer-encoding".to_owned(), "chunked".to_owned())]
        );
        assert!(framed(&[], false).is_empty());
    }

    #[test]
    fn a_head_request_asks_for_the_close() {
        let upstream = postgrest("http://127.0.0.1:3000");
        let (_, sent) = sent_head(
            &upstream,
            request(http::Method::HEAD, "/rest/v1/items", &[]),
            Credentials::AsSent,
            false,
        );
        assert!(sent.contains(&("connection".into(), "close".into())));
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
    fn postgrest_response_headers_pass_but_its_cors_headers_and_server_stay_behind() {
        let raw = "HTTP/1.1 200 OK\r\nserver: postgrest/12.0.2\r\ncontent-type: application/json\r\ncontent-range: 0-9/42\r\nrange-unit: items\r\nlocation: /notes?id=eq.1\r\npreference-applied: return=representation\r\ncontent-profile: public\r\naccess-control-allow-origin: *\r\naccess-control-allow-credentials: true\r\naccess-control-expose-headers: Content-Range\r\ntransfer-encoding: chunked\r\n\r\n";
        let parsed = wire::parse_response_head(&mut bytes::BytesMut::from(raw))
            .unwrap()
            .unwrap();
        let upstream = postgrest("http://127.0.0.1:3000");
        let (parts, ()) = request(http::Method::GET, "/rest/v1/x", &[]).into_parts();
        let head = upstream
            .request_head(
                upstream.origin.as_ref().unwrap(),
                &parts,
                "/rest/v1",
                Credentials::AsSent,
                false,
            )
            .unwrap();
        let answer = wire::answer(&parsed, &head, is_upstream_private_field).unwrap();
        let left: Vec<&str> = answer.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            left,
            [
                "content-type",
                "content-range",
                "range-unit",
                "location",
                "preference-applied",
                "content-profile"
            ]
        );
    }
}
