//! Applying `migrations/` with refinery.
//!
//! The files are named the way the Supabase CLI names them (`20240101000000_init.sql`), so
//! `supabase db push` can apply the same folder; refinery expects `V1__init`, so each file is
//! handed to it under that form (the timestamp is the version, hence `int8-versions`).
//! The history table lives in schema `dana_meta`, which the API does not expose, and refinery
//! refuses to go on when an applied migration's checksum no longer matches its file.

use refinery::{Migration, Runner};
use std::path::{Path, PathBuf};
use tokio_postgres::NoTls;

/// Where refinery records what it applied.
pub const HISTORY_TABLE: &str = "dana_meta.schema_history";

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read migrations folder {0}: {1}")]
    ReadDir(PathBuf, std::io::Error),
    #[error("migration file {0} is not named YYYYMMDDHHMMSS_name.sql")]
    BadName(String),
    #[error("two migration files share version {0}")]
    DuplicateVersion(String),
    #[error("cannot connect to the database: {0}")]
    Connect(tokio_postgres::Error),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Refinery(#[from] refinery::Error),
}

/// The migrations in `dir`, in version order.
pub fn load(dir: &Path) -> Result<Vec<Migration>, MigrateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| MigrateError::ReadDir(dir.into(), e))?;
    let mut files: Vec<(i64, String, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| MigrateError::ReadDir(dir.into(), e))?
            .path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).map(str::to_owned) else {
            continue;
        };
        if !file.ends_with(".sql") {
            continue;
        }
        let stem = &file[..file.len() - 4];
        let (version, name) = stem
            .split_once('_')
            .filter(|(v, n)| {
                v.len() == 14 && v.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty()
            })
            .ok_or_else(|| MigrateError::BadName(file.clone()))?;
        let version: i64 = version
            .parse()
            .map_err(|_| MigrateError::BadName(file.clone()))?;
        if files.iter().any(|(v, _, _)| *v == version) {
            return Err(MigrateError::DuplicateVersion(version.to_string()));
        }
        files.push((version, name.to_owned(), path));
    }
    files.sort_by_key(|(v, _, _)| *v);
    files
        .into_iter()
        .map(|(version, name, path)| {
            let sql = std::fs::read_to_string(&path)
                .map_err(|e| MigrateError::ReadDir(path.clone(), e))?;
            Ok(Migration::unapplied(&format!("V{version}__{name}"), &sql)?)
        })
        .collect()
}

/// Applies what is pending; returns the names applied now.
pub async fn run(db_url: &str, dir: &Path) -> Result<Vec<String>, MigrateError> {
    let migrations = load(dir)?;
    let (mut client, connection) = tokio_postgres::connect(db_url, NoTls)
        .await
        .map_err(MigrateError::Connect)?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS dana_meta; REVOKE ALL ON SCHEMA dana_meta FROM PUBLIC;",
        )
        .await?;
    let mut runner = Runner::new(&migrations)
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    let report = runner.run_async(&mut client).await?;
    drop(client);
    let _ = driver.await;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| format!("{}_{}", m.version(), m.name()))
        .collect())
}
