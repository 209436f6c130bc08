//! Integrations through the BFF: the CRUD API, Slack installed by OAuth v2 (state, PKCE, token
//! rotation), verification, and the Slack routes, with secrets never in an answer.
//!
//! Slack is the fake of `dana_e2e::fakes::slack`, one per test (its tokens and messages are the
//! test's own), behind a BFF of the test's own whose Slack settings point at it. Supabase Auth is
//! the stack's fake; PostgreSQL and the extension are real.

use dana_e2e::browser_session::{no_redirects, Browser};
use dana_e2e::fakes::slack::{FakeSlack, SlackConfig};
use dana_e2e::processes::{free_port, BffProcess};
use dana_e2e::{connect, demo, setting, Stack};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

struct Setup {
    slack: FakeSlack,
    bff: BffProcess,
}

async fn setup(rotation: Option<Duration>) -> Setup {
    let port = free_port();
    let external = format!("http://127.0.0.1:{port}");
    let secret = "fake-slack-client-secret";
    let slack = FakeSlack::start_local(SlackConfig {
        client_id: "111.222".into(),
        client_secret: secret.into(),
        redirect_uris: vec![format!("{external}/api/integrations/slack/oauth/callback")],
        rotation,
    })
    .await;
    let (authorize, token, api) = (
        format!("{}/oauth/v2/authorize", slack.url),
        format!("{}/api/oauth.v2.access", slack.url),
        format!("{}/api", slack.url),
    );
    let bff = BffProcess::start_on(
        port,
        &[
            ("API_EXTERNAL_URL", Some(&external)),
            ("SLACK_CLIENT_ID", Some("111.222")),
            ("SLACK_CLIENT_SECRET", Some(secret)),
            ("SLACK_AUTHORIZE_URL", Some(&authorize)),
            ("SLACK_TOKEN_URL", Some(&token)),
            ("SLACK_API_URL", Some(&api)),
        ],
    );
    Setup { slack, bff }
}

/// Signs a demo user in (password `demo-password-<name>`) after removing their Slack config.
async fn signed_in(base: &str, email: &str, user_id: &str) -> Browser {
    connect()
        .await
        .execute(
            "DELETE FROM public.integration_configs WHERE user_id = $1::text::uuid AND integration_type = 'slack'",
            &[&user_id],
        )
        .await
        .unwrap();
    let mut browser = Browser::new(base);
    let name = email.split('@').next().unwrap();
    browser.login(email, &format!("demo-password-{name}")).await;
    browser
}

/// Starts an install; answers the provider's authorize URL.
async fn start(browser: &Browser) -> String {
    let (status, body) = browser
        .get_json("/api/integrations/slack/oauth/start?returnUrl=/settings/integrations")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["authorize_url"].as_str().unwrap().to_owned()
}

/// The user approves at Slack: answers the callback path with `code` and `state`.
async fn approve(authorize_url: &str, base: &str) -> String {
    let back = no_redirects().get(authorize_url).send().await.unwrap();
    assert_eq!(
        back.status(),
        StatusCode::FOUND,
        "{}",
        back.text().await.unwrap()
    );
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    location.strip_prefix(base).unwrap().to_owned()
}

async fn install(browser: &Browser) {
    let callback = approve(&start(browser).await, &browser.base).await;
    let done = browser.bare(Method::GET, &callback).send().await.unwrap();
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap()
    );
    assert_eq!(done.headers()["location"], "/settings/integrations");
}

/// The stored secrets in clear, read as the database superuser.
async fn stored_secrets(user_id: &str) -> Value {
    connect()
        .await
        .query_one(
            "SELECT dana.integration_secrets(id)::text FROM public.integration_configs
              WHERE user_id = $1::text::uuid AND integration_type = 'slack'",
            &[&user_id],
        )
        .await
        .map(|row| serde_json::from_str(&row.get::<_, String>(0)).unwrap())
        .unwrap_or(Value::Null)
}

