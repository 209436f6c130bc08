//! Server-side sign-in sessions: the browser holds one small HttpOnly cookie, the BFF holds the
//! user's tokens (the backend-for-frontend pattern of RFC 10017 and Duende BFF).
//!
//! A session is a row of `dana_bff.sessions` (a schema no API role reaches), keyed by the SHA-256
//! of the cookie's random value, so a copy of the table names no live cookie. The access and
//! refresh tokens are sealed with `BFF_SESSION_KEY` (XChaCha20-Poly1305, bound to the row's key).
//! Every BFF instance reads the same rows, so any instance serves, refreshes or ends any session.
//!
//! The access token is refreshed shortly before it expires. Supabase's refresh tokens are
//! single-use, so only one refresh may happen per session: the refreshing transaction holds the
//! row's lock (`FOR UPDATE`), and whoever waited on it finds the new token already there.

use crate::db::{Db, DbError};
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use dana_supabase::auth::{AuthApi, AuthError, AuthSession};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// The cookie's name: `__Host-` makes the browser require Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-dana_session";
/// The cookie of a sign-in under way (binds the OAuth callback to the browser that started it).
pub const LOGIN_COOKIE: &str = "__Host-dana_login";

/// Why a session cannot serve a request.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session has ended; sign in again")]
    Ended,
    #[error(transparent)]
    Auth(AuthError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the session's tokens cannot be opened")]
    Sealed,
}

impl From<SessionError> for crate::error::ApiError {
    fn from(error: SessionError) -> Self {
        use crate::error::Problem;
        use http::StatusCode;
        let problem = match error {
            SessionError::Ended | SessionError::Sealed => {
                let mut p = Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "the session has ended; sign in again",
                )
                .hint("Sign in again through /bff/login.");
                p.clear_session = true;
                p
            }
            SessionError::Auth(AuthError::Unavailable(why)) => {
                Problem::unavailable("Supabase Auth is unavailable", &why)
            }
            SessionError::Auth(AuthError::Refused { code, message, .. }) => {
                tracing::warn!(code, message, "Supabase Auth refused a refresh");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Supabase Auth refused to refresh the session",
                )
                .details(code)
                .hint("Retry later.")
            }
            SessionError::Db(DbError::Unavailable(why)) => Problem::database_unavailable(&why),
            SessionError::Db(e) => return crate::error::ApiError::Internal(e.to_string()),
        };
        problem.into()
    }
}

/// The tokens a session keeps.
#[derive(serde::Serialize, serde::Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: [u8; 32],
    pub user_id: Uuid,
    pub access_token: String,
    refresh_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
    pub expires_at: i64,
}

impl Session {
    /// A public handle of the session (not the cookie): what the logout URL is bound to.
    pub fn sid(&self) -> String {
        hex::encode(&self.id_hash[..16])
    }
}

/// Session settings and the parts sessions need.
#[derive(Clone)]
pub struct Sessions {
    db: Db,
    pub auth: AuthApi,
    key: [u8; 32],
    pub lifetime: Duration,
    refresh_margin: Duration,
}

