//! The `knowledge-files` bucket over S3 (aws-sdk-s3): the knowledge base of a user's agents.
//!
//! * [`keys`]: object names (Supabase Storage's rule), the owner's folder, safe file names;
//! * [`store`]: [`KnowledgeStore`] — the bucket made sure of, streamed uploads (multipart above a
//!   part size, aborted on any failure), ranged reads, presigned GETs, copies, deletes, listings;
//! * [`error`]: [`StorageError`] — not found, denied, unavailable, or other.
//!
//! Supabase Storage's S3 endpoint in production, SeaweedFS on the local stack; path-style.

pub mod error;
pub mod keys;
pub mod store;

pub use error::StorageError;
pub use store::{
    Download, KnowledgeStore, ListedObject, ObjectInfo, PendingUpload, StorageSettings,
    StoredObject, UploadError,
};
