//! `/bff/*`: signing a browser in and out. The browser ends up holding one HttpOnly cookie; the
//! tokens stay here (see `session`).
//!
//! | route | what it does |
//! |---|---|
//! | `POST /bff/login` | `{"email","password"}` → Supabase Auth's password grant → session cookie |
//! | `GET /bff/login/{provider}?returnUrl=` | starts Supabase Auth's PKCE flow (`/authorize`) |
//! | `GET /bff/callback?code=` | the PKCE flow's return: code exchange → session cookie → `returnUrl` |
//! | `GET /bff/user` | the signed-in user: claims, session expiry, logout URL; 401 when anonymous |
//! | `POST /bff/logout?sid=&returnUrl=` | ends the session here and at Supabase Auth |
//!
//! Every route but the two navigations (`/bff/login/{provider}`, `/bff/callback`) needs
//! `X-CSRF: 1`, the login too: otherwise another site could sign a browser into an account of
//! its choosing (login CSRF).

use crate::app::App;
use crate::auth::require_csrf;
use crate::body::{json_response, read_json, read_query, Body};
use crate::error::{ApiError, Problem};
use crate::flows::{self, NewFlow, Purpose};
use crate::session::{self, Session, Sessions, COOKIE, LOGIN_COOKIE};
use constant_time_eq::constant_time_eq;
use dana_supabase::auth::{AuthError, AuthSession};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

/// A login body is an email and a password; anything larger is not one.
const MAX_LOGIN_BODY: usize = 16 * 1024;

pub async fn route(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some(sessions) = app.sessions.as_ref() else {
        return Err(Problem::not_configured(
            "Sign-in through the BFF",
            "SUPABASE_AUTH_URL and BFF_SESSION_KEY",
        ));
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (path.as_str(), method) {
        ("/bff/login", Method::POST) => login_with_password(app, sessions, request).await,
        ("/bff/login", _) => Err(Problem::method_not_allowed("POST")),
        (p, Method::GET) if p.starts_with("/bff/login/") => {
            login_with_provider(app, sessions, &request).await
        }
        ("/bff/callback", Method::GET) => callback(app, sessions, &request).await,
        ("/bff/user", Method::GET) => user(app, sessions, request.headers()).await,
        ("/bff/logout", Method::POST) => logout(sessions, &request).await,
        ("/bff/callback" | "/bff/user", _) => Err(Problem::method_not_allowed("GET")),
        ("/bff/logout", _) => Err(Problem::method_not_allowed("POST")),
        (p, _) if p.starts_with("/bff/login/") => Err(Problem::method_not_allowed("GET")),
        (other, _) => Err(ApiError::NotFound(other.to_owned())),
    }
}

#[derive(Deserialize)]
struct PasswordLogin {
    email: String,
    password: String,
}

async fn login_with_password(
    app: &App,
    sessions: &Sessions,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    require_csrf(request.headers())?;
    let (parts, body) = request.into_parts();
    let login: PasswordLogin = read_json(&parts.headers, body, MAX_LOGIN_BODY).await?;
    if login.email.trim().is_empty() || login.password.is_empty() {
        return Err(Problem::bad_request("email and password are required"));
    }
    let auth = sessions
        .auth
        .sign_in_with_password(login.email.trim(), &login.password)
        .await
        .map_err(sign_in_refused)?;
    let (cookie, session, claims) = start_session(app, sessions, &parts.headers, &auth).await?;
    let mut response = json_response(StatusCode::OK, &describe(&session, &claims));
    set_session_cookie(&mut response, sessions, &cookie);
    Ok(response)
}

#[derive(Deserialize)]
struct ProviderLogin {
    #[serde(rename = "returnUrl")]
    return_url: Option<String>,
}

async fn login_with_provider(
    app: &App,
    sessions: &Sessions,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let provider = request
        .uri()
        .path()
        .strip_prefix("/bff/login/")
        .unwrap_or_default();
    let plain = !provider.is_empty()
        && provider.len() <= 40
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !plain {
        return Err(Problem::bad_request(
            "the provider is a name such as github or google",
        ));
    }
    let query: ProviderLogin = read_query(request.uri())?;
    let return_to = flows::local_return_url(query.return_url.as_deref())?;
    let started = flows::begin(
        sessions,
        NewFlow {
            purpose: Purpose::Login,
            provider,
            session: None,
            return_to: &return_to,
            extra: json!({}),
        },
    )
    .await?;
    let callback = external_url(app, "/bff/callback");
    let location = sessions
        .auth
        .authorize_url(provider, &callback, &started.code_challenge);
    let mut response = redirect(StatusCode::FOUND, &location)?;
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, &started.state, flows::FLOW_LIFETIME),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    error: Option<String>,
    error_code: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    app: &App,
    sessions: &Sessions,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let answer: Callback = read_query(request.uri())?;
    if let Some(error) = answer.error {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "sign-in was not completed")
                .details(format!(
                    "{}: {}",
                    answer.error_code.unwrap_or(error),
                    answer.error_description.unwrap_or_default()
                ))
                .hint("Start signing in again.")
                .into(),
        );
    }
    let code = answer
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Problem::bad_request("the callback has no code"))?;
    let state = session::cookie_value(request.headers(), LOGIN_COOKIE).ok_or_else(|| {
        ApiError::from(
            Problem::new(
                StatusCode::BAD_REQUEST,
                "no sign-in was started in this browser",
            )
            .hint("Start signing in from /bff/login/{provider} in the same browser."),
        )
    })?;
    let flow = flows::finish(sessions, state, Purpose::Login, None).await?;
    let auth = sessions
        .auth
        .exchange_code(&code, &flow.verifier)
        .await
        .map_err(sign_in_refused)?;
    let (cookie, _, _) = start_session(app, sessions, request.headers(), &auth).await?;
    let mut response = redirect(StatusCode::FOUND, &flow.return_to)?;
    set_session_cookie(&mut response, sessions, &cookie);
    response
        .headers_mut()
        .append(header::SET_COOKIE, session::clear_cookie(LOGIN_COOKIE));
    Ok(response)
}

