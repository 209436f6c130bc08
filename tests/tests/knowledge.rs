//! Knowledge files through Dana's API and Supabase's Storage API, against the real BFF,
//! PostgreSQL and S3 server: what each user reaches, what bad input and faults leave behind.

use dana_e2e::processes::BffProcess;
use dana_e2e::storage::{sha256_hex, store, S3Relay};
use dana_e2e::{connect, demo, strings, Stack};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A unique marker for this run, so tests find exactly their own files.
fn marker(what: &str) -> String {
    format!("e2e-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// One part of a form: field name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart/form-data body written by hand, so file names reach the BFF exactly as given.
fn form(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("dana{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, file_name, content_type, data) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(file_name) = file_name {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(file_name.as_bytes());
            body.extend_from_slice(b"\"");
        }
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload_to(
    api: &str,
    token: &str,
    file_name: &str,
    content_type: &str,
    data: &[u8],
) -> (StatusCode, Value) {
    let stack = Stack::from_env();
    let (form_type, body) = form(&[("file", Some(file_name), Some(content_type), data)]);
    let response = client()
        .post(format!("{api}/api/knowledge/files"))
        .header("apikey", &stack.anon_key)
        .bearer_auth(token)
        .header("content-type", form_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn upload(
    token: &str,
    file_name: &str,
    content_type: &str,
    data: &[u8],
) -> (StatusCode, Value) {
    upload_to(
        &Stack::from_env().api_url,
        token,
        file_name,
        content_type,
        data,
    )
    .await
}

async fn call(method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
    let stack = Stack::from_env();
    client()
        .request(method, format!("{}{path}", stack.api_url))
        .header("apikey", &stack.anon_key)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn storage_call(path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let stack = Stack::from_env();
    let mut request = client()
        .post(format!("{}/storage/v1{path}", stack.api_url))
        .header("apikey", &stack.anon_key)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Rows and objects whose name contains `marker`, as the operator sees them.
async fn left_behind(marker: &str) -> (Vec<String>, Vec<String>) {
    let db = connect().await;
    let rows = strings(
        &db,
        &format!("SELECT id::text || ' ' || status FROM public.knowledge_files WHERE file_name LIKE '%{marker}%' OR storage_path LIKE '%{marker}%'"),
    )
    .await;
    let objects = store()
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.key.contains(marker))
        .map(|o| o.key)
        .collect();
    (rows, objects)
}

#[tokio::test]
async fn files_go_in_and_out_through_both_apis_and_stay_their_owners() {
    let stack = Stack::from_env();
    let name = format!("{}.pdf", marker("roundtrip"));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (status, row) = upload(&stack.alice_jwt, &name, "application/pdf", &data).await;
    assert_eq!(status, StatusCode::CREATED, "{row}");
    let id = row["id"].as_str().unwrap().to_owned();
    assert_eq!(row["status"], "stored");
    assert_eq!(row["size_bytes"], data.len());
    assert_eq!(row["sha256"], sha256_hex(&data));
    let key = row["storage_path"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("{}/{id}/", demo::ALICE)), "{key}");

    // Alice: listed, described, read whole and in part.
    let listed: Value = call(
        reqwest::Method::GET,
        "/api/knowledge/files?limit=200",
        &stack.alice_jwt,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == id.as_str()));
    let described: Value = call(
        reqwest::Method::GET,
        &format!("/api/knowledge/files/{id}"),
        &stack.alice_jwt,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(described["file_name"], name.as_str());
    let whole = call(
        reqwest::Method::GET,
        &format!("/api/knowledge/files/{id}/content"),
        &stack.alice_jwt,
    )
    .await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(
        whole.headers()["etag"],
        format!("\"{}\"", sha256_hex(&data))
    );
    assert!(whole.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename="));
    assert_eq!(whole.bytes().await.unwrap().as_ref(), data.as_slice());
    let stack2 = Stack::from_env();
    let part = client()
        .get(format!(
            "{}/api/knowledge/files/{id}/content",
            stack2.api_url
        ))
        .header("apikey", &stack2.anon_key)
        .bearer_auth(&stack2.alice_jwt)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{}", data.len())
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &data[1000..2000]);
    let beyond = client()
        .get(format!(
            "{}/api/knowledge/files/{id}/content",
            stack2.api_url
        ))
        .header("apikey", &stack2.anon_key)
        .bearer_auth(&stack2.alice_jwt)
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", data.len())
    );
    // The same file through the Storage API.
    let folder = format!("{}/{id}", demo::ALICE);
    let (status, listing) = storage_call(
        "/object/list/knowledge-files",
        &stack.alice_jwt,
        Some(json!({"prefix": folder})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing[0]["name"], key.rsplit('/').next().unwrap());
    assert_eq!(listing[0]["metadata"]["size"], data.len());
    let redirect = client()
        .get(format!(
            "{}/api/knowledge/files/{id}/content?redirect=1",
            stack.api_url
        ))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(
        redirect.status(),
        StatusCode::OK,
        "the client follows the 302 to the presigned URL"
    );
    assert_eq!(redirect.bytes().await.unwrap().as_ref(), data.as_slice());

    // Bob: nothing of it, through either API.
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/knowledge/files/{id}")),
        (
            reqwest::Method::GET,
            format!("/api/knowledge/files/{id}/content"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/knowledge/files/{id}"),
        ),
    ] {
        let response = call(method.clone(), &path, &stack.bob_jwt).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let bobs: Value = call(
        reqwest::Method::GET,
        "/api/knowledge/files?limit=200",
        &stack.bob_jwt,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(!bobs["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == id.as_str()));
    let read = call(
        reqwest::Method::GET,
        &format!("/storage/v1/object/knowledge-files/{key}"),
        &stack.bob_jwt,
    )
    .await;
    assert_eq!(read.status(), StatusCode::BAD_REQUEST);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["statusCode"], "403", "{read}");
    let (_, signed) = storage_call(
        &format!("/object/sign/knowledge-files/{key}"),
        &stack.bob_jwt,
        Some(json!({"expiresIn": 60})),
    )
    .await;
    assert_eq!(signed["statusCode"], "403", "{signed}");
    let (_, moved) = storage_call("/object/move", &stack.bob_jwt, Some(json!({"bucketId": "knowledge-files", "sourceKey": key, "destinationKey": format!("{}/stolen.pdf", demo::BOB)}))).await;
    assert_eq!(moved["statusCode"], "403", "{moved}");
    let removed = client()
        .delete(format!(
            "{}/storage/v1/object/knowledge-files",
            stack.api_url
        ))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.bob_jwt)
        .json(&json!({"prefixes": [key]}))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.json::<Value>().await.unwrap(), json!([]));
    let (bobs_view, _) = storage_call(
        "/object/list/knowledge-files",
        &stack.bob_jwt,
        Some(json!({"prefix": demo::ALICE})),
    )
    .await;
    assert_eq!(bobs_view, StatusCode::OK);

    // Alice deletes it through the Storage API: gone for both APIs, row and object.
    let removed = client()
        .delete(format!(
            "{}/storage/v1/object/knowledge-files",
            stack.api_url
        ))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .json(&json!({"prefixes": [key]}))
        .send()
        .await
        .unwrap();
    let removed: Value = removed.json().await.unwrap();
    assert_eq!(removed[0]["name"], key.as_str());
    assert_eq!(
        call(
            reqwest::Method::GET,
            &format!("/api/knowledge/files/{id}"),
            &stack.alice_jwt
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(left_behind(&name).await, (vec![], vec![]));
}

#[tokio::test]
async fn oversized_and_forbidden_uploads_store_nothing() {
    let stack = Stack::from_env();
    let bff = BffProcess::start(&[("KNOWLEDGE_MAX_FILE_BYTES", Some("1048576"))]);
    let name = marker("limits");
    let big = vec![7u8; 2 * 1024 * 1024];
    let (status, body) = upload_to(
        &bff.url,
        &stack.alice_jwt,
        &format!("{name}.pdf"),
        "application/pdf",
        &big,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // A body without a length that runs past the limit while it streams.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = client()
        .post(format!(
            "{}/storage/v1/object/knowledge-files/{}/{name}-stream.pdf",
            bff.url,
            demo::ALICE
        ))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .header("content-type", "application/pdf")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::BAD_REQUEST);
    let error: Value = streamed.json().await.unwrap();
    assert_eq!(
        (error["statusCode"].as_str(), error["code"].as_str()),
        (Some("413"), Some("EntityTooLarge")),
        "{error}"
    );
    let (status, body) = upload_to(
        &bff.url,
        &stack.alice_jwt,
        &format!("{name}.exe"),
        "application/x-msdownload",
        b"MZ",
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (_, error) = {
        let response = client()
            .post(format!(
                "{}/storage/v1/object/knowledge-files/{}/{name}.exe",
                bff.url,
                demo::ALICE
            ))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .header("content-type", "application/x-msdownload")
            .body("MZ")
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(error["code"], "InvalidMimeType", "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(left_behind(&name).await, (vec![], vec![]));
}

#[tokio::test]
async fn file_names_are_made_safe_and_keys_stay_in_the_owners_folder() {
    let stack = Stack::from_env();
    let tag = marker("names");
    let long = format!("{tag}{}.txt", "x".repeat(300));
    // Names in the part's own header, and (for what no header can carry, such as NUL) in the
    // form's `file_name` field.
    for (original, in_field) in [
        (format!("../../{tag}-passwd"), false),
        (format!("a/b\\{tag}.txt"), false),
        (format!("{tag}\u{0}nul.txt"), true),
        (format!("{tag}\u{7}\u{1b}ctl\r\n.txt"), true),
        (format!("..\\..\\{tag}\u{0}.txt"), true),
        (long.clone(), false),
    ] {
        let (status, row) = if in_field {
            let (form_type, body) = form(&[
                ("file_name", None, None, original.as_bytes()),
                ("file", Some("upload.txt"), Some("text/plain"), b"safe"),
            ]);
            let response = client()
                .post(format!("{}/api/knowledge/files", stack.api_url))
                .header("apikey", &stack.anon_key)
                .bearer_auth(&stack.alice_jwt)
                .header("content-type", form_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        } else {
            upload(&stack.alice_jwt, &original, "text/plain", b"safe").await
        };
        assert_eq!(status, StatusCode::CREATED, "{original:?}: {row}");
        let name = row["file_name"].as_str().unwrap();
        assert!(
            !name.contains(['/', '\\']) && !name.chars().any(char::is_control),
            "{name:?}"
        );
        assert!(name.len() <= 255 && name.contains(&tag), "{name:?}");
        let key = row["storage_path"].as_str().unwrap();
        assert!(
            key.starts_with(&format!("{}/", demo::ALICE)) && !key.contains(".."),
            "{key}"
        );
        let id = row["id"].as_str().unwrap();
        let content = call(
            reqwest::Method::GET,
            &format!("/api/knowledge/files/{id}/content"),
            &stack.alice_jwt,
        )
        .await;
        let disposition = content.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(disposition.matches('"').count(), 2, "{disposition}");
        assert_eq!(
            call(
                reqwest::Method::DELETE,
                &format!("/api/knowledge/files/{id}"),
                &stack.alice_jwt
            )
            .await
            .status(),
            StatusCode::NO_CONTENT
        );
    }
    // A NUL inside the part's header is not HTTP: refused as a malformed form, nothing stored.
    let (status, body) = upload(
        &stack.alice_jwt,
        &format!("{tag}\u{0}.txt"),
        "text/plain",
        b"x",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Storage API paths outside the caller's folder, or not keys at all.
    for (path, expected) in [
        (format!("{}/{tag}.txt", demo::BOB), "403"),
        (format!("{tag}.txt"), "403"),
        (format!("{}/a%2F..%2F..%2F{tag}.txt", demo::ALICE), "400"),
        (format!("{}/{tag}%00.txt", demo::ALICE), "400"),
    ] {
        let response = client()
            .post(format!(
                "{}/storage/v1/object/knowledge-files/{path}",
                stack.api_url
            ))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.alice_jwt)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["statusCode"], expected, "{path}: {error}");
    }
    assert_eq!(left_behind(&tag).await, (vec![], vec![]));
}

#[tokio::test]
async fn a_row_cannot_be_pointed_at_another_users_object() {
    let stack = Stack::from_env();
    let name = format!("{}.txt", marker("forged"));
    let (_, row) = upload(&stack.alice_jwt, &name, "text/plain", b"alice's secret").await;
    let key = row["storage_path"].as_str().unwrap().to_owned();
    let rest = |method: reqwest::Method, path: &str, body: Value| {
        let stack = Stack::from_env();
        client()
            .request(method, format!("{}/rest/v1/{path}", stack.api_url))
            .header("apikey", &stack.anon_key)
            .bearer_auth(&stack.bob_jwt)
            .header("prefer", "return=representation")
            .json(&body)
            .send()
    };
    let forged = rest(
        reqwest::Method::POST,
        "knowledge_files",
        json!({"file_name": "mine.txt", "storage_path": key, "status": "stored"}),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let error: Value = forged.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("only Dana's storage sets"),
        "{error}"
    );
    // Bob's own row cannot be repointed either.
    let own = rest(
        reqwest::Method::POST,
        "knowledge_files",
        json!({"file_name": "bob.txt"}),
    )
    .await
    .unwrap();
    assert_eq!(own.status(), StatusCode::CREATED);
    let own: Value = own.json().await.unwrap();
    let own_id = own[0]["id"].as_str().unwrap().to_owned();
    let repoint = rest(
        reqwest::Method::PATCH,
        &format!("knowledge_files?id=eq.{own_id}"),
        json!({"storage_path": key, "status": "stored"}),
    )
    .await
    .unwrap();
    assert_eq!(repoint.status(), StatusCode::FORBIDDEN);
    // Not even the service role can store a row whose key is outside its owner's folder.
    let db = connect().await;
    let err = db
        .execute(
            "UPDATE public.knowledge_files SET storage_path = $1 WHERE id = $2::text::uuid",
            &[&key, &own_id],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    let content = call(
        reqwest::Method::GET,
        &format!("/api/knowledge/files/{own_id}/content"),
        &stack.bob_jwt,
    )
    .await;
    assert_eq!(content.status(), StatusCode::NOT_FOUND);
    db.execute(
        "DELETE FROM public.knowledge_files WHERE id = $1::text::uuid",
        &[&own_id],
    )
    .await
    .unwrap();
    let id = row["id"].as_str().unwrap();
    call(
        reqwest::Method::DELETE,
        &format!("/api/knowledge/files/{id}"),
        &stack.alice_jwt,
    )
    .await;
}

#[tokio::test]
async fn a_storage_outage_is_a_503_naming_storage_and_the_bff_recovers() {
    let stack = Stack::from_env();
    let relay = S3Relay::start().await;
    let bff = BffProcess::start(&[
        ("STORAGE_S3_URL", Some(relay.url.as_str())),
        ("BFF_OPERATOR_TOKEN", Some("operator-token-for-e2e-tests")),
    ]);
    let name = marker("outage");
    relay.set_up(false);
    let started = Instant::now();
    let (status, body) = upload_to(
        &bff.url,
        &stack.alice_jwt,
        &format!("{name}.txt"),
        "text/plain",
        b"during",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["details"], "storage is unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let ready: Value = client()
        .get(format!("{}/readyz", bff.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["not_ready"], json!(["storage"]), "{ready}");
    assert_eq!(
        left_behind(&name).await.0,
        Vec::<String>::new(),
        "no row is written"
    );
    relay.set_up(true);
    let (status, row) = upload_to(
        &bff.url,
        &stack.alice_jwt,
        &format!("{name}.txt"),
        "text/plain",
        b"after",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{row}");
    let id = row["id"].as_str().unwrap();
    let content = client()
        .get(format!("{}/api/knowledge/files/{id}/content", bff.url))
        .header("apikey", &stack.anon_key)
        .bearer_auth(&stack.alice_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(content.bytes().await.unwrap().as_ref(), b"after");
    call(
        reqwest::Method::DELETE,
        &format!("/api/knowledge/files/{id}"),
        &stack.alice_jwt,
    )
    .await;
    assert_eq!(left_behind(&name).await, (vec![], vec![]));
}

#[tokio::test]
async fn a_client_that_leaves_mid_upload_leaves_nothing_behind() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::from_env();
    let name = format!("{}.pdf", marker("gone"));
    let total = 50 * 1024 * 1024;
    let (form_type, head) = {
        let boundary = "danagone";
        let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/pdf\r\n\r\n");
        (format!("multipart/form-data; boundary={boundary}"), head)
    };
    let mut socket = tokio::net::TcpStream::connect(stack.api_url.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "POST /api/knowledge/files HTTP/1.1\r\nHost: x\r\napikey: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {form_type}\r\nContent-Length: {}\r\n\r\n{head}",
        stack.anon_key,
        stack.alice_jwt,
        total + head.len() + 100
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let chunk = vec![b'%'; 1024 * 1024];
    for _ in 0..25 {
        socket.write_all(&chunk).await.unwrap();
    }
    // Half-way through a multipart upload (8 MiB parts): the client is gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (rows, objects) = left_behind(&name).await;
        let uploads: Vec<String> = store()
            .pending_uploads()
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.key.contains(&name))
            .map(|u| u.key)
            .collect();
        if rows.is_empty() && objects.is_empty() && uploads.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: rows {rows:?}, objects {objects:?}, uploads {uploads:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn twenty_concurrent_uploads_all_land_whole() {
    let stack = Stack::from_env();
    let tag = marker("parallel");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let token = stack.alice_jwt.clone();
            let tag = tag.clone();
            tokio::spawn(async move {
                // Sizes from 1 kB to 6 MiB: the big ones go multipart.
                let size = if i % 5 == 0 {
                    6 * 1024 * 1024 + i * 1000
                } else {
                    1000 + i * 37_000
                };
                let data: Vec<u8> = (0..size).map(|b| ((b * 31 + i) % 256) as u8).collect();
                let (status, row) =
                    upload(&token, &format!("{tag}-{i}.pdf"), "application/pdf", &data).await;
                (status, row, sha256_hex(&data), data.len())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let (status, row, sha, len) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{row}");
        assert_eq!(row["sha256"], sha.as_str());
        assert_eq!(row["size_bytes"], len);
        ids.push((row["id"].as_str().unwrap().to_owned(), sha));
    }
    for (id, sha) in &ids {
        let bytes = call(
            reqwest::Method::GET,
            &format!("/api/knowledge/files/{id}/content"),
            &stack.alice_jwt,
        )
        .await
        .bytes()
        .await
        .unwrap();
        assert_eq!(&sha256_hex(&bytes), sha);
        call(
            reqwest::Method::DELETE,
            &format!("/api/knowledge/files/{id}"),
            &stack.alice_jwt,
        )
        .await;
    }
    assert_eq!(left_behind(&tag).await, (vec![], vec![]));
}
