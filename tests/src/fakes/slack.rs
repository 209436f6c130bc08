//! A fake of Slack: the OAuth v2 install flow and the Web API methods Dana calls, in Slack's wire
//! format (`{"ok": true, …}` / `{"ok": false, "error": "…"}`, HTTP 200 except `ratelimited`: 429
//! with `Retry-After`).
//!
//! | endpoint | as Slack |
//! |---|---|
//! | `GET /oauth/v2/authorize?client_id&scope&redirect_uri&state&code_challenge&code_challenge_method` | the user approves at once: redirect to `redirect_uri?code=…&state=…`; an unknown client or an unregistered redirect URI is refused |
//! | `POST /api/oauth.v2.access` | code → bot token (`invalid_client`, `invalid_code`, `code_already_used`, `bad_redirect_uri`, `invalid_code_verifier`); `grant_type=refresh_token` → rotated tokens (a used refresh token is `invalid_refresh_token`) |
//! | `POST /api/auth.test` | the token's team and bot; `invalid_auth` for an unknown or expired token |
//! | `POST /api/chat.postMessage` | `{channel, text, thread_ts?}` → the message; `channel_not_found`, `not_in_channel` |
//! | `GET /api/conversations.history?channel&limit` | newest first |
//! | `GET /api/conversations.replies?channel&ts` | the thread, parent first |
//!
//! Channels: `C0GENERAL01` and `C0RANDOM001` (the bot is in both), `C0PRIVATE01` (it is not).
//! `C0RATELIMIT` always answers `ratelimited`.

use super::{json, random_token, redirect, FakeRequest, FakeResponse};
use http::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct SlackConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Redirect URIs registered for the app.
    pub redirect_uris: Vec<String>,
    /// With token rotation, bot tokens expire and come with a refresh token.
    pub rotation: Option<Duration>,
}

struct Grant {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    used: bool,
}

#[derive(Default)]
struct State {
    grants: HashMap<String, Grant>,
    /// Bot token → when it expires (None: never).
    tokens: HashMap<String, Option<SystemTime>>,
    /// Refresh token → used already.
    refresh_tokens: HashMap<String, bool>,
    /// Channel → messages (ts, text, thread_ts), oldest first.
    messages: HashMap<String, Vec<(String, String, Option<String>)>>,
    next_ts: u64,
}

#[derive(Clone)]
pub struct FakeSlack {
    pub url: String,
    state: Arc<Mutex<State>>,
}

const CHANNELS: &[&str] = &["C0GENERAL01", "C0RANDOM001"];

impl FakeSlack {
    pub fn start(listener: tokio::net::TcpListener, config: SlackConfig) -> FakeSlack {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeSlack {
            url,
            state: Arc::new(Mutex::new(State::default())),
        };
        let (inner, config) = (fake.clone(), Arc::new(config));
        super::serve(listener, move |request| {
            let (fake, config) = (inner.clone(), config.clone());
            async move { fake.handle(&config, request) }
        });
        fake
    }

