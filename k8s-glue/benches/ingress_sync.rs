//! How fast Ingresses become live routes, against a real kube-apiserver (k8s-testenv):
//!
//! 1. N Ingresses (default 10 000) are applied; then the watcher starts, and we time until all N
//!    are routes in the live table (list + translate + one compile). Target ≤ 2 s.
//! 2. One Ingress is changed (its path) M times (default 50); each time we measure from the
//!    API call returning to the new path routing. Target ≤ 100 ms.
//! 3. The same through the proxy, wired as `fairway-proxy` wires it (a [`KubernetesProvider`]
//!    whose route sets go to `Proxy::set_external_routes`; one plain entrypoint on 127.0.0.1):
//!    the N Ingresses live in the proxy, then M path changes timed from the API call returning
//!    to an HTTP request for the new path no longer getting 404 (the backend Service has no
//!    endpoints, so the answer is a 502: routed, and nothing leaves the machine). Then M
//!    EndpointSlice changes of another Ingress's Service (never requested: its documentation
//!    addresses are not contacted) timed from the API call returning to the proxy having
//!    applied the new route set, and the cost of each `set_external_routes`: a path change
//!    compiles a new proxy snapshot, an endpoint-only change swaps the service's endpoint list
//!    in place.
//!
//! `cargo bench -p k8s-glue --bench ingress_sync` (env `FAIRWAY_BENCH_INGRESSES`,
//! `FAIRWAY_BENCH_CHANGES` override N and M). Needs the binaries from
//! `scripts/build-kube-testbin.sh`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ingress_router::RequestView;
use k8s_glue::routes::CONTROLLER_NAME;
use k8s_glue::routes::SERVICE_NAME_LABEL;
use k8s_glue::{IngressWatcher, KubernetesProvider, WatchConfig};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_testenv::ApiServer;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    k8s_testenv::fixtures::create_ingress_class(&client, "fairway", CONTROLLER_NAME).await;
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
        set_path(&api, "ing-0", &path).await;
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
    drop(watcher);
    through_the_proxy(&client, &ns, n, m).await;
}

/// Sets Ingress `name`'s first path to `path` (returns once the API server accepted it).
async fn set_path(api: &Api<Ingress>, name: &str, path: &str) {
    let mut ing = api.get(name).await.expect("get");
    ing.spec
        .as_mut()
        .and_then(|s| s.rules.as_mut())
        .expect("rules")[0]
        .http
        .as_mut()
        .expect("http")
        .paths[0]
        .path = Some(path.to_string());
    api.replace(name, &PostParams::default(), &ing)
        .await
        .expect("replace");
}

/// The status code of `GET path` with `Host: host` on a fresh connection (0: no answer).
async fn status(addr: std::net::SocketAddr, host: &str, path: &str) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match s.read_exact(&mut head).await {
        Ok(_) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn slice(addr: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some("eps-1".into()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                "eps".to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![addr.into()],
            ..Default::default()
        }],
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            ..Default::default()
        }]),
    }
}

