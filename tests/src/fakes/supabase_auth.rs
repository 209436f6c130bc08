//! A fake of Supabase Auth (GoTrue): the endpoints Dana's BFF and supabase-js's auth client use,
//! in GoTrue's wire format, against the users of the stack's `auth.users` (passwords checked with
//! pgcrypto's `crypt`, as GoTrue stores them: bcrypt in `encrypted_password`).
//!
//! | endpoint | as GoTrue |
//! |---|---|
//! | `POST /token?grant_type=password` | `{email, password}` → a session; `invalid_credentials` otherwise |
//! | `POST /token?grant_type=refresh_token` | `{refresh_token}` → a new session with a new refresh token; a used one is `refresh_token_already_used` and ends the session (reuse detection), an unknown or revoked one `refresh_token_not_found` |
//! | `GET /authorize?provider=…&redirect_to=…&code_challenge=…&code_challenge_method=s256` | stands in for the provider's sign-in (the user is `login_hint`, else the first demo user) and redirects to `redirect_to?code=…`; a `redirect_to` outside the allow list goes to the site URL instead, as GoTrue does |
//! | `POST /token?grant_type=pkce` | `{auth_code, code_verifier}` → a session; `bad_code_verifier`, `flow_state_not_found` (unknown or used), `flow_state_expired` |
//! | `GET /user` | the token's user; `bad_jwt` |
//! | `POST /logout?scope=global\|local\|others` | 204; the refresh tokens of the session (or of every session) stop working |
//! | `GET /health`, `GET /settings` | |
//!
//! Errors are `{"code":400,"error_code":"…","msg":"…"}`, or `{"code":"…","message":"…"}` for
//! clients sending `X-Supabase-Api-Version: 2024-01-01` (supabase-js).

use super::{json, random_token, redirect, FakeRequest, FakeResponse};
use http::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a fake instance behaves.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub jwt_secret: String,
    /// The superuser URL of the stack's database, to read `auth.users`.
    pub db_url: String,
    /// Where a disallowed `redirect_to` is sent.
    pub site_url: String,
    /// `redirect_to` values must start with one of these.
    pub redirect_allow: Vec<String>,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// This server's public base (the `iss` of its tokens).
    pub issuer: String,
}

struct Session {
    user_id: uuid::Uuid,
    revoked: bool,
}

struct RefreshToken {
    session: String,
    used: bool,
}

struct FlowState {
    user_email: Option<String>,
    challenge: String,
    created: SystemTime,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    refresh_tokens: HashMap<String, RefreshToken>,
    flows: HashMap<String, FlowState>,
}

/// A running fake; `refreshes` counts refresh-token grants (for tests of single refreshes).
#[derive(Clone)]
pub struct FakeAuth {
    pub url: String,
    pub refreshes: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
}

impl FakeAuth {
    /// Starts a fake on `listener`.
    pub fn start(listener: tokio::net::TcpListener, config: AuthConfig) -> FakeAuth {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeAuth {
            url,
            refreshes: Arc::new(AtomicUsize::new(0)),
            state: Arc::new(Mutex::new(State::default())),
        };
        let (inner, config) = (fake.clone(), Arc::new(config));
        super::serve(listener, move |request| {
            let (fake, config) = (inner.clone(), config.clone());
            async move { fake.handle(&config, request).await }
        });
        fake
    }

    /// Starts a fake on a free port of 127.0.0.1.
    pub async fn start_local(config: AuthConfig) -> FakeAuth {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        FakeAuth::start(listener, AuthConfig { issuer, ..config })
    }

    /// Ends every session of a user, as an administrator revoking them would.
    pub fn revoke_all(&self) {
        let mut state = self.state.lock().unwrap();
        for session in state.sessions.values_mut() {
            session.revoked = true;
        }
    }

