//! `/api/slack/*`: Slack through the signed-in user's own stored Slack integration (its bot
//! token, refreshed first when it rotates; its `channel_id` as the default channel).
//!
//! | route | Slack method |
//! |---|---|
//! | `GET /api/slack/health` | `auth.test`: is the stored token good, and for which team and bot |
//! | `GET /api/slack/messages?channel=&limit=` | `conversations.history` |
//! | `POST /api/slack/messages` `{"text", "channel"?, "thread_ts"?}` | `chat.postMessage` |
//! | `GET /api/slack/threads/{thread_ts}?channel=` | `conversations.replies` |
//!
//! Slack's errors become statuses (see `SlackError::problem`); a refused token also marks the
//! integration `error`, so the user sees it must be connected again.

use crate::app::App;
use crate::body::{json_response, read_json, read_query, Body};
use crate::db::User;
use crate::error::{ApiError, Problem};
use crate::integrations::slack::SlackError;
use crate::integrations::Secrets;
use crate::routes::integrations::{fresh_secrets, signed_in};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

/// Slack's own limit on a message's text.
const MAX_TEXT_CHARS: usize = 40_000;
const MAX_POST_BODY: usize = 256 * 1024;

pub async fn route(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (path.as_str(), method) {
        ("/api/slack/health", Method::GET) => health(app, &request).await,
        ("/api/slack/messages", Method::GET) => history(app, &request).await,
        ("/api/slack/messages", Method::POST) => post_message(app, request).await,
        (p, Method::GET) if p.starts_with("/api/slack/threads/") => thread(app, &request).await,
        ("/api/slack/health", _) => Err(Problem::method_not_allowed("GET")),
        ("/api/slack/messages", _) => Err(Problem::method_not_allowed("GET or POST")),
        (p, _) if p.starts_with("/api/slack/threads/") => Err(Problem::method_not_allowed("GET")),
        (other, _) => Err(ApiError::NotFound(other.to_owned())),
    }
}

/// The user and their Slack config with a usable token.
async fn slack_of(app: &App, request: &Request<Incoming>) -> Result<(User, Secrets), ApiError> {
    let (user, _) = signed_in(app, request.headers()).await?;
    let secrets = fresh_secrets(app, &user, "slack").await?;
    Ok((user, secrets))
}

/// Calls Slack; a refused token marks the config `error` before the error is answered.
async fn call(
    app: &App,
    secrets: &Secrets,
    work: impl std::future::Future<Output = Result<Value, SlackError>>,
) -> Result<Value, ApiError> {
    match work.await {
        Ok(answer) => Ok(answer),
        Err(e) => {
            if e.is_token_error() {
                if let Err(db) = app
                    .integrations
                    .record_verification(secrets.id, Err(e.to_string()))
                    .await
                {
                    tracing::warn!(error = %db, "recording a refused Slack token failed");
                }
            }
            Err(e.problem().into())
        }
    }
}

fn token(secrets: &Secrets) -> &str {
    secrets.get("bot_token").unwrap_or_default()
}

/// The channel asked for, else the config's default; checked to be a Slack channel id.
fn channel(asked: Option<&str>, secrets: &Secrets) -> Result<String, ApiError> {
    let channel = asked
        .filter(|c| !c.is_empty())
        .or_else(|| secrets.get("channel_id"))
        .ok_or_else(|| {
            Problem::bad_request(
                "no channel: pass `channel`, or set channel_id in the Slack integration",
            )
        })?;
    let valid = channel.len() >= 3
        && channel.len() <= 24
        && matches!(channel.as_bytes()[0], b'C' | b'G' | b'D')
        && channel
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !valid {
        return Err(Problem::bad_request(
            "channel must be a Slack channel id such as C0123ABCD",
        ));
    }
    Ok(channel.to_owned())
}

/// Slack's message timestamps: `1712345678.000100`.
fn check_ts(ts: &str) -> Result<(), ApiError> {
    let valid = ts.len() <= 32
        && ts.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "thread_ts must be a Slack timestamp such as 1712345678.000100",
        ))
    }
}

async fn health(app: &App, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (_, secrets) = slack_of(app, request).await?;
    let answer = call(
        app,
        &secrets,
        app.slack.post(token(&secrets), "auth.test", &json!({})),
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "team": answer["team"], "team_id": answer["team_id"],
            "bot_user_id": answer["user_id"], "bot_id": answer["bot_id"],
            "status": secrets.status,
        }),
    ))
}

#[derive(Deserialize)]
struct HistoryQuery {
    channel: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn history(app: &App, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let query: HistoryQuery = read_query(request.uri())?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 200"));
    }
    let (_, secrets) = slack_of(app, request).await?;
    let channel = channel(query.channel.as_deref(), &secrets)?;
    let limit = limit.to_string();
    let mut params = vec![("channel", channel.as_str()), ("limit", limit.as_str())];
    if let Some(cursor) = query.cursor.as_deref() {
        params.push(("cursor", cursor));
    }
    let answer = call(
        app,
        &secrets,
        app.slack
            .get(token(&secrets), "conversations.history", &params),
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "channel": channel,
            "messages": answer["messages"],
            "has_more": answer["has_more"].as_bool().unwrap_or(false),
            "next_cursor": answer["response_metadata"]["next_cursor"],
        }),
    ))
}

#[derive(Deserialize)]
struct NewMessage {
    text: String,
    channel: Option<String>,
    thread_ts: Option<String>,
}

async fn post_message(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (_, secrets) = slack_of(app, &request).await?;
    let (parts, body) = request.into_parts();
    let message: NewMessage = read_json(&parts.headers, body, MAX_POST_BODY).await?;
    if message.text.trim().is_empty() {
        return Err(Problem::bad_request("text must not be empty"));
    }
    if message.text.chars().count() > MAX_TEXT_CHARS {
        return Err(Problem::bad_request(format!(
            "text is longer than Slack's {MAX_TEXT_CHARS} characters"
        )));
    }
    let channel = channel(message.channel.as_deref(), &secrets)?;
    let mut body = json!({"channel": channel, "text": message.text});
    if let Some(ts) = message.thread_ts.as_deref() {
        check_ts(ts)?;
        body["thread_ts"] = Value::String(ts.to_owned());
    }
    let answer = call(
        app,
        &secrets,
        app.slack.post(token(&secrets), "chat.postMessage", &body),
    )
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"channel": answer["channel"], "ts": answer["ts"], "message": answer["message"]}),
    ))
}

#[derive(Deserialize)]
struct ThreadQuery {
    channel: Option<String>,
}

async fn thread(app: &App, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let ts = request
        .uri()
        .path()
        .strip_prefix("/api/slack/threads/")
        .unwrap_or_default()
        .to_owned();
    check_ts(&ts)?;
    let query: ThreadQuery = read_query(request.uri())?;
    let (_, secrets) = slack_of(app, request).await?;
    let channel = channel(query.channel.as_deref(), &secrets)?;
    let answer = call(
        app,
        &secrets,
        app.slack.get(
            token(&secrets),
            "conversations.replies",
            &[("channel", &channel), ("ts", &ts)],
        ),
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"channel": channel, "thread_ts": ts, "messages": answer["messages"]}),
    ))
}
