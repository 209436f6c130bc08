//! Knowledge files: one object in the `knowledge-files` bucket and one `knowledge_files` row
//! each, kept in step. Dana's own API (`routes/knowledge.rs`) and the Supabase Storage API
//! (`routes/storage_api.rs`) both go through [`KnowledgeFiles`], so they see the same files.
//!
//! Nothing is left half-done: an upload first records a `pending` row (as the user), streams the
//! object (aborting any multipart upload on failure), then marks the row `stored` with the size
//! and SHA-256 measured on the way. If anything fails — the client goes away, S3 or the database
//! fails — the pending row is removed (or, for a replacement, put back to `stored`) and the object
//! never completes. A BFF killed in between leaves a stale `pending` row that
//! `dana-bff reconcile-knowledge` settles.

pub mod rows;

pub use crate::db::User;
use crate::db::{act_as, in_transaction, Acting, Db, DbError};
use crate::settings::KnowledgeSettings;
use bytes::Bytes;
use dana_storage::keys::{self, KeyError};
use dana_storage::{Download, KnowledgeStore, StorageError, UploadError};
use futures_util::Stream;
use rows::{FileRow, NewRow, Stored};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a knowledge-file operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("file storage is not configured: set STORAGE_S3_URL, S3_PROTOCOL_ACCESS_KEY_ID and S3_PROTOCOL_ACCESS_KEY_SECRET")]
    NotConfigured,
    #[error("sign in to use knowledge files")]
    NotSignedIn,
    #[error("no such file")]
    NotFound,
    #[error("a file already exists at {0}")]
    AlreadyExists(String),
    #[error("another upload of this file is under way")]
    Busy,
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("files of type {0} are not accepted")]
    UnsupportedType(String),
    #[error(transparent)]
    BadKey(#[from] KeyError),
    #[error("the request body is not a valid upload: {0}")]
    BadBody(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for KnowledgeError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Invalid(why) => KnowledgeError::Invalid(why),
            other => KnowledgeError::Db(other),
        }
    }
}

impl From<StorageError> for KnowledgeError {
    fn from(error: StorageError) -> Self {
        KnowledgeError::Storage(error)
    }
}

impl User {
    fn folder(&self) -> String {
        self.id.to_string()
    }
}

/// Where an upload goes.
pub enum Target {
    /// A new file under the user's folder, named by Dana (`{user}/{row id}/{name}`).
    New,
    /// A key the client chose (the Storage API). `upsert` replaces an existing object;
    /// `must_exist` is an update, refused when nothing is there.
    Path {
        key: String,
        upsert: bool,
        must_exist: bool,
    },
}

/// What an upload says about its file.
pub struct Upload {
    pub target: Target,
    /// Display name (already made safe with [`keys::display_name`]).
    pub file_name: String,
    pub content_type: String,
    pub cache_control: Option<String>,
    pub agent_id: Option<Uuid>,
    pub metadata: Value,
}

/// How a file is looked up.
pub enum Lookup<'a> {
    Id(Uuid),
    Key(&'a str),
}

/// The knowledge files of every user, as each user may reach them.
pub struct KnowledgeFiles {
    db: Db,
    store: Option<KnowledgeStore>,
    pub limits: KnowledgeSettings,
}

impl KnowledgeFiles {
    pub fn new(db: Db, store: Option<KnowledgeStore>, limits: KnowledgeSettings) -> Self {
        Self { db, store, limits }
    }

    pub fn store(&self) -> Result<&KnowledgeStore, KnowledgeError> {
        self.store.as_ref().ok_or(KnowledgeError::NotConfigured)
    }

    pub fn bucket(&self) -> Result<&str, KnowledgeError> {
        Ok(self.store()?.bucket())
    }

    /// Checks a type against the allowlist before any byte is stored.
    pub fn check_type(&self, content_type: &str) -> Result<(), KnowledgeError> {
        if self.limits.allows(content_type) {
            Ok(())
        } else {
            Err(KnowledgeError::UnsupportedType(content_type.to_owned()))
        }
    }