    async fn handle(&self, config: &AuthConfig, request: FakeRequest) -> FakeResponse {
        let new_errors = request
            .headers
            .get("x-supabase-api-version")
            .is_some_and(|v| v.as_bytes() >= b"2024-01-01".as_slice());
        let result = match (request.method.as_str(), request.path.trim_end_matches('/')) {
            ("GET", "/health") => Ok(json(
                StatusCode::OK,
                &json!({"version": "fake", "name": "GoTrue", "description": "a fake of Supabase Auth for Dana's tests"}),
            )),
            ("GET", "/settings") => Ok(json(
                StatusCode::OK,
                &json!({"external": {"email": true, "github": true, "google": true}, "disable_signup": true}),
            )),
            ("POST", "/token") => self.token(config, &request).await,
            ("GET", "/authorize") => self.authorize(config, &request),
            ("GET", "/user") => self.user(config, &request).await,
            ("POST", "/logout") => self.logout(config, &request),
            _ => Err(error(StatusCode::NOT_FOUND, "not_found", "not found")),
        };
        let mut response = result.unwrap_or_else(|e| e.render(new_errors));
        // GoTrue names the API version it answered in (clients read error codes by it).
        if new_errors {
            response.headers_mut().insert(
                "x-supabase-api-version",
                http::HeaderValue::from_static("2024-01-01"),
            );
        }
        response
    }

