//! The per-request path: ACME HTTP-01, redirect, routing, forwarding, upgrades, access log.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use ingress_router::RequestView;

use crate::body::ProxyBody;
use crate::forwarded::{ConnFacts, Forwarding, remove_hop_by_hop, upgrade_requested};
use crate::respond;
use crate::runtime::{RouteTarget, Runtime};
use crate::server::Shared;
use crate::upstream::service::{Service, ServiceKind, UpstreamFailure, UpstreamService};

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// Answers ACME HTTP-01 challenges: the key authorization for a token, if one is published.
///
/// Implemented for `acme_store::challenge::Http01Registry`; the lookup must be lock-free, it
/// runs on the request path.
pub trait ChallengeResponder: Send + Sync + 'static {
    /// The key authorization published for `token`.
    fn key_authorization(&self, token: &str) -> Option<Arc<str>>;
}

impl ChallengeResponder for acme_store::challenge::Http01Registry {
    fn key_authorization(&self, token: &str) -> Option<Arc<str>> {
        self.get(token)
    }
}

/// What one connection knows about itself, shared by its requests.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) entrypoint: usize,
    pub(crate) facts: ConnFacts,
    pub(crate) client_ip: IpAddr,
    /// Set by the framing scanner when a request carried both `Content-Length` and
    /// `Transfer-Encoding`: every request from then on gets 400 and the connection closes.
    pub(crate) smuggling: AtomicBool,
}

/// Answers one request.
///
/// This and the functions below it return their futures rather than being `async fn`s: an
/// `async fn` keeps its arguments twice in its state (rust-lang/rust#62958), and these futures
/// nest, each moved into the next, once per request.
#[allow(clippy::manual_async_fn)] // the request once in the state, not twice
pub(crate) fn handle<B: Into<ProxyBody> + Send + 'static>(
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
    req: Request<B>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
    async move {
        if conn.smuggling.load(Ordering::Relaxed) {
            let mut r = respond::status(StatusCode::BAD_REQUEST);
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        let rt = shared.runtime.load_full();
        let method = req.method().clone();
        let log = rt.access_log;
        // Only copied (and the clock read) when the access log is on.
        let log_target = log.then(|| {
            (
                Instant::now(),
                host_of(&req).unwrap_or("").to_owned(),
                req.uri().path().to_owned(),
            )
        });
        let (resp, target) = route_and_serve(&shared, &rt, &conn, req).await;
        if let Some((start, host, path)) = log_target {
            tracing::info!(
                target: "fairway::access",
                client = %conn.client_ip,
                method = %method,
                host = %host,
                path = %path,
                status = resp.status().as_u16(),
                router = target.as_ref().map_or("", |t| &*t.name),
                service = target.as_ref().map_or("", |t| &*t.service.name),
                duration_us = start.elapsed().as_micros() as u64,
            );
        }
        resp
    }
}

#[allow(clippy::manual_async_fn)] // the request once in the state, not twice
fn route_and_serve<'a, B: Into<ProxyBody> + Send + 'static>(
    shared: &'a Shared,
    rt: &'a Runtime,
    conn: &'a ConnCtx,
    req: Request<B>,
) -> impl Future<Output = (Response<ProxyBody>, Option<Arc<RouteTarget>>)> + Send + 'a {
    async move {
        let start = Instant::now();
        if let Some(token) = req.uri().path().strip_prefix(ACME_PREFIX) {
            return (
                acme_challenge(shared, rt, conn, token.to_owned(), req).await,
                None,
            );
        }
        let ep = &rt.entrypoints[conn.entrypoint];
        if let Some(port) = ep.redirect_port {
            return (redirect(&req, port), None);
        }
        let target = {
            let view = RequestView::from_request(&req, Some(conn.client_ip));
            match ep.table.route(&view) {
                Some(m) => m.backend.clone(),
                None => return (respond::status(StatusCode::NOT_FOUND), None),
            }
        };
        let resp = serve(&target.service, conn, req).await;
        target
            .metrics
            .observe(resp.status().as_u16(), start.elapsed().as_secs_f64());
        (resp, Some(target))
    }
}

fn host_of<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(HOST).and_then(|h| h.to_str().ok()),
    }
}

/// `host[:port]` without the port (keeps IPv6 brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) => &host[..i],
        None => host,
    }
}

