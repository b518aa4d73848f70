//! The per-request path: ACME HTTP-01, redirect, routing, forwarding, upgrades, access log.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use ingress_router::RequestView;

use crate::body::ProxyBody;
use crate::forwarded::{ConnFacts, Forwarding, remove_hop_by_hop, upgrade_requested};
use crate::respond;
use crate::runtime::{RouteTarget, Runtime};
use crate::server::Shared;
use crate::upstream::service::{Forwarded, Service, ServiceKind, StaticService, UpstreamFailure};

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
/// One `async` block with a single await on the upstream: everything before it (routing,
/// redirects, ACME answers, header preparation) and after it (upgrade hand-off, metrics) is
/// plain functions. Each nested future would be built and then moved, whole, into its
/// parent's state once per request; a chain of five had the proxy copying ~12 KB per request.
///
/// Returns its future rather than being an `async fn`, which would keep its arguments twice in
/// its state (rust-lang/rust#62958).
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
        let start = Instant::now();
        // Only copied when the access log is on.
        let log_target = rt.access_log.then(|| {
            (
                req.method().clone(),
                host_of(&req).unwrap_or("").to_owned(),
                req.uri().path().to_owned(),
            )
        });
        let (resp, target) = match route(&shared, &rt, &conn, req) {
            Routed::Answered(resp) => (resp, None),
            Routed::Forward(via, req) => {
                let resp = match &via.service().kind {
                    ServiceKind::Static(s) => static_response(s),
                    ServiceKind::Upstream(u) => {
                        let (req, forwarding, client_upgrade) = prepare_upstream(&conn, req);
                        let forwarded = u.forward(req, forwarding).await;
                        finish_upstream(forwarded, client_upgrade)
                    }
                };
                match via {
                    Via::Route(target) => {
                        target
                            .metrics
                            .observe(resp.status().as_u16(), start.elapsed().as_secs_f64());
                        (resp, Some(target))
                    }
                    Via::Challenge(_) => (resp, None),
                }
            }
        };
        if let Some((method, host, path)) = log_target {
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

/// Where a request goes once routed.
enum Routed<B> {
    /// Answered here: 404, a redirect, an ACME key authorization.
    Answered(Response<ProxyBody>),
    /// To a service.
    Forward(Via, Request<B>),
}

/// The service a request goes to, and why.
enum Via {
    /// A route matched: its metrics count the request.
    Route(Arc<RouteTarget>),
    /// An ACME HTTP-01 request this replica cannot answer, forwarded to the configured
    /// challenge endpoint (the controller).
    Challenge(Arc<Service>),
}

impl Via {
    fn service(&self) -> &Service {
        match self {
            Via::Route(target) => &target.service,
            Via::Challenge(service) => service,
        }
    }
}

/// ACME HTTP-01 first (any replica answers, before redirects and routes), then the
/// entrypoint's redirect, then the route table.
fn route<B>(shared: &Shared, rt: &Runtime, conn: &ConnCtx, req: Request<B>) -> Routed<B> {
    if let Some(token) = req.uri().path().strip_prefix(ACME_PREFIX) {
        return match acme_challenge(shared, rt, token) {
            Ok(resp) => Routed::Answered(resp),
            Err(service) => Routed::Forward(Via::Challenge(service), req),
        };
    }
    let ep = &rt.entrypoints[conn.entrypoint];
    if let Some(port) = ep.redirect_port {
        return Routed::Answered(redirect(&req, port));
    }
    let target = {
        let view = RequestView::from_request(&req, Some(conn.client_ip));
        match ep.table.route(&view) {
            Some(m) => m.backend.clone(),
            None => return Routed::Answered(respond::status(StatusCode::NOT_FOUND)),
        }
    };
    Routed::Forward(Via::Route(target), req)
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

/// The key authorization for `token` from this process's registry, or the service to forward
/// the request to when another process (the controller) holds the challenge.
fn acme_challenge(
    shared: &Shared,
    rt: &Runtime,
    token: &str,
) -> Result<Response<ProxyBody>, Arc<Service>> {
    if !valid_token(token) {
        return Ok(respond::status(StatusCode::NOT_FOUND));
    }
    if let Some(ka) = shared
        .challenges
        .as_ref()
        .and_then(|c| c.key_authorization(token))
    {
        let mut resp = Response::new(ProxyBody::full(bytes::Bytes::copy_from_slice(
            ka.as_bytes(),
        )));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    match &rt.challenge_forward {
        Some(svc) => Err(svc.clone()),
        None => Ok(respond::status(StatusCode::NOT_FOUND)),
    }
}

fn static_response(s: &StaticService) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(s.body.clone()));
    *resp.status_mut() = s.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, s.content_type.clone());
    resp
}

/// The request as the upstream gets it: hop-by-hop fields removed, `Host` kept (or made from
/// the authority of an absolute-form target), the forwarding fields prepared, and an upgrade
/// re-requested explicitly. Also returns the client side of an upgrade, if one was asked for.
fn prepare_upstream<'a, B: Into<ProxyBody>>(
    conn: &'a ConnCtx,
    mut req: Request<B>,
) -> (
    Request<ProxyBody>,
    Option<Forwarding<'a>>,
    Option<OnUpgrade>,
) {
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
    let headers = req.headers_mut();
    remove_hop_by_hop(headers);
    if let Some(h) = &host
        && !headers.contains_key(HOST)
    {
        headers.insert(HOST, h.clone());
    }
    let forwarding = Forwarding::prepare(headers, &conn.facts, host);
    if let Some(up) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, up);
    }
    (req.map(Into::into), forwarding, client_upgrade)
}

/// The client's response from the upstream's: hop-by-hop fields removed, a `101` tunnelled
/// (only when the client asked for an upgrade), failures as 502, 504 or 400.
fn finish_upstream(
    forwarded: Result<Forwarded, UpstreamFailure>,
    client_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    match forwarded {
        Ok(fwd) => {
            let mut response = fwd.response;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let (Some(client_up), Some((upstream_up, guard))) = (client_upgrade, fwd.upgrade)
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
