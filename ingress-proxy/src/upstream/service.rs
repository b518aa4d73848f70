//! A compiled service: endpoints + balancer + client, and the forwarding loop with retry.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Parts as UriParts, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::balancer::Balancer;
use super::client::UpstreamClient;
use super::endpoint::{Endpoint, InflightGuard};
use super::h1codec::{OutgoingRequest, ResponseHead};
use super::h1conn::{InlineConn, into_response};
use super::h1pool::{ResponseGuard, SendError};
use crate::body::ProxyBody;
use crate::clock::{coarse_now, now_ms};
use crate::config::{EndpointConfig, PassiveHealth, ServiceConfig, UpstreamTimeouts};
use crate::forwarded::Forwarding;
use crate::metrics::ServiceMetrics;

/// What a service does with a request.
#[derive(Debug)]
pub(crate) enum ServiceKind {
    /// Forward to load-balanced endpoints.
    Upstream(Box<UpstreamService>),
    /// Answer with a fixed response.
    Static(StaticService),
}

/// A fixed response, pre-rendered.
#[derive(Debug)]
pub(crate) struct StaticService {
    pub(crate) status: http::StatusCode,
    pub(crate) content_type: http::HeaderValue,
    pub(crate) body: bytes::Bytes,
}

/// A named service.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: Arc<str>,
    pub(crate) kind: ServiceKind,
    /// What it was built from, its endpoint list left out (that lives in the swappable
    /// [`EndpointSet`]): the next build reuses the service when this and the endpoints match.
    pub(crate) shape: ServiceConfig,
}

/// The endpoints of a service and the balancer compiled over them.
///
/// Swapped whole (`arc-swap`) when only the endpoint list changes — a Kubernetes EndpointSlice
/// update, the most frequent change a cluster makes — so neither the route table nor the service
/// is rebuilt, and a request sees one consistent list and balancer.
#[derive(Debug)]
pub(crate) struct EndpointSet {
    pub(crate) endpoints: Box<[Arc<Endpoint>]>,
    pub(crate) balancer: Balancer,
}

impl EndpointSet {
    /// Endpoint `url` of this set, to carry its state (health, in-flight count, idle
    /// connections) into the next set.
    pub(crate) fn find(&self, url: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.iter().find(|e| e.url() == url)
    }

    /// Whether this set is exactly `configs` (same URLs and weights, in order).
    pub(crate) fn matches(&self, configs: &[EndpointConfig]) -> bool {
        self.endpoints.len() == configs.len()
            && self
                .endpoints
                .iter()
                .zip(self.balancer.weights())
                .zip(configs)
                .all(|((ep, w), c)| ep.url() == c.url && *w == c.weight.max(1))
    }
}

/// Endpoints and how to reach them.
#[derive(Debug)]
pub(crate) struct UpstreamService {
    /// Shared with the active health-check task, which checks whatever the set is now.
    pub(crate) set: Arc<ArcSwap<EndpointSet>>,
    pub(crate) client: UpstreamClient,
    pub(crate) timeouts: UpstreamTimeouts,
    pub(crate) passive: PassiveHealth,
    pub(crate) retry: bool,
    pub(crate) pass_host: bool,
    pub(crate) version: Version,
    pub(crate) metrics: ServiceMetrics,
    /// Aborts the active health-check task when the snapshot is dropped.
    pub(crate) _health_task: Option<AbortOnDrop>,
}

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why forwarding failed; maps to 502 or 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamFailure {
    /// No endpoint could be connected to, or the connection broke: 502.
    Unreachable,
    /// The response head did not arrive in time: 504.
    Timeout,
    /// The client's request body was malformed (e.g. a bad chunk size): 400.
    ClientBody,
}

/// Whether the upstream request failed because the client's body stream failed (hyper reports
/// a user `Body` error whose cause is the downstream connection's own parse error).
fn client_body_failed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_user()
            && h.source().is_some_and(|s| s.is::<hyper::Error>())
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A response from an endpoint, its body already counted at the endpoint until it ends (and
/// holding its HTTP/1.1 connection until then).
pub(crate) struct Forwarded {
    pub(crate) response: Response<ProxyBody>,
    /// For a `101 Switching Protocols` from a hyper connection: the upstream side of the
    /// tunnel, and the guard that keeps the endpoint counted while it lasts.
    pub(crate) upgrade: Option<(OnUpgrade, ResponseGuard)>,
}

impl Forwarded {
    /// Wraps a response from hyper's client (h2c, or an HTTP/1.1 request with a body or an
    /// upgrade).
    fn from_hyper(mut response: Response<Incoming>, guard: ResponseGuard) -> Self {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let on = hyper::upgrade::on(&mut response);
            return Self {
                response: response.map(|_| ProxyBody::empty()),
                upgrade: Some((on, guard)),
            };
        }
        Self {
            response: response.map(|b| ProxyBody::stream_counted(b, guard)),
            upgrade: None,
        }
    }
}

