//! `GET /metrics`: Prometheus text exposition (OpenMetrics).

use crate::body::{full, Body};
use crate::metrics::Metrics;
use http::{header, HeaderValue, Response};

pub fn render(metrics: &Metrics) -> Response<Body> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .expect("writing to a String cannot fail");
    let mut response = Response::new(full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
