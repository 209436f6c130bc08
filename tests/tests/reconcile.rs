//! `dana-bff reconcile-knowledge`: each way the bucket and the rows can disagree is found, and
//! settled with `--fix`.

use bytes::Bytes;
use dana_e2e::processes::bff_binary;
use dana_e2e::storage::{sha256_hex, store};
use dana_e2e::{connect, setting, stack_env};
use std::process::Command;

fn reconcile(fix: bool) -> (bool, String) {
    let mut command = Command::new(bff_binary());
    command
        .arg("reconcile-knowledge")
        .args(["--stale-after-secs", "0"])
        .envs(stack_env());
    if fix {
        command.arg("--fix");
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn every_disagreement_is_found_and_fixed() {
    let db = connect().await;
    let bucket = store();
    let user = uuid::Uuid::new_v4();
    db.execute(
        "INSERT INTO auth.users (id, email) VALUES ($1, $2)",
        &[&user, &format!("reconcile-{user}@test.dana.dev")],
    )
    .await
    .unwrap();
    let key = |name: &str| format!("{user}/{name}");
    // An object nobody's row knows.
    bucket
        .put_verified(
            &key("orphan.txt"),
            "text/plain",
            Bytes::from_static(b"orphan"),
        )
        .await
        .unwrap();
    // A stored row whose object is gone.
    db.execute(
        "INSERT INTO public.knowledge_files (user_id, file_name, storage_path, status, sha256, size_bytes)
         VALUES ($1, 'missing.txt', $2, 'stored', $3, 4)",
        &[&user, &key("missing.txt"), &sha256_hex(b"gone")],
    )
    .await
    .unwrap();
    // An upload stopped after storing its object, and one stopped before.
    bucket
        .put_verified(
            &key("stale-with.txt"),
            "text/plain",
            Bytes::from_static(b"all there"),
        )
        .await
        .unwrap();
    for name in ["stale-with.txt", "stale-without.txt"] {
        db.execute(
            "INSERT INTO public.knowledge_files (user_id, file_name, storage_path, status) VALUES ($1, $2, $3, 'pending')",
            &[&user, &name, &key(name)],
        )
        .await
        .unwrap();
    }
    // A multipart upload started and abandoned.
    let s3 = {
        let credentials = aws_sdk_s3::config::Credentials::new(
            setting("S3_PROTOCOL_ACCESS_KEY_ID"),
            setting("S3_PROTOCOL_ACCESS_KEY_SECRET"),
            None,
            None,
            "e2e",
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
    };
    let abandoned = s3
        .create_multipart_upload()
        .bucket(setting("KNOWLEDGE_BUCKET"))
        .key(key("abandoned.bin"))
        .send()
        .await
        .unwrap();

    let (clean, report) = reconcile(false);
    assert!(!clean, "findings make the exit status 1: {report}");
    for line in [
        format!("object without row: {}", key("orphan.txt")),
        format!("({})", key("missing.txt")),
        "stale pending row whose object is stored".to_owned(),
        "stale pending row without object".to_owned(),
        format!("stale multipart upload: {}", key("abandoned.bin")),
    ] {
        assert!(report.contains(&line), "{line} not in:\n{report}");
    }

    let (clean, report) = reconcile(true);
    assert!(clean, "{report}");
    assert!(
        bucket.list(&key("orphan")).await.unwrap().is_empty(),
        "the orphan object is gone"
    );
    let states = dana_e2e::strings(
        &db,
        &format!("SELECT file_name || ' ' || status || ' ' || coalesce(size_bytes::text, '-') || ' ' || coalesce(sha256, '-')
                    FROM public.knowledge_files WHERE user_id = '{user}' ORDER BY file_name"),
    )
    .await;
    assert_eq!(
        states,
        [
            format!("missing.txt failed 4 {}", sha256_hex(b"gone")),
            format!("stale-with.txt stored 9 {}", sha256_hex(b"all there")),
        ]
    );
    let uploads = bucket.pending_uploads().await.unwrap();
    assert!(
        !uploads
            .iter()
            .any(|u| Some(u.upload_id.as_str()) == abandoned.upload_id()),
        "the abandoned upload is aborted"
    );
    let (_, report) = reconcile(false);
    assert!(!report.contains(&user.to_string()), "{report}");

    bucket.delete(&key("stale-with.txt")).await.unwrap();
    db.execute("DELETE FROM auth.users WHERE id = $1", &[&user])
        .await
        .unwrap();
}
