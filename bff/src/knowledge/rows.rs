//! The `knowledge_files` rows: read and created as the user (RLS decides), and updated as the
//! service role where only the system writes (path, checksum, size, status) — those statements
//! always name the row's owner too.

use crate::db::DbError;
use deadpool_postgres::Transaction;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

/// One file as the routes need it, with its public JSON form.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub storage_path: Option<String>,
    pub status: String,
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub cache_control: Option<String>,
    pub metadata: Value,
    pub created_at: String,
    pub updated_at: String,
    /// What Dana's API returns for this row.
    pub json: Value,
}

/// The columns every query below returns, in [`FileRow`]'s order.
const COLUMNS: &str = "id, user_id, file_name, content_type, storage_path, status, sha256, \
    size_bytes, cache_control, metadata, to_json(created_at) #>> '{}', to_json(updated_at) #>> '{}', \
    json_build_object('id', id, 'file_name', file_name, 'content_type', content_type, \
      'size_bytes', size_bytes, 'sha256', sha256, 'status', status, 'storage_path', storage_path, \
      'agent_id', agent_id, 'metadata', metadata, 'created_at', created_at, 'updated_at', updated_at)";

impl FileRow {
    fn from_row(row: &Row) -> FileRow {
        FileRow {
            id: row.get(0),
            user_id: row.get(1),
            file_name: row.get(2),
            content_type: row.get(3),
            storage_path: row.get(4),
            status: row.get(5),
            sha256: row.get(6),
            size_bytes: row.get(7),
            cache_control: row.get(8),
            metadata: row.get(9),
            created_at: row.get(10),
            updated_at: row.get(11),
            json: row.get(12),
        }
    }

    /// A strong ETag from the content's SHA-256.
    pub fn e_tag(&self) -> Option<String> {
        self.sha256.as_ref().map(|sha| format!("\"{sha}\""))
    }
}

/// What a new row holds before its object is stored.
pub struct NewRow<'a> {
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub cache_control: Option<&'a str>,
    pub agent_id: Option<Uuid>,
    pub metadata: &'a Value,
}

/// As the user: a `pending` row (RLS and the guard decide whether they may).
pub async fn insert_pending(tx: &Transaction<'_>, new: &NewRow<'_>) -> Result<FileRow, DbError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO public.knowledge_files (file_name, content_type, cache_control, agent_id, metadata)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[
                &new.file_name,
                &new.content_type,
                &new.cache_control,
                &new.agent_id,
                new.metadata,
            ],
        )
        .await?;
    Ok(FileRow::from_row(&row))
}

/// As the service role: claims `key` for the pending row (unique per bucket: a second upload to
/// the same name gets [`DbError::Conflict`]).
pub async fn reserve_path(
    tx: &Transaction<'_>,
    id: Uuid,
    owner: Uuid,
    key: &str,
) -> Result<(), DbError> {
    let n = tx
        .execute(
            "UPDATE public.knowledge_files SET storage_path = $3
              WHERE id = $1 AND user_id = $2 AND status = 'pending'",
            &[&id, &owner, &key],
        )
        .await?;
    expect_one(n, id)
}

/// As the service role: a stored row goes back to `pending` while its object is replaced; false
/// when it was not `stored` (another replacement is under way).
pub async fn start_replacing(tx: &Transaction<'_>, id: Uuid, owner: Uuid) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE public.knowledge_files SET status = 'pending'
              WHERE id = $1 AND user_id = $2 AND status = 'stored'",
            &[&id, &owner],
        )
        .await?;
    Ok(n == 1)
}

/// What was measured while the object streamed into the bucket.
pub struct Stored<'a> {
    pub sha256: &'a str,
    pub size: i64,
    pub content_type: &'a str,
    pub cache_control: Option<&'a str>,
    pub file_name: &'a str,
    pub metadata: &'a Value,
}

