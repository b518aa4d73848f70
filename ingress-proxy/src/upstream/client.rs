//! The pooled upstream HTTP client.
//!
//! Clients are cached by their settings and reused by every configuration snapshot, so a reload
//! keeps the warm keep-alive connections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;

/// The client type used for every upstream.
pub(crate) type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// Settings that distinguish one pool from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) h2c: bool,
}

/// Builds a client: `TCP_NODELAY`, connect timeout, pool idle timeout with a timer (without
/// `pool_timer` the idle timeout is never enforced), and prior-knowledge h2 when `h2c`.
pub(crate) fn build(key: ClientKey) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(key.connect_timeout));
    connector.enforce_http(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(key.idle_timeout)
        .pool_max_idle_per_host(1024)
        .set_host(false)
        .http2_only(key.h2c);
    builder.build(connector)
}

/// Clients shared across configuration snapshots. Only touched when a configuration is
/// compiled, never per request.
#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<ClientKey, UpstreamClient>>,
}

impl ClientCache {
    pub(crate) fn get(&self, key: ClientKey) -> UpstreamClient {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_insert_with(|| build(key)).clone()
    }
}