async fn user(
    app: &App,
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let (session, claims) = signed_in(app, sessions, headers).await?;
    Ok(json_response(StatusCode::OK, &describe(&session, &claims)))
}

#[derive(Deserialize)]
struct Logout {
    sid: Option<String>,
    #[serde(rename = "returnUrl")]
    return_url: Option<String>,
}

async fn logout(
    sessions: &Sessions,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    require_csrf(request.headers())?;
    let query: Logout = read_query(request.uri())?;
    let return_to = query
        .return_url
        .as_deref()
        .map(|r| flows::local_return_url(Some(r)))
        .transpose()?;
    let cookie = session::cookie_value(request.headers(), COOKIE).ok_or(NOT_SIGNED_IN)?;
    let session = sessions
        .load(cookie)
        .await?
        .ok_or_else(|| ApiError::from(session::SessionError::Ended))?;
    // The logout URL names the session, so a link that signs *a* user out cannot be forged.
    let sid_matches = query
        .sid
        .is_some_and(|sid| constant_time_eq(sid.as_bytes(), session.sid().as_bytes()));
    if !sid_matches {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "the sid parameter does not name this session",
        )
        .hint("Use the logout_url that /bff/user gives.")
        .into());
    }
    sessions.end(&session).await?;
    let mut response = match return_to {
        Some(to) => redirect(StatusCode::SEE_OTHER, &to)?,
        None => {
            let mut r = Response::new(crate::body::full(""));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, session::clear_cookie(COOKIE));
    Ok(response)
}

const NOT_SIGNED_IN: ApiError = ApiError::NoCredentials;

/// The signed-in session of a request (X-CSRF checked), refreshed if due, and its claims.
async fn signed_in(
    app: &App,
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<(Session, std::sync::Arc<dana_supabase::Claims>), ApiError> {
    require_csrf(headers)?;
    let cookie = session::cookie_value(headers, COOKIE).ok_or(NOT_SIGNED_IN)?;
    crate::auth::session_and_claims(app, sessions, cookie).await
}

/// Records a session for what Supabase Auth answered, ending the browser's previous one.
async fn start_session(
    app: &App,
    sessions: &Sessions,
    headers: &HeaderMap,
    auth: &AuthSession,
) -> Result<(String, Session, std::sync::Arc<dana_supabase::Claims>), ApiError> {
    // The token is checked as any other: a session holds only tokens this BFF accepts.
    let claims = app.verifier.verify(&auth.access_token).await?;
    let user_id = claims
        .user_id()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            ApiError::Internal("Supabase Auth answered a token without a user".into())
        })?;
    if let Some(previous) = session::cookie_value(headers, COOKIE) {
        if let Ok(Some(old)) = sessions.load(previous).await {
            sessions.end(&old).await?;
        }
    }
    let (cookie, session) = sessions.create(auth, user_id).await?;
    Ok((cookie, session, claims))
}

/// What the browser may know of its session: never a token.
fn describe(session: &Session, claims: &dana_supabase::Claims) -> serde_json::Value {
    json!({
        "user": {
            "id": session.user_id,
            "email": claims.email,
            "role": claims.role,
            "app_metadata": claims.app_metadata,
            "user_metadata": claims.user_metadata,
        },
        "claims": claims,
        "session": {
            "sid": session.sid(),
            "expires_at": session.expires_at,
            "access_expires_at": session.access_expires_at,
        },
        "logout_url": format!("/bff/logout?sid={}", session.sid()),
    })
}

fn set_session_cookie(response: &mut Response<Body>, sessions: &Sessions, cookie: &str) {
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(COOKIE, cookie, sessions.lifetime),
    );
}

/// Supabase Auth's refusal of a sign-in, as the browser should see it.
fn sign_in_refused(error: AuthError) -> ApiError {
    match error {
        AuthError::Refused {
            status,
            code,
            message,
            ..
        } => {
            let status = match status {
                429 => StatusCode::TOO_MANY_REQUESTS,
                400 | 401 | 403 | 422 if code == "invalid_credentials" => StatusCode::UNAUTHORIZED,
                s => StatusCode::from_u16(s)
                    .ok()
                    .filter(StatusCode::is_client_error)
                    .unwrap_or(StatusCode::BAD_REQUEST),
            };
            Problem::new(status, message).details(code).into()
        }
        AuthError::Unavailable(why) => {
            Problem::unavailable("Supabase Auth is unavailable", &why).into()
        }
    }
}

/// A URL of this BFF as browsers reach it (`API_EXTERNAL_URL`).
pub fn external_url(app: &App, path: &str) -> String {
    format!(
        "{}{path}",
        app.settings
            .supabase
            .api_external_url
            .as_str()
            .trim_end_matches('/')
    )
}

pub fn redirect(status: StatusCode, location: &str) -> Result<Response<Body>, ApiError> {
    let mut response = Response::new(crate::body::full(""));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(location).map_err(|_| Problem::bad_request("invalid redirect"))?,
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