    async fn token(
        &self,
        config: &AuthConfig,
        request: &FakeRequest,
    ) -> Result<FakeResponse, AuthFailure> {
        let fields = request.fields();
        let field = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match request.query("grant_type") {
            Some("password") => {
                let user = find_user(
                    config,
                    Lookup::Password(&field("email"), &field("password")),
                )
                .await?
                .ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_credentials",
                        "Invalid login credentials",
                    )
                })?;
                Ok(self.new_session(config, user, "password"))
            }
            Some("refresh_token") => {
                self.refreshes.fetch_add(1, Ordering::SeqCst);
                let token = field("refresh_token");
                let session_id = {
                    let mut state = self.state.lock().unwrap();
                    let Some(entry) = state.refresh_tokens.get_mut(&token) else {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "refresh_token_not_found",
                            "Invalid Refresh Token: Refresh Token Not Found",
                        ));
                    };
                    if entry.used {
                        // Reuse of a spent token: the session is taken to be stolen and ends.
                        let session = entry.session.clone();
                        if let Some(s) = state.sessions.get_mut(&session) {
                            s.revoked = true;
                        }
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "refresh_token_already_used",
                            "Invalid Refresh Token: Already Used",
                        ));
                    }
                    entry.used = true;
                    let session = entry.session.clone();
                    if state.sessions.get(&session).is_none_or(|s| s.revoked) {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "refresh_token_not_found",
                            "Invalid Refresh Token: Refresh Token Not Found",
                        ));
                    }
                    session
                };
                let user_id = self.state.lock().unwrap().sessions[&session_id].user_id;
                let user = find_user(config, Lookup::Id(user_id))
                    .await?
                    .ok_or_else(|| {
                        error(StatusCode::BAD_REQUEST, "user_not_found", "User not found")
                    })?;
                Ok(self.issue(config, &user, &session_id, "token_refresh"))
            }
            Some("pkce") => {
                let code = field("auth_code");
                let verifier = field("code_verifier");
                let flow = self
                    .state
                    .lock()
                    .unwrap()
                    .flows
                    .remove(&code)
                    .ok_or_else(|| {
                        error(
                            StatusCode::NOT_FOUND,
                            "flow_state_not_found",
                            "invalid flow state, no valid flow state found",
                        )
                    })?;
                if flow.created.elapsed().unwrap_or_default() > Duration::from_secs(300) {
                    return Err(error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "flow_state_expired",
                        "invalid flow state, flow state has expired",
                    ));
                }
                let computed = base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    Sha256::digest(verifier.as_bytes()),
                );
                if verifier.is_empty() || computed != flow.challenge {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_code_verifier",
                        "code challenge does not match previously saved code verifier",
                    ));
                }
                let lookup = match &flow.user_email {
                    Some(email) => Lookup::Email(email),
                    None => Lookup::First,
                };
                let user = find_user(config, lookup).await?.ok_or_else(|| {
                    error(StatusCode::BAD_REQUEST, "user_not_found", "User not found")
                })?;
                Ok(self.new_session(config, user, "oauth"))
            }
            _ => Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_credentials",
                "unsupported_grant_type",
            )),
        }
    }

    fn authorize(
        &self,
        config: &AuthConfig,
        request: &FakeRequest,
    ) -> Result<FakeResponse, AuthFailure> {
        let provider = request.query("provider").unwrap_or("");
        if !["github", "google"].contains(&provider) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                &format!("Unsupported provider: Provider {provider} could not be found"),
            ));
        }
        let redirect_to = request.query("redirect_to").unwrap_or("");
        if !config
            .redirect_allow
            .iter()
            .any(|allowed| redirect_to.starts_with(allowed.as_str()))
        {
            return Ok(redirect(&config.site_url));
        }
        let challenge = request.query("code_challenge").unwrap_or("").to_owned();
        if challenge.is_empty()
            || !request
                .query("code_challenge_method")
                .unwrap_or("")
                .eq_ignore_ascii_case("s256")
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "PKCE flow requires code_challenge and code_challenge_method s256",
            ));
        }
        let code = uuid::Uuid::new_v4().to_string();
        self.state.lock().unwrap().flows.insert(
            code.clone(),
            FlowState {
                user_email: request.query("login_hint").map(str::to_owned),
                challenge,
                created: SystemTime::now(),
            },
        );
        let separator = if redirect_to.contains('?') { '&' } else { '?' };
        Ok(redirect(&format!("{redirect_to}{separator}code={code}")))
    }

    async fn user(
        &self,
        config: &AuthConfig,
        request: &FakeRequest,
    ) -> Result<FakeResponse, AuthFailure> {
        let claims = self.verified(config, request)?;
        let id = claims["sub"]
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .unwrap_or_default();
        let user = find_user(config, Lookup::Id(id)).await?.ok_or_else(|| {
            error(
                StatusCode::FORBIDDEN,
                "user_not_found",
                "User from sub claim in JWT does not exist",
            )
        })?;
        Ok(json(StatusCode::OK, &user.json()))
    }

    fn logout(
        &self,
        config: &AuthConfig,
        request: &FakeRequest,
    ) -> Result<FakeResponse, AuthFailure> {
        let claims = self.verified(config, request)?;
        let session_id = claims["session_id"].as_str().unwrap_or("").to_owned();
        let user_id = claims["sub"].as_str().unwrap_or("").to_owned();
        let mut state = self.state.lock().unwrap();
        let scope = request.query("scope").unwrap_or("global");
        for (id, session) in state.sessions.iter_mut() {
            let same_user = session.user_id.to_string() == user_id;
            let ends = match scope {
                "local" => *id == session_id,
                "others" => same_user && *id != session_id,
                _ => same_user,
            };
            if ends {
                session.revoked = true;
            }
        }
        let mut response = json(StatusCode::NO_CONTENT, &Value::Null);
        *response.body_mut() = Default::default();
        Ok(response)
    }

    /// The claims of the request's Bearer token, signed by this fake and not yet expired.
    fn verified(&self, config: &AuthConfig, request: &FakeRequest) -> Result<Value, AuthFailure> {
        let token = request.bearer().ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "no_authorization",
                "This endpoint requires a valid Bearer token",
            )
        })?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["authenticated"]);
        jsonwebtoken::decode::<Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(config.jwt_secret.as_bytes()),
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|e| {
            error(
                StatusCode::FORBIDDEN,
                "bad_jwt",
                &format!("invalid JWT: unable to parse or verify signature, {e}"),
            )
        })
    }

    fn new_session(&self, config: &AuthConfig, user: User, method: &str) -> FakeResponse {
        let session_id = uuid::Uuid::new_v4().to_string();
        self.state.lock().unwrap().sessions.insert(
            session_id.clone(),
            Session {
                user_id: user.id,
                revoked: false,
            },
        );
        self.issue(config, &user, &session_id, method)
    }

    /// A session answer: an access token for the user and a new single-use refresh token.
    fn issue(
        &self,
        config: &AuthConfig,
        user: &User,
        session_id: &str,
        method: &str,
    ) -> FakeResponse {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expires_at = now + config.access_ttl.as_secs();
        let claims = json!({
            "iss": format!("{}/auth/v1", config.issuer), "sub": user.id, "aud": "authenticated",
            "exp": expires_at, "iat": now, "email": user.email, "phone": "",
            "app_metadata": user.app_metadata, "user_metadata": user.user_metadata,
            "role": "authenticated", "aal": "aal1",
            "amr": [{"method": method, "timestamp": now}], "session_id": session_id, "is_anonymous": false,
        });
        let access_token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(config.jwt_secret.as_bytes()),
        )
        .unwrap();
        let refresh_token = random_token("");
        self.state.lock().unwrap().refresh_tokens.insert(
            refresh_token.clone(),
            RefreshToken {
                session: session_id.to_owned(),
                used: false,
            },
        );
        json(
            StatusCode::OK,
            &json!({
                "access_token": access_token, "token_type": "bearer",
                "expires_in": config.access_ttl.as_secs(), "expires_at": expires_at,
                "refresh_token": refresh_token, "user": user.json(),
            }),
        )
    }
}