fn redirect<B>(req: &Request<B>, port: u16) -> Response<ProxyBody> {
    let Some(host) = host_of(req).map(strip_port).filter(|h| !h.is_empty()) else {
        return respond::status(StatusCode::BAD_REQUEST);
    };
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return respond::status(StatusCode::BAD_REQUEST);
    };
    let code = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    respond::redirect(code, location)
}

fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn acme_challenge<B: Into<ProxyBody> + Send + 'static>(
    shared: &Shared,
    rt: &Runtime,
    conn: &ConnCtx,
    token: String,
    req: Request<B>,
) -> Response<ProxyBody> {
    if !valid_token(&token) {
        return respond::status(StatusCode::NOT_FOUND);
    }
    if let Some(ka) = shared
        .challenges
        .as_ref()
        .and_then(|c| c.key_authorization(&token))
    {
        let mut resp = Response::new(ProxyBody::full(bytes::Bytes::copy_from_slice(
            ka.as_bytes(),
        )));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return resp;
    }
    match &rt.challenge_forward {
        Some(svc) => serve(svc, conn, req).await,
        None => respond::status(StatusCode::NOT_FOUND),
    }
}

async fn serve<B: Into<ProxyBody> + Send + 'static>(
    service: &Service,
    conn: &ConnCtx,
    req: Request<B>,
) -> Response<ProxyBody> {
    match &service.kind {
        ServiceKind::Static(s) => {
            let mut resp = Response::new(ProxyBody::full(s.body.clone()));
            *resp.status_mut() = s.status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, s.content_type.clone());
            resp
        }
        ServiceKind::Upstream(u) => proxy(u, conn, req).await,
    }
}

#[allow(clippy::manual_async_fn)] // the request once in the state, not twice
fn proxy<'a, B: Into<ProxyBody> + Send + 'static>(
    u: &'a UpstreamService,
    conn: &'a ConnCtx,
    mut req: Request<B>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
    async move {
        let upgrade = if req.version() == Version::HTTP_11 {
            upgrade_requested(req.headers())
        } else {
            None
        };
        let host = match req.headers().get(HOST) {
            Some(h) => Some(h.clone()),
            None => req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let forwarding = {
            let headers = req.headers_mut();
            remove_hop_by_hop(headers);
            if let Some(h) = &host
                && !headers.contains_key(HOST)
            {
                headers.insert(HOST, h.clone());
            }
            let forwarding = Forwarding::prepare(headers, &conn.facts, host);
            if let Some(up) = &upgrade {
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, up.clone());
            }
            forwarding
        };
        let req = req.map(Into::into);
        match u.forward(req, forwarding).await {
            Ok(fwd) => {
                let mut response = fwd.response;
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let (Some(client_up), Some((upstream_up, guard))) =
                        (client_upgrade, fwd.upgrade)
                    {
                        tokio::spawn(async move {
                            let _guard = guard;
                            if let (Ok(c), Ok(s)) = (client_up.await, upstream_up.await) {
                                let mut c = TokioIo::new(c);
                                let mut s = TokioIo::new(s);
                                let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                            }
                        });
                        return response;
                    }
                    // An upgrade we did not ask for: refuse to relay it.
                    return respond::status(StatusCode::BAD_GATEWAY);
                }
                remove_hop_by_hop(response.headers_mut());
                response
            }
            Err(UpstreamFailure::Unreachable) => respond::status(StatusCode::BAD_GATEWAY),
            Err(UpstreamFailure::Timeout) => respond::status(StatusCode::GATEWAY_TIMEOUT),
            Err(UpstreamFailure::ClientBody) => {
                let mut r = respond::status(StatusCode::BAD_REQUEST);
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_cases() {
        assert_eq!(strip_port("a.test:8080"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn redirect_codes() {
        let get = Request::get("/x?y=1")
            .header(HOST, "a.test:8080")
            .body(())
            .unwrap();
        let r = redirect(&get, 8443);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()["location"], "https://a.test:8443/x?y=1");
        let post = Request::post("/x").header(HOST, "a.test").body(()).unwrap();
        let r = redirect(&post, 443);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()["location"], "https://a.test/x");
    }

    #[test]
    fn tokens() {
        assert!(valid_token("abc-DEF_123"));
        assert!(!valid_token(""));
        assert!(!valid_token("../etc"));
    }
}
