//! Sign-in through the BFF: the session cookie, CSRF, PKCE through Supabase Auth, refresh,
//! logout, sessions shared by several BFF instances, and `/auth/v1` passed through.
//!
//! Supabase Auth is the fake of `dana_e2e::fakes::supabase_auth` (the stack's, or one a test
//! starts to count refreshes); PostgreSQL, PostgREST and the BFF are real.

use dana_e2e::browser_session::{no_redirects, set_cookies, Browser, LOGIN_COOKIE, SESSION_COOKIE};
use dana_e2e::fakes::supabase_auth::{AuthConfig, FakeAuth};
use dana_e2e::processes::{free_port, BffProcess};
use dana_e2e::{connect, demo, setting, Stack};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn alice() -> (String, String) {
    (setting("DEMO_EMAIL"), setting("DEMO_PASSWORD"))
}

/// A BFF of its own, on a Supabase Auth fake of its own (to count refreshes, shorten tokens).
async fn own_auth(access_ttl: Duration, extra: &[(&str, Option<&str>)]) -> (FakeAuth, BffProcess) {
    let port = free_port();
    let external = format!("http://127.0.0.1:{port}");
    let fake = FakeAuth::start_local(AuthConfig {
        jwt_secret: setting("JWT_SECRET"),
        db_url: setting("DB_URL"),
        site_url: "http://localhost:3000".into(),
        redirect_allow: vec![format!("{external}/bff/callback")],
        access_ttl,
        issuer: String::new(),
    })
    .await;
    let mut overrides = vec![
        ("SUPABASE_AUTH_URL", Some(fake.url.as_str())),
        ("API_EXTERNAL_URL", Some(external.as_str())),
    ];
    overrides.extend_from_slice(extra);
    let bff = BffProcess::start_on(port, &overrides);
    (fake, bff)
}

#[tokio::test]
async fn password_sign_in_sets_one_host_cookie_and_no_token_reaches_the_browser() {
    let stack = Stack::from_env();
    let mut browser = Browser::new(&stack.api_url);
    let (email, password) = alice();
    let response = browser
        .fetch(Method::POST, "/bff/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookies(response.headers())
        .remove(SESSION_COOKIE)
        .expect("a session cookie");
    for part in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    browser.absorb(&response);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["user"]["email"], email);
    assert_eq!(body["user"]["id"], demo::ALICE);
    // No JWT and no refresh token in what the browser gets.
    assert!(!text.contains("eyJ"), "a token in {text}");
    assert!(!text.contains("refresh_token"), "{text}");

    let (status, user) = browser.get_json("/bff/user").await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["user"]["id"], demo::ALICE);
    assert_eq!(user["claims"]["role"], "authenticated");
    let sid = user["session"]["sid"].as_str().unwrap();
    assert_eq!(user["logout_url"], format!("/bff/logout?sid={sid}"));
    assert!(
        user["session"]["expires_at"].as_i64().unwrap()
            > user["session"]["access_expires_at"].as_i64().unwrap() - 1
    );

    // The cookie alone, without X-CSRF, is refused; no cookie at all is anonymous.
    let forged = browser.bare(Method::GET, "/bff/user").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let anonymous = Browser::new(&stack.api_url).get_json("/bff/user").await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED, "{}", anonymous.1);
}