pub fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// A random value for a cookie or an OAuth state: 32 bytes, URL-safe base64.
pub fn random_value() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Sessions {
    pub fn new(
        db: Db,
        auth: AuthApi,
        key: [u8; 32],
        lifetime: Duration,
        refresh_margin: Duration,
    ) -> Self {
        Self {
            db,
            auth,
            key,
            lifetime,
            refresh_margin,
        }
    }

    /// Seals `plain` for the row keyed `id_hash`.
    pub fn seal(&self, plain: &[u8], id_hash: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: id_hash,
                },
            )
            .expect("encrypting in memory cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, sealed: &[u8], id_hash: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, data) = sealed.split_at(24);
        XChaCha20Poly1305::new((&self.key).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: data,
                    aad: id_hash,
                },
            )
            .ok()
    }

    /// Records a new session for what Supabase Auth answered; returns the cookie's value.
    pub async fn create(
        &self,
        auth: &AuthSession,
        user_id: Uuid,
    ) -> Result<(String, Session), SessionError> {
        let value = random_value();
        let id_hash = hash(&value);
        let session = Session {
            id_hash,
            user_id,
            access_token: auth.access_token.clone(),
            refresh_token: auth.refresh_token.clone(),
            access_expires_at: auth.expires_at.unwrap_or_else(|| now() + auth.expires_in),
            expires_at: now() + self.lifetime.as_secs() as i64,
        };
        let sealed = self.seal_tokens(&session);
        let client = self.db.connection().await?;
        // Sessions over for a day go on the way, so the table holds live ones and recent history.
        client
            .execute(
                "DELETE FROM dana_bff.sessions
                  WHERE expires_at < now() - interval '1 day' OR revoked_at < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(DbError::from)?;
        client
            .execute(
                "INSERT INTO dana_bff.sessions (id_hash, user_id, sealed_tokens, access_expires_at, expires_at)
                 VALUES ($1, $2, $3, to_timestamp($4), to_timestamp($5))",
                &[
                    &id_hash.as_slice(),
                    &user_id,
                    &sealed,
                    &(session.access_expires_at as f64),
                    &(session.expires_at as f64),
                ],
            )
            .await
            .map_err(DbError::from)?;
        Ok((value, session))
    }

    fn seal_tokens(&self, session: &Session) -> Vec<u8> {
        let tokens = Tokens {
            access_token: session.access_token.clone(),
            refresh_token: session.refresh_token.clone(),
        };
        self.seal(
            &serde_json::to_vec(&tokens).expect("tokens serialize"),
            &session.id_hash,
        )
    }

    fn session_of_row(&self, row: &tokio_postgres::Row) -> Result<Session, SessionError> {
        let id: Vec<u8> = row.get(0);
        let id_hash: [u8; 32] = id.try_into().map_err(|_| SessionError::Sealed)?;
        let sealed: Vec<u8> = row.get(2);
        let plain = self.open(&sealed, &id_hash).ok_or(SessionError::Sealed)?;
        let tokens: Tokens = serde_json::from_slice(&plain).map_err(|_| SessionError::Sealed)?;
        Ok(Session {
            id_hash,
            user_id: row.get(1),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at: row.get::<_, f64>(3) as i64,
            expires_at: row.get::<_, f64>(4) as i64,
        })
    }

    const SELECT: &'static str =
        "SELECT id_hash, user_id, sealed_tokens, extract(epoch FROM access_expires_at)::float8,
                extract(epoch FROM expires_at)::float8 FROM dana_bff.sessions
          WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now()";

    /// The live session of a cookie value, as stored (its access token may be near expiry).
    pub async fn load(&self, cookie: &str) -> Result<Option<Session>, SessionError> {
        let client = self.db.connection().await?;
        let row = client
            .query_opt(Self::SELECT, &[&hash(cookie).as_slice()])
            .await
            .map_err(DbError::from)?;
        row.map(|r| self.session_of_row(&r)).transpose()
    }

    /// The session of a cookie value with an access token good for at least the refresh margin,
    /// refreshed if needed (one refresh per session, whichever instance does it).
    /// [`SessionError::Ended`] when the cookie names no live session.
    pub async fn current(&self, cookie: &str) -> Result<Session, SessionError> {
        let session = self.load(cookie).await?.ok_or(SessionError::Ended)?;
        if session.access_expires_at - now() > self.refresh_margin.as_secs() as i64 {
            return Ok(session);
        }
        self.refresh(cookie).await
    }

    async fn refresh(&self, cookie: &str) -> Result<Session, SessionError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        let row = tx
            .query_opt(
                &format!("{} FOR UPDATE", Self::SELECT),
                &[&hash(cookie).as_slice()],
            )
            .await
            .map_err(DbError::from)?
            .ok_or(SessionError::Ended)?;
        let session = self.session_of_row(&row)?;
        // Someone else refreshed while this one waited for the lock.
        if session.access_expires_at - now() > self.refresh_margin.as_secs() as i64 {
            return Ok(session);
        }
        match self.auth.refresh(&session.refresh_token).await {
            Ok(fresh) => {
                let renewed = Session {
                    access_token: fresh.access_token.clone(),
                    refresh_token: fresh.refresh_token.clone(),
                    access_expires_at: fresh.expires_at.unwrap_or_else(|| now() + fresh.expires_in),
                    expires_at: now() + self.lifetime.as_secs() as i64,
                    ..session
                };
                tx.execute(
                    "UPDATE dana_bff.sessions SET sealed_tokens = $2, access_expires_at = to_timestamp($3),
                            expires_at = to_timestamp($4), refreshed_at = now() WHERE id_hash = $1",
                    &[
                        &renewed.id_hash.as_slice(),
                        &self.seal_tokens(&renewed),
                        &(renewed.access_expires_at as f64),
                        &(renewed.expires_at as f64),
                    ],
                )
                .await
                .map_err(DbError::from)?;
                tx.commit().await.map_err(DbError::from)?;
                Ok(renewed)
            }
            Err(e) if e.ends_session() => {
                tracing::info!(user = %session.user_id, error = %e, "a session's refresh was refused; it ends");
                tx.execute(
                    "UPDATE dana_bff.sessions SET revoked_at = now() WHERE id_hash = $1",
                    &[&session.id_hash.as_slice()],
                )
                .await
                .map_err(DbError::from)?;
                tx.commit().await.map_err(DbError::from)?;
                Err(SessionError::Ended)
            }
            // Auth unreachable: a token not yet expired still serves.
            Err(e) if session.access_expires_at > now() => {
                tracing::warn!(error = %e, "refreshing a session failed; its access token is still valid");
                Ok(session)
            }
            Err(e) => Err(SessionError::Auth(e)),
        }
    }

    /// Ends a session here and at Supabase Auth (its refresh token stops working there too).
    pub async fn end(&self, session: &Session) -> Result<(), SessionError> {
        if let Err(e) = self.auth.sign_out(&session.access_token).await {
            // Already over there (expired token) is fine; unreachable is logged, the session still ends here.
            tracing::warn!(error = %e, "signing out at Supabase Auth failed");
        }
        let client = self.db.connection().await?;
        client
            .execute(
                "UPDATE dana_bff.sessions SET revoked_at = now() WHERE id_hash = $1",
                &[&session.id_hash.as_slice()],
            )
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a `__Host-` cookie: Secure, HttpOnly, SameSite=Lax (it must come along on
/// the top-level redirect back from a provider), Path=/, no Domain.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> http::HeaderValue {
    let cookie = cookie::Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    http::HeaderValue::from_str(&cookie.to_string()).expect("a cookie of URL-safe characters")
}

/// `Set-Cookie` that removes a cookie.
pub fn clear_cookie(name: &str) -> http::HeaderValue {
    set_cookie(name, "", Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_host_prefixed_and_hidden_from_scripts() {
        let header = set_cookie(COOKIE, "abc", Duration::from_secs(60));
        let text = header.to_str().unwrap();
        for part in [
            "__Host-dana_session=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        assert!(!text.to_ascii_lowercase().contains("domain"), "{text}");
        assert!(clear_cookie(COOKIE).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; __Host-dana_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie_value(&headers, "missing"), None);
    }

    #[test]
    fn sealed_tokens_open_only_for_their_row() {
        let db = Db::new("postgresql://x@127.0.0.1/x", 1).unwrap();
        let auth = AuthApi::new(&url::Url::parse("http://127.0.0.1:9").unwrap(), "k").unwrap();
        let sessions = Sessions::new(
            db,
            auth,
            [7; 32],
            Duration::from_secs(60),
            Duration::from_secs(10),
        );
        let sealed = sessions.seal(b"tokens", b"row-1");
        assert_eq!(sessions.open(&sealed, b"row-1").unwrap(), b"tokens");
        assert!(sessions.open(&sealed, b"row-2").is_none());
        assert!(!sealed.windows(6).any(|w| w == b"tokens"));
    }
}
