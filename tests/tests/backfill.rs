//! `dana-bff backfill-knowledge` on a few hundred legacy rows: killed half-way, run again, every
//! file ends up in the bucket exactly once with the bytes its base64 held; undecodable and
//! mismatching rows are reported and left alone.

use base64::Engine;
use dana_e2e::processes::bff_binary;
use dana_e2e::storage::{sha256_hex, store};
use dana_e2e::{connect, stack_env};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 240;

fn content(i: usize) -> Vec<u8> {
    (0..64 * 1024)
        .map(|b| ((b * 7 + i * 13) % 256) as u8)
        .collect()
}

fn backfill(extra: &[&str]) -> Command {
    let mut command = Command::new(bff_binary());
    command
        .arg("backfill-knowledge")
        .args(extra)
        .envs(stack_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test]
async fn a_killed_backfill_finishes_on_rerun_with_every_file_once() {
    let db = connect().await;
    let user = uuid::Uuid::new_v4();
    db.execute(
        "INSERT INTO auth.users (id, email) VALUES ($1, $2)",
        &[&user, &format!("backfill-{user}@test.dana.dev")],
    )
    .await
    .unwrap();
    for i in 0..ROWS {
        let bytes = content(i);
        db.execute(
            "INSERT INTO public.knowledge_files (user_id, file_name, content_type, size_bytes, sha256, status, content_base64)
             VALUES ($1, $2, 'application/pdf', $3, $4, 'legacy', $5)",
            &[
                &user,
                &format!("legacy report {i}.pdf"),
                &(bytes.len() as i64),
                &sha256_hex(&bytes),
                &base64::engine::general_purpose::STANDARD.encode(&bytes),
            ],
        )
        .await
        .unwrap();
    }
    for (name, text, sha) in [
        ("broken-1.txt", "not base64!!", None),
        ("broken-2.txt", "%%%", None),
        ("mismatch.txt", "aGVsbG8=", Some("0".repeat(64))),
    ] {
        db.execute(
            "INSERT INTO public.knowledge_files (user_id, file_name, status, content_base64, sha256)
             VALUES ($1, $2, 'legacy', $3, $4)",
            &[&user, &name, &text, &sha],
        )
        .await
        .unwrap();
    }
    let moved = || async {
        db.query_one(
            "SELECT count(*) FROM public.knowledge_files WHERE user_id = $1 AND status = 'stored'",
            &[&user],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };

    // First run: one file at a time, killed once some (not all) are moved.
    let mut first = backfill(&["--batch", "10", "--concurrency", "1"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let n = moved().await;
        if n >= 30 {
            first.kill().unwrap();
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the first run moved only {n} files in a minute"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = first.wait();
    let after_kill = moved().await;
    assert!(
        after_kill < ROWS as i64,
        "the run finished ({after_kill} moved) before it could be killed at {at_kill}"
    );

    // Second run: to the end.
    let output = backfill(&["--batch", "50", "--concurrency", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 undecodable, 1 mismatched, 0 failed"),
        "{stdout}"
    );
    assert!(stderr.contains("left in place"), "{stderr}");
    assert_eq!(moved().await, ROWS as i64);

    // Every file once, under its row's key, with its bytes.
    let rows = db
        .query(
            "SELECT file_name, storage_path, content_base64 IS NULL FROM public.knowledge_files
              WHERE user_id = $1 AND status = 'stored' ORDER BY file_name",
            &[&user],
        )
        .await
        .unwrap();
    let objects = store().list(&format!("{user}/")).await.unwrap();
    assert_eq!(objects.len(), ROWS, "one object per file, no more");
    let bucket = store();
    for row in &rows {
        let name: String = row.get(0);
        let key: String = row.get(1);
        assert!(row.get::<_, bool>(2), "{name}: the column was cleared");
        let i: usize = name
            .trim_start_matches("legacy report ")
            .trim_end_matches(".pdf")
            .parse()
            .unwrap();
        let mut stream = std::pin::pin!(bucket.get(&key, None).await.unwrap().into_stream());
        let mut bytes = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(sha256_hex(&bytes), sha256_hex(&content(i)), "{key}");
    }
    let left = dana_e2e::strings(
        &db,
        &format!("SELECT file_name FROM public.knowledge_files WHERE user_id = '{user}' AND content_base64 IS NOT NULL AND status = 'legacy' ORDER BY 1"),
    )
    .await;
    assert_eq!(left, ["broken-1.txt", "broken-2.txt", "mismatch.txt"]);

    // A third run has nothing left to move.
    let output = backfill(&[]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("moved 0 files"));

    let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
    bucket.delete_many(&keys).await.unwrap();
    db.execute("DELETE FROM auth.users WHERE id = $1", &[&user])
        .await
        .unwrap();
}
