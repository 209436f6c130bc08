//! OAuth flows under way: a sign-in through Supabase Auth, or an integration's install. Each is
//! a row of `dana_bff.oauth_states`, keyed by the SHA-256 of its `state` (the random value the
//! browser carries, in a cookie for sign-in and in the provider's redirect for installs), with
//! the PKCE verifier sealed like session tokens. A state is single-use (`used_at` is set by the
//! same statement that reads it), lives ten minutes, and an install's state belongs to the
//! session that started it.

use crate::db::DbError;
use crate::error::{ApiError, Problem};
use crate::session::{hash, random_value, Sessions};
use base64::Engine;
use http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

/// How long a browser may take on the provider's pages.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login,
    Integration,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Integration => "integration",
        }
    }
}

/// A flow being started.
pub struct NewFlow<'a> {
    pub purpose: Purpose,
    pub provider: &'a str,
    /// The session an install belongs to (`None` for sign-in).
    pub session: Option<(&'a [u8; 32], Uuid)>,
    pub return_to: &'a str,
    pub extra: Value,
}

/// A flow that came back, with what it started with.
#[derive(Debug)]
pub struct Flow {
    pub provider: String,
    pub user_id: Option<Uuid>,
    pub verifier: String,
    pub return_to: String,
    pub extra: Value,
}

/// A started flow: the state to hand to the browser, and the PKCE verifier (kept sealed in the
/// row) with its S256 challenge for the provider.
pub struct Started {
    pub state: String,
    pub verifier: String,
    pub code_challenge: String,
}

/// Why a flow's state is refused.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("the sign-in or install state is unknown or was already used")]
    Unknown,
    #[error("the sign-in or install took longer than {} minutes", FLOW_LIFETIME.as_secs() / 60)]
    Expired,
    #[error("the install was started by another session")]
    OtherSession,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FlowError> for ApiError {
    fn from(error: FlowError) -> Self {
        match error {
            FlowError::Db(DbError::Unavailable(why)) => Problem::database_unavailable(&why).into(),
            FlowError::Db(e) => ApiError::Internal(e.to_string()),
            refused => Problem::new(StatusCode::BAD_REQUEST, refused.to_string())
                .hint("Start again from the beginning.")
                .into(),
        }
    }
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Records a new flow; returns its state and PKCE challenge. Flows long over are deleted on the
/// way, so the table holds only the last day's.
pub async fn begin(sessions: &Sessions, flow: NewFlow<'_>) -> Result<Started, FlowError> {
    let state = random_value();
    // 43 characters of the URL-safe alphabet: a valid PKCE verifier (RFC 7636 §4.1).
    let verifier = random_value();
    let state_hash = hash(&state);
    let sealed = sessions.seal(verifier.as_bytes(), &state_hash);
    let client = sessions.db().connection().await?;
    client
        .execute(
            "DELETE FROM dana_bff.oauth_states WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    client
        .execute(
            "INSERT INTO dana_bff.oauth_states
               (state_hash, purpose, provider, session_hash, user_id, sealed_verifier, return_to, extra, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))",
            &[
                &state_hash.as_slice(),
                &flow.purpose.as_str(),
                &flow.provider,
                &flow.session.map(|(h, _)| h.as_slice()),
                &flow.session.map(|(_, user)| user),
                &sealed,
                &flow.return_to,
                &flow.extra,
                &(FLOW_LIFETIME.as_secs() as f64),
            ],
        )
        .await
        .map_err(DbError::from)?;
    Ok(Started {
        code_challenge: pkce_challenge(&verifier),
        verifier,
        state,
    })
}

/// Takes a flow back by its state, once. `session` is the caller's session for installs: the
/// flow must have been started by it.
pub async fn finish(
    sessions: &Sessions,
    state: &str,
    purpose: Purpose,
    session: Option<&[u8; 32]>,
) -> Result<Flow, FlowError> {
    let state_hash = hash(state);
    let client = sessions.db().connection().await?;
    let row = client
        .query_opt(
            "UPDATE dana_bff.oauth_states SET used_at = now()
              WHERE state_hash = $1 AND purpose = $2 AND used_at IS NULL
          RETURNING provider, session_hash, user_id, sealed_verifier, return_to, extra,
                    expires_at < now()",
            &[&state_hash.as_slice(), &purpose.as_str()],
        )
        .await
        .map_err(DbError::from)?
        .ok_or(FlowError::Unknown)?;
    if row.get::<_, bool>(6) {
        return Err(FlowError::Expired);
    }
    let started_by: Option<Vec<u8>> = row.get(1);
    if purpose == Purpose::Integration {
        let same = match (started_by, session) {
            (Some(a), Some(b)) => constant_time_eq::constant_time_eq(a.as_slice(), b.as_slice()),
            _ => false,
        };
        if !same {
            return Err(FlowError::OtherSession);
        }
    }
    let sealed: Vec<u8> = row.get(3);
    let verifier = sessions
        .open(&sealed, &state_hash)
        .and_then(|v| String::from_utf8(v).ok())
        // Sealed with another key (BFF_SESSION_KEY changed): as good as unknown.
        .ok_or(FlowError::Unknown)?;
    Ok(Flow {
        provider: row.get(0),
        user_id: row.get(2),
        verifier,
        return_to: row.get(4),
        extra: row.get(5),
    })
}

/// A local path to come back to after a flow (`returnUrl`): only paths of this site, so a
/// sign-in link cannot send the browser elsewhere (open redirect). Anything else is `/`.
pub fn local_return_url(candidate: Option<&str>) -> Result<String, ApiError> {
    let Some(candidate) = candidate.filter(|c| !c.is_empty()) else {
        return Ok("/".to_owned());
    };
    let local = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.starts_with("/\\")
        && candidate.len() <= 2048
        && !candidate.chars().any(|c| c.is_control() || c == '\\');
    if !local {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "returnUrl must be a path of this site",
        )
        .hint("Use a path such as /dashboard, not a full URL.")
        .into());
    }
    Ok(candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_rfc_7636s_example() {
        // RFC 7636, Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_local_paths_are_return_urls() {
        assert_eq!(local_return_url(None).unwrap(), "/");
        assert_eq!(local_return_url(Some("")).unwrap(), "/");
        assert_eq!(
            local_return_url(Some("/app?tab=1#x")).unwrap(),
            "/app?tab=1#x"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "app",
            "/a\r\nSet-Cookie: x=1",
        ] {
            assert!(local_return_url(Some(bad)).is_err(), "{bad}");
        }
    }
}