/// What came back from one attempt, before it is tied to the endpoint's in-flight guard.
enum Sent {
    /// A response head read by this task on an inline connection.
    Inline(ResponseHead, InlineConn),
    /// A response from hyper's client; with our HTTP/1.1 pool, the connection to give back
    /// once the body has been read.
    Hyper(
        Response<Incoming>,
        Option<hyper::client::conn::http1::SendRequest<ProxyBody>>,
    ),
}

impl UpstreamService {
    /// Picks an endpoint of the current set (never `exclude`) and counts the request on it.
    fn pick(&self, exclude: Option<&Endpoint>) -> Option<InflightGuard> {
        let set = self.set.load();
        let now = now_ms();
        let random = if matches!(
            set.balancer.policy(),
            crate::config::LoadBalancing::LeastRequests
        ) {
            rand::random::<u64>()
        } else {
            0
        };
        let exclude =
            exclude.and_then(|x| set.endpoints.iter().position(|e| std::ptr::eq(&**e, x)));
        let i = set.balancer.pick(
            random,
            exclude,
            |i| set.endpoints[i].is_available(now),
            |i| set.endpoints[i].inflight(),
        )?;
        Some(set.endpoints[i].start_request())
    }

    fn upstream_uri(ep: &Endpoint, pq: Option<PathAndQuery>) -> Uri {
        let mut parts = UriParts::default();
        parts.scheme = Some(ep.scheme().clone());
        parts.authority = Some(ep.authority().clone());
        parts.path_and_query = Some(pq.unwrap_or_else(|| PathAndQuery::from_static("/")));
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
    }

