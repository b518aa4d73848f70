//! End to end: load-balancing distribution, passive ejection and recovery, retry, active checks.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use http::StatusCode;

fn service_toml(name: &str, lb: &str, extra: &str, endpoints: &[(String, u32)]) -> String {
    let mut s = format!("[services.{name}]\nload_balancer = \"{lb}\"\n{extra}\n");
    for (url, w) in endpoints {
        s.push_str(&format!(
            "[[services.{name}.endpoints]]\nurl = \"{url}\"\nweight = {w}\n"
        ));
    }
    s
}

async fn counts(
    c: &TestClient,
    addr: std::net::SocketAddr,
    host: &str,
    n: usize,
) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let (s, up, body) = get(c, addr, host, "/").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        *m.entry(up).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_round_robin_weighted_least_requests() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let c3 = upstream("c").await;
    let eps = |w: [u32; 3]| vec![(a.url(), w[0]), (b.url(), w[1]), (c3.url(), w[2])];
    let toml = format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n\
         [routers.rr]\nrule = \"Host(`rr.test`)\"\nservice = \"rr\"\n\
         [routers.w]\nrule = \"Host(`w.test`)\"\nservice = \"w\"\n\
         [routers.lr]\nrule = \"Host(`lr.test`)\"\nservice = \"lr\"\n{}{}{}",
        service_toml("rr", "round_robin", "", &eps([1, 1, 1])),
        service_toml("w", "weighted", "", &eps([3, 1, 1])),
        service_toml("lr", "least_requests", "", &eps([1, 1, 1])),
    );
    let proxy = start(&toml).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();

    let rr = counts(&c, addr, "rr.test", 60).await;
    assert_eq!((rr["a"], rr["b"], rr["c"]), (20, 20, 20), "{rr:?}");

    let w = counts(&c, addr, "w.test", 50).await;
    assert_eq!((w["a"], w["b"], w["c"]), (30, 10, 10), "{w:?}");

    // Sequential requests: every endpoint is idle, P2C spreads them; all get some.
    let lr = counts(&c, addr, "lr.test", 90).await;
    assert!(lr.values().all(|&n| n >= 10), "{lr:?}");

    proxy.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_avoids_the_busy_endpoint() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let toml = format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n\
         [routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n{}",
        service_toml("s", "least_requests", "", &[(a.url(), 1), (b.url(), 1)]),
    );
    let proxy = start(&toml).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();
    // Three slow requests in flight: with two endpoints P2C always compares both, so they
    // split 2/1.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let c = c.clone();
        slow.push(tokio::spawn(async move {
            get(&c, addr, "x", "/sleep/1500").await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ha, hb) = (
        a.hits.load(Ordering::Relaxed),
        b.hits.load(Ordering::Relaxed),
    );
    assert_eq!(ha + hb, 3);
    let idle = if ha < hb { "a" } else { "b" };
    // Every fast request goes to the less busy endpoint.
    let fast = counts(&c, addr, "x", 10).await;
    assert_eq!(
        fast.get(idle),
        Some(&10),
        "{fast:?} (a had {ha} slow, b had {hb})"
    );
    for s in slow {
        assert_eq!(s.await.unwrap().0, StatusCode::OK);
    }
    proxy.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_retry_and_recovery() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let b_addr = b.addr;
    let toml = format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n{}",
        service_toml(
            "s",
            "round_robin",
            "passive_health = { max_failures = 2, cooldown = \"1s\" }",
            &[(a.url(), 1), (b.url(), 1)]
        ),
    );
    let proxy = start(&toml).await;
    let addr = proxy.local_addr("web").unwrap();
    let admin = proxy.admin_addr().unwrap();
    let c = client();
    assert_eq!(counts(&c, addr, "x", 10).await.len(), 2);

    // b goes away: every GET still succeeds (connect failure → retried on a), b is ejected.
    b.stop();
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during = counts(&c, addr, "x", 20).await;
    assert_eq!(during.get("a"), Some(&20), "{during:?}");
    let doc = routes_doc(&c, admin).await;
    let eps = doc["services"][0]["endpoints"].as_array().unwrap().clone();
    let b_doc = eps
        .iter()
        .find(|e| e["url"] == format!("http://{b_addr}"))
        .unwrap();
    assert_eq!(b_doc["ejected"], true, "{doc}");
    let (_, _, metrics) = get(&c, admin, "a", "/metrics").await;
    assert!(
        metrics.contains(r#"fairway_upstream_ejections_total{service="s"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"fairway_upstream_retries_total{service="s"}"#));

    // b comes back on the same port; after the cooldown it receives traffic again.
    let b2 = upstream_on("b", b_addr).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = counts(&c, addr, "x", 20).await;
    assert!(after.get("b").copied().unwrap_or(0) >= 5, "{after:?}");
    drop(b2);
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_mark_endpoints_down_and_up() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let b_addr = b.addr;
    let toml = format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n\
         [routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n{}",
        service_toml(
            "s",
            "round_robin",
            "health_check = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }\n\
             passive_health = { max_failures = 0 }\nretry = false",
            &[(a.url(), 1), (b.url(), 1)]
        ),
    );
    let proxy = start(&toml).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();
    b.stop();
    drop(b);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Without retry and passive ejection, only the active check keeps b out of rotation.
    let during = counts(&c, addr, "x", 10).await;
    assert_eq!(during.get("a"), Some(&10), "{during:?}");
    let _b2 = upstream_on("b", b_addr).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = counts(&c, addr, "x", 10).await;
    assert_eq!(after.get("b"), Some(&5), "{after:?}");
    proxy.shutdown(Duration::from_secs(2)).await;
}
