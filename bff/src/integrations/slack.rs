//! Slack's Web API, for the methods Dana calls with a user's bot token. Slack answers HTTP 200
//! with `{"ok": false, "error": "…"}` for most failures, and 429 with `Retry-After` when rate
//! limited; [`SlackError`] keeps the error code, and [`SlackError::problem`] says what the
//! browser sees.
//!
//! A small reqwest client rather than a Slack SDK crate: the maintained ones (slack-morphism)
//! bring their own HTTP stack and models for hundreds of methods; Dana calls four.

use crate::error::Problem;
use http::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Answers larger than this are not the Web API's (a page of history is a few hundred kB).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `ok: false`.
    #[error("Slack refused: {error}")]
    Api {
        error: String,
        retry_after: Option<u64>,
    },
    #[error("Slack is unreachable: {0}")]
    Unavailable(String),
}

/// Errors that mean the stored token no longer works: the config is marked `error`.
pub const TOKEN_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
];

impl SlackError {
    pub fn is_token_error(&self) -> bool {
        matches!(self, SlackError::Api { error, .. } if TOKEN_ERRORS.contains(&error.as_str()))
    }

    /// The answer to the browser.
    pub fn problem(&self) -> Problem {
        match self {
            SlackError::Unavailable(why) => Problem::unavailable("Slack is unreachable", why),
            SlackError::Api { error, retry_after } => {
                let (status, message, hint) = match error.as_str() {
                    "ratelimited" => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "Slack rate-limited this request",
                        "Retry after the number of seconds in Retry-After.",
                    ),
                    "channel_not_found" => (
                        StatusCode::NOT_FOUND,
                        "Slack has no such channel, or the bot cannot see it",
                        "Check the channel id (C…).",
                    ),
                    "not_in_channel" => (
                        StatusCode::FORBIDDEN,
                        "the Slack bot is not a member of this channel",
                        "Invite the bot to the channel in Slack (/invite @bot).",
                    ),
                    "thread_not_found" | "message_not_found" => (
                        StatusCode::NOT_FOUND,
                        "Slack has no such thread",
                        "Check thread_ts.",
                    ),
                    "missing_scope" => (
                        StatusCode::FORBIDDEN,
                        "the Slack install lacks a scope this needs",
                        "Connect Slack again to grant the scopes.",
                    ),
                    "is_archived" => (
                        StatusCode::CONFLICT,
                        "the Slack channel is archived",
                        "Use another channel.",
                    ),
                    "msg_too_long" | "no_text" | "invalid_arguments" | "invalid_ts_latest"
                    | "invalid_ts_oldest" | "invalid_cursor" => (
                        StatusCode::BAD_REQUEST,
                        "Slack refused the request's arguments",
                        "Check the fields sent.",
                    ),
                    e if TOKEN_ERRORS.contains(&e) => (
                        StatusCode::FORBIDDEN,
                        "Slack refused the stored token",
                        "Connect Slack again.",
                    ),
                    _ => (
                        StatusCode::BAD_GATEWAY,
                        "Slack refused the request",
                        "See details for Slack's error code.",
                    ),
                };
                let mut p = Problem::new(status, message)
                    .details(error.clone())
                    .hint(hint);
                p.retry_after = *retry_after;
                p
            }
        }
    }
}

/// Slack's Web API at a base URL (`https://slack.com/api`, or the fake in tests).
#[derive(Clone)]
pub struct SlackApi {
    base: String,
    http: reqwest::Client,
}

impl SlackApi {
    pub fn new(base: &str, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// A method that takes a JSON body (`auth.test`, `chat.postMessage`).
    pub async fn post(&self, token: &str, method: &str, body: &Value) -> Result<Value, SlackError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(token)
            .json(body);
        self.send(request).await
    }

    /// A read method that takes query parameters (`conversations.history`, `…replies`).
    pub async fn get(
        &self,
        token: &str,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        let request = self
            .http
            .get(format!("{}/{method}", self.base))
            .bearer_auth(token)
            .query(query);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, SlackError> {
        let response = request
            .send()
            .await
            .map_err(|e| SlackError::Unavailable(crate::proxy::root_cause(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SlackError::Api {
                error: "ratelimited".into(),
                retry_after: retry_after.or(Some(60)),
            });
        }
        if status.is_server_error() {
            return Err(SlackError::Unavailable(format!("HTTP {status}")));
        }
        let body = dana_supabase::bounded::read_body(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| SlackError::Unavailable(e.to_string()))?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| SlackError::Unavailable(format!("HTTP {status}, not JSON")))?;
        if answer["ok"] == Value::Bool(true) {
            return Ok(answer);
        }
        Err(SlackError::Api {
            error: answer["error"]
                .as_str()
                .unwrap_or("unknown_error")
                .to_owned(),
            retry_after,
        })
    }
}

/// The HTTP client for provider calls: no redirects (a token must never follow one), bounded
/// waits.
pub fn provider_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a TLS backend is compiled in")
}
