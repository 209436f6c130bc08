//! `GET /metrics`: Prometheus text exposition (OpenMetrics). With `BFF_METRICS_TOKEN` set, only
//! a scraper sending that token as a Bearer gets it, since the API port may face the internet.

use crate::app::App;
use crate::body::{full, Body};
use crate::error::ApiError;
use http::{header, HeaderMap, HeaderValue, Response};
use subtle::ConstantTimeEq;

pub fn render(app: &App, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    if let Some(token) = &app.settings.metrics_token {
        let expected = format!("Bearer {token}");
        let sent = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(expected.as_bytes())) {
            return Err(ApiError::MetricsToken);
        }
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
