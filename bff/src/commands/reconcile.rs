//! `dana-bff reconcile-knowledge [--fix]`: finds where the bucket and `knowledge_files` disagree,
//! and with `--fix` settles it.
//!
//! | finding | how it arises | `--fix` |
//! |---|---|---|
//! | object without row | a row deleted through `/rest/v1`, a delete whose object removal failed | the object is deleted (no row means no owner wants it) |
//! | stored row without object | the object deleted behind Dana's back | the row is marked `failed` (its name and metadata stay for the user) |
//! | stale pending row, object present | the BFF stopped between storing an object and recording it | the object is measured (size, SHA-256) and the row marked `stored` |
//! | stale pending row, no object | the BFF stopped during an upload | the row is deleted |
//! | stale multipart upload | the BFF stopped mid-upload | the upload is aborted |
//!
//! Objects are listed before rows: an upload reserves its row's key before its object exists, so
//! an object listed first always has its row in the later query unless it really has none.
//! "Stale" means older than `--stale-after` (an hour): younger ones may be uploads in flight.

use crate::db::in_transaction;
use crate::db::{Acting, Db, DbError};
use dana_storage::{KnowledgeStore, StorageError};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    ObjectWithoutRow { key: String },
    StoredRowWithoutObject { id: Uuid, key: String },
    StalePendingWithObject { id: Uuid, key: String },
    StalePendingWithoutObject { id: Uuid },
    StaleMultipartUpload { key: String, upload_id: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::ObjectWithoutRow { key } => write!(f, "object without row: {key}"),
            Finding::StoredRowWithoutObject { id, key } => {
                write!(f, "stored row without object: {id} ({key})")
            }
            Finding::StalePendingWithObject { id, key } => {
                write!(f, "stale pending row whose object is stored: {id} ({key})")
            }
            Finding::StalePendingWithoutObject { id } => {
                write!(f, "stale pending row without object: {id}")
            }
            Finding::StaleMultipartUpload { key, upload_id } => {
                write!(f, "stale multipart upload: {key} ({upload_id})")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

struct RowState {
    id: Uuid,
    status: String,
    key: Option<String>,
    stale: bool,
}

/// Everything that disagrees, as of now.
pub async fn find(
    db: &Db,
    store: &KnowledgeStore,
    stale_after: Duration,
) -> Result<Vec<Finding>, ReconcileError> {
    let objects = store.list("").await?;
    let uploads = store.pending_uploads().await?;
    let bucket = store.bucket().to_owned();
    let rows: Vec<RowState> = in_transaction(db, Acting::Service, async |tx| {
        let rows = tx
            .query(
                "SELECT id, status, storage_path, updated_at < now() - make_interval(secs => $2)
                   FROM public.knowledge_files
                  WHERE storage_bucket = $1 AND status IN ('stored', 'pending')",
                &[&bucket, &(stale_after.as_secs_f64())],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RowState {
                id: r.get(0),
                status: r.get(1),
                key: r.get(2),
                stale: r.get(3),
            })
            .collect())
    })
    .await?;
    let by_key: HashMap<&str, &RowState> = rows
        .iter()
        .filter_map(|r| r.key.as_deref().map(|k| (k, r)))
        .collect();
    let object_keys: std::collections::HashSet<&str> =
        objects.iter().map(|o| o.key.as_str()).collect();
    let mut findings = Vec::new();
    for object in &objects {
        if !by_key.contains_key(object.key.as_str()) {
            findings.push(Finding::ObjectWithoutRow {
                key: object.key.clone(),
            });
        }
    }
    for row in &rows {
        let has_object = row.key.as_deref().is_some_and(|k| object_keys.contains(k));
        match (row.status.as_str(), has_object) {
            ("stored", false) => findings.push(Finding::StoredRowWithoutObject {
                id: row.id,
                key: row.key.clone().unwrap_or_default(),
            }),
            ("pending", true) if row.stale => findings.push(Finding::StalePendingWithObject {
                id: row.id,
                key: row.key.clone().unwrap_or_default(),
            }),
            ("pending", false) if row.stale => {
                findings.push(Finding::StalePendingWithoutObject { id: row.id })
            }
            _ => {}
        }
    }
    let cutoff = SystemTime::now() - stale_after;
    for upload in uploads {
        if upload.initiated.is_none_or(|at| at < cutoff) {
            findings.push(Finding::StaleMultipartUpload {
                key: upload.key,
                upload_id: upload.upload_id,
            });
        }
    }
    Ok(findings)
}

/// Settles one finding (see the module's table).
pub async fn fix(db: &Db, store: &KnowledgeStore, finding: &Finding) -> Result<(), ReconcileError> {
    match finding {
        Finding::ObjectWithoutRow { key } => match store.delete(key).await {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Finding::StoredRowWithoutObject { id, .. } => {
            in_transaction(db, Acting::Service, async |tx| {
                tx.execute(
                    "UPDATE public.knowledge_files SET status = 'failed' WHERE id = $1 AND status = 'stored'",
                    &[id],
                )
                .await?;
                Ok(())
            })
            .await?;
            Ok(())
        }
        Finding::StalePendingWithObject { id, key } => {
            let (size, sha256) = measure(store, key).await?;
            in_transaction(db, Acting::Service, async |tx| {
                tx.execute(
                    "UPDATE public.knowledge_files SET status = 'stored', size_bytes = $2, sha256 = $3
                      WHERE id = $1 AND status = 'pending'",
                    &[id, &(size as i64), &sha256],
                )
                .await?;
                Ok(())
            })
            .await?;
            Ok(())
        }
        Finding::StalePendingWithoutObject { id } => {
            in_transaction(db, Acting::Service, async |tx| {
                tx.execute(
                    "DELETE FROM public.knowledge_files WHERE id = $1 AND status = 'pending'",
                    &[id],
                )
                .await?;
                Ok(())
            })
            .await?;
            Ok(())
        }
        Finding::StaleMultipartUpload { key, upload_id } => Ok(store
            .abort_upload(&dana_storage::PendingUpload {
                key: key.clone(),
                upload_id: upload_id.clone(),
                initiated: None,
            })
            .await?),
    }
}

/// The size and SHA-256 of an object, read through.
async fn measure(store: &KnowledgeStore, key: &str) -> Result<(u64, String), StorageError> {
    let download = store.get(key, None).await?;
    let mut sha = Sha256::new();
    let mut size = 0u64;
    let mut stream = std::pin::pin!(download.into_stream());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        sha.update(&chunk);
    }
    Ok((size, hex::encode(sha.finalize())))
}

/// The command: one line per finding, then a summary. Exit status 1 when findings remain.
pub async fn command(
    db: Db,
    store: KnowledgeStore,
    apply: bool,
    stale_after: Duration,
) -> anyhow::Result<bool> {
    let findings = find(&db, &store, stale_after).await?;
    let mut fixed = 0;
    let mut failed = 0;
    for finding in &findings {
        if apply {
            match fix(&db, &store, finding).await {
                Ok(()) => {
                    fixed += 1;
                    println!("fixed: {finding}");
                }
                Err(e) => {
                    failed += 1;
                    println!("not fixed: {finding}: {e}");
                }
            }
        } else {
            println!("{finding}");
        }
    }
    println!(
        "reconcile: {} findings{}",
        findings.len(),
        if apply {
            format!(", {fixed} fixed, {failed} not fixed")
        } else {
            String::new()
        }
    );
    Ok(findings.is_empty() || (apply && failed == 0))
}