/// As the service role: the object is in the bucket; the row says so.
pub async fn mark_stored(
    tx: &Transaction<'_>,
    id: Uuid,
    owner: Uuid,
    stored: &Stored<'_>,
) -> Result<FileRow, DbError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE public.knowledge_files
                    SET status = 'stored', sha256 = $3, size_bytes = $4, content_type = $5,
                        cache_control = $6, file_name = $7, metadata = $8
                  WHERE id = $1 AND user_id = $2 AND status = 'pending' AND storage_path IS NOT NULL
                  RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &owner,
                &stored.sha256,
                &stored.size,
                &stored.content_type,
                &stored.cache_control,
                &stored.file_name,
                stored.metadata,
            ],
        )
        .await?;
    row.map(|r| FileRow::from_row(&r))
        .ok_or_else(|| DbError::Other(format!("knowledge file {id} is no longer pending")))
}

/// As the service role: undoes what a failed upload began — a new row is removed, a row whose
/// object was being replaced is `stored` again (its old object was never touched).
pub async fn undo_pending(
    tx: &Transaction<'_>,
    id: Uuid,
    owner: Uuid,
    replacing: bool,
) -> Result<(), DbError> {
    let sql = if replacing {
        "UPDATE public.knowledge_files SET status = 'stored'
          WHERE id = $1 AND user_id = $2 AND status = 'pending'"
    } else {
        "DELETE FROM public.knowledge_files WHERE id = $1 AND user_id = $2 AND status = 'pending'"
    };
    tx.execute(sql, &[&id, &owner]).await?;
    Ok(())
}

/// As the user: one row by id.
pub async fn by_id(tx: &Transaction<'_>, id: Uuid) -> Result<Option<FileRow>, DbError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM public.knowledge_files WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.map(|r| FileRow::from_row(&r)))
}

/// As the user: the row of an object key.
pub async fn by_path(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
) -> Result<Option<FileRow>, DbError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM public.knowledge_files WHERE storage_bucket = $1 AND storage_path = $2"
            ),
            &[&bucket, &key],
        )
        .await?;
    Ok(row.map(|r| FileRow::from_row(&r)))
}

/// As the user: one page of their files, newest first.
pub async fn page(tx: &Transaction<'_>, limit: i64, offset: i64) -> Result<Vec<FileRow>, DbError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM public.knowledge_files
                  ORDER BY created_at DESC, id LIMIT $1 OFFSET $2"
            ),
            &[&limit, &offset],
        )
        .await?;
    Ok(rows.iter().map(FileRow::from_row).collect())
}

/// As the user: stored files whose key starts with `prefix`, in key order.
pub async fn under_prefix(
    tx: &Transaction<'_>,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<FileRow>, DbError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM public.knowledge_files
                  WHERE storage_bucket = $1 AND status = 'stored'
                    AND left(storage_path, length($2)) = $2
                  ORDER BY storage_path"
            ),
            &[&bucket, &prefix],
        )
        .await?;
    Ok(rows.iter().map(FileRow::from_row).collect())
}

/// As the user: removes a row (RLS decides); false when it was not theirs to remove.
pub async fn delete(tx: &Transaction<'_>, id: Uuid) -> Result<bool, DbError> {
    Ok(tx
        .execute("DELETE FROM public.knowledge_files WHERE id = $1", &[&id])
        .await?
        == 1)
}

/// As the service role: a moved object's row follows it.
pub async fn move_path(
    tx: &Transaction<'_>,
    id: Uuid,
    owner: Uuid,
    key: &str,
    file_name: &str,
) -> Result<FileRow, DbError> {
    let row = tx
        .query_one(
            &format!(
                "UPDATE public.knowledge_files SET storage_path = $3, file_name = $4
                  WHERE id = $1 AND user_id = $2 AND status = 'stored' RETURNING {COLUMNS}"
            ),
            &[&id, &owner, &key, &file_name],
        )
        .await?;
    Ok(FileRow::from_row(&row))
}

fn expect_one(n: u64, id: Uuid) -> Result<(), DbError> {
    if n == 1 {
        Ok(())
    } else {
        Err(DbError::Other(format!(
            "knowledge file {id} was not in the expected state"
        )))
    }
}
