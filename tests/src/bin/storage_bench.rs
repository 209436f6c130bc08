//! `scripts/dev bench storage`: the knowledge-files paths against the same S3 server, each next to
//! the same work done straight with aws-sdk-s3.
//!
//! 1. upload of `BENCH_UPLOAD_MIB` (1024) MiB through the BFF (`POST /api/knowledge/files`, a
//!    streamed multipart body) vs an SDK multipart upload (same part size, same parts in flight);
//! 2. download of that file through the BFF vs an SDK GetObject, both read to the end;
//! 3. `dana-bff backfill-knowledge` of `BENCH_FILES` (10,000) legacy rows of 10 kB vs PutObject
//!    of the same objects with the same concurrency.
//!
//! The BFF is a process of its own (so its peak RSS is this run's), with limits raised for 1 GiB.
//! Prints a Markdown table for BENCHMARKS.md.

use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use bytes::Bytes;
use dana_e2e::processes::{bff_binary, BffProcess};
use dana_e2e::{connect, setting, stack_env};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const PART: usize = 8 * 1024 * 1024;
const PARALLEL: usize = 2;

fn sdk() -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new(
        setting("S3_PROTOCOL_ACCESS_KEY_ID"),
        setting("S3_PROTOCOL_ACCESS_KEY_SECRET"),
        None,
        None,
        "bench",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(setting("S3_REGION")))
        .endpoint_url(setting("STORAGE_S3_URL"))
        .force_path_style(true)
        .credentials_provider(credentials)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// 1 MiB of incompressible bytes, repeated: the same content for every path.
