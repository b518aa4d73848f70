//! Match latency at 10, 1k, 10k and 100k routes, against a Traefik-style linear scan measured in
//! the same run, and the time to build a 100k-route table.
//!
//! The route mix is realistic for an ingress: 75% exact hosts and 25% one-label wildcard hosts,
//! each with five paths (`/` Prefix, `/api` Prefix, `/api/v<k>` Prefix, `/static/` Prefix,
//! `/healthz` Exact), plus a few host-less rules and a default backend. The same routes are also
//! expressed as Traefik rules (`Host(...) && PathPrefix(...)`), which the compiled table indexes
//! and the baseline scans in priority order, as Traefik does.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_main};
use ingress_router::reference::Reference;
use ingress_router::{
    FileRoute, IngressMatch, IngressOrigin, IngressRoute, PathType, RequestView, Table,
};

const PATHS: [(&str, PathType); 5] = [
    ("/", PathType::Prefix),
    ("/api", PathType::Prefix),
    ("/api/v2", PathType::Prefix),
    ("/static/", PathType::Prefix),
    ("/healthz", PathType::Exact),
];

fn host(i: usize) -> String {
    if i % 4 == 3 {
        format!("*.tenant-{i}.example.net")
    } else {
        format!("app-{i}.example.com")
    }
}

fn ingress_routes(n: usize) -> Vec<IngressRoute<u32>> {
    let mut out = Vec::with_capacity(n + 6);
    let origin = |i: usize| IngressOrigin {
        namespace: format!("ns-{}", i % 50),
        name: format!("ing-{i}"),
        created: None,
    };
    for i in 0..n.div_ceil(PATHS.len()) {
        for (k, (path, path_type)) in PATHS.iter().enumerate() {
            if out.len() >= n {
                break;
            }
            out.push(IngressRoute {
                origin: origin(i),
                matcher: IngressMatch::Path {
                    rule_index: 0,
                    path_index: k,
                    host: Some(host(i)),
                    path_type: *path_type,
                    path: (*path).into(),
                },
                backend: out.len() as u32,
            });
        }
    }
    for (k, p) in ["/metrics", "/.well-known/security.txt", "/robots.txt"]
        .iter()
        .enumerate()
    {
        out.push(IngressRoute {
            origin: origin(0),
            matcher: IngressMatch::Path {
                rule_index: 1,
                path_index: k,
                host: None,
                path_type: PathType::Prefix,
                path: (*p).into(),
            },
            backend: 1_000_000 + k as u32,
        });
    }
    out.push(IngressRoute {
        origin: origin(0),
        matcher: IngressMatch::DefaultBackend,
        backend: 2_000_000,
    });
    out
}

fn traefik_routes(n: usize) -> Vec<FileRoute<u32>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n.div_ceil(PATHS.len()) {
        for (k, (path, path_type)) in PATHS.iter().enumerate() {
            if out.len() >= n {
                break;
            }
            let m = if path_type.is_exact() {
                "Path"
            } else {
                "PathPrefix"
            };
            let rule = format!("Host(`{}`) && {m}(`{path}`)", host(i));
            out.push(
                FileRoute::new(format!("r-{i}-{k}"), &rule, None, out.len() as u32)
                    .expect("valid rule"),
            );
        }
    }
    out
}

/// 1024 requests spread over the hosts (hits on every path kind, plus some misses).
fn requests(n: usize) -> Vec<(String, String)> {
    let hosts = n.div_ceil(PATHS.len()).max(1);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..1024)
        .map(|_| {
            let i = (next() % hosts as u64) as usize;
            let h = host(i);
            let h = match h.strip_prefix("*.") {
                Some(rest) => format!("pod-{}.{rest}", next() % 100),
                None => h,
            };
            let path = [
                "/",
                "/api/v2/users/42",
                "/api/v1/items",
                "/static/app.js",
                "/healthz",
                "/about/team",
                "/metrics",
            ][(next() % 7) as usize];
            let h = if next() % 16 == 0 {
                format!("unknown-{i}.example.org")
            } else {
                h
            };
            (h, path.to_owned())
        })
        .collect()
}

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    for &n in &SIZES {
        let reqs = requests(n);
        let views: Vec<RequestView<'_>> =
            reqs.iter().map(|(h, p)| RequestView::new(h, p)).collect();

        let table = Table::new(Vec::new(), ingress_routes(n)).expect("table");
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("ingress_compiled", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(table.route(black_box(&views[i])).map(|m| *m.backend))
            })
        });

        let table = Table::new(traefik_routes(n), Vec::new()).expect("table");
        group.bench_with_input(BenchmarkId::new("traefik_rules_compiled", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(table.route(black_box(&views[i])).map(|m| *m.backend))
            })
        });

        if n <= 10_000 {
            let scan = Reference::new(traefik_routes(n), Vec::new()).expect("reference");
            group.bench_with_input(BenchmarkId::new("traefik_linear_scan", n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(scan.route(black_box(&views[i])).map(|m| *m.backend))
                })
            });
        }
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    let routes = ingress_routes(100_000);
    group.bench_function("ingress_100k", |b| {
        b.iter_batched(
            || routes.clone(),
            |r| Table::new(Vec::new(), r).expect("table"),
            criterion::BatchSize::LargeInput,
        )
    });
    let rules = traefik_routes(100_000);
    group.bench_function("traefik_rules_100k", |b| {
        b.iter_batched(
            || rules.clone(),
            |r| Table::new(r, Vec::new()).expect("table"),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

mod groups {
    //! Criterion's generated group function (undocumented by the macro).
    #![allow(missing_docs)]
    use super::{bench_build, bench_match};
    criterion::criterion_group!(benches, bench_match, bench_build);
}

criterion_main!(groups::benches);
