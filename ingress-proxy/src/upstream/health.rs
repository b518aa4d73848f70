//! Passive health (ejection after consecutive connect errors) and active health checks.
//!
//! The passive state is two atomics; its transitions take `now_ms` as a parameter so the logic
//! is tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::service::EndpointSet;
use crate::body::ProxyBody;

/// Consecutive connect failures and the ejection deadline of one endpoint.
#[derive(Debug, Default)]
pub struct PassiveState {
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl PassiveState {
    /// Whether the endpoint is ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Records a connect error. Returns true when this error ejects the endpoint until
    /// `now_ms + cooldown_ms`. `max_failures == 0` disables ejection.
    pub fn record_failure(&self, max_failures: u32, cooldown_ms: u64, now_ms: u64) -> bool {
        if max_failures == 0 {
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= max_failures {
            self.failures.store(0, Ordering::Relaxed);
            self.ejected_until_ms
                .store(now_ms + cooldown_ms, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Records a successful connection: the failure streak ends.
    pub fn record_success(&self) {
        // Avoid dirtying the cache line on the common path.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Runs active checks for the service's current endpoints until the task is aborted: `GET path`
/// each `interval`; a 2xx or 3xx within `timeout` marks the endpoint up, anything else down.
pub(crate) async fn run_active_checks(
    client: Client<HttpConnector, ProxyBody>,
    endpoints: Arc<ArcSwap<EndpointSet>>,
    path: String,
    interval: Duration,
    timeout: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // The list may change between rounds (an EndpointSlice update swaps it in place).
        let set = endpoints.load_full();
        for ep in set.endpoints.iter() {
            let uri = Uri::builder()
                .scheme(ep.scheme().clone())
                .authority(ep.authority().clone())
                .path_and_query(path.as_str())
                .build();
            let Ok(uri) = uri else { continue };
            let Ok(req) = Request::get(uri).body(ProxyBody::empty()) else {
                continue;
            };
            let up = matches!(
                tokio::time::timeout(timeout, client.request(req)).await,
                Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection()
            );
            if ep.is_active_down() == up {
                tracing::warn!(endpoint = ep.url(), up, "active health check changed state");
            }
            ep.set_active_down(!up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_n_and_recovers_after_cooldown() {
        let s = PassiveState::default();
        assert!(!s.record_failure(3, 1000, 10));
        assert!(!s.record_failure(3, 1000, 11));
        assert!(!s.is_ejected(12));
        assert!(s.record_failure(3, 1000, 12));
        assert!(s.is_ejected(13));
        assert!(s.is_ejected(1011));
        assert!(!s.is_ejected(1012));
        assert_eq!(s.failures(), 0);
    }

    #[test]
    fn success_resets_the_streak() {
        let s = PassiveState::default();
        s.record_failure(2, 1000, 1);
        s.record_success();
        assert!(!s.record_failure(2, 1000, 2));
        assert!(!s.is_ejected(3));
    }

    #[test]
    fn zero_disables() {
        let s = PassiveState::default();
        for i in 0..10 {
            assert!(!s.record_failure(0, 1000, i));
        }
        assert!(!s.is_ejected(5));
    }
}
