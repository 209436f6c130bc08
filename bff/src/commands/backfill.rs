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

use crate::db::{act_as, Acting, Db, DbError};
use crate::knowledge::in_transaction;
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
        let ids: Vec<Uuid> = in_transaction(db, Acting::Service, async |tx| {
            let rows = tx
                .query(
                    "SELECT id FROM public.knowledge_files
                      WHERE content_base64 IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
                    &[&after, &options.batch],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        after = last;
        let mut moves = futures_util::stream::iter(ids)
            .map(|id| async move { (id, move_one(db, store, id, options.dry_run).await) })
            .buffer_unordered(options.concurrency.max(1));
        while let Some((id, (outcome, bytes))) = moves.next().await {
            summary.add(&outcome, bytes);
            progress(id, &outcome);
        }
    }
    Ok(summary)
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

async fn move_one(db: &Db, store: &KnowledgeStore, id: Uuid, dry_run: bool) -> (Outcome, u64) {
    let row = in_transaction(db, Acting::Service, async |tx| {
        let row = tx
            .query_opt(
                "SELECT id, user_id, file_name, content_type, content_base64, sha256, size_bytes
                   FROM public.knowledge_files WHERE id = $1 AND content_base64 IS NOT NULL",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| LegacyRow {
            id: r.get(0),
            user_id: r.get(1),
            file_name: r.get(2),
            content_type: r.get(3),
            content_base64: r.get(4),
            sha256: r.get(5),
            size_bytes: r.get(6),
        }))
    })
    .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return (Outcome::AlreadyMoved, 0),
        Err(e) => return (Outcome::Failed(e.to_string()), 0),
    };
    let bytes = match decode_legacy(&row.content_base64) {
        Ok(bytes) => bytes,
        Err(why) => return (Outcome::Undecodable(why), 0),
    };
    let size = bytes.len() as u64;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(recorded) = row.size_bytes.filter(|s| *s as u64 != size) {
        return (
            Outcome::Mismatch(format!("decoded {size} bytes, the row records {recorded}")),
            0,
        );
    }
    if let Some(recorded) = row.sha256.as_deref().filter(|s| *s != sha256) {
        return (
            Outcome::Mismatch(format!(
                "decoded SHA-256 {sha256}, the row records {recorded}"
            )),
            0,
        );
    }
    if dry_run {
        return (Outcome::WouldMove, size);
    }
    let key = format!(
        "{}/{}/{}",
        row.user_id,
        row.id,
        keys::key_name(&keys::display_name(&row.file_name))
    );
    let content_type = if row.content_type.is_empty() {
        "application/octet-stream"
    } else {
        &row.content_type
    };
    if let Err(e) = store
        .put_verified(&key, content_type, Bytes::from(bytes))
        .await
    {
        return (Outcome::Failed(describe(&e)), 0);
    }
    let recorded = record(db, &row, &key, &sha256, size).await;
    match recorded {
        Ok(true) => (Outcome::Moved, size),
        Ok(false) => (Outcome::AlreadyMoved, 0),
        Err(e) => (Outcome::Failed(e.to_string()), 0),
    }
}

/// One transaction: the row points at its verified object and no longer holds the bytes.
async fn record(
    db: &Db,
    row: &LegacyRow,
    key: &str,
    sha256: &str,
    size: u64,
) -> Result<bool, DbError> {
    let mut connection = db.connection().await?;
    let tx = connection.transaction().await?;
    act_as(&tx, Acting::Service).await?;
    let n = tx
        .execute(
            "UPDATE public.knowledge_files
                SET storage_path = $3, status = 'stored', sha256 = $4, size_bytes = $5,
                    content_base64 = NULL
              WHERE id = $1 AND user_id = $2 AND content_base64 IS NOT NULL",
            &[&row.id, &row.user_id, &key, &sha256, &(size as i64)],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
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
