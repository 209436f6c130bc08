//! Who is calling: the `apikey` header and the `Authorization: Bearer` token, checked the way
//! Supabase's API gateway checks them, before anything reaches PostgREST.
//!
//! - `apikey`, when sent, must be one of the project's API keys (anon or service_role);
//! - the Bearer token, when sent, must verify (signature, `exp`/`nbf`/`iat`, `aud`); a user's
//!   token must carry the configured audience, the project's own keys (which have none) need not;
//! - with only an `apikey`, the key itself is the token (anon key → `anon` role);
//! - with neither, the request is refused: Supabase's gateway refuses it too.
//!
//! A browser signed in through `/bff/login` sends the session cookie instead ([`identify`]): the
//! session's access token then stands for the caller, and the request must carry `X-CSRF: 1`,
//! which a page of another site cannot add without a CORS preflight the BFF refuses.

use crate::app::App;
use crate::error::{ApiError, Problem};
use crate::session;
use constant_time_eq::constant_time_eq;
use dana_supabase::{Claims, JwtVerifier};
use http::HeaderMap;
use std::sync::Arc;

/// The project's API keys, compared in constant time because the service_role key is a secret.
#[derive(Clone)]
pub struct ApiKeys {
    pub anon: String,
    pub service_role: String,
}

impl ApiKeys {
    pub fn is_project_key(&self, candidate: &str) -> bool {
        let c = candidate.as_bytes();
        constant_time_eq(c, self.anon.as_bytes())
            | constant_time_eq(c, self.service_role.as_bytes())
    }
}

/// A verified caller: the token to forward upstream and what it says.
#[derive(Debug)]
pub struct Caller {
    pub token: String,
    pub claims: Arc<Claims>,
}

/// The header that carries the project's API key. A typed name: looking a header up by a
/// `&str` parses the name first (~300 instructions).
pub const APIKEY: http::HeaderName = http::HeaderName::from_static("apikey");

/// The header every cookie-authenticated request must carry (`X-CSRF: 1`).
pub const CSRF_HEADER: &str = "x-csrf";

/// Who is calling, by a user's Bearer token, the session cookie, or the project's API key (in
/// that order; supabase-js always sends the anon key as Bearer, which does not hide a session).
pub async fn identify(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(cookie) = session_cookie(app, headers) {
        if !has_user_bearer(headers, &app.api_keys) {
            return from_session(app, headers, cookie).await;
        }
    }
    authenticate(headers, &app.api_keys, &app.verifier).await
}

/// The session cookie's value, when sessions are on.
pub fn session_cookie<'h>(app: &App, headers: &'h HeaderMap) -> Option<&'h str> {
    app.sessions.as_ref()?;
    session::cookie_value(headers, session::COOKIE)
}

/// The caller of a session cookie: CSRF header first, then the session (refreshed if due).
pub async fn from_session(
    app: &App,
    headers: &HeaderMap,
    cookie: &str,
) -> Result<Caller, ApiError> {
    require_csrf(headers)?;
    if let Some(key) = headers.get(APIKEY) {
        let key = header_text(key).ok_or(ApiError::InvalidApiKey)?.trim();
        if !app.api_keys.is_project_key(key) {
            return Err(ApiError::InvalidApiKey);
        }
    }
    let sessions = app
        .sessions
        .as_ref()
        .expect("session_cookie checked that sessions are on");
    let (session, claims) = session_and_claims(app, sessions, cookie).await?;
    Ok(Caller {
        token: session.access_token,
        claims,
    })
}

/// The live session of a cookie (refreshed if due) and its access token's verified claims.
/// Callers check the CSRF header first.
pub async fn session_and_claims(
    app: &App,
    sessions: &session::Sessions,
    cookie: &str,
) -> Result<(session::Session, Arc<Claims>), ApiError> {
    let session = sessions.current(cookie).await?;
    let claims = app.verifier.verify(&session.access_token).await?;
    Ok((session, claims))
}

/// Refuses a cookie-authenticated request without `X-CSRF: 1`.
pub fn require_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers
        .get(CSRF_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1")
    {
        return Ok(());
    }
    Err(Problem::new(
        http::StatusCode::FORBIDDEN,
        "cookie-authenticated requests must carry the header X-CSRF: 1",
    )
    .hint("Add the header X-CSRF: 1 to every fetch that sends the session cookie.")
    .into())
}

/// True when `Authorization` carries something other than the anon key (a user's token, the
/// service key, or a malformed value that must be refused rather than ignored).
fn has_user_bearer(headers: &HeaderMap, keys: &ApiKeys) -> bool {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let token = header_text(value).and_then(|v| bearer_token(v).ok());
    !token.is_some_and(|t| constant_time_eq(t.as_bytes(), keys.anon.as_bytes()))
}

