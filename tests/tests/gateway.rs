//! The BFF in front of the real PostgREST: tokens checked before any upstream call, errors in
//! PostgREST's JSON shape, outages and timeouts named, bodies streamed, CORS, request ids,
//! metrics, health and graceful shutdown.
//!
//! Tests that need a BFF with other settings (a dead upstream, a short timeout, a JWKS) start
//! their own with `BffProcess`; the rest use the stack's BFF at `API_URL`.

use dana_e2e::processes::{free_port, wait_for_tcp, BffProcess, PostgrestProcess};
use dana_e2e::tokens::{es256, hs256, hs256_with, now, user_claims};
use dana_e2e::{connect, demo, repo_path, Stack};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A plain GET, no credentials.
async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

/// A BFF whose PostgREST is a port nobody listens on: any request that reaches the upstream
/// step gets 503, so a 401 proves the BFF refused it first.
fn bff_with_dead_upstream(extra: &[(&str, Option<&str>)]) -> BffProcess {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut overrides = vec![
        ("POSTGREST_URL", Some(dead.as_str())),
        ("POSTGREST_ADMIN_URL", None),
    ];
    overrides.extend_from_slice(extra);
    BffProcess::start(&overrides)
}

/// Asserts PostgREST's error shape and returns the body.
async fn error_body(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "{:?}", response.headers());
    let body: Value = response.json().await.expect("error bodies are JSON");
    for key in ["code", "message", "details", "hint"] {
        assert!(body.get(key).is_some(), "{key} missing in {body}");
    }
    body
}

#[tokio::test]
async fn bad_credentials_are_refused_before_any_upstream_call() {
    let stack = Stack::from_env();
    let bff = bff_with_dead_upstream(&[]);
    let url = format!("{}/rest/v1/tasks?select=*", bff.url);
    let alice = |claims: Value| hs256(&claims);
    let mut expired = user_claims(demo::ALICE);
    expired["exp"] = json!(now() - 3600);
    let mut other_audience = user_claims(demo::ALICE);
    other_audience["aud"] = json!("another-app");
    let wrong_secret = hs256_with(
        "not-the-project-secret-not-the-project",
        &user_claims(demo::ALICE),
    );
    let forged_anon = hs256_with(
        "not-the-project-secret-not-the-project",
        &json!({"role": "anon"}),
    );

    let anon = Some(stack.anon_key.clone());
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    // (what, apikey header, authorization header, expected code, expected message)
    type Case<'a> = (&'a str, Option<String>, Option<String>, &'a str, &'a str);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no credentials", None, None, "PGRST302", "No API key found in request"),
        ("unknown apikey", Some(forged_anon), None, "PGRST301", "Invalid API key"),
        ("garbage token", anon.clone(), bearer("garbage"), "PGRST301", "Expected 3 parts in JWT; got 1"),
        ("wrong signature", anon.clone(), bearer(&wrong_secret), "PGRST301", "JWT cryptographic operation failed"),
        ("expired", anon.clone(), bearer(&alice(expired)), "PGRST303", "JWT expired"),
        ("wrong audience", anon.clone(), bearer(&alice(other_audience)), "PGRST303", "JWT not in audience"),
        ("basic auth", anon.clone(), Some("Basic YTpi".into()), "PGRST301", "Authorization header is not a Bearer token"),
    ];
    for (what, apikey, authorization, code, message) in cases {
        let mut request = client().get(&url);
        if let Some(key) = apikey {
            request = request.header("apikey", key);
        }
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\""),
            "{what}"
        );
        let body = error_body(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            (body["code"].as_str(), body["message"].as_str()),
            (Some(code), Some(message)),
            "{what}: {body}"
        );
    }

    // The same BFF lets a valid key through to the (dead) upstream: the refusals above were its own.
    let response = client()
        .get(&url)
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["message"], "PostgREST is unreachable");
}