fn param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn slack_installs_by_oauth_and_the_slack_routes_use_the_stored_token() {
    let Setup { slack, bff } = setup(None).await;
    let olga = signed_in(&bff.url, "olga@other.dana.dev", demo::OLGA).await;
    let authorize = start(&olga).await;
    assert!(authorize.starts_with(&slack.url), "{authorize}");
    assert_eq!(param(&authorize, "client_id"), "111.222");
    assert!(param(&authorize, "scope").contains("chat:write"));
    assert_eq!(param(&authorize, "code_challenge_method"), "S256");
    assert!(!param(&authorize, "state").is_empty());
    let callback = approve(&authorize, &bff.url).await;
    let done = olga.bare(Method::GET, &callback).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::FOUND);

    let secrets = stored_secrets(demo::OLGA).await;
    let bot_token = secrets["bot_token"]
        .as_str()
        .expect("the bot token is stored")
        .to_owned();
    assert!(bot_token.starts_with("xoxb-"));
    let mut bodies = Vec::new();
    let (status, config) = olga.get_json("/api/integrations/slack").await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["status"], "active");
    assert_eq!(config["config"]["team_id"], "T0FAKETEAM");
    assert!(
        config["config"]["bot_token"]
            .as_str()
            .unwrap()
            .contains('…'),
        "masked: {config}"
    );
    assert!(config.get("secrets").is_none());
    bodies.push(config.to_string());

    // The Slack routes post and read with the stored token.
    let (status, posted) = olga
        .send_json(
            Method::POST,
            "/api/slack/messages",
            &json!({"channel": "C0GENERAL01", "text": "hello from Dana"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!(
        slack.posted("C0GENERAL01"),
        vec!["hello from Dana".to_owned()]
    );
    let ts = posted["ts"].as_str().unwrap().to_owned();
    let (status, reply) = olga
        .send_json(
            Method::POST,
            "/api/slack/messages",
            &json!({"channel": "C0GENERAL01", "text": "a reply", "thread_ts": ts}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, history) = olga
        .get_json("/api/slack/messages?channel=C0GENERAL01&limit=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert!(history.to_string().contains("hello from Dana"));
    let (status, thread) = olga
        .get_json(&format!("/api/slack/threads/{ts}?channel=C0GENERAL01"))
        .await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    assert!(thread.to_string().contains("a reply"), "{thread}");
    let (status, health) = olga.get_json("/api/slack/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["team_id"], "T0FAKETEAM");
    bodies.extend([
        posted.to_string(),
        history.to_string(),
        thread.to_string(),
        health.to_string(),
    ]);

    // Slack's errors, as statuses.
    let cases = [
        ("C0PRIVATE01", StatusCode::FORBIDDEN, "not_in_channel"),
        ("C0NOSUCH01", StatusCode::NOT_FOUND, "channel_not_found"),
        ("C0RATELIMIT", StatusCode::TOO_MANY_REQUESTS, "ratelimited"),
    ];
    for (channel, status, code) in cases {
        let response = olga
            .fetch(Method::POST, "/api/slack/messages")
            .json(&json!({"channel": channel, "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{channel}");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "30");
        }
        let body = response.text().await.unwrap();
        assert!(body.contains(code), "{body}");
        bodies.push(body);
    }
    // Bad input never reaches Slack.
    for body in [
        json!({"text": "no channel"}),
        json!({"channel": "C0GENERAL01", "text": ""}),
        json!({"channel": "#general", "text": "x"}),
        json!({"channel": "C0GENERAL01", "text": "x", "thread_ts": "yesterday"}),
        json!({"channel": "C0GENERAL01"}),
    ] {
        let (status, answer) = olga
            .send_json(Method::POST, "/api/slack/messages", &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
    }
    assert_eq!(
        olga.get_json("/api/slack/threads/not-a-ts?channel=C0GENERAL01")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        olga.get_json("/api/slack/messages?channel=C0GENERAL01&limit=1000")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(slack.posted("C0GENERAL01").len(), 2);

    let (_, list) = olga.get_json("/api/integrations").await;
    bodies.push(list.to_string());
    for body in &bodies {
        assert!(!body.contains(&bot_token), "the bot token in {body}");
    }
}

#[tokio::test]
async fn a_forged_replayed_expired_or_foreign_state_is_refused_and_a_failed_exchange_stores_nothing(
) {
    let Setup { bff, .. } = setup(None).await;
    let admin = signed_in(&bff.url, "admin@demo.dana.dev", demo::ADMIN).await;

    // Tampered state.
    let callback = approve(&start(&admin).await, &bff.url).await;
    let state = param(&format!("http://x{callback}"), "state");
    let code = param(&format!("http://x{callback}"), "code");
    let tampered = format!(
        "/api/integrations/slack/oauth/callback?code={code}&state={}x",
        state
    );
    assert_eq!(
        admin
            .bare(Method::GET, &tampered)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );

    // Another session of the same user: the state is not its own.
    let mut other = Browser::new(&bff.url);
    other
        .login("admin@demo.dana.dev", "demo-password-admin")
        .await;
    let foreign = other.bare(Method::GET, &callback).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    assert!(foreign.text().await.unwrap().contains("another session"));

    // The state was spent by the refused attempt: the real browser must start again.
    let replay = admin.bare(Method::GET, &callback).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

    // Replayed after success.
    let callback = approve(&start(&admin).await, &bff.url).await;
    assert_eq!(
        admin
            .bare(Method::GET, &callback)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FOUND
    );
    assert_eq!(
        admin
            .bare(Method::GET, &callback)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );

    // Expired (ten minutes passed).
    let admin = signed_in(&bff.url, "admin@demo.dana.dev", demo::ADMIN).await;
    let callback = approve(&start(&admin).await, &bff.url).await;
    connect()
        .await
        .execute("UPDATE dana_bff.oauth_states SET expires_at = now() - interval '1 second' WHERE used_at IS NULL", &[])
        .await
        .unwrap();
    let expired = admin.bare(Method::GET, &callback).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
    assert!(expired.text().await.unwrap().contains("longer than"));

    // Slack refuses the code (a used one here): reported, nothing stored.
    let authorize = start(&admin).await;
    let callback = approve(&authorize, &bff.url).await;
    let code = param(&format!("http://x{callback}"), "code");
    let state = param(&format!("http://x{callback}"), "state");
    let wrong_code = format!("/api/integrations/slack/oauth/callback?code={code}x&state={state}");
    let refused = admin.bare(Method::GET, &wrong_code).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    assert!(refused.text().await.unwrap().contains("invalid_code"));
    assert_eq!(
        admin.get_json("/api/integrations/slack").await.0,
        StatusCode::NOT_FOUND
    );

    // The user denied the install at Slack.
    let authorize = start(&admin).await;
    let state = param(&authorize, "state");
    let denied = admin
        .bare(
            Method::GET,
            &format!("/api/integrations/slack/oauth/callback?error=access_denied&state={state}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        admin.get_json("/api/integrations/slack").await.0,
        StatusCode::NOT_FOUND
    );

    // Starting needs the session cookie and X-CSRF (or a navigation from this site).
    let bearer = no_redirects()
        .get(format!("{}/api/integrations/slack/oauth/start", bff.url))
        .bearer_auth(setting("DEMO_ALICE_JWT"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);
    let cross_site = admin
        .bare(Method::GET, "/api/integrations/slack/oauth/start")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let navigation = admin
        .bare(Method::GET, "/api/integrations/slack/oauth/start")
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(navigation.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn rotated_tokens_are_refreshed_before_they_expire() {
    let Setup { slack, bff } = setup(Some(Duration::from_secs(43_200))).await;
    let ops = signed_in(&bff.url, "ops@dana.dev", demo::OPS).await;
    install(&ops).await;
    let before = stored_secrets(demo::OPS).await;
    assert!(before["bot_token"]
        .as_str()
        .unwrap()
        .starts_with("xoxe.xoxb-"));
    assert!(before["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("xoxe-"));
    let (_, config) = ops.get_json("/api/integrations/slack").await;
    assert!(config["config"]["token_expires_at"].is_string(), "{config}");

    // The token runs out at Slack, and is due here within the refresh margin.
    slack.expire_tokens();
    connect()
        .await
        .execute(
            "UPDATE public.integration_configs SET config = jsonb_set(config, '{token_expires_at}', to_jsonb(now() + interval '1 minute'))
              WHERE user_id = $1::text::uuid AND integration_type = 'slack'",
            &[&demo::OPS],
        )
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        ops.get_json("/api/slack/health"),
        ops.get_json("/api/slack/health")
    );
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    let after = stored_secrets(demo::OPS).await;
    assert_ne!(after["bot_token"], before["bot_token"]);
    assert_ne!(after["refresh_token"], before["refresh_token"]);
    let (_, config) = ops.get_json("/api/integrations/slack").await;
    assert_eq!(config["status"], "active", "{config}");
}

#[tokio::test]
async fn test_records_active_or_the_error_slack_gave() {
    let Setup { slack, bff } = setup(None).await;
    let bob = signed_in(&bff.url, "bob@other.dana.dev", demo::BOB).await;
    install(&bob).await;
    let (status, tested) = bob
        .send_json(Method::POST, "/api/integrations/slack/test", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{tested}");
    assert_eq!(tested["ok"], true);
    assert_eq!(tested["integration"]["status"], "active");

    slack.expire_tokens();
    let (status, tested) = bob
        .send_json(Method::POST, "/api/integrations/slack/test", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{tested}");
    assert_eq!(tested["ok"], false);
    assert_eq!(tested["integration"]["status"], "error");
    assert!(tested["integration"]["last_error"]
        .as_str()
        .unwrap()
        .contains("invalid_auth"));

    // Posting with the dead token: 403 naming Slack's error, the config stays in error.
    let (status, answer) = bob
        .send_json(
            Method::POST,
            "/api/slack/messages",
            &json!({"channel": "C0GENERAL01", "text": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer.to_string().contains("invalid_auth"));

    // Other types are not verified yet, and say so; a missing config is a 404.
    let (status, _) = bob
        .send_json(Method::POST, "/api/integrations/email/test", &json!({}))
        .await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::NOT_IMPLEMENTED,
        "{status}"
    );
}

#[tokio::test]
async fn the_integrations_api_validates_and_keeps_users_apart() {
    let stack = Stack::from_env();
    let mut alice = Browser::new(&stack.api_url);
    alice
        .login(&setting("DEMO_EMAIL"), &setting("DEMO_PASSWORD"))
        .await;
    let mut bob = Browser::new(&stack.api_url);
    bob.login(&setting("DEMO2_EMAIL"), &setting("DEMO2_PASSWORD"))
        .await;

    let email = json!({"integration_type": "email", "config": {
        "smtp_host": "smtp.example.com", "smtp_port": 587, "username": "alice",
        "password": "s3cret-Password!", "from_address": "alice@example.com"}});
    let (status, saved) = alice
        .send_json(Method::POST, "/api/integrations", &email)
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["status"], "pending");
    assert!(!saved.to_string().contains("s3cret-Password!"), "{saved}");

    let (_, mine) = alice.get_json("/api/integrations").await;
    let (_, theirs) = bob.get_json("/api/integrations").await;
    let alice_ids: Vec<&Value> = mine.as_array().unwrap().iter().map(|c| &c["id"]).collect();
    assert!(!alice_ids.is_empty());
    for config in theirs.as_array().unwrap() {
        assert_eq!(config["user_id"], demo::BOB);
        assert!(!alice_ids.contains(&&config["id"]));
    }
    assert!(!mine.to_string().contains("s3cret-Password!"));

    // Bad input: clear 4xx, nothing written.
    let cases = [
        (json!({"integration_type": "email"}), "config"),
        (
            json!({"integration_type": "email", "config": "text"}),
            "invalid type",
        ),
        (
            json!({"integration_type": "fax", "config": {}}),
            "unknown integration type",
        ),
        (
            json!({"integration_type": "../x", "config": {}}),
            "lowercase",
        ),
        (
            json!({"integration_type": "email", "config": {"smtp_port": "not-a-port"}}),
            "smtp_port",
        ),
        (
            json!({"integration_type": "slack", "config": {"bot_token": "not-a-token"}}),
            "bot_token",
        ),
    ];
    for (body, says) in cases {
        let (status, answer) = alice
            .send_json(Method::POST, "/api/integrations", &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(answer.to_string().contains(says), "{body} → {answer}");
    }
    // Anonymous and the anon key are no user.
    let anonymous = no_redirects()
        .get(format!("{}/api/integrations", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let anon = no_redirects()
        .get(format!("{}/api/integrations", stack.api_url))
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

    // Bearer clients use the same API; delete removes, a second delete is a 404.
    let bearer = no_redirects()
        .delete(format!("{}/api/integrations/email", stack.api_url))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        alice.get_json("/api/integrations/email").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = alice
        .send_json(Method::DELETE, "/api/integrations/email", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
