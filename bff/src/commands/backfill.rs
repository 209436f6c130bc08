//! `dana-bff backfill-knowledge`: moves the files the old design kept base64-encoded in
//! `knowledge_files.content_base64` into the bucket.
//!
//! Each row: decode (undecodable content is reported and left in place, never fatal), check the
//! decoded bytes against the row's recorded size and SHA-256 when it has them, store the object at
//! `{user}/{row}/{name}` with its SHA-256 for the server to check, read back its size and
//! checksum, and only then — in one transaction — record the path, size, checksum and `stored`
//! status and clear the column. The key depends only on the row, so a run killed anywhere and
//! started again writes the same objects again (overwriting, never duplicating) and finishes the
//! rows it had not recorded. Rows are taken in id order, in batches, several at a time.
//!
//! It runs as the service role (it writes every user's rows), through the BFF's own login.

use crate::db::in_transaction;
use crate::db::{act_as, Acting, Db, DbError};
use base64::Engine;
use bytes::Bytes;
use dana_storage::{keys, KnowledgeStore, StorageError};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::time::Instant;
use uuid::Uuid;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub batch: i64,
    pub concurrency: usize,
    pub dry_run: bool,
}

/// What happened to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Moved,
    /// The dry run would move it.
    WouldMove,
    /// Another run recorded it first.
    AlreadyMoved,
    Undecodable(String),
    /// The decoded bytes do not match the size or SHA-256 the row recorded.
    Mismatch(String),
    /// Storage or the database failed; a later run retries.
    Failed(String),
}

/// The tally of a run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub moved: u64,
    pub would_move: u64,
    pub already_moved: u64,
    pub undecodable: u64,
    pub mismatched: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Summary {
    fn add(&mut self, outcome: &Outcome, bytes: u64) {
        match outcome {
            Outcome::Moved => {
                self.moved += 1;
                self.bytes += bytes;
            }
            Outcome::WouldMove => {
                self.would_move += 1;
                self.bytes += bytes;
            }
            Outcome::AlreadyMoved => self.already_moved += 1,
            Outcome::Undecodable(_) => self.undecodable += 1,
            Outcome::Mismatch(_) => self.mismatched += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// One legacy row, as read for moving.
struct LegacyRow {
    id: Uuid,
    user_id: Uuid,
    file_name: String,
    content_type: String,
    content_base64: String,
    sha256: Option<String>,
    size_bytes: Option<i64>,
}

/// Decodes what the old design stored: standard or URL-safe base64, padded or not, with line
/// breaks, possibly as a `data:…;base64,` URL.
pub fn decode_legacy(text: &str) -> Result<Vec<u8>, String> {
    let text = match text.find(";base64,") {
        Some(at) if text.starts_with("data:") => &text[at + 8..],
        _ => text,
    };
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let indifferent = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let standard = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, indifferent);
    let url_safe = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, indifferent);
    standard
        .decode(&compact)
        .or_else(|_| url_safe.decode(&compact))
        .map_err(|e| format!("not base64: {e}"))
}

/// Base64 loaded into memory at once, at most (a batch is split into chunks of this much).
const CHUNK_BYTES: i64 = 32 * 1024 * 1024;

/// A row whose object is stored and verified, waiting to be recorded.
struct Verified {
    id: Uuid,
    user_id: Uuid,
    key: String,
    sha256: String,
    size: u64,
}

/// Runs the backfill; `progress` hears of every row.
pub async fn run(
    db: &Db,
    store: &KnowledgeStore,
    options: &BackfillOptions,
    mut progress: impl FnMut(Uuid, &Outcome),
) -> Result<Summary, DbError> {
    let mut summary = Summary::default();
    let mut after = Uuid::nil();
    loop {
        // The next batch: ids and the size of their base64, without the content itself.
        let batch: Vec<(Uuid, i64)> = in_transaction(db, Acting::Service, async |tx| {
            let rows = tx
                .query(
                    "SELECT id, octet_length(content_base64) FROM public.knowledge_files
                      WHERE content_base64 IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
                    &[&after, &options.batch],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get::<_, i32>(1) as i64))
                .collect())
        })
        .await?;
        let Some((last, _)) = batch.last().copied() else {
            break;
        };
        after = last;
        for chunk in chunks(&batch) {
            let rows = load(db, &chunk).await?;
            let mut outcomes: Vec<(Uuid, Outcome, u64)> = Vec::new();
            let mut verified: Vec<Verified> = Vec::new();
            let mut puts = futures_util::stream::iter(rows)
                .map(|row| async move { store_one(store, row, options.dry_run).await })
                .buffer_unordered(options.concurrency.max(1));
            while let Some(result) = puts.next().await {
                match result {
                    Ok(done) => verified.push(done),
                    Err((id, outcome)) => outcomes.push((id, outcome, 0)),
                }
            }
            drop(puts);
            if options.dry_run {
                outcomes.extend(
                    verified
                        .drain(..)
                        .map(|v| (v.id, Outcome::WouldMove, v.size)),
                );
            } else if !verified.is_empty() {
                match record(db, &verified).await {
                    Ok(recorded) => outcomes.extend(verified.iter().map(|v| {
                        if recorded.contains(&v.id) {
                            (v.id, Outcome::Moved, v.size)
                        } else {
                            (v.id, Outcome::AlreadyMoved, 0)
                        }
                    })),
                    Err(e) => outcomes.extend(
                        verified
                            .iter()
                            .map(|v| (v.id, Outcome::Failed(e.to_string()), 0)),
                    ),
                }
            }
            for (id, outcome, bytes) in outcomes {
                summary.add(&outcome, bytes);
                progress(id, &outcome);
            }
        }
    }
    Ok(summary)
}

