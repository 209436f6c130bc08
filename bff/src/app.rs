//! The gateway's shared state and its router: one match on the path, each route family in its
//! own module under `routes/`. Cross-cutting concerns (CORS, request ids, access logs) are tower
//! layers in `server.rs`; metrics are taken here because they need the route family.

use crate::auth::ApiKeys;
use crate::body::Body;
use crate::db::Db;
use crate::error::ApiError;
use crate::integrations::oauth::OAuthInstalls;
use crate::integrations::slack::{provider_http_client, SlackApi};
use crate::integrations::Integrations;
use crate::knowledge::KnowledgeFiles;
use crate::metrics::{Metrics, Route};
use crate::proxy::{self, Upstream};
use crate::routes::health::{self, ReadinessCache};
use crate::routes::{
    auth_proxy, bff, integrations, knowledge, metrics as metrics_route, rest, slack, storage_api,
};
use crate::session::Sessions;
use crate::settings::BffSettings;
use dana_supabase::auth::AuthApi;
use dana_supabase::JwtVerifier;
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

pub struct App {
    pub settings: BffSettings,
    pub verifier: JwtVerifier,
    pub api_keys: ApiKeys,
    pub postgrest: rest::Postgrest,
    /// Supabase Auth, for `/auth/v1` passthrough; `None` without `SUPABASE_AUTH_URL`.
    pub auth_upstream: Option<Upstream>,
    /// Sign-in sessions; `None` without `SUPABASE_AUTH_URL` and `BFF_SESSION_KEY`.
    pub sessions: Option<Sessions>,
    pub metrics: Metrics,
    pub readiness: ReadinessCache,
    pub knowledge: KnowledgeFiles,
    pub integrations: Integrations,
    pub oauth: OAuthInstalls,
    /// Slack's Web API, called with each user's own stored token.
    pub slack: SlackApi,
}

/// What can keep the BFF from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("token verification: {0}")]
    Jwt(#[from] dana_supabase::JwtError),
    #[error("Supabase Auth client: {0}")]
    Auth(#[from] dana_supabase::auth::AuthError),
    #[error("BFF_DB_URL: {0}")]
    Db(#[from] crate::db::DbError),
}

/// Connections of the BFF's own pool (the `dana_bff` login's limit is 20).
const DB_POOL_SIZE: usize = 10;

impl App {
    pub fn new(settings: BffSettings) -> Result<Self, SetupError> {
        let verifier = JwtVerifier::new(&settings.supabase.jwt)?;
        let db = Db::new(&settings.supabase.db_url, DB_POOL_SIZE)?;
        let store = settings
            .storage
            .as_ref()
            .map(dana_storage::KnowledgeStore::new);
        let knowledge = KnowledgeFiles::new(db.clone(), store, settings.knowledge.clone());
        let api_keys = ApiKeys {
            anon: settings.supabase.anon_key.clone(),
            service_role: settings.supabase.service_role_key.clone(),
        };
        let postgrest = rest::Postgrest::new(&settings);
        let auth_upstream = settings.sessions.as_ref().map(|s| {
            Upstream::new(
                &s.auth_url,
                "Supabase Auth",
                "auth",
                settings.upstream_timeout,
                settings.max_body_bytes,
            )
        });
        let sessions = match &settings.sessions {
            Some(s) => Some(Sessions::new(
                db.clone(),
                AuthApi::new(&s.auth_url, &settings.supabase.anon_key)?,
                s.key,
                s.lifetime,
                s.refresh_margin,
            )),
            None => None,
        };
        let provider_http = provider_http_client();
        let integrations = Integrations::new(db.clone());
        let oauth = OAuthInstalls::new(settings.providers.clone(), provider_http.clone());
        let slack = SlackApi::new(&settings.slack_api_url, provider_http);
        Ok(Self {
            integrations,
            oauth,
            slack,
            settings,
            verifier,
            api_keys,
            postgrest,
            auth_upstream,
            sessions,
            metrics: Metrics::default(),
            readiness: ReadinessCache::default(),
            knowledge,
        })
    }
}

/// Routes one request. Never fails: every error becomes a JSON response.
///
/// Each route's future is boxed: unboxed, this future would be as large as the largest route's
/// (an upload's state runs to kilobytes), and every layer of the server moves it by value, which
/// callgrind showed as a quarter of the instructions of a proxied request (BENCHMARKS.md).
pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path();
    let (route, result) = if let Err(refused) = check_head(&app, &request) {
        (Route::Refused, Err(refused))
    } else if path == "/rest/v1" || path.starts_with("/rest/v1/") {
        (Route::Rest, Box::pin(rest::proxy(&app, request)).await)
    } else if path == "/api/knowledge/files" || path.starts_with("/api/knowledge/files/") {
        (
            Route::Knowledge,
            Box::pin(knowledge::route(&app, request)).await,
        )
    } else if path == "/auth/v1" || path.starts_with("/auth/v1/") {
        (
            Route::Auth,
            Box::pin(auth_proxy::proxy(&app, request)).await,
        )
    } else if path == "/bff" || path.starts_with("/bff/") {
        (Route::Bff, Box::pin(bff::route(&app, request)).await)
    } else if path == "/api/integrations" || path.starts_with("/api/integrations/") {
        (
            Route::Integrations,
            Box::pin(integrations::route(&app, request)).await,
        )
    } else if path.starts_with("/api/slack/") {
        (Route::Slack, Box::pin(slack::route(&app, request)).await)
    } else if path.starts_with("/storage/v1/") {
        (
            Route::Storage,
            Ok(Box::pin(storage_api::route(&app, request)).await),
        )
    } else {
        match path {
            "/healthz" => (Route::Healthz, Ok(health::healthz())),
            "/readyz" => (
                Route::Readyz,
                Ok(Box::pin(health::readyz(&app, request.headers())).await),
            ),
            "/metrics" => (
                Route::Metrics,
                metrics_route::render(&app, request.headers()),
            ),
            other => (Route::NotFound, Err(ApiError::NotFound(other.to_owned()))),
        }
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    app.metrics
        .observe_request(route, &method, response.status(), started.elapsed());
    Ok(response)
}

/// Checks every request's head before it is routed: its size against `BFF_MAX_HEADER_BYTES`
/// (the HTTP parser's own limit, far above, only stops heads too big to buffer), and its path
/// for `.`/`..` segments.
fn check_head(app: &App, request: &Request<Incoming>) -> Result<(), ApiError> {
    let limit = app.settings.max_header_bytes;
    // The request line and each `name: value\r\n`, as they came on the wire.
    let size = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + 12
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if size > limit {
        return Err(ApiError::HeadersTooLarge { limit });
    }
    if proxy::has_dot_segment(request.uri().path()) {
        return Err(ApiError::DotSegments);
    }
    Ok(())
}
