//! `/api/integrations*`: the signed-in user's integration configs (Bearer token, or the session
//! cookie with `X-CSRF: 1`), their verification, and OAuth installs.
//!
//! | route | |
//! |---|---|
//! | `GET /api/integrations` | the user's configs (secrets masked) |
//! | `POST /api/integrations` | `{"integration_type", "config"}`: create or update |
//! | `GET /api/integrations/{type}` | one config; 404 when there is none |
//! | `DELETE /api/integrations/{type}` | 204; 404 when there is none |
//! | `POST /api/integrations/{type}/test` | verifies with the provider (Slack: `auth.test`), records active/error |
//! | `GET /api/integrations/{type}/oauth/start` | starts an OAuth install (session cookie required) |
//! | `GET /api/integrations/{type}/oauth/callback` | the provider's redirect back: tokens stored, status active |

use crate::app::App;
use crate::auth::{self, Caller};
use crate::body::{json_response, read_json, read_query, Body};
use crate::db::User;
use crate::error::{ApiError, Problem};
use crate::flows::{self, NewFlow, Purpose};
use crate::integrations::oauth::refresh_due;
use crate::integrations::slack::SlackError;
use crate::integrations::Secrets;
use crate::routes::bff::{external_url, redirect};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A config is a few fields; a service-account key is the largest (a few kB).
const MAX_CONFIG_BODY: usize = 64 * 1024;

pub async fn route(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_owned();
    let rest = path
        .strip_prefix("/api/integrations")
        .unwrap_or_default()
        .trim_start_matches('/');
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let method = request.method().clone();
    if let Some(kind) = segments.first() {
        check_type(kind)?;
    }
    match (segments.as_slice(), method) {
        ([], Method::GET) => {
            let (user, _) = signed_in(app, request.headers()).await?;
            let rows = app.integrations.list(&user).await?;
            Ok(json_response(StatusCode::OK, &Value::Array(rows)))
        }
        ([], Method::POST) => upsert(app, request).await,
        ([], _) => Err(Problem::method_not_allowed("GET or POST")),
        ([kind], Method::GET) => {
            let (user, _) = signed_in(app, request.headers()).await?;
            let row = app.integrations.get(&user, kind).await?;
            Ok(json_response(StatusCode::OK, &row))
        }
        ([kind], Method::DELETE) => {
            let (user, _) = signed_in(app, request.headers()).await?;
            if !app.integrations.delete(&user, kind).await? {
                return Err(crate::integrations::IntegrationError::NotConnected(
                    (*kind).to_owned(),
                )
                .into());
            }
            let mut response = Response::new(crate::body::full(""));
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        ([_], _) => Err(Problem::method_not_allowed("GET or DELETE")),
        ([kind, "test"], Method::POST) => test(app, request.headers(), kind).await,
        ([_, "test"], _) => Err(Problem::method_not_allowed("POST")),
        ([kind, "oauth", "start"], Method::GET) => oauth_start(app, &request, kind).await,
        ([kind, "oauth", "callback"], Method::GET) => oauth_callback(app, &request, kind).await,
        ([_, "oauth", "start" | "callback"], _) => Err(Problem::method_not_allowed("GET")),
        _ => Err(ApiError::NotFound(path.clone())),
    }
}

/// Integration types are lowercase names (`slack`, `google_analytics`).
fn check_type(kind: &str) -> Result<(), ApiError> {
    let plain = !kind.is_empty()
        && kind.len() <= 40
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "the integration type is a lowercase name such as slack",
        ))
    }
}

/// The signed-in user of a request (Bearer token, or session cookie with X-CSRF).
pub async fn signed_in(app: &App, headers: &HeaderMap) -> Result<(User, Caller), ApiError> {
    let caller = auth::identify(app, headers).await?;
    let user = User::from_claims(&caller.claims).ok_or_else(|| {
        ApiError::from(
            Problem::new(StatusCode::UNAUTHORIZED, "this needs a signed-in user")
                .hint("Sign in (POST /bff/login) or send a user's access token."),
        )
    })?;
    Ok((user, caller))
}

