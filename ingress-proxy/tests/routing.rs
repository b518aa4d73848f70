//! End to end: host/path routing, headers, static responses, errors, admin.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_routing_with_forwarded_headers() {
    let api = upstream("api").await;
    let web = upstream("web").await;
    let other = upstream("other").await;
    let proxy = start(&format!(
        r#"
[entrypoints.web]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"

[routers.api]
rule = "Host(`example.test`) && PathPrefix(`/api`)"
service = "api"
[routers.web]
rule = "Host(`example.test`)"
service = "web"
[routers.other]
rule = "Host(`other.test`) || HostRegexp(`^.+\\.wild\\.test$`)"
service = "other"
[routers.static]
rule = "Path(`/static-page`)"
service = "static"
priority = 1000

[services.api]
[[services.api.endpoints]]
url = "{}"
[services.web]
[[services.web.endpoints]]
url = "{}"
[services.other]
[[services.other.endpoints]]
url = "{}"
[services.static]
respond = {{ status = 203, body = "static!" }}
"#,
        api.url(),
        web.url(),
        other.url()
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();

    let (s, up, body) = get(&c, addr, "example.test", "/api/v1?x=1").await;
    assert_eq!((s, up.as_str()), (StatusCode::OK, "api"));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["path"], "/api/v1");
    let h = &doc["headers"];
    assert_eq!(h["host"], "example.test", "Host passes through");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.test");
    assert_eq!(h["x-forwarded-port"], addr.port().to_string());

    assert_eq!(get(&c, addr, "EXAMPLE.test:80", "/other").await.1, "web");
    assert_eq!(get(&c, addr, "other.test", "/").await.1, "other");
    assert_eq!(get(&c, addr, "a.wild.test", "/").await.1, "other");
    let (s, _, body) = get(&c, addr, "anything", "/static-page").await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::NON_AUTHORITATIVE_INFORMATION, "static!")
    );
    let (s, _, body) = get(&c, addr, "nobody.test", "/").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "404 page not found\n");

    // Spoofed forwarding headers from an untrusted client are replaced; hop-by-hop removed.
    let req = http::Request::get(format!("http://{addr}/api"))
        .header("host", "example.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert!(
        resp.headers().get("x-hop").is_none(),
        "response hop-by-hop header removed"
    );
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(doc["headers"]["x-real-ip"], "127.0.0.1");
    assert!(doc["headers"].get("x-private").is_none());
    assert!(doc["headers"].get("keep-alive").is_none());

    // The same with a body (sent through hyper's client, the fields set in the map rather
    // than written into the head): the same forwarding fields, the client's replaced.
    let req = http::Request::post(format!("http://{addr}/api"))
        .header("host", "example.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.test")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"abc")))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["body_len"], 3);
    let h = &doc["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.test");
    assert_eq!(h["x-forwarded-port"], addr.port().to_string());

    // Admin: health, readiness, routes, metrics.
    let admin = proxy.admin_addr().unwrap();
    assert_eq!(get(&c, admin, "a", "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&c, admin, "a", "/readyz").await.0, StatusCode::OK);
    let doc = routes_doc(&c, admin).await;
    assert_eq!(doc["routers"].as_array().unwrap().len(), 4);
    let (_, _, metrics) = get(&c, admin, "a", "/metrics").await;
    assert!(
        metrics.contains(r#"fairway_requests_total{router="api",service="api",code="2xx"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"fairway_open_connections{entrypoint="web"}"#));
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_keep_forwarded_headers() {
    let api = upstream("api").await;
    let proxy = start(&format!(
        r#"
[entrypoints.web]
address = "127.0.0.1:0"
[forwarding]
trusted_proxies = ["127.0.0.0/8"]
[routers.all]
rule = "PathPrefix(`/`)"
service = "api"
[services.api]
[[services.api.endpoints]]
url = "{}"
"#,
        api.url()
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", "h.test")
        .header("x-forwarded-for", "198.51.100.9")
        .header("x-forwarded-proto", "https")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["headers"]["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
    assert_eq!(doc["headers"]["x-forwarded-proto"], "https");
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_timeout_errors() {
    // A port with nothing listening: bind, note the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let slow = upstream("slow").await;
    let proxy = start(&format!(
        r#"
[entrypoints.web]
address = "127.0.0.1:0"
[routers.dead]
rule = "Host(`dead.test`)"
service = "dead"
[routers.slow]
rule = "Host(`slow.test`)"
service = "slow"
[services.dead]
[[services.dead.endpoints]]
url = "http://{dead}"
[services.slow]
timeouts = {{ response = "300ms" }}
[[services.slow.endpoints]]
url = "{}"
"#,
        slow.url()
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();
    let (s, _, body) = get(&c, addr, "dead.test", "/").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "502 bad gateway\n", "no internals in the body");
    let (s, _, body) = get(&c, addr, "slow.test", "/sleep/2000").await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body, "504 gateway timeout\n");
    let (s, up, _) = get(&c, addr, "slow.test", "/sleep/10").await;
    assert_eq!((s, up.as_str()), (StatusCode::OK, "slow"));
    proxy.shutdown(Duration::from_secs(2)).await;
}
