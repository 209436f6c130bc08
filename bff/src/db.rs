//! The BFF's own database connections (`BFF_DB_URL`: the `dana_bff` login, least privileged),
//! and the two identities it takes on them, always for one transaction:
//!
//! * [`Acting::User`] — `authenticated` with the caller's verified claims, exactly as PostgREST
//!   would set them, so the database's RLS decides what the caller reaches;
//! * [`Acting::Service`] — `service_role`, only where the system writes what a user may not
//!   (where a stored file lives, its checksum, the backfill); such statements always name the
//!   user they act for in their `WHERE` clause.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Who a transaction acts as.
#[derive(Clone, Copy)]
pub enum Acting<'a> {
    /// The caller: the JSON payload of their verified token.
    User(&'a str),
    Service,
}

/// What went wrong in the database, by what the caller should answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("refused by the database: {0}")]
    Forbidden(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        let message = error
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_else(|| error.to_string());
        match error.code() {
            Some(&SqlState::INSUFFICIENT_PRIVILEGE) => DbError::Forbidden(message),
            Some(&SqlState::UNIQUE_VIOLATION) => DbError::Conflict(message),
            Some(
                &SqlState::FOREIGN_KEY_VIOLATION
                | &SqlState::CHECK_VIOLATION
                | &SqlState::NOT_NULL_VIOLATION
                | &SqlState::INVALID_TEXT_REPRESENTATION,
            ) => DbError::Invalid(message),
            None if error.is_closed() || error.as_db_error().is_none() => {
                DbError::Unavailable(message)
            }
            _ => DbError::Other(message),
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

/// A small pool: the `dana_bff` login has a connection limit, and PostgREST needs the rest.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    pub fn new(url: &str, max_connections: usize) -> Result<Db, DbError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Invalid(e.to_string()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection is checked before reuse; one returned mid-transaction is not
                // (tokio-postgres rolls an unfinished transaction back when it is dropped).
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(3)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Invalid(e.to_string()))?;
        Ok(Db { pool })
    }

    /// A pooled connection; open a transaction on it and call [`act_as`].
    pub async fn connection(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }
}

/// Takes on `acting`'s identity for the rest of the transaction (what PostgREST does per request).
pub async fn act_as(tx: &Transaction<'_>, acting: Acting<'_>) -> Result<(), DbError> {
    let (role, claims) = match acting {
        Acting::User(claims) => ("authenticated", claims),
        Acting::Service => ("service_role", r#"{"role":"service_role"}"#),
    };
    let statement = tx
        .prepare_cached(
            "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
        )
        .await?;
    tx.execute(&statement, &[&role, &claims]).await?;
    Ok(())
}

/// Runs `work` in one transaction acting as `acting`, and commits.
pub async fn in_transaction<T>(
    db: &Db,
    acting: Acting<'_>,
    work: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut connection = db.connection().await?;
    let tx = connection.transaction().await?;
    act_as(&tx, acting).await?;
    let out = work(&tx).await?;
    tx.commit().await?;
    Ok(out)
}

/// A signed-in caller: their id and the claims the database sees.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub claims: String,
}

impl User {
    /// The signed-in user behind verified claims; `None` for the anon and service keys.
    pub fn from_claims(claims: &dana_supabase::Claims) -> Option<User> {
        let id = claims.user_id().and_then(|sub| Uuid::parse_str(sub).ok())?;
        let claims = serde_json::to_string(claims).ok()?;
        Some(User { id, claims })
    }

    /// Acting as this user in a transaction.
    pub fn acting(&self) -> Acting<'_> {
        Acting::User(&self.claims)
    }
}