/// An error answer, rendered in the client's API version.
pub struct AuthFailure {
    status: StatusCode,
    code: String,
    message: String,
}

impl AuthFailure {
    fn render(self, new_format: bool) -> FakeResponse {
        let body = if new_format {
            json!({"code": self.code, "message": self.message})
        } else {
            json!({"code": self.status.as_u16(), "error_code": self.code, "msg": self.message})
        };
        let mut response = json(self.status, &body);
        response
            .headers_mut()
            .insert("x-sb-error-code", self.code.parse().unwrap());
        response
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> AuthFailure {
    AuthFailure {
        status,
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

struct User {
    id: uuid::Uuid,
    email: String,
    app_metadata: Value,
    user_metadata: Value,
}

impl User {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "aud": "authenticated", "role": "authenticated", "email": self.email,
            "email_confirmed_at": "2024-01-01T00:00:00Z", "phone": "",
            "app_metadata": self.app_metadata, "user_metadata": self.user_metadata,
            "identities": [], "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z", "is_anonymous": false,
        })
    }
}

enum Lookup<'a> {
    Password(&'a str, &'a str),
    Email(&'a str),
    Id(uuid::Uuid),
    /// The first user with a password (the provider's default sign-in).
    First,
}

async fn find_user(config: &AuthConfig, lookup: Lookup<'_>) -> Result<Option<User>, AuthFailure> {
    let (db, connection) = tokio_postgres::connect(&config.db_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected_failure",
                &e.to_string(),
            )
        })?;
    tokio::spawn(connection);
    const COLUMNS: &str = "id, email, raw_app_meta_data, raw_user_meta_data FROM auth.users";
    let row = match lookup {
        Lookup::Password(email, password) => {
            db.query_opt(
                &format!("SELECT {COLUMNS} WHERE lower(email) = lower($1) AND encrypted_password IS NOT NULL
                            AND encrypted_password = extensions.crypt($2, encrypted_password)"),
                &[&email, &password],
            )
            .await
        }
        Lookup::Email(email) => db.query_opt(&format!("SELECT {COLUMNS} WHERE lower(email) = lower($1)"), &[&email]).await,
        Lookup::Id(id) => db.query_opt(&format!("SELECT {COLUMNS} WHERE id = $1"), &[&id]).await,
        Lookup::First => {
            db.query_opt(&format!("SELECT {COLUMNS} WHERE encrypted_password IS NOT NULL ORDER BY email LIMIT 1"), &[])
                .await
        }
    }
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected_failure", &e.to_string()))?;
    Ok(row.map(|r| {
        let mut app_metadata: Value = r.get(2);
        app_metadata["providers"] = json!([app_metadata["provider"].as_str().unwrap_or("email")]);
        User {
            id: r.get(0),
            email: r.get(1),
            app_metadata,
            user_metadata: r.get(3),
        }
    }))
}
