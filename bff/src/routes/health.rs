//! `GET /healthz` (the process answers) and `GET /readyz` (PostgREST and PostgreSQL answer too;
//! a 503 names what does not).

use crate::app::App;
use crate::body::{json, Body};
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn readyz(app: &App) -> Response<Body> {
    let (postgrest, postgresql) =
        tokio::join!(app.upstream.ready(CHECK_TIMEOUT), postgresql_ready(app));
    let describe = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(why) => why.clone(),
    };
    let ready = postgrest.is_ok() && postgresql.is_ok();
    let not_ready: Vec<&str> = [("postgrest", &postgrest), ("postgresql", &postgresql)]
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name)
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "not_ready": not_ready,
        "checks": {"postgrest": describe(&postgrest), "postgresql": describe(&postgresql)},
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

/// A fresh connection and `SELECT 1`: the probe proves the database accepts connections now,
/// which a pooled connection would not.
async fn postgresql_ready(app: &App) -> Result<(), String> {
    let check = async {
        let (client, connection) =
            tokio_postgres::connect(&app.settings.supabase.db_url, tokio_postgres::NoTls)
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

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(json(value));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
