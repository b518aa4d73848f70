//! End to end: configuration reloads every 50 ms under load lose no request; rejected reloads
//! leave the running configuration in place; graceful drain.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use ingress_proxy::ProxyError;

fn toml(version: usize, a: &str, b: &str) -> String {
    // Alternates endpoints, weights and an extra route so each reload really changes things.
    let (first, second) = if version.is_multiple_of(2) {
        (a, b)
    } else {
        (b, a)
    };
    format!(
        r#"
[entrypoints.web]
address = "127.0.0.1:0"
[routers.main]
rule = "Host(`app.test`)"
service = "main"
[routers.extra{version}]
rule = "Host(`extra{version}.test`)"
service = "main"
[services.main]
load_balancer = "{lb}"
[[services.main.endpoints]]
url = "{first}"
weight = {w}
[[services.main.endpoints]]
url = "{second}"
"#,
        lb = if version.is_multiple_of(3) {
            "weighted"
        } else {
            "least_requests"
        },
        w = version % 5 + 1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_every_50ms_under_load_fails_no_request() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let proxy = Arc::new(start(&toml(0, &a.url(), &b.url())).await);
    let addr = proxy.local_addr("web").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{addr}/x"))
                    .header("host", "app.test")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match c.request(req).await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    let mut reloads = 0;
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reloads += 1;
        proxy
            .reload(config(&toml(reloads, &a.url(), &b.url())))
            .expect("reload accepted");
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(reloads >= 20, "only {reloads} reloads");
    assert!(ok > 200, "only {ok} requests completed");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across {reloads} reloads",
        ok + failed
    );
    // The last configuration is the one serving.
    let c = client();
    let (s, _, _) = get(&c, addr, &format!("extra{reloads}.test"), "/").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = get(&c, addr, &format!("extra{}.test", reloads - 1), "/").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    Arc::try_unwrap(proxy)
        .unwrap()
        .shutdown(Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_reloads_keep_the_running_configuration() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let good = toml(0, &a.url(), &b.url());
    let proxy = start(&good).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();

    let bad_rule = good.replace("Host(`app.test`)", "Host(`app.test`");
    let err = proxy.reload(config(&bad_rule)).unwrap_err();
    assert!(err.to_string().starts_with("routers.main.rule:"), "{err}");
    let bad_ref = good.replace(
        "service = \"main\"\n[routers.extra0]",
        "service = \"nope\"\n[routers.extra0]",
    );
    let err = proxy.reload(config(&bad_ref)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "routers.main.service: no service named `nope`"
    );
    let moved = good.replace("127.0.0.1:0", "127.0.0.1:1");
    assert!(matches!(
        proxy.reload(config(&moved)),
        Err(ProxyError::NeedsRestart { .. })
    ));

    let (s, _, _) = get(&c, addr, "app.test", "/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(get(&c, addr, "extra0.test", "/").await.0, StatusCode::OK);
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let a = upstream("a").await;
    let proxy = start(&format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n[routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n\
         [services.s]\n[[services.s.endpoints]]\nurl = \"{}\"\n",
        a.url()
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();
    let slow = tokio::spawn(async move { get(&c, addr, "x", "/sleep/500").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    assert!(
        proxy.shutdown(Duration::from_secs(5)).await,
        "drained before the deadline"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    let (s, up, _) = slow.await.unwrap();
    assert_eq!(
        (s, up.as_str()),
        (StatusCode::OK, "a"),
        "the in-flight request completed"
    );
    // New connections are refused after the drain.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