#[tokio::test]
async fn es256_tokens_are_verified_against_the_jwks() {
    let stack = Stack::from_env();
    let jwks = repo_path("supabase/testdata/jwks.json");
    let bff = bff_with_dead_upstream(&[("JWT_JWKS_FILE", Some(jwks.to_str().unwrap()))]);
    let url = format!("{}/rest/v1/tasks", bff.url);
    let send = |token: String| {
        client()
            .get(&url)
            .header("apikey", &stack.anon_key)
            .bearer_auth(token)
            .send()
    };

    let known = send(es256("dana-test-es256", &user_claims(demo::ALICE)))
        .await
        .unwrap();
    assert_eq!(
        known.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a JWKS-signed token passes the BFF"
    );
    let unknown = send(es256("some-other-key", &user_claims(demo::ALICE)))
        .await
        .unwrap();
    let body = error_body(unknown, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        body["message"],
        "JWT key id \"some-other-key\" is not in the project's JWKS"
    );
    // The legacy HS256 secret keeps working beside the JWKS.
    let legacy = send(hs256(&user_claims(demo::ALICE))).await.unwrap();
    assert_eq!(legacy.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn postgrest_outage_is_a_503_naming_it_and_the_bff_recovers() {
    let stack = Stack::from_env();
    let (port, admin_port) = (free_port(), free_port());
    let bff = BffProcess::start(&[
        ("POSTGREST_URL", Some(&format!("http://127.0.0.1:{port}"))),
        (
            "POSTGREST_ADMIN_URL",
            Some(&format!("http://127.0.0.1:{admin_port}")),
        ),
    ]);
    let tiers = || {
        client()
            .get(format!(
                "{}/rest/v1/subscription_tiers?select=slug",
                bff.url
            ))
            .header("apikey", &stack.anon_key)
            .send()
    };

    let body = error_body(tiers().await.unwrap(), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["code"], "BFF503");
    assert!(
        body["details"].as_str().unwrap().contains("refused"),
        "{body}"
    );
    let ready = get(format!("{}/readyz", bff.url)).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["not_ready"], json!(["postgrest"]), "{ready}");

    let postgrest = PostgrestProcess::start(port, admin_port);
    wait_for_tcp(port, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        let response = tiers().await.unwrap();
        if response.status() == StatusCode::OK || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(recovered.status(), StatusCode::OK);
    let rows: Vec<Value> = recovered.json().await.unwrap();
    assert!(rows.iter().any(|r| r["slug"] == "free"), "{rows:?}");

    drop(postgrest);
    let body = error_body(tiers().await.unwrap(), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["message"], "PostgREST is unreachable");
}

/// Holds an exclusive lock on a table in an open transaction, so PostgREST's query on it waits:
/// a slow upstream made of the real parts.
async fn lock_table(table: &str) -> tokio_postgres::Client {
    let db = connect().await;
    db.batch_execute(&format!(
        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    db
}

#[tokio::test]
async fn a_slow_upstream_gets_a_504() {
    let stack = Stack::from_env();
    let bff = BffProcess::start(&[("BFF_UPSTREAM_TIMEOUT_SECS", Some("1"))]);
    let db = lock_table("public.tools").await;
    let started = Instant::now();
    let response = client()
        .get(format!("{}/rest/v1/tools?select=slug", bff.url))
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(body["code"], "BFF504");
    assert!(started.elapsed() < Duration::from_secs(10));
    db.batch_execute("ROLLBACK").await.unwrap();
    let after = client()
        .get(format!("{}/rest/v1/tools?select=slug", bff.url))
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let stack = Stack::from_env();
    let mut bff = BffProcess::start(&[]);
    let db = lock_table("public.business_functions").await;
    let in_flight = tokio::spawn(
        client()
            .get(format!("{}/rest/v1/business_functions?select=id", bff.url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    bff.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bff.wait_exit(Duration::ZERO).is_none(),
        "the BFF waits for the in-flight request"
    );
    assert!(
        client()
            .get(format!("{}/healthz", bff.url))
            .send()
            .await
            .is_err(),
        "no new connections once shutting down"
    );
    db.batch_execute("ROLLBACK").await.unwrap();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status = bff
        .wait_exit(Duration::from_secs(10))
        .expect("the BFF exits once drained");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn several_workers_share_the_connections_and_drain_together_on_shutdown() {
    // Each worker is a thread with its own runtime; worker 0 hands connections out in turn.
    let stack = Stack::from_env();
    let mut bff = BffProcess::start(&[("BFF_WORKER_THREADS", Some("3"))]);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", bff.pid()))
        .unwrap()
        .map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap())
        .filter(|name| name.starts_with("dana-bff-worker"))
        .collect();
    assert_eq!(
        threads.len(),
        2,
        "workers 1 and 2 beside the main thread: {threads:?}"
    );

    // Six connections (a client each) so every worker gets some; each answers correctly.
    let clients: Vec<Client> = (0..6).map(|_| client()).collect();
    for round in 0..3 {
        let answers = futures_util::future::join_all(clients.iter().map(|http| {
            http.get(format!(
                "{}/rest/v1/subscription_tiers?select=slug&order=slug",
                bff.url
            ))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .send()
        }))
        .await;
        for answer in answers {
            let answer = answer.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "round {round}");
            let rows: Vec<Value> = answer.json().await.unwrap();
            assert!(!rows.is_empty(), "round {round}");
        }
    }

    // Requests in flight on three connections (so on every worker) when SIGTERM comes: all
    // finish, and the process exits cleanly once every worker has drained.
    let db = lock_table("public.business_functions").await;
    let in_flight: Vec<_> = clients[..3]
        .iter()
        .map(|http| {
            tokio::spawn(
                http.get(format!("{}/rest/v1/business_functions?select=id", bff.url))
                    .header("apikey", &stack.anon_key)
                    .bearer_auth(&stack.alice_jwt)
                    .send(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    bff.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bff.wait_exit(Duration::ZERO).is_none(),
        "the BFF waits for the in-flight requests"
    );
    db.batch_execute("ROLLBACK").await.unwrap();
    for request in in_flight {
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let status = bff
        .wait_exit(Duration::from_secs(10))
        .expect("the BFF exits once every worker drained");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_insert_nothing() {
    let stack = Stack::from_env();
    let db = connect().await;
    let count = || async {
        db.query_one(
            "SELECT count(*) FROM public.user_memory WHERE key = 'oversized'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    let oversized = json!({"key": "oversized", "value": "x".repeat(11 * 1024 * 1024)}).to_string();
    let url = format!("{}/rest/v1/user_memory", stack.api_url);

    // Declared length over the limit: refused from the header alone, at once.
    let started = Instant::now();
    let response = client()
        .post(&url)
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .header("content-type", "application/json")
        .body(oversized.clone())
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["code"], "BFF413");

    // A declared length no body will ever fill: the answer does not wait for it.
    let (status, _) = raw_exchange(
        &stack.api_url,
        &format!(
            "POST /rest/v1/user_memory HTTP/1.1\r\nHost: x\r\napikey: {}\r\nContent-Length: 99999999999\r\n\r\n",
            stack.anon_key
        ),
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "413s took {:?}",
        started.elapsed()
    );

    // Chunked, no length: refused once the stream passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = oversized
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let response = client()
        .post(&url)
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["code"], "BFF413");
    assert_eq!(count().await, 0, "nothing of an oversized body is stored");
}

#[tokio::test]
async fn a_large_request_body_under_the_limit_streams_through() {
    let stack = Stack::from_env();
    let db = connect().await;
    db.execute("DELETE FROM public.user_memory WHERE key = 'nine-mib'", &[])
        .await
        .unwrap();
    let value = "y".repeat(9 * 1024 * 1024);
    let response = client()
        .post(format!("{}/rest/v1/user_memory", stack.api_url))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .header("content-type", "application/json")
        .json(&json!({"key": "nine-mib", "value": value}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text().await
    );
    let stored: i32 = db
        .query_one("SELECT length(value #>> '{}') FROM public.user_memory WHERE key = 'nine-mib' AND user_id = $1::text::uuid", &[&demo::ALICE])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 9 * 1024 * 1024);
    db.execute("DELETE FROM public.user_memory WHERE key = 'nine-mib'", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_200_mb_response_streams_with_bounded_bff_memory() {
    const ROWS: i32 = 220;
    let stack = Stack::from_env();
    let db = connect().await;
    let cleanup = "DELETE FROM public.documents WHERE title = 'stream-test'";
    db.execute(cleanup, &[]).await.unwrap();
    // 220 rows of 1 MiB of text each (md5 hex, so TOAST cannot shrink the JSON PostgREST sends).
    db.execute(
        "INSERT INTO public.documents (user_id, title, content)
         SELECT $1::text::uuid, 'stream-test', string_agg(md5(g::text || ':' || n::text), '')
         FROM generate_series(1, $2) n, generate_series(1, 32768) g GROUP BY n",
        &[&demo::ALICE, &ROWS],
    )
    .await
    .unwrap();
    let bff = BffProcess::start(&[]);
    let before = bff.peak_rss_kib();
    let mut response = client()
        .get(format!(
            "{}/rest/v1/documents?select=content&title=eq.stream-test",
            bff.url
        ))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut bytes: u64 = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    let peak = bff.peak_rss_kib();
    db.execute(cleanup, &[]).await.unwrap();
    assert!(
        bytes >= 200 * 1024 * 1024,
        "only {bytes} bytes came through"
    );
    eprintln!(
        "streamed {} MiB; BFF peak RSS {} KiB before, {} KiB after",
        bytes >> 20,
        before,
        peak
    );
    // Buffering the body would need at least its 220 MiB; streaming stays near the idle size.
    assert!(
        peak < 64 * 1024,
        "BFF peak RSS {peak} KiB while streaming {bytes} bytes"
    );
}

#[tokio::test]
async fn cors_answers_listed_origins_only_and_exposes_range_headers() {
    let stack = Stack::from_env();
    let url = format!("{}/rest/v1/subscription_tiers", stack.api_url);
    let preflight = |origin: &'static str| {
        client()
            .request(Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,apikey,content-type,prefer,x-client-info",
            )
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let allow_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for h in ["authorization", "apikey", "prefer", "x-client-info"] {
        assert!(
            allow_headers.contains(h),
            "{h} not allowed: {allow_headers}"
        );
    }
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // Answers depend on the Origin (and a preflight's request headers): shared caches must know.
    for answer in [&allowed, &refused] {
        let vary: Vec<&str> = answer
            .headers()
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(str::trim)
            .collect();
        for name in [
            "origin",
            "access-control-request-method",
            "access-control-request-headers",
        ] {
            assert!(vary.contains(&name), "Vary lacks {name}: {vary:?}");
        }
    }

    let actual = client()
        .get(format!("{url}?select=slug"))
        .header("origin", "http://localhost:3000")
        .header("apikey", &stack.anon_key)
        .header("prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(actual.headers()["access-control-allow-credentials"], "true");
    // An origin not on the list reads nothing: no Allow-Origin on the actual answer either.
    let foreign = client()
        .get(format!("{url}?select=slug"))
        .header("origin", "https://evil.example")
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let exposed = actual.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("content-range") && exposed.contains("range-unit"),
        "{exposed}"
    );
    // Without an Origin (not a CORS request) the answer has no access-control-* headers, and
    // still says what it varies on.
    let plain = client()
        .get(format!("{url}?select=slug"))
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(
        !plain
            .headers()
            .keys()
            .any(|name| name.as_str().starts_with("access-control-")),
        "{:?}",
        plain.headers()
    );
    assert!(plain.headers()["vary"].to_str().unwrap().contains("origin"));
    let vary: Vec<_> = actual.headers().get_all("vary").iter().collect();
    assert!(
        vary.iter().any(|v| v.to_str().unwrap().contains("origin")),
        "{vary:?}"
    );
    assert!(actual.headers()["content-range"]
        .to_str()
        .unwrap()
        .contains('/'));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let stack = Stack::from_env();
    let minted = get(format!("{}/healthz", stack.api_url)).await;
    let id = minted.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let given = client()
        .get(format!("{}/rest/v1/nope", stack.api_url))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        given.headers()["x-request-id"],
        "trace-me-123",
        "an incoming id is kept, errors included"
    );
}

const OPERATOR: &str = "operator-token-for-e2e-tests";

#[tokio::test]
async fn metrics_count_requests_and_upstream_errors() {
    let stack = Stack::from_env();
    let bff = bff_with_dead_upstream(&[("BFF_OPERATOR_TOKEN", Some(OPERATOR))]);
    for _ in 0..2 {
        let r = client()
            .get(format!("{}/rest/v1/tasks", bff.url))
            .header("apikey", &stack.anon_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    get(format!("{}/rest/v1/tasks", bff.url)).await;
    let text = client()
        .get(format!("{}/metrics", bff.url))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"dana_bff_http_requests_total{route="rest",method="GET",status="503"} 2"#,
        r#"dana_bff_http_requests_total{route="rest",method="GET",status="401"} 1"#,
        r#"dana_bff_upstream_errors_total{upstream="postgrest",kind="connect"} 2"#,
        r#"dana_bff_http_request_duration_seconds_count{route="rest"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

#[tokio::test]
async fn metrics_are_the_operators_and_off_without_a_token() {
    let bff = BffProcess::start(&[("BFF_OPERATOR_TOKEN", Some(OPERATOR))]);
    let url = format!("{}/metrics", bff.url);
    let body = error_body(get(&url).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["code"], "BFF401");
    let wrong = client()
        .get(&url)
        .bearer_auth("operator-token-for-e2e-test")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = client()
        .get(&url)
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right
        .text()
        .await
        .unwrap()
        .contains("dana_bff_http_requests_total"));
    // No token configured: no metrics for anyone.
    let open = BffProcess::start(&[("BFF_OPERATOR_TOKEN", None)]);
    let body = error_body(
        get(format!("{}/metrics", open.url)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        body["hint"]
            .as_str()
            .unwrap()
            .contains("BFF_OPERATOR_TOKEN"),
        "{body}"
    );
}

#[tokio::test]
async fn health_and_readiness_of_the_stack_bff() {
    let stack = Stack::from_env();
    let health = get(format!("{}/healthz", stack.api_url)).await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = get(format!("{}/readyz", stack.api_url)).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready, json!({"status": "ready", "not_ready": []}));
    let detailed: Value = client()
        .get(format!("{}/readyz", stack.api_url))
        .bearer_auth(dana_e2e::setting("BFF_OPERATOR_TOKEN"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        detailed["checks"],
        json!({"postgrest": "ok", "postgresql": "ok", "storage": "ok"})
    );
}

#[tokio::test]
async fn readiness_names_an_unreachable_database_and_keeps_the_reason_for_the_operator() {
    let port = free_port();
    let bff = BffProcess::start(&[
        (
            "BFF_DB_URL",
            Some(&format!(
                "postgresql://dana_bff:secret@127.0.0.1:{port}/postgres"
            )),
        ),
        ("BFF_OPERATOR_TOKEN", Some(OPERATOR)),
    ]);
    let ready = get(format!("{}/readyz", bff.url)).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = ready.text().await.unwrap();
    let ready: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ready["not_ready"], json!(["postgresql"]), "{ready}");
    assert!(ready.get("checks").is_none(), "{ready}");
    assert!(
        !text.contains(&port.to_string()),
        "internal addresses stay inside: {text}"
    );
    let detailed: Value = client()
        .get(format!("{}/readyz", bff.url))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(detailed["checks"]["postgresql"]
        .as_str()
        .unwrap()
        .starts_with("PostgreSQL is unreachable"));
}

#[tokio::test]
async fn a_flood_of_readiness_probes_uses_one_database_connection_at_a_time() {
    let stack = Stack::from_env();
    let db = connect().await;
    let url = format!("{}/readyz", stack.api_url);
    let probes = tokio::spawn(async move {
        let requests = (0..400).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) })
        });
        let mut statuses = Vec::new();
        for request in requests.collect::<Vec<_>>() {
            statuses.push(request.await.unwrap());
        }
        statuses
    });
    let mut most = 0i64;
    while !probes.is_finished() {
        let open: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dana-bff readiness'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        most = most.max(open);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let statuses = probes.await.unwrap();
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(StatusCode::OK))),
        "{:?}",
        statuses
            .iter()
            .filter(|s| !matches!(s, Ok(StatusCode::OK)))
            .take(3)
            .collect::<Vec<_>>()
    );
    assert!(most <= 1, "{most} readiness connections at once");
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let stack = Stack::from_env();
    let response = get(format!("{}/rest/v2/tasks", stack.api_url)).await;
    let body = error_body(response, StatusCode::NOT_FOUND).await;
    assert_eq!(body["code"], "BFF404");
}

#[tokio::test]
async fn postgrest_sees_the_verified_token_but_never_the_cookie_or_apikey() {
    // PostgREST hands request headers and cookies to SQL (`request.headers`, `request.cookies`),
    // where any function or policy could read them. A throwaway function shows what it received.
    let stack = Stack::from_env();
    let db = connect().await;
    let bff = BffProcess::start(&[]);
    let function = format!("e2e_seen_headers_{}", std::process::id());
    db.batch_execute(&format!(
        "CREATE FUNCTION public.{function}() RETURNS json LANGUAGE sql STABLE AS $$
           SELECT json_build_object('cookies', current_setting('request.cookies', true),
                                    'headers', current_setting('request.headers', true)::json,
                                    'sub', dana.uid()) $$;
         GRANT EXECUTE ON FUNCTION public.{function}() TO authenticated;
         NOTIFY pgrst, 'reload schema';"
    ))
    .await
    .unwrap();
    let call = || {
        client()
            .post(format!("{}/rest/v1/rpc/{function}", bff.url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .header("cookie", "dana_session=very-secret")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-port", "8443")
            .header("x-forwarded-prefix", "/admin")
            .header("x-forwarded-host", "evil.example")
            .header("true-client-ip", "6.6.6.6")
            .header("forwarded", "for=6.6.6.6")
            .header("x-request-id", "seen-by-postgrest")
            .json(&json!({}))
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let response = loop {
        let response = call().await.unwrap();
        if response.status() != StatusCode::NOT_FOUND || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = response.status();
    let seen: Value = response.json().await.unwrap();
    db.batch_execute(&format!(
        "DROP FUNCTION public.{function}(); NOTIFY pgrst, 'reload schema';"
    ))
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(
        seen["sub"],
        demo::ALICE,
        "the user's own token reached the database"
    );
    assert!(
        seen["cookies"].is_null() || seen["cookies"] == "{}" || seen["cookies"] == "",
        "{seen}"
    );
    let headers = &seen["headers"];
    for stripped in [
        "cookie",
        "apikey",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-host",
        "true-client-ip",
        "forwarded",
    ] {
        assert!(
            headers.get(stripped).is_none(),
            "{stripped} reached PostgREST: {headers}"
        );
    }
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "the BFF, not the client, names the peer"
    );
    assert_eq!(
        headers["x-request-id"], "seen-by-postgrest",
        "request ids reach PostgREST's logs"
    );
}

#[tokio::test]
async fn missing_settings_are_named_at_start_up() {
    let output = std::process::Command::new(dana_e2e::processes::bff_binary())
        .arg("serve")
        .env_clear()
        .env("BFF_MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "POSTGREST_URL",
        "BFF_DB_URL",
        "ANON_KEY",
        "SERVICE_ROLE_KEY",
        "JWT_SECRET",
        "BFF_MAX_BODY_BYTES=\"lots\"",
    ] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
}

/// Sends raw bytes to the BFF at `api_url` and reads until the BFF closes the connection (or two
/// seconds pass): for requests no well-behaved client would send. Returns the first status code
/// and everything read.
async fn raw_exchange(api_url: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = api_url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn an_oversized_head_gets_a_431_with_the_json_body() {
    let stack = Stack::from_env();
    let response = client()
        .get(format!("{}/rest/v1/tools", stack.api_url))
        .header("apikey", &stack.anon_key)
        .header("x-big", "a".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
    assert_eq!(body["code"], "BFF431");
    // Many small headers add up the same way.
    let mut request = client()
        .get(format!("{}/rest/v1/tools", stack.api_url))
        .header("apikey", &stack.anon_key);
    for i in 0..60 {
        request = request.header(format!("x-h{i}"), "b".repeat(700));
    }
    let body = error_body(
        request.send().await.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    )
    .await;
    assert_eq!(body["code"], "BFF431");
    // Under the limit, a request with a generous cookie passes.
    let fine = client()
        .get(format!("{}/rest/v1/tools?select=slug", stack.api_url))
        .header("apikey", &stack.anon_key)
        .header("cookie", "c".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), StatusCode::OK);
}

#[tokio::test]
async fn dot_segments_never_reach_another_path() {
    let stack = Stack::from_env();
    for path in [
        "/rest/v1/../healthz",
        "/rest/v1/%2e%2e/metrics",
        "/rest/v1/./tools",
    ] {
        let (status, answer) = raw_exchange(
            &stack.api_url,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\napikey: {}\r\nConnection: close\r\n\r\n",
                stack.anon_key
            ),
        )
        .await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer.contains("BFF400"), "{answer}");
    }
}

#[tokio::test]
async fn only_the_exact_api_prefix_is_proxied() {
    let stack = Stack::from_env();
    for path in ["/rest/v1x/tools", "/rest/v10/tools", "/restv1/tools"] {
        let response = client()
            .get(format!("{}{path}", stack.api_url))
            .header("apikey", &stack.anon_key)
            .send()
            .await
            .unwrap();
        let body = error_body(response, StatusCode::NOT_FOUND).await;
        assert_eq!(body["code"], "BFF404", "{path}");
    }
}

#[tokio::test]
async fn smuggling_shapes_are_refused_or_reframed() {
    let stack = Stack::from_env();
    // Content-Length and Transfer-Encoding together, then a second request hidden in the body.
    let (_, answer) = raw_exchange(
        &stack.api_url,
        &format!(
            "POST /rest/v1/rpc/integration_types HTTP/1.1\r\nHost: x\r\napikey: {}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\nGET /rest/v1/tools HTTP/1.1\r\nHost: x\r\napikey: {}\r\n\r\n",
            stack.anon_key, stack.anon_key
        ),
    )
    .await;
    let responses = answer.matches("HTTP/1.1 ").count();
    let first = answer.split(' ').nth(1).unwrap_or("");
    // Either refused outright, or framed by Transfer-Encoding (RFC 9112 §6.3): then the hidden
    // request is never glued to the first one's body. hyper answers the first and closes the
    // connection, so the hidden one is not read at all.
    let closed_after_one =
        responses == 1 && answer.to_ascii_lowercase().contains("connection: close");
    assert!(
        first == "400" || (first == "200" && (closed_after_one || responses == 2)),
        "{answer}"
    );
    // Two different Content-Lengths: refused.
    let (status, answer) = raw_exchange(
        &stack.api_url,
        &format!(
            "POST /rest/v1/rpc/integration_types HTTP/1.1\r\nHost: x\r\napikey: {}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}} ",
            stack.anon_key
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn schemas_outside_the_api_stay_out_of_reach() {
    let stack = Stack::from_env();
    for schema in ["dana", "auth", "dana_meta"] {
        let response = client()
            .get(format!("{}/rest/v1/tools", stack.api_url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .header("accept-profile", schema)
            .send()
            .await
            .unwrap();
        let body = error_body(response, StatusCode::NOT_ACCEPTABLE).await;
        assert_eq!(body["code"], "PGRST106", "{schema}");
    }
}

#[tokio::test]
async fn the_openapi_document_points_clients_at_the_bff() {
    let stack = Stack::from_env();
    let spec: Value = client()
        .get(format!("{}/rest/v1/", stack.api_url))
        .header("apikey", &stack.anon_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api = url::Url::parse(&stack.api_url).unwrap();
    assert_eq!(
        spec["host"],
        format!("{}:{}", api.host_str().unwrap(), api.port().unwrap())
    );
    assert_eq!(spec["basePath"], "/rest/v1");
}

/// A stand-in for an upstream that stalls in the middle of a body (PostgREST sends each answer
/// whole, so the real one cannot be made to): a fault injector, not a fake of a service.
async fn stalling_upstream(bytes_before_the_stall: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 8192];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let chunk = "1".repeat(bytes_before_the_stall);
                let _ = socket
                    .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_body_gets_a_504_or_is_cut_off() {
    let stack = Stack::from_env();
    let bff_for = |port: u16| {
        BffProcess::start(&[
            ("POSTGREST_URL", Some(&format!("http://127.0.0.1:{port}"))),
            ("POSTGREST_ADMIN_URL", None),
            ("BFF_UPSTREAM_TIMEOUT_SECS", Some("1")),
        ])
    };
    let get_tools = |bff: &BffProcess| {
        client()
            .get(format!("{}/rest/v1/tools", bff.url))
            .header("apikey", &stack.anon_key)
            .send()
    };
    // A stall before anything went to the client: a 504 that says so.
    let early = bff_for(stalling_upstream(10).await);
    let started = Instant::now();
    let body = error_body(
        get_tools(&early).await.unwrap(),
        StatusCode::GATEWAY_TIMEOUT,
    )
    .await;
    assert_eq!(body["code"], "BFF504");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A stall after the first 100 kB went out: the response is cut short, never left hanging
    // or passed off as complete.
    let late = bff_for(stalling_upstream(100 * 1024).await);
    let started = Instant::now();
    let response = get_tools(&late).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the head came in time");
    let body = response.bytes().await;
    assert!(body.is_err(), "a stalled body must not look complete");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// An upstream that answers the first request of each connection and resets the connection
/// (RST) when a second request comes on it: what a pooled keep-alive connection looks like when
/// the upstream closed it just as the BFF reused it.
async fn upstream_resetting_reused_connections(
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut requests = 0;
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        requests += 1;
                        if requests > 1 {
                            // Linger 0 makes the close a reset; it does not block.
                            #[allow(deprecated)]
                            let _ = stream.set_linger(Some(Duration::ZERO));
                            return; // dropped with linger 0: RST
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]")
                            .await;
                    }
                }
            });
        }
    });
    (url, answered)
}

#[tokio::test]
async fn a_reused_connection_reset_by_the_upstream_is_retried_for_safe_bodiless_requests_only() {
    let stack = Stack::from_env();
    let (upstream, answered) = upstream_resetting_reused_connections().await;
    let bff = BffProcess::start(&[
        ("POSTGREST_URL", Some(&upstream)),
        ("POSTGREST_ADMIN_URL", None),
    ]);
    let call = |method: Method| {
        client()
            .request(method, format!("{}/rest/v1/tasks", bff.url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
    };
    // Each second request lands on a pooled connection the upstream then resets.
    for round in 0..3 {
        let response = call(Method::GET).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET, round {round}");
    }
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 3);
    let head = call(Method::HEAD).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    // A request with a body (it may have changed something) is answered, never sent twice.
    let before = answered.load(std::sync::atomic::Ordering::SeqCst);
    let post = call(Method::POST)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    let status = post.status();
    if status == StatusCode::OK {
        // It went on a fresh connection; the next one reuses it and must not be retried.
        let again = call(Method::POST)
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::BAD_GATEWAY);
    } else {
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) <= before + 1);
}

#[tokio::test]
async fn a_head_request_does_not_leave_a_closing_connection_for_the_next_request() {
    // PostgREST closes the connection after answering HEAD (no length, no chunking); a write
    // after it on the same pooled connection used to fail with 502 "connection reset".
    let stack = Stack::from_env();
    let bff = BffProcess::start(&[("BFF_WORKER_THREADS", Some("1"))]);
    let http = client();
    for round in 0..100 {
        let head = http
            .head(format!("{}/rest/v1/user_memory?select=*", bff.url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .header("Prefer", "count=exact")
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD, round {round}");
        let post = http
            .post(format!("{}/rest/v1/rpc/integration_types", bff.url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            post.status(),
            StatusCode::OK,
            "POST after HEAD, round {round}"
        );
    }
}
