//! `/rest/v1/*` → PostgREST, as Supabase's gateway does it: the caller is authenticated first
//! (Bearer token, session cookie or API key; see `auth`), then the request streams through with
//! `/rest/v1` stripped and the verified token as `Authorization`, and the response streams back
//! (see `proxy` for what changes on the way). `Prefer`, `Range`, `Accept`, `Accept-Profile`,
//! `Content-Profile`, and on the way back `Content-Range`, `Location`, `Preference-Applied`
//! pass untouched.

use crate::app::App;
use crate::auth;
use crate::body::Body;
use crate::error::ApiError;
use crate::proxy::{root_cause, Credentials, Upstream};
use crate::settings::BffSettings;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::time::Duration;

/// PostgREST, and where its readiness is read.
pub struct Postgrest {
    pub upstream: Upstream,
    admin_ready: Option<String>,
}

impl Postgrest {
    pub fn new(settings: &BffSettings) -> Postgrest {
        let supabase = &settings.supabase;
        Postgrest {
            upstream: Upstream::new(
                &supabase.postgrest_url,
                "PostgREST",
                "postgrest",
                settings.upstream_timeout,
                settings.max_body_bytes,
            ),
            admin_ready: supabase
                .postgrest_admin_url
                .as_ref()
                .map(|u| format!("{}/ready", u.as_str().trim_end_matches('/'))),
        }
    }

    /// PostgREST's readiness: its admin `/ready` when configured (it also checks PostgREST's own
    /// database connection), else that its API answers at all.
    pub async fn ready(&self, within: Duration) -> Result<(), String> {
        let (method, uri) = match &self.admin_ready {
            Some(ready) => (http::Method::GET, ready.clone()),
            None => (http::Method::HEAD, format!("{}/", self.upstream.base)),
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .body(crate::body::full(""))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(within, crate::proxy::worker_client().request(request)).await {
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
    let caller = auth::identify(app, request.headers()).await?;
    tracing::debug!(role = %caller.claims.role, user = caller.claims.user_id(), "forwarding to PostgREST");
    // The client's own `Authorization` when it is this token (the common case), else a new one.
    let sent = request.headers().get(http::header::AUTHORIZATION);
    let authorization = match sent {
        Some(value)
            if value.as_bytes().strip_prefix(b"Bearer ") == Some(caller.token.as_bytes()) =>
        {
            value.clone()
        }
        _ => HeaderValue::from_str(&format!("Bearer {}", caller.token))
            .map_err(|_| ApiError::NotBearer)?,
    };
    let path = request
        .uri()
        .path()
        .strip_prefix("/rest/v1")
        .unwrap_or_default()
        .to_owned();
    app.postgrest
        .upstream
        .forward(app, request, &path, Credentials::Bearer(authorization))
        .await
}
