//! Prometheus metrics.
//!
//! Label lookups (which hash and lock inside `prometheus-client`) happen when a configuration is
//! compiled: each route and service holds its own counter handles, so the request path only
//! does atomic increments.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of one proxy process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    ejections: Family<Labels, Counter>,
    open_connections: Family<Labels, Gauge>,
    tls_handshakes: Family<Labels, Counter>,
    cert_expiry: Family<Labels, Gauge>,
    reloads: Family<Labels, Counter>,
    /// Serialises encoding (the registry is read-only, but the output buffer is shared).
    encode_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counter handles of one route: requests by status class, and latency.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    by_class: [Counter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    pub(crate) fn observe(&self, status: u16, seconds: f64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
    }
}

/// Counter handles of one service's upstream errors.
#[derive(Debug, Clone)]
pub(crate) struct ServiceMetrics {
    pub(crate) connect_errors: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) other_errors: Counter,
    pub(crate) retries: Counter,
    pub(crate) ejections: Counter,
}

/// Gauge and counters of one entrypoint.
#[derive(Debug, Clone)]
pub(crate) struct EntrypointMetrics {
    pub(crate) open_connections: Gauge,
    pub(crate) tls_ok: Counter,
    pub(crate) tls_failed: Counter,
}

impl Metrics {
    /// A fresh registry with every Fairway proxy metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fairway");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let upstream_errors = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let ejections = Family::<Labels, Counter>::default();
        let open_connections = Family::<Labels, Gauge>::default();
        let tls_handshakes = Family::<Labels, Counter>::default();
        let cert_expiry = Family::<Labels, Gauge>::default();
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by router, service and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by router",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed upstream requests by service and kind (connect, timeout, other)",
            upstream_errors.clone(),
        );
        registry.register(
            "upstream_retries",
            "Idempotent requests retried on another endpoint",
            retries.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Endpoints ejected by passive health checks",
            ejections.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections currently open, by entrypoint",
            open_connections.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by entrypoint and result",
            tls_handshakes.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until each served certificate expires (negative when expired)",
            cert_expiry.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            upstream_errors,
            retries,
            ejections,
            open_connections,
            tls_handshakes,
            cert_expiry,
            reloads,
            encode_lock: Mutex::new(()),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let _g = self.encode_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(8192);
        if encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }

    pub(crate) fn route(&self, router: &str, service: &str) -> RouteMetrics {
        let class = |c: &str| {
            self.requests.get_or_create_owned(&vec![
                ("router", router.to_owned()),
                ("service", service.to_owned()),
                ("code", c.to_owned()),
            ])
        };
        RouteMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            latency: self
                .latency
                .get_or_create_owned(&vec![("router", router.to_owned())]),
        }
    }

    /// Requests and 5xx responses of one route so far (for the admin dashboard).
    pub(crate) fn route_totals(&self, router: &str, service: &str) -> (u64, u64) {
        let m = self.route(router, service);
        (
            m.by_class.iter().map(|c| c.get()).sum(),
            m.by_class[4].get(),
        )
    }

    pub(crate) fn service(&self, service: &str) -> ServiceMetrics {
        let err = |kind: &str| {
            self.upstream_errors.get_or_create_owned(&vec![
                ("service", service.to_owned()),
                ("kind", kind.to_owned()),
            ])
        };
        ServiceMetrics {
            connect_errors: err("connect"),
            timeouts: err("timeout"),
            other_errors: err("other"),
            retries: self
                .retries
                .get_or_create_owned(&vec![("service", service.to_owned())]),
            ejections: self
                .ejections
                .get_or_create_owned(&vec![("service", service.to_owned())]),
        }
    }

    pub(crate) fn entrypoint(&self, name: &str) -> EntrypointMetrics {
        let hs = |result: &str| {
            self.tls_handshakes.get_or_create_owned(&vec![
                ("entrypoint", name.to_owned()),
                ("result", result.to_owned()),
            ])
        };
        EntrypointMetrics {
            open_connections: self
                .open_connections
                .get_or_create_owned(&vec![("entrypoint", name.to_owned())]),
            tls_ok: hs("ok"),
            tls_failed: hs("failed"),
        }
    }

    /// Records a configuration reload attempt.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads
            .get_or_create_owned(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Replaces the certificate-expiry gauges: one per (resolver, main domain) with its
    /// `not_after`, relative to `now`.
    pub fn set_certificate_expiry<'a>(
        &self,
        certs: impl IntoIterator<Item = (&'a str, &'a str, SystemTime)>,
        now: SystemTime,
    ) {
        self.cert_expiry.clear();
        for (resolver, domain, not_after) in certs {
            let secs = match not_after.duration_since(now) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            };
            self.cert_expiry
                .get_or_create_owned(&vec![
                    ("resolver", resolver.to_owned()),
                    ("domain", domain.to_owned()),
                ])
                .set(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_route_and_expiry() {
        let m = Metrics::new();
        let r = m.route("demo", "svc");
        r.observe(204, 0.001);
        r.observe(502, 0.002);
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        m.set_certificate_expiry(
            [(
                "le",
                "example.com",
                now + std::time::Duration::from_secs(60),
            )],
            now,
        );
        let text = m.render();
        assert!(
            text.contains(r#"fairway_requests_total{router="demo",service="svc",code="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fairway_requests_total{router="demo",service="svc",code="5xx"} 1"#)
        );
        assert!(text.contains(
            r#"fairway_certificate_expiry_seconds{resolver="le",domain="example.com"} 60"#
        ));
        assert!(text.contains("fairway_request_duration_seconds_count{router=\"demo\"} 2"));
    }
}