#[tokio::test]
async fn bad_sign_ins_get_clear_errors() {
    let stack = Stack::from_env();
    let browser = Browser::new(&stack.api_url);
    let (email, _) = alice();
    let cases = [
        (
            json!({"email": email, "password": "wrong"}),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        ),
        (json!({"email": email}), StatusCode::BAD_REQUEST, "password"),
        (
            json!({"email": 42, "password": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            json!({"email": "", "password": ""}),
            StatusCode::BAD_REQUEST,
            "required",
        ),
        (
            json!({"email": "nobody@demo.dana.dev", "password": "x"}),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        ),
    ];
    for (body, status, says) in cases {
        let (got, answer) = browser.send_json(Method::POST, "/bff/login", &body).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(answer.to_string().contains(says), "{body} → {answer}");
    }
    // Not JSON, too large, no X-CSRF, wrong method.
    let text = browser
        .fetch(Method::POST, "/bff/login")
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"email": email, "password": "x".repeat(20_000)});
    assert_eq!(
        browser.send_json(Method::POST, "/bff/login", &huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let forged = browser
        .bare(Method::POST, "/bff/login")
        .json(&json!({"email": email, "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get_json("/bff/login").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        browser.get_json("/bff/nothing").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_rest_proxy_takes_the_cookie_only_with_the_csrf_header() {
    let stack = Stack::from_env();
    let mut browser = Browser::new(&stack.api_url);
    let (email, password) = alice();
    browser.login(&email, &password).await;
    let response = browser
        .fetch(Method::GET, "/rest/v1/profiles?select=id")
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rows: Vec<Value> = response.json().await.unwrap();
    assert!(rows.iter().any(|r| r["id"] == demo::ALICE), "{rows:?}");
    assert!(rows.iter().all(|r| r["id"] != demo::BOB), "RLS: {rows:?}");

    // supabase-js sends the anon key as Bearer too: the session still decides who calls.
    let response = browser
        .fetch(Method::GET, "/rest/v1/profiles?select=id")
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.anon_key)
        .send()
        .await
        .unwrap();
    let rows: Vec<Value> = response.json().await.unwrap();
    assert!(rows.iter().any(|r| r["id"] == demo::ALICE), "{rows:?}");

    // Without X-CSRF the cookie is refused (Duende's 4.3.1 advisory: the proxy routes too).
    for path in [
        "/rest/v1/profiles?select=id",
        "/api/knowledge/files",
        "/api/integrations",
    ] {
        let forged = browser
            .bare(Method::GET, path)
            .header("apikey", &stack.anon_key)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // An apikey that is not the project's is refused even with a good session.
    let wrong_key = browser
        .fetch(Method::GET, "/rest/v1/profiles")
        .header("apikey", "not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pkce_sign_in_through_supabase_auth_comes_back_with_a_session() {
    let stack = Stack::from_env();
    let mut browser = Browser::new(&stack.api_url);
    let start = browser
        .bare(Method::GET, "/bff/login/github?returnUrl=/app/home")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    browser.absorb(&start);
    assert!(browser.cookies.contains_key(LOGIN_COOKIE));
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&authorize).unwrap();
    assert!(
        authorize.starts_with(&setting("FAKE_AUTH_URL")),
        "{authorize}"
    );
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "s256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(query["redirect_to"].ends_with("/bff/callback"));

    // The user signs in at the provider (the fake: as login_hint) and comes back with a code.
    let back = no_redirects()
        .get(format!("{authorize}&login_hint={}", setting("DEMO2_EMAIL")))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::FOUND);
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    let callback_path = callback
        .strip_prefix(&stack.api_url)
        .unwrap_or(&callback)
        .to_owned();

    // Without the login cookie (another browser) the callback is refused.
    let elsewhere = Browser::new(&stack.api_url)
        .bare(Method::GET, &callback_path)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);

    let done = browser
        .bare(Method::GET, &callback_path)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::FOUND, "{:?}", done.headers());
    assert_eq!(done.headers()["location"], "/app/home");
    browser.absorb(&done);
    assert!(
        !browser.cookies.contains_key(LOGIN_COOKIE),
        "the login cookie is cleared"
    );
    let (status, user) = browser.get_json("/bff/user").await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["user"]["id"], demo::BOB);

    // The state was single-use: the same callback again is refused.
    let mut replay = browser.clone();
    replay
        .cookies
        .insert(LOGIN_COOKIE.into(), url_state(&start_cookie(&start)));
    let again = replay
        .bare(Method::GET, &callback_path)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);

    // Only local return URLs, and a provider name that is a name.
    for bad in [
        "/bff/login/github?returnUrl=https://evil.example/",
        "/bff/login/github?returnUrl=//evil.example",
        "/bff/login/git%2Fhub",
    ] {
        let refused = browser.bare(Method::GET, bad).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // A provider's error comes back as a 400 that says so.
    let denied = browser
        .bare(
            Method::GET,
            "/bff/callback?error=access_denied&error_description=no",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::BAD_REQUEST);
    assert!(denied.text().await.unwrap().contains("access_denied"));
}

fn start_cookie(response: &reqwest::Response) -> String {
    set_cookies(response.headers())
        .remove(LOGIN_COOKIE)
        .unwrap()
}

fn url_state(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

#[tokio::test]
async fn an_expiring_access_token_is_refreshed_once_for_concurrent_requests() {
    // Tokens live 62 s and are refreshed within 60 s of expiry: due 2 s after sign-in.
    let (fake, bff) = own_auth(
        Duration::from_secs(62),
        &[("BFF_REFRESH_MARGIN_SECS", Some("60"))],
    )
    .await;
    let mut browser = Browser::new(&bff.url);
    let (email, password) = alice();
    let first = browser.login(&email, &password).await;
    let first_expiry = first["session"]["access_expires_at"].as_i64().unwrap();
    assert_eq!(fake.refreshes.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (a, b, c) = tokio::join!(
        browser.get_json("/bff/user"),
        browser.get_json("/bff/user"),
        async {
            let r = browser
                .fetch(Method::GET, "/rest/v1/profiles?select=id")
                .header("apikey", setting("ANON_KEY"))
                .send()
                .await
                .unwrap();
            r.status()
        }
    );
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(c, StatusCode::OK);
    // Supabase's refresh tokens are single-use: two refreshes would have ended the session.
    assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);
    assert!(a.1["session"]["access_expires_at"].as_i64().unwrap() > first_expiry);
    assert_eq!(
        a.1["session"]["access_expires_at"],
        b.1["session"]["access_expires_at"]
    );
}

#[tokio::test]
async fn a_session_revoked_at_supabase_auth_ends_here_too() {
    let (fake, bff) = own_auth(
        Duration::from_secs(62),
        &[("BFF_REFRESH_MARGIN_SECS", Some("60"))],
    )
    .await;
    let mut browser = Browser::new(&bff.url);
    let (email, password) = alice();
    browser.login(&email, &password).await;
    fake.revoke_all();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The refresh is refused: the session ends and the cookie is removed.
    let response = browser
        .fetch(Method::GET, "/bff/user")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(response.headers())[SESSION_COOKIE].contains("Max-Age=0"));
}

#[tokio::test]
async fn logout_is_bound_to_the_session_and_ends_it_on_every_instance() {
    let stack = Stack::from_env();
    let second = BffProcess::start(&[]);
    let mut browser = Browser::new(&stack.api_url);
    let (email, password) = alice();
    let login = browser.login(&email, &password).await;
    let logout_url = login["logout_url"].as_str().unwrap().to_owned();

    // Any instance serves the session (it lives in PostgreSQL).
    let on_second = browser.at(&second.url);
    assert_eq!(on_second.get_json("/bff/user").await.0, StatusCode::OK);

    // A logout URL of another session, a GET, or no X-CSRF: refused, the session lives on.
    let wrong = browser
        .fetch(Method::POST, "/bff/logout?sid=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get_json(&logout_url).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let forged = browser
        .bare(Method::POST, &logout_url)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let outside = browser
        .fetch(
            Method::POST,
            &format!("{logout_url}&returnUrl=https://evil.example"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::BAD_REQUEST);
    assert_eq!(browser.get_json("/bff/user").await.0, StatusCode::OK);

    let old = browser.clone();
    let out = browser
        .fetch(Method::POST, &format!("{logout_url}&returnUrl=/goodbye"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()["location"], "/goodbye");
    assert!(set_cookies(out.headers())[SESSION_COOKIE].contains("Max-Age=0"));
    browser.absorb(&out);
    assert!(browser.session().is_none());

    // The old cookie is dead here and on the other instance.
    assert_eq!(old.get_json("/bff/user").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        old.at(&second.url).get_json("/bff/user").await.0,
        StatusCode::UNAUTHORIZED
    );
    let rest = old
        .at(&second.url)
        .fetch(Method::GET, "/rest/v1/profiles")
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_stored_hashed_and_sealed_where_no_api_role_reads() {
    let stack = Stack::from_env();
    let mut browser = Browser::new(&stack.api_url);
    let (email, password) = alice();
    browser.login(&email, &password).await;
    let cookie = browser.session().unwrap().to_owned();
    let db = connect().await;
    let rows = db
        .query(
            "SELECT encode(id_hash, 'hex'), encode(sealed_tokens, 'escape') FROM dana_bff.sessions",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in &rows {
        let id: String = row.get(0);
        let sealed: String = row.get(1);
        assert_ne!(id, cookie);
        assert!(!sealed.contains("eyJ"), "a token in clear at rest");
    }
    for role in ["anon", "authenticated", "service_role"] {
        let sql = format!("SET ROLE {role}; SELECT count(*) FROM dana_bff.sessions");
        let refused = db.batch_execute(&sql).await;
        assert!(refused.is_err(), "{role} reads dana_bff.sessions");
        db.batch_execute("RESET ROLE").await.unwrap();
    }
}

#[tokio::test]
async fn sessions_over_for_a_day_are_swept_when_new_ones_start() {
    let stack = Stack::from_env();
    let db = connect().await;
    let insert = "INSERT INTO dana_bff.sessions (id_hash, user_id, sealed_tokens, access_expires_at, expires_at, revoked_at)
                  VALUES (sha256($1::text::bytea), $2::text::uuid, '\\x00', now(), $3::text::timestamptz, $4::text::timestamptz)";
    let tag = format!("sweep-{}", std::process::id());
    let cases = [
        ("expired-long-ago", "2000-01-01T00:00:00Z", None, true),
        (
            "revoked-long-ago",
            "2999-01-01T00:00:00Z",
            Some("2000-01-01T00:00:00Z"),
            true,
        ),
        (
            "revoked-just-now",
            "2999-01-01T00:00:00Z",
            Some("now"),
            false,
        ),
    ];
    for (name, expires, revoked, _) in &cases {
        db.execute(
            insert,
            &[&format!("{tag}-{name}"), &demo::BOB, expires, revoked],
        )
        .await
        .unwrap();
    }
    let mut browser = Browser::new(&stack.api_url);
    let (email, password) = alice();
    browser.login(&email, &password).await;
    for (name, _, _, swept) in cases {
        let left: i64 = db
            .query_one(
                "SELECT count(*) FROM dana_bff.sessions WHERE id_hash = sha256($1::text::bytea)",
                &[&format!("{tag}-{name}")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, if swept { 0 } else { 1 }, "{name}");
    }
}

#[tokio::test]
async fn supabase_js_auth_calls_pass_through_with_the_project_key() {
    let stack = Stack::from_env();
    let http = no_redirects();
    let settings = format!("{}/auth/v1/settings", stack.api_url);
    assert_eq!(
        http.get(&settings).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let wrong = http
        .get(&settings)
        .header("apikey", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = http
        .get(&settings)
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    // A Bearer client signs in as with supabase-js: the tokens are its own.
    let (email, password) = alice();
    let session: Value = http
        .post(format!(
            "{}/auth/v1/token?grant_type=password",
            stack.api_url
        ))
        .header("apikey", &stack.anon_key)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().expect("a session");
    let user: Value = http
        .get(format!("{}/auth/v1/user", stack.api_url))
        .header("apikey", &stack.anon_key)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["id"], demo::ALICE);
    // Supabase Auth's redirects come back to the browser, never followed by the BFF.
    let authorize = http
        .get(format!("{}/auth/v1/authorize?provider=github&redirect_to=http://localhost:3000/&code_challenge=abc&code_challenge_method=s256", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn without_auth_settings_the_session_routes_say_what_is_missing_and_rest_works() {
    let stack = Stack::from_env();
    let bff = BffProcess::start(&[("SUPABASE_AUTH_URL", None), ("BFF_SESSION_KEY", None)]);
    let browser = Browser::new(&bff.url);
    let (status, body) = browser
        .send_json(
            Method::POST,
            "/bff/login",
            &json!({"email": "a@b.c", "password": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(body.to_string().contains("SUPABASE_AUTH_URL"), "{body}");
    let auth = browser
        .bare(Method::GET, "/auth/v1/settings")
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), StatusCode::NOT_IMPLEMENTED);
    let rest = browser
        .bare(Method::GET, "/rest/v1/profiles")
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::OK);
}
