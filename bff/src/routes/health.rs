//! `GET /healthz` (the process answers) and `GET /readyz` (PostgREST and PostgreSQL answer too;
//! a 503 names what does not).
//!
//! `/readyz` is reachable by anyone, so it must cost the dependencies next to nothing whatever
//! the request rate: the result of one check is shared for [`READINESS_TTL`], and while a check
//! runs, other callers wait for it instead of starting their own (one database connection at a
//! time, as the BFF's own least-privileged role). Anyone learns *which* dependency is down; the
//! reasons (addresses, error texts) are for the operator's token only, and go to the log.

use crate::app::App;
use crate::auth::is_operator;
use crate::body::{json_response, Body};
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one readiness result answers every caller.
pub const READINESS_TTL: Duration = Duration::from_secs(2);

/// The outcome of one round of checks: `Err(reason)` per dependency.
#[derive(Clone)]
pub struct Readiness {
    postgrest: Result<(), String>,
    postgresql: Result<(), String>,
    /// `None` when no storage is configured (then it is not a dependency).
    storage: Option<Result<(), String>>,
}

impl Readiness {
    fn is_ready(&self) -> bool {
        self.checks().iter().all(|(_, r)| r.is_ok())
    }

    fn checks(&self) -> Vec<(&'static str, &Result<(), String>)> {
        let mut checks = vec![
            ("postgrest", &self.postgrest),
            ("postgresql", &self.postgresql),
        ];
        if let Some(storage) = &self.storage {
            checks.push(("storage", storage));
        }
        checks
    }
}

/// The last readiness result and when it was taken; the mutex makes checks single-flight.
#[derive(Default)]
pub struct ReadinessCache(Mutex<Option<(Instant, Readiness)>>);

impl ReadinessCache {
    async fn current(&self, app: &App) -> Readiness {
        let mut last = self.0.lock().await;
        if let Some((at, readiness)) = last.as_ref() {
            if at.elapsed() < READINESS_TTL {
                return readiness.clone();
            }
        }
        let (postgrest, postgresql, storage) = tokio::join!(
            app.postgrest.ready(CHECK_TIMEOUT),
            postgresql_ready(app),
            storage_ready(app)
        );
        let readiness = Readiness {
            postgrest,
            postgresql,
            storage,
        };
        for (name, check) in readiness.checks() {
            if let Err(reason) = check {
                tracing::warn!(dependency = name, reason, "not ready");
            }
        }
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }
}

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn readyz(app: &App, headers: &HeaderMap) -> Response<Body> {
    let readiness = app.readiness.current(app).await;
    let not_ready: Vec<&str> = readiness
        .checks()
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name)
        .collect();
    let ready = readiness.is_ready();
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "not_ready": not_ready,
    });
    if is_operator(app.settings.operator_token.as_deref(), headers) {
        let checks: serde_json::Map<String, serde_json::Value> = readiness
            .checks()
            .into_iter()
            .map(|(name, r)| {
                let state = match r {
                    Ok(()) => "ok".to_owned(),
                    Err(why) => why.clone(),
                };
                (name.to_owned(), state.into())
            })
            .collect();
        body["checks"] = checks.into();
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

/// `application_name` of the readiness probe's connections.
const READINESS_APPLICATION_NAME: &str = "dana-bff readiness";

/// A fresh connection and `SELECT 1`: the probe proves the database accepts connections now,
/// which a pooled connection would not. At most one runs at a time (see [`ReadinessCache`]).
async fn postgresql_ready(app: &App) -> Result<(), String> {
    let check = async {
        let mut config: tokio_postgres::Config = app
            .settings
            .supabase
            .db_url
            .parse()
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        // Named, so the probe's connection can be told from the pool's in pg_stat_activity.
        config.application_name(READINESS_APPLICATION_NAME);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("PostgreSQL is unreachable: {e}"))?;
        let connection = tokio::spawn(connection);
        let result = client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| format!("PostgreSQL: {e}"));
        drop(client);
        let _ = connection.await;
        result
    };
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "PostgreSQL did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ))
        })
}

/// The bucket answers a HEAD, when storage is configured.
async fn storage_ready(app: &App) -> Option<Result<(), String>> {
    let store = app.knowledge.store().ok()?;
    Some(
        match tokio::time::timeout(CHECK_TIMEOUT, store.check_bucket()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("storage: {e}")),
            Err(_) => Err(format!(
                "storage did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )),
        },
    )
}
