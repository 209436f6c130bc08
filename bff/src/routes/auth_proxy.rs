//! `/auth/v1/*` → Supabase Auth, so supabase-js's auth client pointed at the BFF keeps working
//! for apps that hold tokens themselves (Bearer clients). As Supabase's gateway does it: the
//! project's API key is required (header `apikey`, or the `apikey` query parameter a browser
//! navigation carries), except on the routes a browser reaches by navigation from a provider or
//! an email link (`/authorize`, `/callback`, `/verify`). Everything else — the user's token, the
//! PKCE verifier, the answer — passes as sent; Supabase Auth checks it. The browser's Cookie and
//! `X-CSRF` headers are not forwarded (see `proxy`), and Supabase Auth's redirects are passed
//! back to the browser, never followed.

use crate::app::App;
use crate::body::Body;
use crate::error::{ApiError, Problem};
use crate::proxy::Credentials;
use http::{Request, Response};
use hyper::body::Incoming;

/// Reached by browser navigation, without an API key.
const OPEN_PATHS: &[&str] = &["/authorize", "/callback", "/verify"];

pub async fn proxy(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some(upstream) = app.auth_upstream.as_ref() else {
        return Err(Problem::not_configured(
            "Supabase Auth",
            "SUPABASE_AUTH_URL",
        ));
    };
    let path = request
        .uri()
        .path()
        .strip_prefix("/auth/v1")
        .unwrap_or_default();
    if !OPEN_PATHS.contains(&path) {
        let key = match request.headers().get(crate::auth::APIKEY) {
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| ApiError::InvalidApiKey)?
                    .to_owned(),
            ),
            None => url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "apikey")
                .map(|(_, v)| v.into_owned()),
        };
        match key {
            None => return Err(ApiError::NoCredentials),
            Some(key) if !app.api_keys.is_project_key(key.trim()) => {
                return Err(ApiError::InvalidApiKey)
            }
            Some(_) => {}
        }
    }
    upstream
        .forward(app, request, "/auth/v1", Credentials::AsSent)
        .await
}
