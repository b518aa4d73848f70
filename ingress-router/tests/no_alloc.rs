//! Matching allocates nothing: proven with a counting global allocator.
//!
//! This file is its own test binary with a single test, so no other test thread allocates while
//! the counter is read.

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr};

use http::HeaderMap;
use ingress_router::ingress::{parse_manifests, routes_from_all};
use ingress_router::{RequestView, SharedTable, Table, TableBuilder};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MANIFEST: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: prod, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /api/v1/health, pathType: Exact, backend: {service: {name: health, port: {number: 8080}}}}
  - host: "*.example.com"
    http:
      paths:
      - {path: /static/, pathType: Prefix, backend: {service: {name: cdn, port: {number: 80}}}}
  - http:
      paths:
      - {path: /metrics, pathType: ImplementationSpecific, backend: {service: {name: metrics, port: {number: 9090}}}}
"#;

#[test]
fn route_allocates_nothing() {
    let ingresses = parse_manifests(MANIFEST, "inline").unwrap();
    let (routes, _) = routes_from_all(&ingresses);
    let mut b: TableBuilder<String> = Table::builder();
    b.rule(
        "admin",
        "Host(`admin.example.com`) && PathPrefix(`/`)",
        None,
        "admin".into(),
    )
    .unwrap();
    b.rule(
        "canary",
        "Host(`shop.example.com`) && Header(`X-Canary`, `1`)",
        Some(1000),
        "canary".into(),
    )
    .unwrap();
    b.rule(
        "re",
        "PathRegexp(`^/legacy/[0-9]+$`) && Method(`GET`)",
        None,
        "legacy".into(),
    )
    .unwrap();
    b.rule(
        "q",
        "Query(`debug`, `on`) || ClientIP(`10.0.0.0/8`)",
        None,
        "debug".into(),
    )
    .unwrap();
    b.ingress_routes(routes.into_iter().map(|r| r.map_backend(|s| s.service)));
    let shared = SharedTable::new(b.build().unwrap());

    let mut headers = HeaderMap::new();
    headers.insert("x-canary", "1".parse().unwrap());
    let none = HeaderMap::new();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let requests = [
        (
            RequestView::new("Shop.Example.com:443", "/api/v1/health").with_headers(&none),
            "health",
        ),
        (
            RequestView::new("shop.example.com.", "/api/v2?x=1").with_headers(&none),
            "api",
        ),
        (
            RequestView::new("shop.example.com", "/").with_headers(&headers),
            "canary",
        ),
        (RequestView::new("img.example.com", "/static/a.png"), "cdn"),
        (RequestView::new("img.example.com", "/other"), "fallback"),
        (RequestView::new("nobody.test", "/metrics/x"), "metrics"),
        (RequestView::new("admin.example.com", "/x"), "admin"),
        (RequestView::new("x.test", "/legacy/42"), "legacy"),
        (
            RequestView::new("x.test", "/z").with_query("debug=on"),
            "debug",
        ),
        (RequestView::new("x.test", "/z").with_client_ip(ip), "debug"),
        (
            RequestView::new("[2001:db8::1]:8443", "/nothing"),
            "fallback",
        ),
    ];
    // Warm up lazily initialised state (the empty header map, regex caches).
    for (req, want) in &requests {
        let table = shared.load();
        assert_eq!(
            table.route(req).map(|m| m.backend.as_str()),
            Some(*want),
            "{req:?}"
        );
    }

    let region = Region::new(GLOBAL);
    let mut matched = 0usize;
    for _ in 0..100 {
        for (req, _) in &requests {
            let table = shared.load();
            if let Some(m) = table.route(req) {
                matched += m.backend.len();
            }
        }
    }
    let stats = region.change();
    assert!(matched > 0);
    assert_eq!(stats.allocations, 0, "routing allocated: {stats:?}");
    assert_eq!(stats.reallocations, 0, "routing reallocated: {stats:?}");

    // Control: the counter does see allocations (explain is allowed to allocate).
    let region = Region::new(GLOBAL);
    let explained = shared.load().explain(&requests[0].0).reason.len();
    assert!(explained > 0);
    assert!(
        region.change().allocations > 0,
        "the counting allocator is not counting"
    );
}