fn block() -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    Bytes::from(
        (0..1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

async fn direct_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    mib: usize,
) -> Duration {
    let started = Instant::now();
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id.unwrap();
    let block = block();
    let parts_total = (mib * 1024 * 1024).div_ceil(PART);
    let parts = futures_util::stream::iter(1..=parts_total)
        .map(|number| {
            let (client, block, id) = (client.clone(), block.clone(), id.clone());
            async move {
                let mut part = Vec::with_capacity(PART);
                while part.len() < PART {
                    part.extend_from_slice(&block);
                }
                let sent = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(number as i32)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .unwrap();
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(sent.e_tag)
                    .build()
            }
        })
        .buffered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    started.elapsed()
}

async fn direct_download(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (u64, Duration) {
    let started = Instant::now();
    let mut body = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body;
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        bytes += chunk.unwrap().len() as u64;
    }
    (bytes, started.elapsed())
}

async fn bff_upload(bff: &BffProcess, mib: usize) -> (String, Duration) {
    let boundary = "danabench";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let block = block();
    let body = futures_util::stream::iter(
        std::iter::once(Bytes::from(head))
            .chain(std::iter::repeat_n(block, mib))
            .chain(std::iter::once(Bytes::from(tail)))
            .map(Ok::<_, std::io::Error>),
    );
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/api/knowledge/files", bff.url))
        .header("apikey", setting("ANON_KEY"))
        .bearer_auth(setting("DEMO_ALICE_JWT"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let row: serde_json::Value = response.json().await.unwrap();
    (row["id"].as_str().unwrap().to_owned(), elapsed)
}

async fn bff_download(bff: &BffProcess, id: &str) -> (u64, Duration) {
    let started = Instant::now();
    let mut response = reqwest::Client::new()
        .get(format!("{}/api/knowledge/files/{id}/content", bff.url))
        .header("apikey", setting("ANON_KEY"))
        .bearer_auth(setting("DEMO_ALICE_JWT"))
        .send()
        .await
        .unwrap();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    (bytes, started.elapsed())
}

async fn direct_puts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    files: usize,
    concurrency: usize,
) -> Duration {
    let content = Bytes::from(vec![b'k'; 10 * 1024]);
    let started = Instant::now();
    futures_util::stream::iter(0..files)
        .map(|i| {
            let (client, content) = (client.clone(), content.clone());
            async move {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("{prefix}/{i}.txt"))
                    .body(ByteStream::from(content))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

async fn remove_prefix(prefix: &str) {
    let store = dana_e2e::storage::store();
    let keys: Vec<String> = store
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    for batch in keys.chunks(1000) {
        store.delete_many(batch).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("BENCH_UPLOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let files: usize = std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let client = sdk();
    let bucket = setting("KNOWLEDGE_BUCKET");
    let bytes = (mib * 1024 * 1024) as u64;

    // 1 and 2: a large file, both ways.
    let limit = (bytes + 64 * 1024 * 1024).to_string();
    let bff = BffProcess::start(&[
        ("KNOWLEDGE_MAX_FILE_BYTES", Some(&limit)),
        ("KNOWLEDGE_MIME_TYPES", Some("application/octet-stream")),
        ("RUST_LOG", Some("warn")),
    ]);
    let rss_idle = bff.peak_rss_kib();
    let direct_key = format!("bench/direct-{}.bin", std::process::id());
    let direct_up = direct_upload(&client, &bucket, &direct_key, mib).await;
    let (id, bff_up) = bff_upload(&bff, mib).await;
    let rss_after_upload = bff.peak_rss_kib();
    let (direct_read, direct_down) = direct_download(&client, &bucket, &direct_key).await;
    let (bff_read, bff_down) = bff_download(&bff, &id).await;
    let rss_after_download = bff.peak_rss_kib();
    assert_eq!((direct_read, bff_read), (bytes, bytes));
    client
        .delete_object()
        .bucket(&bucket)
        .key(&direct_key)
        .send()
        .await
        .unwrap();
    reqwest::Client::new()
        .delete(format!("{}/api/knowledge/files/{id}", bff.url))
        .header("apikey", setting("ANON_KEY"))
        .bearer_auth(setting("DEMO_ALICE_JWT"))
        .send()
        .await
        .unwrap();
    drop(bff);

    // 3: the backfill, next to plain PUTs of the same number of 10 kB objects.
    let db = connect().await;
    let user = uuid::Uuid::new_v4();
    db.execute(
        "INSERT INTO auth.users (id, email) VALUES ($1, $2)",
        &[&user, &format!("bench-{user}@test.dana.dev")],
    )
    .await
    .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(vec![b'k'; 10 * 1024]);
    db.execute(
        "INSERT INTO public.knowledge_files (user_id, file_name, content_type, status, content_base64)
         SELECT $1, 'note ' || i || '.txt', 'text/plain', 'legacy', $2 FROM generate_series(1, $3) i",
        &[&user, &encoded, &(files as i32)],
    )
    .await
    .unwrap();
    let direct_prefix = format!("bench/puts-{}", std::process::id());
    let puts = direct_puts(&client, &bucket, &direct_prefix, files, concurrency).await;
    let started = Instant::now();
    let output = std::process::Command::new(bff_binary())
        .args([
            "backfill-knowledge",
            "--concurrency",
            &concurrency.to_string(),
        ])
        .envs(stack_env())
        .output()
        .unwrap();
    let backfill = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    remove_prefix(&direct_prefix).await;
    remove_prefix(&format!("{user}/")).await;
    db.execute("DELETE FROM auth.users WHERE id = $1", &[&user])
        .await
        .unwrap();

    let (up_direct, up_bff) = (mib_per_s(bytes, direct_up), mib_per_s(bytes, bff_up));
    let (down_direct, down_bff) = (mib_per_s(bytes, direct_down), mib_per_s(bytes, bff_down));
    let (rate_direct, rate_backfill) = (
        files as f64 / puts.as_secs_f64(),
        files as f64 / backfill.as_secs_f64(),
    );
    println!("| measure | straight to S3 (aws-sdk-s3) | through Dana | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| upload {mib} MiB (MiB/s) | {up_direct:.0} | {up_bff:.0} | {:.0} % | ≥ 90 % |",
        100.0 * up_bff / up_direct
    );
    println!(
        "| download {mib} MiB (MiB/s) | {down_direct:.0} | {down_bff:.0} | {:.0} % | ≥ 90 % |",
        100.0 * down_bff / down_direct
    );
    println!(
        "| backfill {files} files of 10 kB, concurrency {concurrency} (files/s) | {rate_direct:.0} | {rate_backfill:.0} | {:.0} % | ≥ 80 % and ≥ 500 files/s |",
        100.0 * rate_backfill / rate_direct
    );
    println!();
    println!(
        "dana-bff peak RSS: {} KiB idle, {} KiB after the upload, {} KiB after the download (target < 65536 KiB)",
        rss_idle, rss_after_upload, rss_after_download
    );
    println!("backfill's own summary: {summary}");
}
