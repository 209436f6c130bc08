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
use crate::proxy::{Credentials, Upstream};
use crate::settings::BffSettings;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::time::Duration;

/// PostgREST, and where its readiness is read.
pub struct Postgrest {
    pub upstream: Upstream,
    /// PostgREST's admin server, whose `/ready` is its readiness.
    admin: Option<Upstream>,
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
            admin: supabase.postgrest_admin_url.as_ref().map(|url| {
                Upstream::new(url, "PostgREST", "postgrest", settings.upstream_timeout, 0)
            }),
        }
    }

    /// PostgREST's readiness: its admin `/ready` when configured (it also checks PostgREST's own
    /// database connection), else that its API answers at all.
    pub async fn ready(&self, within: Duration) -> Result<(), String> {
        let (upstream, method, path) = match &self.admin {
            Some(admin) => (admin, http::Method::GET, "/ready"),
            None => (&self.upstream, http::Method::HEAD, "/"),
        };
        let status = upstream.probe(method, path, within).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "PostgREST is not ready ({}{path}): HTTP {status}",
                upstream.base
            ))
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
    app.postgrest
        .upstream
        .forward(app, request, "/rest/v1", Credentials::Bearer(authorization))
        .await
}