/// Splits a batch so no chunk loads more than [`CHUNK_BYTES`] of base64 (a single larger row
/// makes a chunk of its own).
fn chunks(batch: &[(Uuid, i64)]) -> Vec<Vec<Uuid>> {
    let mut out: Vec<Vec<Uuid>> = Vec::new();
    let mut size = 0;
    for (id, bytes) in batch {
        if out.is_empty() || size + bytes > CHUNK_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += bytes;
        out.last_mut().expect("pushed above").push(*id);
    }
    out
}

/// The rows of a chunk that still hold base64 content.
async fn load(db: &Db, ids: &[Uuid]) -> Result<Vec<LegacyRow>, DbError> {
    in_transaction(db, Acting::Service, async |tx| {
        let rows = tx
            .query(
                "SELECT id, user_id, file_name, content_type, content_base64, sha256, size_bytes
                   FROM public.knowledge_files WHERE id = ANY($1) AND content_base64 IS NOT NULL",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LegacyRow {
                id: r.get(0),
                user_id: r.get(1),
                file_name: r.get(2),
                content_type: r.get(3),
                content_base64: r.get(4),
                sha256: r.get(5),
                size_bytes: r.get(6),
            })
            .collect())
    })
    .await
}

/// How many rows still hold base64 content.
pub async fn remaining(db: &Db) -> Result<i64, DbError> {
    in_transaction(db, Acting::Service, async |tx| {
        Ok(tx
            .query_one(
                "SELECT count(*) FROM public.knowledge_files WHERE content_base64 IS NOT NULL",
                &[],
            )
            .await?
            .get(0))
    })
    .await
}