#[derive(Deserialize)]
struct Upsert {
    integration_type: String,
    config: Map<String, Value>,
}

async fn upsert(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (user, _) = signed_in(app, request.headers()).await?;
    let (parts, body) = request.into_parts();
    let upsert: Upsert = read_json(&parts.headers, body, MAX_CONFIG_BODY).await?;
    check_type(&upsert.integration_type)?;
    let row = app
        .integrations
        .upsert(
            &user,
            &upsert.integration_type,
            &Value::Object(upsert.config),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &row))
}

/// The user's config with its secrets, its OAuth token refreshed first when due.
pub async fn fresh_secrets(app: &App, user: &User, kind: &str) -> Result<Secrets, ApiError> {
    let secrets = app.integrations.secrets(user.id, kind).await?;
    if secrets.status == "disabled" {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("the {kind} integration is disabled"),
        )
        .hint("Enable it again (status pending) to use it.")
        .into());
    }
    if !refresh_due(&secrets) {
        return Ok(secrets);
    }
    let provider = app.oauth.provider(kind)?;
    let redirect_uri = callback_url(app, kind);
    let refreshed = app
        .integrations
        .refresh_locked(user.id, kind, refresh_due, |current| async move {
            let token = current.get("refresh_token").unwrap_or_default().to_owned();
            app.oauth
                .refresh(provider, &current.config, &redirect_uri, &token)
                .await
        })
        .await?;
    Ok(refreshed)
}

/// Verifies a config with its provider and records the outcome.
async fn test(app: &App, headers: &HeaderMap, kind: &str) -> Result<Response<Body>, ApiError> {
    let (user, _) = signed_in(app, headers).await?;
    if kind != "slack" {
        // Reading the config first: a missing one is a 404, whatever its type.
        app.integrations.get(&user, kind).await?;
        return Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("verifying {kind} integrations is not available yet"),
        )
        .hint("Only slack is verified against its provider so far.")
        .into());
    }
    let secrets = fresh_secrets(app, &user, kind).await?;
    let token = secrets.get("bot_token").unwrap_or_default();
    let outcome = match app.slack.post(token, "auth.test", &json!({})).await {
        Ok(_) => Ok(()),
        Err(SlackError::Api { error, .. }) if error != "ratelimited" => {
            Err(format!("Slack auth.test: {error}"))
        }
        // Rate limits and outages say nothing about the credentials: nothing is recorded.
        Err(e) => return Err(e.problem().into()),
    };
    let ok = outcome.is_ok();
    let row = app
        .integrations
        .record_verification(secrets.id, outcome)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"ok": ok, "integration": row}),
    ))
}

/// Where a provider sends the browser back after an install.
fn callback_url(app: &App, kind: &str) -> String {
    external_url(app, &format!("/api/integrations/{kind}/oauth/callback"))
}