    /// Stores `body` as a file of `user` (see the module's description of the steps).
    pub async fn upload<S, E>(
        &self,
        user: &User,
        upload: Upload,
        body: S,
    ) -> Result<FileRow, KnowledgeError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        let store = self.store()?;
        self.check_type(&upload.content_type)?;
        let (row, key, replacing) = self.begin_upload(user, &upload).await?;
        let mut pending = PendingRow {
            db: self.db.clone(),
            id: row.id,
            owner: user.id,
            replacing,
            armed: true,
        };
        let stored = store
            .put_stream(
                &key,
                &upload.content_type,
                upload.cache_control.as_deref(),
                body,
                self.limits.max_file_bytes,
            )
            .await;
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                pending.undo().await;
                return Err(match error {
                    UploadError::TooLarge { limit } => KnowledgeError::TooLarge { limit },
                    UploadError::Body(e) => KnowledgeError::BadBody(e.to_string()),
                    UploadError::Storage(e) => KnowledgeError::Storage(e),
                });
            }
        };
        let marked = self
            .as_service(async |tx| {
                rows::mark_stored(
                    tx,
                    row.id,
                    user.id,
                    &Stored {
                        sha256: &stored.sha256,
                        size: stored.size as i64,
                        content_type: &upload.content_type,
                        cache_control: upload.cache_control.as_deref(),
                        file_name: &upload.file_name,
                        metadata: &upload.metadata,
                    },
                )
                .await
            })
            .await;
        match marked {
            Ok(row) => {
                pending.armed = false;
                Ok(row)
            }
            Err(error) => {
                // The object is whole but unrecorded: a new one goes (with its row); a replaced
                // one stays, its row pending, for reconcile-knowledge to measure and settle.
                if !replacing {
                    if let Err(e) = store.delete(&key).await {
                        tracing::warn!(key, error = %e, "removing an unrecorded object failed; reconcile-knowledge removes it");
                    }
                    pending.undo().await;
                } else {
                    pending.armed = false;
                }
                Err(error.into())
            }
        }
    }

    /// Records the pending row (new, or an existing one being replaced) and the key it goes to.
    async fn begin_upload(
        &self,
        user: &User,
        upload: &Upload,
    ) -> Result<(FileRow, String, bool), KnowledgeError> {
        let bucket = self.bucket()?.to_owned();
        let new_row = NewRow {
            file_name: &upload.file_name,
            content_type: &upload.content_type,
            cache_control: upload.cache_control.as_deref(),
            agent_id: upload.agent_id,
            metadata: &upload.metadata,
        };
        let (key, upsert, must_exist) = match &upload.target {
            Target::New => {
                let row = self
                    .as_user(user, async |tx| rows::insert_pending(tx, &new_row).await)
                    .await?;
                let key = format!(
                    "{}/{}/{}",
                    user.folder(),
                    row.id,
                    keys::key_name(&upload.file_name)
                );
                self.as_service(async |tx| rows::reserve_path(tx, row.id, user.id, &key).await)
                    .await?;
                return Ok((row, key, false));
            }
            Target::Path {
                key,
                upsert,
                must_exist,
            } => (keys::owned_key(&user.folder(), key)?, *upsert, *must_exist),
        };
        let existing = self
            .as_user(user, async |tx| rows::by_path(tx, &bucket, &key).await)
            .await?;
        match existing {
            Some(row) if upsert || must_exist => {
                let started = self
                    .as_service(async |tx| rows::start_replacing(tx, row.id, user.id).await)
                    .await?;
                if !started {
                    return Err(KnowledgeError::Busy);
                }
                Ok((row, key, true))
            }
            Some(_) => Err(KnowledgeError::AlreadyExists(key)),
            None if must_exist => Err(KnowledgeError::NotFound),
            None => {
                let row = self
                    .as_user(user, async |tx| rows::insert_pending(tx, &new_row).await)
                    .await?;
                let reserved = self
                    .as_service(async |tx| rows::reserve_path(tx, row.id, user.id, &key).await)
                    .await;
                if let Err(error) = reserved {
                    let _ = self
                        .as_service(async |tx| rows::undo_pending(tx, row.id, user.id, false).await)
                        .await;
                    return Err(match error {
                        DbError::Conflict(_) => KnowledgeError::AlreadyExists(key),
                        other => other.into(),
                    });
                }
                Ok((row, key, false))
            }
        }
    }

    /// A stored file the user may read, by id or key. The key is checked to be in the owner's
    /// folder (the database guarantees it; this is the second lock on the same door).
    pub async fn find(&self, user: &User, lookup: Lookup<'_>) -> Result<FileRow, KnowledgeError> {
        let bucket = self.bucket()?.to_owned();
        let row = match lookup {
            Lookup::Id(id) => {
                self.as_user(user, async |tx| rows::by_id(tx, id).await)
                    .await?
            }
            Lookup::Key(key) => {
                self.as_user(user, async |tx| rows::by_path(tx, &bucket, key).await)
                    .await?
            }
        };
        let row = row.ok_or(KnowledgeError::NotFound)?;
        self.readable_key(&row)?;
        Ok(row)
    }

    /// The object key of a stored row, or NotFound (pending, failed, legacy, or out of place).
    pub fn readable_key<'r>(&self, row: &'r FileRow) -> Result<&'r str, KnowledgeError> {
        stored_key(row)
    }

    /// Any row of the user's, whatever its status (pending, failed and legacy files included).
    pub async fn find_any(&self, user: &User, id: Uuid) -> Result<FileRow, KnowledgeError> {
        self.as_user(user, async |tx| rows::by_id(tx, id).await)
            .await?
            .ok_or(KnowledgeError::NotFound)
    }

    /// A file without checking who asks: for signed URLs, whose token already names the key.
    pub async fn find_signed(&self, key: &str) -> Result<FileRow, KnowledgeError> {
        let bucket = self.bucket()?.to_owned();
        let row = self
            .as_service(async |tx| rows::by_path(tx, &bucket, key).await)
            .await?
            .ok_or(KnowledgeError::NotFound)?;
        self.readable_key(&row)?;
        Ok(row)
    }

    /// Opens a stored file's object, or a byte range of it.
    pub async fn open(
        &self,
        row: &FileRow,
        range: Option<&str>,
    ) -> Result<Download, KnowledgeError> {
        let key = self.readable_key(row)?;
        Ok(self.store()?.get(key, range).await?)
    }

    /// A presigned GET of a stored file, valid for `ttl`, downloading under its name.
    pub async fn presign(&self, row: &FileRow, ttl: Duration) -> Result<String, KnowledgeError> {
        let key = self.readable_key(row)?;
        let disposition = keys::content_disposition(&row.file_name);
        Ok(self
            .store()?
            .presigned_get(key, ttl, Some(&disposition))
            .await?)
    }

    /// Removes a file: its row and its object, or neither. The row is deleted as the user (RLS
    /// decides) in a transaction that commits only once the object is gone.
    pub async fn delete(&self, user: &User, row: &FileRow) -> Result<(), KnowledgeError> {
        let store = self.store()?;
        let mut connection = self.db.connection().await?;
        let tx = connection.transaction().await.map_err(DbError::from)?;
        act_as(&tx, Acting::User(&user.claims)).await?;
        if !rows::delete(&tx, row.id).await? {
            return Err(KnowledgeError::NotFound);
        }
        if let Some(key) = row.storage_path.as_deref() {
            match store.delete(key).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await.map_err(DbError::from)?;
        Ok(())
    }

    /// One page of the user's files, newest first.
    pub async fn page(
        &self,
        user: &User,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<FileRow>, KnowledgeError> {
        Ok(self
            .as_user(user, async |tx| rows::page(tx, limit, offset).await)
            .await?)
    }

    /// The user's stored files whose key starts with `prefix`.
    pub async fn under_prefix(
        &self,
        user: &User,
        prefix: &str,
    ) -> Result<Vec<FileRow>, KnowledgeError> {
        let bucket = self.bucket()?.to_owned();
        Ok(self
            .as_user(user, async |tx| {
                rows::under_prefix(tx, &bucket, prefix).await
            })
            .await?)
    }

    /// Copies a stored file to a new key of the same user: a new object and a new row.
    pub async fn copy(
        &self,
        user: &User,
        from: &FileRow,
        to_key: &str,
    ) -> Result<FileRow, KnowledgeError> {
        let store = self.store()?;
        let source = self.readable_key(from)?.to_owned();
        let to_key = keys::owned_key(&user.folder(), to_key)?;
        let upload = Upload {
            target: Target::Path {
                key: to_key.clone(),
                upsert: false,
                must_exist: false,
            },
            file_name: keys::display_name(keys::base_name(&to_key)),
            content_type: from.content_type.clone(),
            cache_control: from.cache_control.clone(),
            agent_id: None,
            metadata: from.metadata.clone(),
        };
        let (row, key, _) = self.begin_upload(user, &upload).await?;
        let mut pending = PendingRow {
            db: self.db.clone(),
            id: row.id,
            owner: user.id,
            replacing: false,
            armed: true,
        };
        if let Err(e) = store.copy(&source, &key).await {
            pending.undo().await;
            return Err(e.into());
        }
        let sha256 = from.sha256.clone().unwrap_or_default();
        let marked = self
            .as_service(async |tx| {
                rows::mark_stored(
                    tx,
                    row.id,
                    user.id,
                    &Stored {
                        sha256: &sha256,
                        size: from.size_bytes.unwrap_or(0),
                        content_type: &upload.content_type,
                        cache_control: upload.cache_control.as_deref(),
                        file_name: &upload.file_name,
                        metadata: &upload.metadata,
                    },
                )
                .await
            })
            .await;
        match marked {
            Ok(row) => {
                pending.armed = false;
                Ok(row)
            }
            Err(e) => {
                let _ = store.delete(&key).await;
                pending.undo().await;
                Err(e.into())
            }
        }
    }

    /// Moves a stored file to a new key of the same user: copy, repoint the row, remove the old
    /// object (a failure at the last step leaves an orphan for reconcile-knowledge, never a row
    /// without its object).
    pub async fn move_to(
        &self,
        user: &User,
        from: &FileRow,
        to_key: &str,
    ) -> Result<FileRow, KnowledgeError> {
        let store = self.store()?;
        let bucket = self.bucket()?.to_owned();
        let source = self.readable_key(from)?.to_owned();
        let to_key = keys::owned_key(&user.folder(), to_key)?;
        if self
            .as_user(user, async |tx| rows::by_path(tx, &bucket, &to_key).await)
            .await?
            .is_some()
        {
            return Err(KnowledgeError::AlreadyExists(to_key));
        }
        store.copy(&source, &to_key).await?;
        let name = keys::display_name(keys::base_name(&to_key));
        let moved = self
            .as_service(async |tx| rows::move_path(tx, from.id, user.id, &to_key, &name).await)
            .await;
        match moved {
            Ok(row) => {
                if let Err(e) = store.delete(&source).await {
                    tracing::warn!(key = source, error = %e, "removing a moved file's old object failed; reconcile-knowledge removes it");
                }
                Ok(row)
            }
            Err(error) => {
                let _ = store.delete(&to_key).await;
                Err(match error {
                    DbError::Conflict(_) => KnowledgeError::AlreadyExists(to_key),
                    other => other.into(),
                })
            }
        }
    }

    async fn as_user<T>(
        &self,
        user: &User,
        work: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        in_transaction(&self.db, Acting::User(&user.claims), work).await
    }

    async fn as_service<T>(
        &self,
        work: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        in_transaction(&self.db, Acting::Service, work).await
    }
}

/// The object key of a stored row whose key lies in its owner's folder; NotFound otherwise. The
/// database refuses such a row already; a row that got past it still never reads another user's
/// object.
fn stored_key(row: &FileRow) -> Result<&str, KnowledgeError> {
    let key = row
        .storage_path
        .as_deref()
        .filter(|_| row.status == "stored");
    match key {
        Some(key) if keys::folder_of(key) == Some(row.user_id.to_string().as_str()) => Ok(key),
        Some(key) => {
            tracing::error!(row = %row.id, key, "a knowledge file row points outside its owner's folder; refused");
            Err(KnowledgeError::NotFound)
        }
        None => Err(KnowledgeError::NotFound),
    }
}

/// A pending row an upload has not finished. Dropped while armed — the request's future dropped
/// because the client went away — it undoes itself in the background.
struct PendingRow {
    db: Db,
    id: Uuid,
    owner: Uuid,
    replacing: bool,
    armed: bool,
}

impl PendingRow {
    async fn undo(&mut self) {
        self.armed = false;
        undo(&self.db, self.id, self.owner, self.replacing).await;
    }
}

async fn undo(db: &Db, id: Uuid, owner: Uuid, replacing: bool) {
    let undone = in_transaction(db, Acting::Service, async |tx| {
        rows::undo_pending(tx, id, owner, replacing).await
    })
    .await;
    if let Err(e) = undone {
        tracing::warn!(file = %id, error = %e, "undoing a failed upload's row failed; reconcile-knowledge settles it");
    }
}

impl Drop for PendingRow {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (db, id, owner, replacing) = (self.db.clone(), self.id, self.owner, self.replacing);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { undo(&db, id, owner, replacing).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: Uuid, key: &str, status: &str) -> FileRow {
        FileRow {
            id: Uuid::new_v4(),
            user_id: owner,
            file_name: "f.txt".into(),
            content_type: "text/plain".into(),
            storage_path: Some(key.into()),
            status: status.into(),
            sha256: None,
            size_bytes: None,
            cache_control: None,
            metadata: Value::Null,
            created_at: String::new(),
            updated_at: String::new(),
            json: Value::Null,
        }
    }

    #[test]
    fn only_a_stored_key_in_the_owners_folder_is_read() {
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let own = format!("{alice}/notes.txt");
        assert_eq!(stored_key(&row(alice, &own, "stored")).unwrap(), own);
        // A row of Bob's pointing at Alice's object reads nothing.
        assert!(matches!(
            stored_key(&row(bob, &own, "stored")),
            Err(KnowledgeError::NotFound)
        ));
        for status in ["pending", "failed", "legacy"] {
            assert!(stored_key(&row(alice, &own, status)).is_err(), "{status}");
        }
    }
}
