//! The one response body type the BFF's handlers return: a boxed stream of bytes, so a proxied
//! PostgREST body and a small JSON body the BFF writes itself travel the same way.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json(value: &serde_json::Value) -> Body {
    full(serde_json::to_vec(value).expect("JSON values serialize"))
}

/// A JSON answer the BFF writes itself. `no-store`: these answers are per caller (their rows,
/// their session) and no cache between the browser and the BFF may keep them.
pub fn json_response(status: http::StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    let mut response = http::Response::new(json(value));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The upstream paused longer than allowed between two pieces of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {} s in the middle of a body", .0.as_secs_f64())]
pub struct Stalled(pub std::time::Duration);

/// A body that fails with [`Stalled`] when its inner body yields nothing for `idle`.
pub struct IdleTimeout<B> {
    inner: B,
    idle: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: std::time::Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> hyper::body::Body for IdleTimeout<B>
where
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a small JSON request body (`Content-Type: application/json`, at most `limit` bytes)
/// into `T`. Wrong type, too large, not JSON or a missing or mistyped field each get a 4xx that
/// names the problem (serde's message names the field).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &http::HeaderMap,
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<T, crate::error::ApiError> {
    use crate::error::{ApiError, Problem};
    let is_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        )
        .into());
    }
    let too_large = ApiError::BodyTooLarge {
        limit: limit as u64,
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        tokio::spawn(crate::body_limit::drain_unshared(body));
        return Err(too_large);
    }
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::BodyTooLarge {
                    limit: limit as u64,
                }
            } else {
                Problem::bad_request(format!("the body could not be read: {e}"))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(format!("invalid body: {e}")))
}

/// A request's query string as `T`; a missing or mistyped parameter is a 400 naming it.
pub fn read_query<T: serde::de::DeserializeOwned>(
    uri: &http::Uri,
) -> Result<T, crate::error::ApiError> {
    serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| crate::error::Problem::bad_request(format!("invalid query parameters: {e}")))
}