#[derive(Deserialize)]
struct Start {
    #[serde(rename = "returnUrl")]
    return_url: Option<String>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// Starts an install: needs the session cookie (the state is bound to it). A `fetch` with
/// `X-CSRF: 1` gets `{"authorize_url"}`; a top-level navigation from this site gets a 302 to it.
async fn oauth_start(
    app: &App,
    request: &Request<Incoming>,
    kind: &str,
) -> Result<Response<Body>, ApiError> {
    let provider = app.oauth.provider(kind)?;
    let sessions = sessions_of(app)?;
    let headers = request.headers();
    let cookie = auth::session_cookie(app, headers).ok_or_else(|| {
        ApiError::from(
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "installs need a signed-in browser session",
            )
            .hint("Sign in through /bff/login first; the install is bound to that session."),
        )
    })?;
    let fetched = headers.get(auth::CSRF_HEADER).is_some();
    if fetched {
        auth::require_csrf(headers)?;
    } else if !is_own_navigation(headers) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "an install must be started from this site",
        )
        .hint("Fetch this URL with X-CSRF: 1, or navigate to it from a page of this site.")
        .into());
    }
    let session = sessions.current(cookie).await?;
    let start: Start = read_query(request.uri())?;
    let return_to = flows::local_return_url(start.return_url.as_deref())?;
    // Only the fields the provider's install takes (a Zendesk subdomain), as plain strings.
    let fields: Map<String, Value> = provider
        .provider
        .install_fields
        .iter()
        .filter_map(|f| start.fields.get(*f).map(|v| ((*f).to_owned(), v.clone())))
        .collect();
    let redirect_uri = callback_url(app, kind);
    let started = flows::begin(
        sessions,
        NewFlow {
            purpose: Purpose::Integration,
            provider: kind,
            session: Some((&session.id_hash, session.user_id)),
            return_to: &return_to,
            extra: Value::Object(fields.clone()),
        },
    )
    .await?;
    let url = app.oauth.authorize_url(
        provider,
        &fields,
        &redirect_uri,
        &started.state,
        &started.verifier,
    )?;
    if fetched {
        Ok(json_response(
            StatusCode::OK,
            &json!({"authorize_url": url}),
        ))
    } else {
        redirect(StatusCode::FOUND, &url)
    }
}

/// Installs are bound to a sign-in session: without sessions configured there are none.
fn sessions_of(app: &App) -> Result<&crate::session::Sessions, ApiError> {
    app.sessions
        .as_ref()
        .ok_or_else(|| Problem::not_configured("Sessions", "SUPABASE_AUTH_URL and BFF_SESSION_KEY"))
}

/// A navigation the browser says comes from this site or was typed (Fetch Metadata).
fn is_own_navigation(headers: &HeaderMap) -> bool {
    matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("same-origin" | "same-site" | "none")
    )
}

#[derive(Deserialize)]
struct ProviderCallback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider's redirect back. The state must be one this session started, unused and not
/// expired; then the code is exchanged and the tokens are stored. Nothing is stored on failure.
async fn oauth_callback(
    app: &App,
    request: &Request<Incoming>,
    kind: &str,
) -> Result<Response<Body>, ApiError> {
    let provider = app.oauth.provider(kind)?;
    let sessions = sessions_of(app)?;
    let answer: ProviderCallback = read_query(request.uri())?;
    let state = answer
        .state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::bad_request("the callback has no state"))?;
    // A navigation from the provider: no X-CSRF, but the session cookie (SameSite=Lax) comes.
    let cookie = auth::session_cookie(app, request.headers()).ok_or_else(|| {
        ApiError::from(Problem::new(
            StatusCode::UNAUTHORIZED,
            "the install's browser session is gone",
        ))
    })?;
    let session = sessions.current(cookie).await?;
    // The state is used up here, whatever comes next: a second try needs a new start.
    let flow = flows::finish(
        sessions,
        &state,
        Purpose::Integration,
        Some(&session.id_hash),
    )
    .await?;
    if flow.provider != kind {
        return Err(Problem::bad_request(
            "the state belongs to another provider's install",
        ));
    }
    if let Some(error) = answer.error {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the install was not approved; nothing was stored",
        )
        .details(match answer.error_description {
            Some(d) => format!("{error}: {d}"),
            None => error,
        })
        .into());
    }
    let code = answer
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Problem::bad_request("the callback has no code"))?;
    let install_fields = match flow.extra {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let tokens = app
        .oauth
        .exchange(
            provider,
            &install_fields,
            &callback_url(app, kind),
            &code,
            &flow.verifier,
        )
        .await?;
    let mut config = install_fields;
    config.extend(tokens);
    let user_id = flow.user_id.unwrap_or(session.user_id);
    app.integrations.install(user_id, kind, &config).await?;
    tracing::info!(user = %user_id, kind, "integration installed by OAuth");
    redirect(StatusCode::FOUND, &flow.return_to)
}
