//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/api/routes`.
//!
//! Served on its own listener (loopback by default) so it is never reachable through a public
//! entrypoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::server::Shared;
use crate::upstream::service::ServiceKind;

#[derive(Serialize)]
struct EndpointDoc {
    url: String,
    available: bool,
    ejected: bool,
    active_down: bool,
    inflight: u32,
}

#[derive(Serialize)]
struct ServiceDoc<'a> {
    name: &'a str,
    kind: &'static str,
    endpoints: Vec<EndpointDoc>,
}

#[derive(Serialize)]
struct RoutesResponse<'a> {
    routers: &'a [crate::runtime::RouterDoc],
    services: Vec<ServiceDoc<'a>>,
}

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

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    if let Some(resp) = crate::admin_api::answer(
        shared,
        req.uri(),
        req.headers(),
        std::time::SystemTime::now(),
    ) {
        return resp;
    }
    match req.uri().path() {
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
        "/api/routes" => {
            let rt = shared.runtime.load();
            let now = now_ms();
            let services = rt
                .services
                .iter()
                .map(|(name, svc)| match &svc.kind {
                    ServiceKind::Static(_) => ServiceDoc {
                        name,
                        kind: "static",
                        endpoints: Vec::new(),
                    },
                    ServiceKind::Upstream(u) => ServiceDoc {
                        name,
                        kind: "upstream",
                        endpoints: u
                            .set
                            .load()
                            .endpoints
                            .iter()
                            .map(|ep| EndpointDoc {
                                url: ep.url().to_owned(),
                                available: ep.is_available(now),
                                ejected: ep.passive().is_ejected(now),
                                active_down: ep.is_active_down(),
                                inflight: ep.inflight(),
                            })
                            .collect(),
                    },
                })
                .collect();
            let doc = RoutesResponse {
                routers: &rt.router_docs(),
                services,
            };
            match serde_json::to_vec_pretty(&doc) {
                Ok(json) => text(StatusCode::OK, "application/json", json),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "error\n"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n"),
    }
}

/// Serves the admin API until the drain signal.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut drain = shared.drain.subscribe();
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
            let svc = service_fn(move |req| {
                let resp = answer(&shared, &req);
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