    /// Sends `attempt` (hop-by-hop headers removed; forwarding fields either in it already or
    /// in `forwarding`, see [`Forwarding`]) to an
    /// endpoint. An idempotent request without a body is retried once on another endpoint when
    /// the connection cannot be established (the request never left, so this is always safe).
    ///
    /// Not an `async fn`: one keeps its arguments twice in its state (rust-lang/rust#62958),
    /// and this future is nested in every proxied request's; the request lives once, in the
    /// block.
    #[allow(clippy::manual_async_fn)] // the request once in the state, not twice
    pub(crate) fn forward<'a>(
        &'a self,
        mut attempt: Request<ProxyBody>,
        forwarding: Option<Forwarding<'a>>,
    ) -> impl Future<Output = Result<Forwarded, UpstreamFailure>> + Send + 'a {
        async move {
            let Some(mut inflight) = self.pick(None) else {
                return Err(UpstreamFailure::Unreachable);
            };
            *attempt.version_mut() = self.version;
            let bodiless = http_body::Body::is_end_stream(attempt.body());
            // No body, no upgrade: driven inline by this task (see `h1conn`), which only borrows
            // the request, so a retry resends the same one.
            let inline = self.version == Version::HTTP_11
                && bodiless
                && !attempt.headers().contains_key(http::header::UPGRADE);
            // The inline path writes the forwarding fields straight into the request head;
            // every other path takes them in the map.
            let forwarding = match forwarding {
                Some(f) if !inline => {
                    f.apply(attempt.headers_mut());
                    None
                }
                f => f,
            };
            let can_retry = self.retry && bodiless && is_idempotent(attempt.method());
            // hyper's client consumes the request: keep what rebuilds it, only if a retry may come.
            let retry_parts: Option<(Method, HeaderMap)> = (can_retry && !inline)
                .then(|| (attempt.method().clone(), attempt.headers().clone()));
            let pq = attempt.uri().path_and_query().cloned();
            let mut tried_retry = false;
            loop {
                let ep = inflight.endpoint();
                if !self.pass_host
                    && let Ok(v) = http::HeaderValue::from_str(ep.authority().as_str())
                {
                    attempt.headers_mut().insert(http::header::HOST, v);
                }
                let sent = if inline {
                    // The connection's own timer bounds the wait (see `InlineConn::request`).
                    let req = OutgoingRequest {
                        method: attempt.method(),
                        target: pq.as_ref().map_or("/", |p| p.as_str()),
                        headers: attempt.headers(),
                        forwarding: forwarding.as_ref(),
                    };
                    ep.h1_pool()
                        .send_inline(
                            ep.authority(),
                            self.timeouts.connect,
                            coarse_now() + self.timeouts.response,
                            &req,
                        )
                        .await
                        .map(|(head, conn)| Sent::Inline(head, conn))
                } else {
                    let send = async {
                        if self.version == Version::HTTP_11 {
                            // Our own pool: origin-form target, the connection held by the body.
                            let mut req =
                                std::mem::replace(&mut attempt, Request::new(ProxyBody::empty()));
                            *req.uri_mut() =
                                pq.clone().map_or_else(|| Uri::from_static("/"), Uri::from);
                            // Boxed: this rarer path's state (hyper's handshake) would otherwise
                            // size every request's future, copied at each level on the way down.
                            Box::pin(
                                ep.h1_pool()
                                    .send(ep.authority(), self.timeouts.connect, req),
                            )
                            .await
                            .map(|(response, tx)| Sent::Hyper(response, Some(tx)))
                        } else {
                            let mut req =
                                std::mem::replace(&mut attempt, Request::new(ProxyBody::empty()));
                            *req.uri_mut() = Self::upstream_uri(ep, pq.clone());
                            self.client
                                .request(req)
                                .await
                                .map(|response| Sent::Hyper(response, None))
                                .map_err(SendError::Legacy)
                        }
                    };
                    tokio::time::timeout(self.timeouts.response, send)
                        .await
                        .unwrap_or(Err(SendError::Timeout))
                };
                match sent {
                    Ok(sent) => {
                        ep.passive().record_success();
                        return Ok(self.forwarded(sent, inflight));
                    }
                    Err(SendError::Timeout) => {
                        self.metrics.timeouts.inc();
                        return Err(UpstreamFailure::Timeout);
                    }
                    Err(err) => {
                        let connect = err.is_connect();
                        if connect {
                            self.metrics.connect_errors.inc();
                            let p = self.passive;
                            if ep.passive().record_failure(
                                p.max_failures,
                                duration_ms(p.cooldown),
                                now_ms(),
                            ) {
                                self.metrics.ejections.inc();
                                tracing::warn!(
                                    endpoint = ep.url(),
                                    "endpoint ejected after connect errors"
                                );
                            }
                        } else if err.as_error().is_some_and(client_body_failed) {
                            return Err(UpstreamFailure::ClientBody);
                        } else {
                            self.metrics.other_errors.inc();
                        }
                        tracing::debug!(endpoint = ep.url(), error = %err, "upstream request failed");
                        if connect
                            && can_retry
                            && !tried_retry
                            && let Some(next) = self.pick(Some(ep))
                        {
                            tried_retry = true;
                            inflight = next;
                            if let Some((method, headers)) = &retry_parts {
                                let mut r = Request::new(ProxyBody::empty());
                                *r.method_mut() = method.clone();
                                *r.headers_mut() = headers.clone();
                                *r.version_mut() = self.version;
                                attempt = r;
                            }
                            self.metrics.retries.inc();
                            continue;
                        }
                        return Err(UpstreamFailure::Unreachable);
                    }
                }
            }
        }
    }

    /// Ties a response to the endpoint's in-flight count (and connection) until its body ends.
    fn forwarded(&self, sent: Sent, inflight: InflightGuard) -> Forwarded {
        let idle = self.timeouts.idle;
        match sent {
            Sent::Inline(head, conn) => Forwarded {
                response: into_response(head, conn, inflight, idle),
                upgrade: None,
            },
            Sent::Hyper(response, tx) => {
                let conn = tx.and_then(|tx| {
                    if http_body::Body::is_end_stream(response.body())
                        && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
                    {
                        // Nothing left to read (HEAD, 204, 304, empty): reusable now.
                        inflight.endpoint().h1_pool().put(tx, idle);
                        None
                    } else {
                        Some((tx, idle))
                    }
                });
                Forwarded::from_hyper(response, ResponseGuard::new(inflight, conn))
            }
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// RFC 9110 §9.2.2 idempotent methods.
pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
