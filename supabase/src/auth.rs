//! The BFF's calls to Supabase Auth (GoTrue): password and PKCE sign-in, refresh, sign-out.
//!
//! Written here rather than with the supabase-auth crate: that crate builds its own
//! `reqwest::Client::new()` — redirects followed, no timeout — with no way to hand it ours, and
//! reduces GoTrue's errors to a message, losing the `error_code` (`refresh_token_already_used`,
//! `bad_code_verifier`, …) that decides what the BFF does next. Token requests here follow no
//! redirects, time out, read a bounded body, and keep the code.

use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// A session as GoTrue answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSession {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub user: Value,
}

/// Why Supabase Auth did not give a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Supabase Auth answered and said no (wrong password, used refresh token, bad verifier…).
    #[error("Supabase Auth refused: {message} ({code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("Supabase Auth is unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// True when the refresh token can never work again: the session is over.
    pub fn ends_session(&self) -> bool {
        matches!(self, AuthError::Refused { status, code, .. }
            if *status < 500 && code != "over_request_rate_limit")
    }
}

/// Answers larger than this are not GoTrue's.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Supabase Auth at `base` (`https://<ref>.supabase.co/auth/v1`, or a GoTrue's root).
#[derive(Clone)]
pub struct AuthApi {
    base: String,
    api_key: String,
    http: reqwest::Client,
}

impl AuthApi {
    pub fn new(base: &Url, api_key: &str) -> Result<AuthApi, AuthError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(AuthApi {
            base: base.as_str().trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Where a browser starts signing in with `provider` (PKCE: the S256 challenge of a verifier
    /// the BFF keeps), coming back to `redirect_to` with `?code=`.
    pub fn authorize_url(&self, provider: &str, redirect_to: &str, code_challenge: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("provider", provider)
            .append_pair("redirect_to", redirect_to)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "s256")
            .finish();
        format!("{}/authorize?{query}", self.base)
    }

    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<AuthSession, AuthError> {
        self.token(
            "password",
            &serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn exchange_code(
        &self,
        auth_code: &str,
        code_verifier: &str,
    ) -> Result<AuthSession, AuthError> {
        self.token(
            "pkce",
            &serde_json::json!({"auth_code": auth_code, "code_verifier": code_verifier}),
        )
        .await
    }

    /// A new session for a refresh token (which is then spent: Supabase's are single-use).
    pub async fn refresh(&self, refresh_token: &str) -> Result<AuthSession, AuthError> {
        self.token(
            "refresh_token",
            &serde_json::json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// Ends the session the access token belongs to (its refresh tokens stop working).
    pub async fn sign_out(&self, access_token: &str) -> Result<(), AuthError> {
        let response = self
            .http
            .post(format!("{}/logout?scope=local", self.base))
            .header("apikey", &self.api_key)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(refusal(response).await)
    }

    async fn token(&self, grant: &str, body: &Value) -> Result<AuthSession, AuthError> {
        let response = self
            .http
            .post(format!("{}/token?grant_type={grant}", self.base))
            .header("apikey", &self.api_key)
            .json(body)
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let bytes = read_bounded(response).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Unavailable(format!("not a session: {e}")))
    }
}

async fn read_bounded(response: reqwest::Response) -> Result<Vec<u8>, AuthError> {
    crate::bounded::read_body(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))
}

/// GoTrue's error, in either of its formats (`{code, error_code, msg}` or `{code, message}`).
async fn refusal(response: reqwest::Response) -> AuthError {
    let status = response.status().as_u16();
    if status >= 500 || status == 404 && response.headers().get("x-sb-error-code").is_none() {
        return AuthError::Unavailable(format!("HTTP {status}"));
    }
    let header_code = response
        .headers()
        .get("x-sb-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = read_bounded(response)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let code = header_code
        .or_else(|| body["error_code"].as_str().map(str::to_owned))
        .or_else(|| body["code"].as_str().map(str::to_owned))
        .or_else(|| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let message = ["msg", "message", "error_description"]
        .iter()
        .find_map(|k| body[*k].as_str())
        .unwrap_or("refused")
        .to_owned();
    AuthError::Refused {
        status,
        code,
        message,
    }
}
