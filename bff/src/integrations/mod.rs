//! Integrations: a user's settings for Slack, HubSpot, email, … kept in `integration_configs`
//! (validated, secrets encrypted and status kept by the extension), installed by OAuth where
//! the provider offers it, and used by the routes that talk to the provider.
//!
//! Every read and write a user asks for runs as that user, so RLS and the extension's guard
//! decide. Three things only the system does run as the service role, each naming the user's
//! row: reading the secrets in clear (to call the provider), recording a verification's outcome
//! (`active`/`error`), and writing tokens an OAuth install or a refresh obtained.
//! Answers never carry secrets: the table's `config` holds masks, and `secrets` is left out.

pub mod oauth;
pub mod providers;
pub mod slack;

use crate::db::{act_as, Acting, Db, User};
use crate::error::{ApiError, Problem};
use http::StatusCode;
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// A config as the browser sees it: every column but the sealed secrets.
const PUBLIC_COLUMNS: &str = "to_jsonb(c) - 'secrets' - 'secrets_key_version'";

/// Why an integration request failed.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error("no {0} integration is configured for this user")]
    NotConnected(String),
    /// The extension refused the config; `details` lists the fields (JSON from the guard).
    #[error("{message}")]
    Invalid {
        message: String,
        details: Option<String>,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(String),
}

impl From<tokio_postgres::Error> for IntegrationError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return IntegrationError::Unavailable(error.to_string());
        };
        let message = db.message().to_owned();
        match *db.code() {
            SqlState::CHECK_VIOLATION
            | SqlState::NOT_NULL_VIOLATION
            | SqlState::INVALID_TEXT_REPRESENTATION
            | SqlState::INVALID_PARAMETER_VALUE => IntegrationError::Invalid {
                message,
                details: db.detail().map(str::to_owned),
            },
            SqlState::INSUFFICIENT_PRIVILEGE => IntegrationError::Forbidden(message),
            _ => IntegrationError::Db(message),
        }
    }
}

impl From<crate::db::DbError> for IntegrationError {
    fn from(error: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match error {
            DbError::Unavailable(m) => IntegrationError::Unavailable(m),
            DbError::Forbidden(m) => IntegrationError::Forbidden(m),
            DbError::Invalid(m) => IntegrationError::Invalid {
                message: m,
                details: None,
            },
            DbError::Conflict(m) | DbError::Other(m) => IntegrationError::Db(m),
        }
    }
}

impl From<IntegrationError> for ApiError {
    fn from(error: IntegrationError) -> Self {
        match error {
            IntegrationError::NotConnected(kind) => Problem::new(StatusCode::NOT_FOUND, format!("no {kind} integration is configured for this user"))
                .hint(format!("Create one with POST /api/integrations or GET /api/integrations/{kind}/oauth/start."))
                .into(),
            IntegrationError::Invalid { message, details } => {
                let mut p = Problem::new(StatusCode::BAD_REQUEST, message);
                p.details = details;
                p.into()
            }
            IntegrationError::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, m).into(),
            IntegrationError::Unavailable(why) => Problem::database_unavailable(&why).into(),
            IntegrationError::Db(m) => ApiError::Internal(m),
        }
    }
}

/// A stored config with its secrets in clear (never leaves the BFF).
pub struct Secrets {
    pub id: Uuid,
    pub status: String,
    pub config: Map<String, Value>,
    pub secrets: Map<String, Value>,
}

/// A config with its secrets, by user and type: read as [`Secrets::of_row`].
const SELECT_SECRETS: &str = "SELECT id, status, config, dana.integration_secrets(id)
                                FROM public.integration_configs
                               WHERE user_id = $1 AND integration_type = $2";

impl Secrets {
    fn of_row(row: &tokio_postgres::Row) -> Secrets {
        Secrets {
            id: row.get(0),
            status: row.get(1),
            config: object(row.get(2)),
            secrets: object(row.get(3)),
        }
    }

    /// A field from the secrets or the settings.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.secrets
            .get(name)
            .or_else(|| self.config.get(name))
            .and_then(Value::as_str)
    }
}

/// The integration configs of users.
#[derive(Clone)]
pub struct Integrations {
    db: Db,
}

