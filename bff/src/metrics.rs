//! Prometheus metrics: requests by route family, method and status; latency to the response head;
//! upstream errors by upstream and kind. Route *families* (not paths) keep label cardinality
//! bounded whatever URLs clients send.

use http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::RwLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: &'static str,
    kind: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The route families the router answers for (`app::handle`), each a `route` label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Refused before routing (head too large, dot segments).
    Refused,
    Rest,
    Knowledge,
    Auth,
    Bff,
    Integrations,
    Slack,
    Storage,
    Healthz,
    Readyz,
    Metrics,
    NotFound,
}

impl Route {
    const ALL: [Route; 12] = [
        Route::Refused,
        Route::Rest,
        Route::Knowledge,
        Route::Auth,
        Route::Bff,
        Route::Integrations,
        Route::Slack,
        Route::Storage,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::NotFound,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Refused => "refused",
            Route::Rest => "rest",
            Route::Knowledge => "knowledge",
            Route::Auth => "auth",
            Route::Bff => "bff",
            Route::Integrations => "integrations",
            Route::Slack => "slack",
            Route::Storage => "storage",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
        }
    }
}

/// A request counter's method and status, and the counter.
type SeenRequests = (&'static str, u16, Counter);

pub struct Metrics {
    pub registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Each route's latency histogram, by `Route as usize`: handles on the family's own
    /// histograms, taken once, so a request does not look its labels up (a hash and a lock).
    latency_by_route: [Histogram; Route::ALL.len()],
    /// Per route, handles on the request counters seen so far by method and status: a short
    /// list to scan instead of the labels hashed into the family's map (~350 instructions).
    requests_by_route: [RwLock<Vec<SeenRequests>>; Route::ALL.len()],
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dana_bff");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response head",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream calls that failed (connect, timeout, other)",
            upstream_errors.clone(),
        );
        let latency_by_route = Route::ALL.map(|route| {
            latency
                .get_or_create(&RouteLabels {
                    route: route.label(),
                })
                .clone()
        });
        Self {
            registry,
            requests,
            latency_by_route,
            requests_by_route: Default::default(),
            upstream_errors,
        }
    }
}

/// The label of a standard method, without an allocation per request.
fn static_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn observe_request(
        &self,
        route: Route,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        // Unknown methods are folded into one label value, again for bounded cardinality.
        let method = static_method(method);
        let status = status.as_u16();
        let seen = &self.requests_by_route[route as usize];
        let counted = seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, counter)| counter.inc())
            .is_some();
        if !counted {
            let counter = self
                .requests
                .get_or_create(&RequestLabels {
                    route: route.label(),
                    method,
                    status,
                })
                .clone();
            counter.inc();
            let mut seen = seen.write().unwrap_or_else(|e| e.into_inner());
            if !seen.iter().any(|(m, s, _)| *m == method && *s == status) {
                seen.push((method, status, counter));
            }
        }
        self.latency_by_route[route as usize].observe(elapsed.as_secs_f64());
    }

    pub fn upstream_error(&self, upstream: &'static str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels { upstream, kind })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        text
    }

    #[test]
    fn each_route_method_and_status_is_counted_on_its_own() {
        let metrics = Metrics::default();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            metrics.observe_request(Route::Rest, &Method::GET, StatusCode::OK, ms);
        }
        metrics.observe_request(Route::Rest, &Method::GET, StatusCode::NOT_FOUND, ms);
        metrics.observe_request(Route::Rest, &Method::POST, StatusCode::OK, ms);
        metrics.observe_request(Route::Auth, &Method::GET, StatusCode::OK, ms);
        let text = rendered(&metrics);
        for line in [
            r#"dana_bff_http_requests_total{route="rest",method="GET",status="200"} 3"#,
            r#"dana_bff_http_requests_total{route="rest",method="GET",status="404"} 1"#,
            r#"dana_bff_http_requests_total{route="rest",method="POST",status="200"} 1"#,
            r#"dana_bff_http_requests_total{route="auth",method="GET",status="200"} 1"#,
            r#"dana_bff_http_request_duration_seconds_count{route="rest"} 5"#,
            r#"dana_bff_http_request_duration_seconds_count{route="auth"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
