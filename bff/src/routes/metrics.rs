//! `GET /metrics`: Prometheus text exposition (OpenMetrics), for the operator only: it needs
//! `BFF_OPERATOR_TOKEN` as a Bearer token, and is off when no token is set, since the API port
//! faces the internet and request counts by status tell an attacker what works.

use crate::app::App;
use crate::auth::is_operator;
use crate::body::{full, Body};
use crate::error::ApiError;
use http::{header, HeaderMap, HeaderValue, Response};

pub fn render(app: &App, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let token = app.settings.operator_token.as_deref();
    if token.is_none() {
        return Err(ApiError::MetricsOff);
    }
    if !is_operator(token, headers) {
        return Err(ApiError::OperatorToken);
    }
    let metrics = &app.metrics;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .expect("writing to a String cannot fail");
    let mut response = Response::new(full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}
