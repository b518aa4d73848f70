//! What applying a Kubernetes provider's route set costs the proxy, at 10 000 Ingress routes
//! (one host and one Service each): a route change compiles a new snapshot; an endpoint-only
//! change (an EndpointSlice update: same route list, one service's endpoints differ) swaps that
//! service's endpoint list in place.
//!
//! `cargo bench -p ingress-proxy --bench external_routes`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ingress_proxy::{ExternalRoutes, Proxy, ProxyConfig};
use ingress_router::{IngressMatch, IngressOrigin, IngressRoute, PathType};

const ROUTES: usize = 10_000;

fn route(i: usize, path: &str) -> IngressRoute<String> {
    IngressRoute {
        origin: IngressOrigin {
            namespace: "bench".into(),
            name: format!("ing-{i}"),
            created: None,
        },
        matcher: IngressMatch::Path {
            rule_index: 0,
            path_index: 0,
            host: Some(format!("h{i}.example.com")),
            path_type: PathType::Prefix,
            path: path.into(),
        },
        backend: format!("k8s/bench/svc-{i}:80"),
    }
}

/// Documentation addresses only: nothing is ever sent to them.
fn endpoint(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, (i % 250) as u8 + 1], 8080))
}

fn services(first_endpoint: SocketAddr) -> BTreeMap<String, ingress_proxy::config::ServiceConfig> {
    (0..ROUTES)
        .map(|i| {
            let ep = if i == 0 { first_endpoint } else { endpoint(i) };
            (
                format!("k8s/bench/svc-{i}:80"),
                ExternalRoutes::service_for(&[ep]),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config: ProxyConfig =
        toml::from_str("[entrypoints.web]\naddress = \"127.0.0.1:0\"\n").expect("config");
    let proxy = rt
        .block_on(Proxy::builder(config).start())
        .expect("proxy starts");
    let _guard = rt.enter();

    // Two route sets that differ in one Ingress's path.
    let routes_a: Arc<[IngressRoute<String>]> = (0..ROUTES).map(|i| route(i, "/")).collect();
    let routes_b: Arc<[IngressRoute<String>]> = (0..ROUTES)
        .map(|i| route(i, if i == 1 { "/changed" } else { "/" }))
        .collect();
    let sets = [routes_a, routes_b].map(|routes| {
        Arc::new(ExternalRoutes {
            routes,
            services: services(endpoint(0)),
        })
    });
    let mut group = c.benchmark_group("set_external_routes");
    group.sample_size(20);
    let mut flip = 0;
    group.bench_function("route_change_10000", |b| {
        b.iter(|| {
            flip ^= 1;
            proxy
                .set_external_routes(Arc::clone(&sets[flip]))
                .expect("accepted");
        })
    });

    // Same routes (the same `Arc`, as the provider sends them), service 0's endpoint moves.
    let routes = Arc::clone(&sets[0].routes);
    let moves = [endpoint(0), SocketAddr::from(([198, 51, 100, 251], 8080))].map(|ep| {
        Arc::new(ExternalRoutes {
            routes: Arc::clone(&routes),
            services: services(ep),
        })
    });
    proxy
        .set_external_routes(Arc::clone(&moves[0]))
        .expect("accepted");
    group.sample_size(50);
    group.bench_function("endpoint_change_10000", |b| {
        b.iter(|| {
            flip ^= 1;
            proxy
                .set_external_routes(Arc::clone(&moves[flip]))
                .expect("accepted");
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
