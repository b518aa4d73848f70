//! The admin listener: `/metrics`, `/healthz`, `/readyz`, and the dashboard with its JSON API
//! (`/api/v1/...` and the unversioned `/api/...`, answered by [`crate::admin_api`]).
//!
//! Served on its own listener (loopback by default) so it is never reachable through a public
//! entrypoint. Read-only: anything but `GET`/`HEAD` is refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::server::Shared;

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers one admin request (`GET`/`HEAD` only; everything else is `405`).
pub(crate) fn answer(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<ProxyBody> {
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    if let Some(resp) = crate::admin_api::answer(shared, uri, headers, std::time::SystemTime::now())
    {
        return resp;
    }
    match uri.path() {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.render(),
        ),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if shared.ready.load(Ordering::Relaxed) && !*shared.drain.borrow() {
                text(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n"),
    }
}

/// Samples the router counters once per [`crate::admin_api::SAMPLE_INTERVAL`] for the
/// per-second rates, until the drain signal.
async fn sample_rates(shared: Arc<Shared>) {
    let mut drain = shared.drain.subscribe();
    let mut tick = tokio::time::interval(crate::admin_api::SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = drain.changed() => break,
        }
        let rt = shared.runtime.load();
        shared
            .dashboard
            .sample_rates(&rt, &shared.metrics, now_ms());
    }
}

/// Serves the admin API until the drain signal.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut drain = shared.drain.subscribe();
    tokio::spawn(sample_rates(shared.clone()));
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = drain.changed() => break,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let resp = answer(&shared, req.method(), req.uri(), req.headers());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
