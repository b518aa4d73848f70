//! One upstream endpoint and its runtime state (in-flight count, health).
//!
//! An [`Endpoint`] outlives configuration reloads: a new snapshot that names the same URL in the
//! same service reuses the same `Arc<Endpoint>`, so ejections and in-flight counts carry over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use http::uri::{Authority, Scheme};

use super::h1pool::H1Pool;
use super::health::PassiveState;

/// An upstream address plus the state the balancer and health checks share.
#[derive(Debug)]
pub struct Endpoint {
    url: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    inflight: AtomicU32,
    passive: PassiveState,
    active_down: AtomicBool,
    /// Idle HTTP/1.1 connections; kept across reloads with the endpoint.
    h1: H1Pool,
}

/// Parses `http://host:port` (no path, query or user info).
pub(crate) fn parse_endpoint_url(url: &str) -> Result<(Scheme, Authority), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{url}` has no scheme"))?;
    if scheme != Scheme::HTTP {
        return Err(format!("`{url}`: only http:// endpoints are supported"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{url}`: user info is not allowed"));
    }
    if let Some(pq) = uri.path_and_query()
        && pq.as_str() != "/"
        && !pq.as_str().is_empty()
    {
        return Err(format!("`{url}`: an endpoint URL has no path or query"));
    }
    Ok((scheme, authority))
}

impl Endpoint {
    /// A new endpoint from a validated URL.
    pub fn new(url: &str) -> Result<Self, String> {
        let (scheme, authority) = parse_endpoint_url(url)?;
        Ok(Self {
            url: url.into(),
            scheme,
            authority,
            inflight: AtomicU32::new(0),
            passive: PassiveState::default(),
            active_down: AtomicBool::new(false),
            h1: H1Pool::default(),
        })
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Requests currently in flight to this endpoint.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Passive health state.
    pub fn passive(&self) -> &PassiveState {
        &self.passive
    }

    /// Whether the last active health check failed.
    pub fn is_active_down(&self) -> bool {
        self.active_down.load(Ordering::Relaxed)
    }

    pub(crate) fn set_active_down(&self, down: bool) {
        self.active_down.store(down, Ordering::Relaxed);
    }

    /// Whether the balancer should send traffic here at `now_ms`.
    pub fn is_available(&self, now_ms: u64) -> bool {
        !self.is_active_down() && !self.passive.is_ejected(now_ms)
    }

    /// The endpoint's HTTP/1.1 connection pool.
    pub(crate) fn h1_pool(&self) -> &H1Pool {
        &self.h1
    }

    /// Counts a request in flight until the guard drops.
    pub(crate) fn start_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }
}

/// Decrements the endpoint's in-flight count on drop (also when the client goes away).
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<Endpoint>);

impl InflightGuard {
    /// The endpoint the request went to.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert!(parse_endpoint_url("http://127.0.0.1:9000").is_ok());
        assert!(parse_endpoint_url("http://127.0.0.1:9000/").is_ok());
        assert!(
            parse_endpoint_url("https://127.0.0.1:9000")
                .unwrap_err()
                .contains("only http")
        );
        assert!(
            parse_endpoint_url("http://127.0.0.1:9000/x")
                .unwrap_err()
                .contains("no path")
        );
        assert!(parse_endpoint_url("127.0.0.1:9000").is_err());
        assert!(parse_endpoint_url("http://u@127.0.0.1:9000").is_err());
    }
}