/// Decodes and checks one row, then (unless a dry run) stores its object and verifies it.
async fn store_one(
    store: &KnowledgeStore,
    row: LegacyRow,
    dry_run: bool,
) -> Result<Verified, (Uuid, Outcome)> {
    let bytes =
        decode_legacy(&row.content_base64).map_err(|why| (row.id, Outcome::Undecodable(why)))?;
    let size = bytes.len() as u64;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(recorded) = row.size_bytes.filter(|s| *s as u64 != size) {
        return Err((
            row.id,
            Outcome::Mismatch(format!("decoded {size} bytes, the row records {recorded}")),
        ));
    }
    if let Some(recorded) = row.sha256.as_deref().filter(|s| *s != sha256) {
        return Err((
            row.id,
            Outcome::Mismatch(format!(
                "decoded SHA-256 {sha256}, the row records {recorded}"
            )),
        ));
    }
    let key = format!(
        "{}/{}/{}",
        row.user_id,
        row.id,
        keys::key_name(&keys::display_name(&row.file_name))
    );
    if !dry_run {
        let content_type = if row.content_type.is_empty() {
            "application/octet-stream"
        } else {
            &row.content_type
        };
        store
            .put_verified(&key, content_type, Bytes::from(bytes))
            .await
            .map_err(|e| (row.id, Outcome::Failed(describe(&e))))?;
    }
    Ok(Verified {
        id: row.id,
        user_id: row.user_id,
        key,
        sha256,
        size,
    })
}

/// One transaction for a chunk: each row points at its verified object and no longer holds the
/// bytes. Returns the rows it changed (another run may have recorded some first).
async fn record(db: &Db, verified: &[Verified]) -> Result<Vec<Uuid>, DbError> {
    let ids: Vec<Uuid> = verified.iter().map(|v| v.id).collect();
    let users: Vec<Uuid> = verified.iter().map(|v| v.user_id).collect();
    let keys: Vec<&str> = verified.iter().map(|v| v.key.as_str()).collect();
    let shas: Vec<&str> = verified.iter().map(|v| v.sha256.as_str()).collect();
    let sizes: Vec<i64> = verified.iter().map(|v| v.size as i64).collect();
    let mut connection = db.connection().await?;
    let tx = connection.transaction().await?;
    act_as(&tx, Acting::Service).await?;
    let rows = tx
        .query(
            "UPDATE public.knowledge_files f
                SET storage_path = u.path, status = 'stored', sha256 = u.sha, size_bytes = u.size,
                    content_base64 = NULL
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[])
                    AS u(id, user_id, path, sha, size)
              WHERE f.id = u.id AND f.user_id = u.user_id AND f.content_base64 IS NOT NULL
             RETURNING f.id",
            &[&ids, &users, &keys, &shas, &sizes],
        )
        .await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn describe(error: &StorageError) -> String {
    error.to_string()
}

/// The command: a progress bar on a terminal, a line per problem, a summary line at the end.
/// Fails (exit status 1) only when rows remain that a later run could move.
pub async fn command(
    db: Db,
    store: KnowledgeStore,
    options: BackfillOptions,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let total = remaining(&db).await?;
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} files [{bar:40}] {per_sec} {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let summary = run(&db, &store, &options, |id, outcome| {
        bar.inc(1);
        match outcome {
            Outcome::Undecodable(why) | Outcome::Mismatch(why) => {
                bar.suspend(|| eprintln!("backfill: {id}: left in place: {why}"))
            }
            Outcome::Failed(why) => {
                bar.suspend(|| eprintln!("backfill: {id}: failed, retry later: {why}"))
            }
            _ => {}
        }
    })
    .await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let verb = if options.dry_run {
        "would move"
    } else {
        "moved"
    };
    let count = if options.dry_run {
        summary.would_move
    } else {
        summary.moved
    };
    println!(
        "backfill: {verb} {count} files ({} bytes), {} already moved, {} undecodable, {} mismatched, {} failed, in {seconds:.1} s ({:.0} files/s)",
        summary.bytes,
        summary.already_moved,
        summary.undecodable,
        summary.mismatched,
        summary.failed,
        count as f64 / seconds.max(0.001),
    );
    Ok(summary.failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_encodings_decode() {
        for text in [
            "aGVsbG8=",
            "aGVsbG8",
            "aGVs\nbG8=\n",
            "data:text/plain;base64,aGVsbG8=",
        ] {
            assert_eq!(decode_legacy(text).unwrap(), b"hello", "{text}");
        }
        assert_eq!(decode_legacy("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode_legacy("not base64!").is_err());
    }
}
