//! Accepting connections: HTTP/1.1 over hyper, the tower layers every route shares, and a
//! graceful shutdown that stops accepting, lets in-flight requests finish (up to the grace
//! period) and then exits.

use crate::access_log::AccessLog;
use crate::app::{handle, App};
use http::header::{self, HeaderValue};
use http::{HeaderName, Method, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// What a CORS answer depends on, for shared caches (tower-http's default list).
const CORS_VARY: &str = "origin, access-control-request-method, access-control-request-headers";

/// The headers supabase-js and PostgREST clients send, and the ones they need to read back.
fn cors(app: &App) -> CorsLayer {
    let names = |list: &[&'static str]| {
        list.iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    CorsLayer::new()
        // A predicate over a shared list rather than `AllowOrigin::list`: the service stack is
        // cloned for every request (hyper's adapter does), and a list is cloned with it.
        .allow_origin({
            let allowed = Arc::new(app.settings.cors_origins.clone());
            AllowOrigin::predicate(move |origin, _| allowed.contains(origin))
        })
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
        // The Vary header is appended by a layer of its own, as one static value: the CORS
        // layer joins its list into a new value on every response (~1,200 instructions).
        .vary([])
}

/// The request service every connection gets: the shared layers around [`handle`].
fn service(
    app: &Arc<App>,
) -> AccessLog<
    impl tower::Service<
            Request<Incoming>,
            Response = http::Response<crate::body::Body>,
            Error = std::convert::Infallible,
            Future = impl Future + Send,
        > + Clone
        + Send
        + 'static,
> {
    ServiceBuilder::new()
        .layer(crate::access_log::AccessLogLayer::new(
            app.settings.log_format,
        ))
        .layer(SetResponseHeaderLayer::appending(
            header::VARY,
            HeaderValue::from_static(CORS_VARY),
        ))
        .layer(CorsForOriginsLayer(Arc::new(cors(app))))
        .service_fn({
            let app = app.clone();
            move |request| handle(app.clone(), request)
        })
}

/// tower-http's CORS layer for the requests that carry an `Origin` (every CORS request does).
/// Without one there is nothing to allow, and the layer would still build a header map of
/// `access-control-*` headers and merge it into the answer (~2,500 instructions per request,
/// BENCHMARKS.md). `Vary` goes on every answer from a layer of its own.
///
/// The CORS service is put together per request with an `Origin`, from a shared layer: hyper's
/// adapter clones the whole service stack for every request, and a CORS service kept in it
/// cloned its header lists each time, whether the request needed them or not (~600
/// instructions).
struct CorsForOriginsLayer(Arc<CorsLayer>);

impl<S> tower::Layer<S> for CorsForOriginsLayer {
    type Service = CorsForOrigins<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorsForOrigins {
            cors: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct CorsForOrigins<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

impl<S, B, RB> tower::Service<Request<B>> for CorsForOrigins<S>
where
    S: tower::Service<Request<B>, Response = http::Response<RB>> + Clone,
    RB: Default,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        <tower_http::cors::Cors<S> as tower::Service<Request<B>>>::Future,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            // The service made ready goes into the CORS service; a clone stays for the next call.
            let clone = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, clone);
            let mut cors = tower::Layer::layer(self.cors.as_ref(), ready);
            futures_util::future::Either::Left(cors.call(request))
        } else {
            futures_util::future::Either::Right(self.inner.call(request))
        }
    }
}

/// An accepted connection on its way to the worker that will serve it.
type Handoff = tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>;

/// Serves on `workers` threads until `shutdown` resolves, then drains.
///
/// Each worker is a thread with a current-thread tokio runtime of its own, as nginx runs a
/// process per core: a connection, its requests and the upstream connections they use stay on
/// one thread, so a proxied request wakes no other thread. (With tokio's work-stealing runtime
/// the cross-thread wake-ups cost ~26 µs of CPU per request, BENCHMARKS.md.) The calling thread
/// is worker 0: it accepts and hands connections out in turn, one channel send per connection
/// (not per request). One listening socket, so a second BFF on the same port still fails to
/// bind, as it should.
///
/// Call this inside a current-thread runtime: worker 0's connections are spawned on it.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = app.settings.shutdown_grace;
    // Every worker waits here after draining, so that no runtime (and the pooled connections
    // it drives for the others) goes away while another worker still drains.
    let drained = Arc::new(tokio::sync::Barrier::new(workers.max(1)));
    let mut handoffs: Vec<Handoff> = Vec::new();
    let mut threads = Vec::new();
    for index in 1..workers.max(1) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let (app, drained) = (app.clone(), drained.clone());
        let thread = std::thread::Builder::new()
            .name(format!("dana-bff-worker-{index}"))
            .spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(worker(app, receiver, drained));
                Ok(())
            })?;
        handoffs.push(sender);
        threads.push(thread);
    }

    let service = service(&app);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut turn = 0usize;
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
        turn = (turn + 1) % (handoffs.len() + 1);
        if turn == 0 {
            serve_connection(&service, &graceful, stream, peer);
            continue;
        }
        // Leaving this runtime's reactor; the worker registers it with its own.
        match stream.into_std() {
            Ok(stream) => {
                if handoffs[turn - 1].send((stream, peer)).is_err() {
                    tracing::error!(worker = turn, "a worker thread has stopped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "handing a connection over failed"),
        }
    }
    drop(listener);
    // Closing the channels tells the other workers to stop and drain.
    drop(handoffs);
    drain(graceful, grace).await;
    drained.wait().await;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "a worker could not start its runtime"),
            Err(_) => tracing::error!("a worker thread panicked"),
        }
    }
    Ok(())
}

/// A worker other than the first: serves the connections handed to it until the channel
/// closes, then drains.
async fn worker(
    app: Arc<App>,
    mut connections: tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    drained: Arc<tokio::sync::Barrier>,
) {
    let service = service(&app);
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer)) = connections.recv().await {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => serve_connection(&service, &graceful, stream, peer),
            Err(e) => tracing::warn!(error = %e, "taking a connection over failed"),
        }
    }
    drain(graceful, app.settings.shutdown_grace).await;
    drained.wait().await;
}

/// Lets in-flight requests finish, up to the grace period.
async fn drain(graceful: GracefulShutdown, grace: Duration) {
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Serves one connection on the current runtime.
fn serve_connection<S>(
    service: &AccessLog<S>,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) where
    S: tower::Service<
            Request<Incoming>,
            Response = http::Response<crate::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let per_connection = service.for_peer(peer);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Slow-loris guard: the request head must arrive within this time.
        .header_read_timeout(Duration::from_secs(30))
        // Heads beyond these get a bare 431 from the parser; the BFF's own, lower limit
        // (check_head in app.rs) answers with the JSON body.
        .max_header_size(crate::settings::HEADER_BYTES_HARD_LIMIT)
        // More than 100 header fields (hyper's default limit) get a bare 431 too. Not set here:
        // setting it, even to the default, makes hyper fill a 100-slot array on every request.
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

/// Resolves on SIGTERM (what orchestrators send) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