/// Checks the request's credentials; `Err` means 401 (or 503 when the signing keys cannot be loaded).
pub async fn authenticate(
    headers: &HeaderMap,
    keys: &ApiKeys,
    verifier: &JwtVerifier,
) -> Result<Caller, ApiError> {
    let apikey = headers.get(APIKEY).map(|v| header_text(v).map(str::trim));
    let bearer = match headers.get(http::header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(bearer_token(
            header_text(value).ok_or(ApiError::NotBearer)?,
        )?),
    };
    let apikey = match apikey {
        None => None,
        Some(None) => return Err(ApiError::InvalidApiKey),
        Some(Some(key)) if keys.is_project_key(key) => Some(key),
        Some(Some(_)) => return Err(ApiError::InvalidApiKey),
    };
    let token = bearer.or(apikey).ok_or(ApiError::NoCredentials)?;
    // supabase-js sends the anon key as the Bearer token until a user signs in.
    let claims = if keys.is_project_key(token) {
        verifier.verify_project_key(token).await?
    } else {
        verifier.verify(token).await?
    };
    Ok(Caller {
        token: token.to_owned(),
        claims,
    })
}

/// True when the request carries the operator's token (`Authorization: Bearer <token>`),
/// compared in constant time. False when no token is configured.
pub fn is_operator(operator_token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = operator_token else {
        return false;
    };
    let sent = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| bearer_token(v).ok())
        .unwrap_or_default();
    constant_time_eq(sent.as_bytes(), token.as_bytes())
}

/// A header value as text, the same answer as `HeaderValue::to_str` at a fraction of its cost:
/// a `HeaderValue` holds no control byte but HTAB (which `to_str` allows too), so being ASCII is
/// the whole test, and `is_ascii` reads a word at a time where `to_str` looks at each byte (~1,000
/// instructions for a request's API key and token).
fn header_text(value: &http::HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8. (`str::from_utf8` would check it all again: ~650 instructions.)
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        None
    }
}

fn bearer_token(value: &str) -> Result<&str, ApiError> {
    let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::NotBearer)?;
    // The end is trimmed already; spaces between scheme and token are not part of the token.
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::NotBearer);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dana_supabase::settings::JwtSettings;
    use dana_supabase::JwtError;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn setup() -> (ApiKeys, JwtVerifier) {
        let keys = ApiKeys {
            anon: token(json!({"role": "anon"})),
            service_role: token(json!({"role": "service_role"})),
        };
        let verifier = JwtVerifier::new(&JwtSettings {
            secret: Some(SECRET.into()),
            jwks: None,
            audience: Some("authenticated".into()),
            leeway: Duration::from_secs(30),
        })
        .unwrap();
        (keys, verifier)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn header_text_answers_as_to_str_does() {
        let values = [
            http::HeaderValue::from_static("Bearer abc.def.ghi"),
            http::HeaderValue::from_static("tab\there"),
            http::HeaderValue::from_static(""),
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        ];
        for value in &values {
            assert_eq!(header_text(value), value.to_str().ok(), "{value:?}");
        }
    }

    #[tokio::test]
    async fn the_anon_key_alone_acts_as_anon() {
        let (keys, verifier) = setup();
        let caller = authenticate(&headers(&[("apikey", &keys.anon)]), &keys, &verifier)
            .await
            .unwrap();
        assert_eq!(caller.claims.role, "anon");
        assert_eq!(caller.token, keys.anon);
    }

    #[tokio::test]
    async fn a_bearer_token_wins_over_the_apikey() {
        let (keys, verifier) = setup();
        let user = token(json!({"role": "authenticated", "sub": "u1", "aud": "authenticated"}));
        let h = headers(&[
            ("apikey", &keys.anon),
            ("authorization", &format!("Bearer {user}")),
        ]);
        let caller = authenticate(&h, &keys, &verifier).await.unwrap();
        assert_eq!(caller.claims.sub.as_deref(), Some("u1"));
    }

    #[tokio::test]
    async fn credentials_are_refused_with_a_reason() {
        let (keys, verifier) = setup();
        let foreign_key = token(json!({"role": "anon", "iss": "another-project"}));
        let cases: Vec<(HeaderMap, &str)> = vec![
            (headers(&[]), "No API key found in request"),
            (headers(&[("apikey", &foreign_key)]), "Invalid API key"),
            (
                headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
                "Authorization header is not a Bearer token",
            ),
            (
                headers(&[("authorization", "Bearer ")]),
                "Authorization header is not a Bearer token",
            ),
            (
                headers(&[
                    ("apikey", &keys.anon),
                    ("authorization", "Bearer not.a.jwt"),
                ]),
                "JWT is not valid",
            ),
        ];
        for (h, expected) in cases {
            let err = authenticate(&h, &keys, &verifier).await.unwrap_err();
            assert!(err.to_string().starts_with(expected), "{err} for {h:?}");
        }
        // A user's token without `aud` is not Supabase Auth's: refused when an audience is set.
        let no_audience = token(json!({"role": "authenticated", "sub": "u1"}));
        let err = authenticate(
            &headers(&[
                ("apikey", &keys.anon),
                ("authorization", &format!("Bearer {no_audience}")),
            ]),
            &keys,
            &verifier,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ApiError::Token(JwtError::WrongAudience)),
            "{err}"
        );
        // The project's keys carry no audience and pass, as apikey or as Bearer.
        let bearer_anon = headers(&[
            ("apikey", &keys.anon),
            ("authorization", &format!("Bearer {}", keys.anon)),
        ]);
        assert!(authenticate(&bearer_anon, &keys, &verifier).await.is_ok());
        let expired = token(json!({"role": "authenticated", "aud": "authenticated", "exp": 1}));
        let err = authenticate(
            &headers(&[("authorization", &format!("bearer {expired}"))]),
            &keys,
            &verifier,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ApiError::Token(JwtError::Expired)));
    }
}
