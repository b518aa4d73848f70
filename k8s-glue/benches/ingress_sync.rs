//! How fast Ingresses become live routes, against a real kube-apiserver (k8s-testenv):
//!
//! 1. N Ingresses (default 10 000) are applied; then the watcher starts, and we time until all N
//!    are routes in the live table (list + translate + one compile). Target ≤ 2 s.
//! 2. One Ingress is changed (its path) M times (default 50); each time we measure from the
//!    API call returning to the new path routing. Target ≤ 100 ms.
//!
//! `cargo bench -p k8s-glue --bench ingress_sync` (env `FAIRWAY_BENCH_INGRESSES`,
//! `FAIRWAY_BENCH_CHANGES` override N and M). Needs the binaries from
//! `scripts/build-kube-testbin.sh`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ingress_router::RequestView;
use k8s_glue::routes::CONTROLLER_NAME;
use k8s_glue::{IngressWatcher, WatchConfig};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_testenv::ApiServer;
use kube::api::{Api, ObjectMeta, PostParams};

fn ingress(name: &str, host: &str, path: &str) -> Ingress {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"ingressClassName": "fairway", "rules": [{"host": host, "http": {"paths": [
            {"path": path, "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}
    }))
    .expect("valid Ingress")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = env_usize("FAIRWAY_BENCH_INGRESSES", if quick { 200 } else { 10_000 });
    let m = env_usize("FAIRWAY_BENCH_CHANGES", if quick { 5 } else { 50 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n, m));
}

async fn run(n: usize, m: usize) {
    let server = ApiServer::shared();
    let client = server.client().await.expect("client");
    let ns = server
        .fresh_namespace(&client, "bench")
        .await
        .expect("namespace");
    let class = IngressClass {
        metadata: ObjectMeta {
            name: Some("fairway".into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(CONTROLLER_NAME.into()),
            ..Default::default()
        }),
    };
    Api::<IngressClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let applied = Instant::now();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let ing = ingress(&format!("ing-{i}"), &format!("h{i}.example.com"), "/");
                api.create(&PostParams::default(), &ing)
                    .await
                    .expect("create");
            }
        })
        .await;
    let apply_time = applied.elapsed();

    let start = Instant::now();
    let watcher = IngressWatcher::start(
        client.clone(),
        WatchConfig {
            namespace: Some(ns.clone()),
            ..Default::default()
        },
    );
    let mut rx = watcher.subscribe();
    rx.wait_for(|p| p.ingresses == n)
        .await
        .expect("watcher alive");
    let sync = start.elapsed();
    let probe = format!("h{}.example.com", n - 1);
    assert!(
        watcher
            .table()
            .load()
            .route(&RequestView::new(&probe, "/"))
            .is_some()
    );

    let mut latencies = Vec::with_capacity(m);
    for i in 0..m {
        let path = format!("/v{i}");
        let mut ing = api.get("ing-0").await.expect("get");
        ing.spec
            .as_mut()
            .and_then(|s| s.rules.as_mut())
            .expect("rules")[0]
            .http
            .as_mut()
            .expect("http")
            .paths[0]
            .path = Some(path.clone());
        api.replace("ing-0", &PostParams::default(), &ing)
            .await
            .expect("replace");
        let t = Instant::now();
        let deadline = t + Duration::from_secs(10);
        while watcher
            .table()
            .load()
            .route(&RequestView::new("h0.example.com", &path))
            .is_none()
        {
            assert!(Instant::now() < deadline, "change {i} never became live");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "k8s-glue ingress_sync (kube-apiserver {}, debug={})",
        k8s_testenv::KUBE_VERSION,
        cfg!(debug_assertions)
    );
    println!("| measurement | value | target |");
    println!("|---|---|---|");
    println!("| apply {n} Ingresses (32 concurrent creates) | {apply_time:.2?} | - |");
    println!("| {n} Ingresses live after watcher start (list + compile) | {sync:.2?} | <= 2 s |");
    println!(
        "| one Ingress change live, p50 of {m} | {:.2?} | <= 100 ms |",
        percentile(&latencies, 0.5)
    );
    println!(
        "| one Ingress change live, p99 of {m} | {:.2?} | <= 100 ms |",
        percentile(&latencies, 0.99)
    );
}
