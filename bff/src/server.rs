//! Accepting connections: HTTP/1.1 over hyper, the tower layers every route shares, and a
//! graceful shutdown that stops accepting, lets in-flight requests finish (up to the grace
//! period) and then exits.

use crate::app::{handle, App};
use crate::proxy::PeerAddr;
use http::{HeaderName, Method, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers supabase-js and PostgREST clients send, and the ones they need to read back.
fn cors(app: &App) -> CorsLayer {
    let names = |list: &[&'static str]| {
        list.iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(app.settings.cors_origins.clone()))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(names(&[
            "authorization",
            "apikey",
            "content-type",
            "accept",
            "accept-profile",
            "content-profile",
            "prefer",
            "range",
            "range-unit",
            "x-client-info",
            "x-request-id",
            // storage-js uploads
            "x-upsert",
            "x-metadata",
            "cache-control",
            // The static anti-CSRF header cookie-authenticated calls carry (the session routes).
            "x-csrf",
        ]))
        .expose_headers(names(&[
            "content-range",
            "range-unit",
            "location",
            "preference-applied",
            "content-profile",
            "x-request-id",
            "etag",
            "content-disposition",
            "content-length",
        ]))
        // Cookie-authenticated routes (sessions) need credentialed CORS; the list is explicit.
        .allow_credentials(true)
        .max_age(Duration::from_secs(3600))
}

/// Serves until `shutdown` resolves, then drains.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = app.settings.shutdown_grace;
    let service = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(crate::access_log::AccessLogLayer::new(
            app.settings.log_format,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(cors(&app))
        .service_fn({
            let app = app.clone();
            move |request| handle(app.clone(), request)
        });

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: log, breathe, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let per_connection = tower::ServiceExt::map_request(
            service.clone(),
            move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            },
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Slow-loris guard: the request head must arrive within this time.
            .header_read_timeout(Duration::from_secs(30))
            // Heads beyond these get a bare 431 from the parser; the BFF's own, lower limit
            // (check_head in app.rs) answers with the JSON body.
            .max_header_size(crate::settings::HEADER_BYTES_HARD_LIMIT)
            .max_headers(crate::settings::MAX_HEADER_FIELDS)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(per_connection),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Resolves on SIGTERM (what orchestrators send) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