async fn through_the_proxy(client: &kube::Client, ns: &str, n: usize, m: usize) {
    let pp = PostParams::default();
    // The Ingresses' Service `web` has no endpoints: a routed request gets 502 without any
    // connection. Service `eps` (Ingress `ep`, never requested) carries the endpoint changes.
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    for name in ["web", "eps"] {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        services.create(&pp, &svc).await.expect("service");
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    slices
        .create(&pp, &slice("198.51.100.240"))
        .await
        .expect("slice");
    let mut ep = ingress("ep", "ep.example.com", "/");
    ep.spec
        .as_mut()
        .and_then(|s| s.rules.as_mut())
        .expect("rules")[0]
        .http
        .as_mut()
        .expect("http")
        .paths[0]
        .backend
        .service
        .as_mut()
        .expect("service backend")
        .name = "eps".into();
    Api::<Ingress>::namespaced(client.clone(), ns)
        .create(&pp, &ep)
        .await
        .expect("ep Ingress");

    let config: ingress_proxy::ProxyConfig = serde_json::from_value(serde_json::json!({
        "entrypoints": {"web": {"address": "127.0.0.1:0"}}
    }))
    .expect("proxy config");
    let proxy = Arc::new(
        ingress_proxy::Proxy::builder(config)
            .start()
            .await
            .expect("proxy"),
    );
    let addr = proxy.local_addr("web").expect("web entrypoint");
    let start = Instant::now();
    let provider = KubernetesProvider::start(
        client.clone(),
        WatchConfig {
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
    );
    // The fairway-proxy loop: every route set the provider sends is compiled into the proxy.
    // Each apply is recorded as (finished at, how long the rebuild took).
    let applied: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let mut routes = provider.routes();
    let feed = {
        let (proxy, applied) = (Arc::clone(&proxy), Arc::clone(&applied));
        tokio::spawn(async move {
            while routes.changed().await.is_ok() {
                let set = routes.borrow_and_update().clone();
                let t = Instant::now();
                proxy.set_external_routes(set).expect("routes accepted");
                let done = Instant::now();
                applied.lock().unwrap().push((done, done - t));
            }
        })
    };
    let probe = format!("h{}.example.com", n - 1);
    while status(addr, &probe, "/").await == 404 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the proxy never routed the Ingresses"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sync = start.elapsed();

    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    // Away from `/` first (a `/` Prefix would match every new path before its change).
    set_path(&api, "ing-1", "/start").await;
    while status(addr, "h1.example.com", "/elsewhere").await != 404 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut changes = Vec::with_capacity(m);
    for i in 0..m {
        let path = format!("/p{i}");
        set_path(&api, "ing-1", &path).await;
        let t = Instant::now();
        let code = loop {
            match status(addr, "h1.example.com", &path).await {
                404 => {}
                code => break code,
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "change {i} never reached the proxy"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        changes.push(t.elapsed());
        assert_eq!(code, 502, "routed to the Service without endpoints");
    }
    changes.sort();

    let route_applies = applied.lock().unwrap().len();
    let mut endpoint_changes = Vec::with_capacity(m);
    let mut endpoint_applies = Vec::with_capacity(m);
    for i in 0..m {
        let before = applied.lock().unwrap().len();
        let mut current = slices.get("eps-1").await.expect("slice");
        current.endpoints = slice(&format!("198.51.100.{}", 241 + i % 8)).endpoints;
        slices
            .replace("eps-1", &pp, &current)
            .await
            .expect("replace slice");
        let t = Instant::now();
        loop {
            let done = applied.lock().unwrap().get(before).copied();
            if let Some((at, cost)) = done {
                endpoint_changes.push(at.saturating_duration_since(t));
                endpoint_applies.push(cost);
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "endpoint change {i} never reached the proxy"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    endpoint_changes.sort();
    endpoint_applies.sort();
    feed.abort();
    // The route sets before the endpoint phase: the initial one and the path changes.
    let mut rebuilds: Vec<Duration> = applied.lock().unwrap()[..route_applies]
        .iter()
        .map(|(_, d)| *d)
        .collect();
    rebuilds.sort();

    println!("| {n} Ingresses routed by the proxy after provider start | {sync:.2?} | <= 2 s |");
    println!(
        "| one Ingress change live in the proxy (PUT returned -> new path routed), p50 / p99 of {m} | {:.2?} / {:.2?} | <= 100 ms |",
        percentile(&changes, 0.5),
        percentile(&changes, 0.99)
    );
    println!(
        "| one EndpointSlice change applied in the proxy (PUT returned -> endpoints swapped), p50 / p99 of {m} | {:.2?} / {:.2?} | <= 100 ms |",
        percentile(&endpoint_changes, 0.5),
        percentile(&endpoint_changes, 0.99)
    );
    println!(
        "| `set_external_routes`, route change ({n} routes, snapshot compiled), p50 / max of {} | {:.2?} / {:.2?} | - |",
        rebuilds.len(),
        percentile(&rebuilds, 0.5),
        percentile(&rebuilds, 1.0)
    );
    println!(
        "| `set_external_routes`, endpoint-only change (swapped in place), p50 / max of {m} | {:.2?} / {:.2?} | - |",
        percentile(&endpoint_applies, 0.5),
        percentile(&endpoint_applies, 1.0)
    );
}
