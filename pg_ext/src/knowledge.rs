//! `dana.knowledge_files_guard()`: the columns of `public.knowledge_files` only the system sets.
//!
//! Where a file lives (`storage_bucket`, `storage_path`), what it is (`sha256`, `size_bytes`),
//! how far its upload got (`status`) and the old design's `content_base64` are written by Dana's
//! storage code (the BFF, as the service role) after it has stored and measured the object. A user
//! who could write them through `/rest/v1` would point a row at someone else's object and
//! download it, or mark a file stored that never was. So API roles may create a row only as a
//! bare `pending` record (name, type, agent, metadata) and later change only its name, agent and
//! metadata; everything else is refused with an error that says where files are uploaded.

use crate::integrations::is_verifier;
use crate::raise;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Columns an API role never sets, and `content_type`, which it sets on insert only.
const SYSTEM_COLUMNS: &[&str] = &[
    "storage_bucket",
    "storage_path",
    "status",
    "sha256",
    "size_bytes",
    "content_base64",
];

/// The bucket every row belongs to.
const BUCKET: &str = "knowledge-files";

fn text(tuple: &PgHeapTuple<'_, impl WhoAllocated>, column: &str) -> Option<String> {
    match column {
        "size_bytes" => tuple
            .get_by_name::<i64>(column)
            .ok()
            .flatten()
            .map(|n| n.to_string()),
        _ => tuple.get_by_name::<String>(column).ok().flatten(),
    }
}

/// BEFORE INSERT OR UPDATE FOR EACH ROW on `public.knowledge_files`.
#[pg_trigger]
fn knowledge_files_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::trigger_support::PgTriggerError> {
    let new = trigger
        .new()
        .expect("BEFORE INSERT OR UPDATE row trigger has a new row");
    if is_verifier() {
        return Ok(Some(new));
    }
    let refused: Vec<&str> = match trigger.old() {
        None => SYSTEM_COLUMNS
            .iter()
            .copied()
            .filter(|column| {
                let value = text(&new, column);
                match *column {
                    "storage_bucket" => value.as_deref() != Some(BUCKET),
                    "status" => value.as_deref() != Some("pending"),
                    _ => value.is_some(),
                }
            })
            .collect(),
        Some(old) => SYSTEM_COLUMNS
            .iter()
            .copied()
            .chain(std::iter::once("content_type"))
            .filter(|column| text(&old, column) != text(&new, column))
            .collect(),
    };
    if !refused.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "only Dana's storage sets {} of a knowledge file",
                refused.join(", ")
            ),
            None,
            Some("upload files with POST /api/knowledge/files or supabase.storage.from('knowledge-files').upload(); a row may change its file_name, agent_id and metadata"),
        );
    }
    Ok(Some(new))
}

extension_sql!(
    r#"
COMMENT ON FUNCTION dana.knowledge_files_guard() IS
  'Trigger of public.knowledge_files: API roles create rows only as bare pending records and change only file_name, agent_id and metadata; storage_bucket, storage_path, status, sha256, size_bytes, content_base64 (and content_type after insert) are set by the service role.';
"#,
    name = "knowledge_comments",
    requires = [knowledge_files_guard]
);