    pub async fn start_local(config: SlackConfig) -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeSlack::start(listener, config)
    }

    /// Makes every issued bot token expire now (as if the rotation period ran out).
    pub fn expire_tokens(&self) {
        let mut state = self.state.lock().unwrap();
        for expiry in state.tokens.values_mut() {
            *expiry = Some(SystemTime::now() - Duration::from_secs(1));
        }
    }

    /// The texts posted to a channel, oldest first.
    pub fn posted(&self, channel: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .messages
            .get(channel)
            .map(|m| m.iter().map(|(_, text, _)| text.clone()).collect())
            .unwrap_or_default()
    }

    fn handle(&self, config: &SlackConfig, request: FakeRequest) -> FakeResponse {
        match request.path.as_str() {
            "/oauth/v2/authorize" => self.authorize(config, &request),
            "/api/oauth.v2.access" => self.access(config, &request),
            path => {
                let method = path.strip_prefix("/api/").unwrap_or("");
                if ![
                    "auth.test",
                    "chat.postMessage",
                    "conversations.history",
                    "conversations.replies",
                ]
                .contains(&method)
                {
                    return json(
                        StatusCode::NOT_FOUND,
                        &json!({"ok": false, "error": "unknown_method"}),
                    );
                }
                let token = request.bearer().unwrap_or("").to_owned();
                let valid = {
                    let state = self.state.lock().unwrap();
                    state
                        .tokens
                        .get(&token)
                        .is_some_and(|expiry| expiry.is_none_or(|at| at > SystemTime::now()))
                };
                if !valid {
                    return fail(if token.is_empty() {
                        "not_authed"
                    } else {
                        "invalid_auth"
                    });
                }
                self.web_api(method, &request)
            }
        }
    }

    fn authorize(&self, config: &SlackConfig, request: &FakeRequest) -> FakeResponse {
        if request.query("client_id") != Some(config.client_id.as_str()) {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"ok": false, "error": "invalid_client_id"}),
            );
        }
        let redirect_uri = request.query("redirect_uri").unwrap_or("");
        if !config.redirect_uris.iter().any(|r| r == redirect_uri) {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"ok": false, "error": "bad_redirect_uri"}),
            );
        }
        let code = random_token("fake-code-");
        self.state.lock().unwrap().grants.insert(
            code.clone(),
            Grant {
                redirect_uri: redirect_uri.to_owned(),
                challenge: request.query("code_challenge").map(str::to_owned),
                scope: request.query("scope").unwrap_or("").to_owned(),
                used: false,
            },
        );
        let state =
            url::form_urlencoded::byte_serialize(request.query("state").unwrap_or("").as_bytes())
                .collect::<String>();
        redirect(&format!("{redirect_uri}?code={code}&state={state}"))
    }

    fn access(&self, config: &SlackConfig, request: &FakeRequest) -> FakeResponse {
        let fields = request.fields();
        let field = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        // Client credentials come in the body or as HTTP Basic.
        let basic = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let (id, secret) = match basic.as_deref().and_then(|b| b.split_once(':')) {
            Some((id, secret)) => (id.to_owned(), secret.to_owned()),
            None => (field("client_id"), field("client_secret")),
        };
        if id != config.client_id || secret != config.client_secret {
            return fail("invalid_client");
        }
        let mut state = self.state.lock().unwrap();
        let scope = if field("grant_type") == "refresh_token" {
            match state.refresh_tokens.get_mut(&field("refresh_token")) {
                Some(used) if !*used => {
                    *used = true;
                    "chat:write,channels:history".to_owned()
                }
                _ => return fail("invalid_refresh_token"),
            }
        } else {
            let Some(grant) = state.grants.get_mut(&field("code")) else {
                return fail("invalid_code");
            };
            if grant.used {
                return fail("code_already_used");
            }
            grant.used = true;
            if grant.redirect_uri != field("redirect_uri") {
                return fail("bad_redirect_uri");
            }
            if let Some(challenge) = &grant.challenge {
                let computed = base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    Sha256::digest(field("code_verifier").as_bytes()),
                );
                if &computed != challenge {
                    return fail("invalid_code_verifier");
                }
            }
            grant.scope.clone()
        };
        let prefix = if config.rotation.is_some() {
            "xoxe.xoxb-"
        } else {
            "xoxb-"
        };
        let token = random_token(&format!("{prefix}1-"));
        let expiry = config.rotation.map(|ttl| SystemTime::now() + ttl);
        state.tokens.insert(token.clone(), expiry);
        let mut answer = json!({
            "ok": true, "app_id": "A0FAKEAPP", "authed_user": {"id": "U0INSTALLER"},
            "scope": scope, "token_type": "bot", "access_token": token, "bot_user_id": "U0DANABOT",
            "team": {"id": "T0FAKETEAM", "name": "Fake Team"}, "enterprise": null,
            "is_enterprise_install": false,
        });
        if let Some(ttl) = config.rotation {
            let refresh = random_token("xoxe-1-");
            state.refresh_tokens.insert(refresh.clone(), false);
            answer["refresh_token"] = refresh.into();
            answer["expires_in"] = ttl.as_secs().into();
        }
        json(StatusCode::OK, &answer)
    }

    fn web_api(&self, method: &str, request: &FakeRequest) -> FakeResponse {
        let fields = request.fields();
        let param = |name: &str| {
            request
                .query(name)
                .map(str::to_owned)
                .or_else(|| fields.get(name).and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default()
        };
        if method == "auth.test" {
            return json(
                StatusCode::OK,
                &json!({"ok": true, "url": "https://fake-team.slack.com/", "team": "Fake Team",
                "user": "dana", "team_id": "T0FAKETEAM", "user_id": "U0DANABOT", "bot_id": "B0DANABOT"}),
            );
        }
        let channel = param("channel");
        if channel == "C0RATELIMIT" {
            let mut response = json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"ok": false, "error": "ratelimited"}),
            );
            response
                .headers_mut()
                .insert("retry-after", "30".parse().unwrap());
            return response;
        }
        if channel == "C0PRIVATE01" {
            return fail("not_in_channel");
        }
        if !CHANNELS.contains(&channel.as_str()) {
            return fail("channel_not_found");
        }
        let mut state = self.state.lock().unwrap();
        match method {
            "chat.postMessage" => {
                let text = param("text");
                if text.is_empty() {
                    return fail("no_text");
                }
                state.next_ts += 1;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let ts = format!("{now}.{:06}", state.next_ts);
                let thread = Some(param("thread_ts")).filter(|t| !t.is_empty());
                state.messages.entry(channel.clone()).or_default().push((
                    ts.clone(),
                    text.clone(),
                    thread.clone(),
                ));
                json(
                    StatusCode::OK,
                    &json!({"ok": true, "channel": channel, "ts": ts,
                    "message": {"type": "message", "user": "U0DANABOT", "text": text, "ts": ts, "thread_ts": thread}}),
                )
            }
            "conversations.history" => {
                let limit: usize = param("limit").parse().unwrap_or(100);
                let messages: Vec<Value> = state
                    .messages
                    .get(&channel)
                    .map(|m| {
                        m.iter()
                            .rev()
                            .filter(|(_, _, thread)| thread.is_none())
                            .take(limit)
                            .map(|(ts, text, _)| json!({"type": "message", "user": "U0DANABOT", "text": text, "ts": ts}))
                            .collect()
                    })
                    .unwrap_or_default();
                json(
                    StatusCode::OK,
                    &json!({"ok": true, "messages": messages, "has_more": false}),
                )
            }
            _ => {
                let ts = param("ts");
                let messages: Vec<Value> = state
                    .messages
                    .get(&channel)
                    .map(|m| {
                        m.iter()
                            .filter(|(own, _, thread)| *own == ts || thread.as_deref() == Some(ts.as_str()))
                            .map(|(own, text, thread)| json!({"type": "message", "user": "U0DANABOT", "text": text, "ts": own, "thread_ts": thread.clone().unwrap_or_else(|| own.clone())}))
                            .collect()
                    })
                    .unwrap_or_default();
                if messages.is_empty() {
                    return fail("thread_not_found");
                }
                json(
                    StatusCode::OK,
                    &json!({"ok": true, "messages": messages, "has_more": false}),
                )
            }
        }
    }
}

fn fail(error: &str) -> FakeResponse {
    json(StatusCode::OK, &json!({"ok": false, "error": error}))
}