impl Integrations {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The user's configs, by type.
    pub async fn list(&self, user: &User) -> Result<Vec<Value>, IntegrationError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, user.acting()).await?;
        let rows = tx
            .query(
                &format!("SELECT {PUBLIC_COLUMNS} FROM public.integration_configs c WHERE c.user_id = $1 ORDER BY c.integration_type"),
                &[&user.id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The user's config of one type.
    pub async fn get(&self, user: &User, kind: &str) -> Result<Value, IntegrationError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, user.acting()).await?;
        let row = tx
            .query_opt(
                &format!("SELECT {PUBLIC_COLUMNS} FROM public.integration_configs c WHERE c.user_id = $1 AND c.integration_type = $2"),
                &[&user.id, &kind],
            )
            .await?;
        row.map(|r| r.get(0))
            .ok_or_else(|| IntegrationError::NotConnected(kind.to_owned()))
    }

    /// Creates or updates the user's config of a type (secrets left out keep their values).
    pub async fn upsert(
        &self,
        user: &User,
        kind: &str,
        config: &Value,
    ) -> Result<Value, IntegrationError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, user.acting()).await?;
        let row = tx
            .query_one(
                &format!("SELECT {PUBLIC_COLUMNS} FROM public.upsert_integration_config($1, $2) c"),
                &[&kind, config],
            )
            .await?;
        tx.commit().await?;
        Ok(row.get(0))
    }

    /// Deletes the user's config of a type; false when there was none.
    pub async fn delete(&self, user: &User, kind: &str) -> Result<bool, IntegrationError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, user.acting()).await?;
        let deleted = tx
            .execute(
                "DELETE FROM public.integration_configs WHERE user_id = $1 AND integration_type = $2",
                &[&user.id, &kind],
            )
            .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// The user's config of a type with its secrets in clear (service role, named user).
    pub async fn secrets(&self, user_id: Uuid, kind: &str) -> Result<Secrets, IntegrationError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, Acting::Service).await?;
        let row = tx
            .query_opt(SELECT_SECRETS, &[&user_id, &kind])
            .await?
            .ok_or_else(|| IntegrationError::NotConnected(kind.to_owned()))?;
        Ok(Secrets::of_row(&row))
    }

    /// Records a verification's outcome (`active`, or `error` with the reason); returns the
    /// config as the user sees it.
    pub async fn record_verification(
        &self,
        id: Uuid,
        outcome: Result<(), String>,
    ) -> Result<Value, IntegrationError> {
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, Acting::Service).await?;
        let error = outcome.as_ref().err();
        tx.execute(
            "SELECT dana.record_integration_verification($1, $2, $3)",
            &[&id, &outcome.is_ok(), &error],
        )
        .await?;
        let row = public_row(&tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Stores what an OAuth install obtained: written as the user (so the extension validates and
    /// RLS applies), then recorded `active` by the service role, in one transaction.
    pub async fn install(
        &self,
        user_id: Uuid,
        kind: &str,
        config: &Map<String, Value>,
    ) -> Result<Value, IntegrationError> {
        let claims = serde_json::json!({"sub": user_id, "role": "authenticated"}).to_string();
        let mut client = self.db.connection().await?;
        let tx = client.transaction().await?;
        act_as(&tx, Acting::User(&claims)).await?;
        let id: Uuid = tx
            .query_one(
                "SELECT c.id FROM public.upsert_integration_config($1, $2) c",
                &[&kind, &Value::Object(config.clone())],
            )
            .await?
            .get(0);
        act_as(&tx, Acting::Service).await?;
        tx.execute(
            "SELECT dana.record_integration_verification($1, true, NULL)",
            &[&id],
        )
        .await?;
        let row = public_row(&tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Replaces the tokens of a config whose token is due, one refresh at a time per config:
    /// the row stays locked while `refresh` runs, and a caller that waited finds fresh tokens
    /// (rotating refresh tokens are single-use, like Supabase's). `due` says whether the
    /// stored config still needs it; `refresh` gets the secrets and answers the new fields.
    pub async fn refresh_locked<F, Fut>(
        &self,
        user_id: Uuid,
        kind: &str,
        due: impl Fn(&Secrets) -> bool,
        refresh: F,
    ) -> Result<Secrets, RefreshError>
    where
        F: FnOnce(Secrets) -> Fut,
        Fut: std::future::Future<Output = Result<Map<String, Value>, oauth::ExchangeError>>,
    {
        let mut client = self.db.connection().await.map_err(IntegrationError::from)?;
        let tx = client.transaction().await.map_err(IntegrationError::from)?;
        act_as(&tx, Acting::Service)
            .await
            .map_err(IntegrationError::from)?;
        let row = tx
            .query_opt(&format!("{SELECT_SECRETS} FOR UPDATE"), &[&user_id, &kind])
            .await
            .map_err(IntegrationError::from)?
            .ok_or_else(|| IntegrationError::NotConnected(kind.to_owned()))?;
        let current = Secrets::of_row(&row);
        if !due(&current) {
            return Ok(current);
        }
        let id = current.id;
        // The settings as they are, without the masks of secrets (left out, secrets keep their
        // stored values; sent back, a mask would be refused).
        let mut config: Map<String, Value> = current
            .config
            .iter()
            .filter(|(_, v)| !v.as_str().is_some_and(|s| s.contains('…')))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match refresh(current).await {
            Ok(fresh) => {
                config.extend(fresh);
                tx.execute(
                    "UPDATE public.integration_configs SET config = $2 WHERE id = $1",
                    &[&id, &Value::Object(config)],
                )
                .await
                .map_err(IntegrationError::from)?;
                tx.commit().await.map_err(IntegrationError::from)?;
            }
            Err(oauth::ExchangeError::Unavailable(why)) => {
                return Err(RefreshError::Unavailable(why))
            }
            Err(refused) => {
                let reason = refused.to_string();
                tx.execute(
                    "SELECT dana.record_integration_verification($1, false, $2)",
                    &[&id, &format!("refreshing the token failed: {reason}")],
                )
                .await
                .map_err(IntegrationError::from)?;
                tx.commit().await.map_err(IntegrationError::from)?;
                return Err(RefreshError::Refused(reason));
            }
        }
        self.secrets(user_id, kind)
            .await
            .map_err(RefreshError::from)
    }
}

/// A refresh that could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] IntegrationError),
    /// The provider refused (the install must be redone); recorded as the config's error.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be asked; nothing was recorded.
    #[error("{0}")]
    Unavailable(String),
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::Store(e) => e.into(),
            RefreshError::Refused(reason) => Problem::new(
                StatusCode::CONFLICT,
                "the integration's token could not be refreshed; it is marked error",
            )
            .details(reason)
            .hint("Connect the integration again.")
            .into(),
            RefreshError::Unavailable(why) => oauth::ExchangeError::Unavailable(why).into(),
        }
    }
}

/// A config as the browser sees it.
async fn public_row(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<Value, IntegrationError> {
    let row = tx
        .query_one(
            &format!("SELECT {PUBLIC_COLUMNS} FROM public.integration_configs c WHERE c.id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
