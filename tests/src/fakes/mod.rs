//! Fakes of the outside services Dana talks to and that cannot run here: Supabase Auth (GoTrue)
//! and Slack. They speak those services' documented wire formats, refuse what the real ones
//! refuse (a wrong PKCE verifier, a reused refresh token or code, a redirect URI that does not
//! match), and keep their state in memory. Tests start them in-process; the local stack runs them
//! as `dana-fakes auth` and `dana-fakes slack` (src/bin/dana_fakes.rs). They are fakes: never
//! point a production BFF at them.

pub mod slack;
pub mod supabase_auth;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// A request with its body read whole (the fakes take small bodies only).
pub struct FakeRequest {
    pub method: http::Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl FakeRequest {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or as an urlencoded form turned into a JSON object of strings.
    pub fn fields(&self) -> Value {
        if let Ok(json) = serde_json::from_slice::<Value>(&self.body) {
            return json;
        }
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&self.body).unwrap_or_default();
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    }

    pub fn bearer(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
    }
}

pub type FakeResponse = Response<Full<Bytes>>;

pub fn json(status: StatusCode, value: &Value) -> FakeResponse {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn redirect(location: &str) -> FakeResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(location).expect("a valid location"),
    );
    response
}

/// Serves `handler` on `listener` until the process (or the test's runtime) ends.
pub fn serve<H, F>(listener: tokio::net::TcpListener, handler: H)
where
    H: Fn(FakeRequest) -> F + Send + Sync + 'static,
    F: Future<Output = FakeResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let query = url::form_urlencoded::parse(
                                parts.uri.query().unwrap_or("").as_bytes(),
                            )
                            .into_owned()
                            .collect();
                            let request = FakeRequest {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                query,
                                headers: parts.headers,
                                body,
                            };
                            Ok::<_, std::convert::Infallible>(handler(request).await)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A random opaque token.
pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
