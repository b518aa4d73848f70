//! Unit tests of the admin API handlers: JSON shape, token enforcement, and that no response
//! ever carries key material.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acme_store::{AcmeDocument, Snapshot, StoredCert};
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use http_body_util::BodyExt as _;
use serde_json::Value;

use super::*;
use crate::config::ProxyConfig;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::server::Shared;
use crate::upstream::client::ClientCache;

const CONFIG: &str = r#"
[entrypoints.web]
address = "127.0.0.1:0"
[entrypoints.websecure]
address = "127.0.0.1:0"
tls = {}

[routers.app]
rule = "Host(`app.example.com`)"
service = "app"
tls = { cert_resolver = "le" }
[routers.api]
rule = "Host(`app.example.com`) && PathPrefix(`/api`)"
service = "api"
entrypoints = ["websecure"]
[routers.shadow]
rule = "Host(`app.example.com`)"
service = "api"
priority = 23

[services.app]
load_balancer = "least_requests"
[[services.app.endpoints]]
url = "http://127.0.0.1:9"
[[services.app.endpoints]]
url = "http://127.0.0.1:10"
[services.api]
respond = { body = "api" }
"#;

/// 2030-01-01T00:00:00Z: "now" in these tests.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

struct Fixture {
    shared: Shared,
    key_pems: Vec<String>,
}

fn cert(name: &str, sans: &[&str], days_from_now: i64) -> (StoredCert, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut names = vec![name.to_owned()];
    names.extend(sans.iter().map(|s| s.to_string()));
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    // 2030-01-01 plus `days_from_now`; certificates last 90 days.
    let base = 1_893_456_000i64 + days_from_now * 86_400;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(base as u64);
    params.not_before =
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((base - 90 * 86_400) as u64);
    let c = params.self_signed(&key).unwrap();
    let key_pem = key.serialize_pem();
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    (
        StoredCert::from_pem(name, &sans, &c.pem(), &key_pem),
        key_pem,
    )
}

fn fixture(token: Option<&str>) -> Fixture {
    let config: ProxyConfig = toml::from_str(CONFIG).unwrap();
    let names: Vec<String> = config.entrypoints.keys().cloned().collect();
    let metrics = Arc::new(Metrics::new());
    let rt = Runtime::build(
        &config,
        &names,
        &[8080, 8443],
        &ClientCache::default(),
        &metrics,
        None,
        &Default::default(),
    )
    .unwrap();
    let dashboard = DashboardState::with_token(&config, &names, token.map(Into::into));
    let mut doc = AcmeDocument::default();
    let le = doc.resolvers.entry("le".into()).or_default();
    let mut key_pems = Vec::new();
    for (name, sans, days) in [
        ("app.example.com", &["www.example.com"][..], 60),
        ("soon.example.com", &[][..], 5),
        ("old.example.com", &[][..], -2),
    ] {
        let (c, k) = cert(name, sans, days);
        le.certificates.push(c);
        key_pems.push(k);
    }
    dashboard.set_certificates(Arc::new(Snapshot::build(Arc::new(doc), 1, None)));
    let shared = Shared {
        runtime: ArcSwap::from_pointee(rt),
        challenges: None,
        metrics,
        limits: Default::default(),
        drain: tokio::sync::watch::channel(false).0,
        ready: AtomicBool::new(true),
        dashboard,
    };
    Fixture { shared, key_pems }
}

async fn get(f: &Fixture, path: &str, headers: &HeaderMap) -> (StatusCode, String) {
    let uri: Uri = path.parse().unwrap();
    let resp = answer(&f.shared, &uri, headers, now()).expect("a dashboard path");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A request through the whole admin listener (the API, the page, `/metrics`, the probes).
async fn listener_get(f: &Fixture, method: &http::Method, path: &str) -> (StatusCode, String) {
    let uri: Uri = path.parse().unwrap();
    let resp = crate::admin::answer(&f.shared, method, &uri, &HeaderMap::new());
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn get_json(f: &Fixture, path: &str) -> Value {
    let (status, body) = get(f, path, &HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn index_lists_the_proxy_sections() {
    let f = fixture(None);
    let v = get_json(&f, "/api/v1").await;
    assert_eq!(v["api_version"], 1);
    assert_eq!(v["component"], "proxy");
    assert_eq!(v["read_only"], true);
    let sections: Vec<&str> = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        sections,
        ["problems", "routes", "explain", "services", "certificates"]
    );
}

#[tokio::test]
async fn routes_carry_rates_per_second_from_sampled_counters() {
    let f = fixture(None);
    let rt = f.shared.runtime.load();
    let m = &f.shared.metrics;
    // Not sampled yet: no rate (null), never a made-up zero.
    let v = get_json(&f, "/api/v1/routes").await;
    let app = v["routers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "app")
        .unwrap();
    assert_eq!(app["requests_per_second"], Value::Null);
    f.shared.dashboard.sample_rates(&rt, m, 10_000);
    // 40 requests (10 of them 5xx) to `app` and 4 to `api` over two seconds.
    for i in 0..40 {
        m.route("app", "app")
            .observe(if i % 4 == 0 { 503 } else { 200 }, 0.001);
    }
    for _ in 0..4 {
        m.route("api", "api").observe(200, 0.001);
    }
    f.shared.dashboard.sample_rates(&rt, m, 12_000);
    let v = get_json(&f, "/api/v1/routes").await;
    assert_eq!(v["rate_sample_seconds"], 1);
    let routers = v["routers"].as_array().unwrap();
    let by_name = |n: &str| routers.iter().find(|r| r["name"] == n).unwrap().clone();
    let app = by_name("app");
    assert_eq!(app["requests_per_second"], 20.0, "{app}");
    assert_eq!(app["errors_per_second"], 5.0, "{app}");
    assert_eq!(app["rate_window_seconds"], 2.0);
    assert_eq!(app["requests_total"], 40);
    assert_eq!(by_name("api")["requests_per_second"], 2.0);
    assert_eq!(by_name("shadow")["requests_per_second"], 0.0);
    // Quiet afterwards: the rate falls to zero once the window has moved past the burst.
    for i in 0..11u64 {
        f.shared.dashboard.sample_rates(&rt, m, 13_000 + i * 1_000);
    }
    let v = get_json(&f, "/api/v1/routes").await;
    let app = v["routers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "app")
        .unwrap();
    assert_eq!(app["requests_per_second"], 0.0);
    assert_eq!(app["requests_total"], 40);
}

#[tokio::test]
async fn ingress_routes_name_their_ingress_as_source() {
    use ingress_router::{IngressMatch, IngressOrigin, IngressRoute, PathType};
    let config: ProxyConfig = toml::from_str(CONFIG).unwrap();
    let names: Vec<String> = config.entrypoints.keys().cloned().collect();
    let origin = IngressOrigin {
        namespace: "shop".into(),
        name: "front".into(),
        created: None,
    };
    let external = crate::ExternalRoutes {
        routes: [
            IngressRoute {
                origin: origin.clone(),
                matcher: IngressMatch::Path {
                    rule_index: 1,
                    path_index: 2,
                    host: Some("shop.example.com".into()),
                    path_type: PathType::Prefix,
                    path: "/cart".into(),
                },
                backend: "shop-cart".to_owned(),
            },
            IngressRoute {
                origin,
                matcher: IngressMatch::DefaultBackend,
                backend: "shop-cart".to_owned(),
            },
        ]
        .into(),
        services: [(
            "shop-cart".to_owned(),
            crate::ExternalRoutes::service_for(&["127.0.0.1:9".parse().unwrap()]),
        )]
        .into(),
    };
    let f = fixture(None);
    let rt = Runtime::build(
        &config,
        &names,
        &[8080, 8443],
        &ClientCache::default(),
        &f.shared.metrics,
        None,
        &external,
    )
    .unwrap();
    f.shared.runtime.store(Arc::new(rt));
    let v = get_json(&f, "/api/v1/routes").await;
    let routers = v["routers"].as_array().unwrap();
    let path = routers
        .iter()
        .find(|r| r["name"] == "ingress/shop/front/1/2")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        path["source"],
        serde_json::json!({"kind": "ingress", "namespace": "shop", "name": "front",
            "rule_index": 1, "path_index": 2})
    );
    assert_eq!(path["service"], "shop-cart");
    // Attached to every entrypoint, one of which has TLS.
    assert_eq!(path["tls"], true);
    assert_eq!(path["entrypoints"], serde_json::json!(["web", "websecure"]));
    let default = routers
        .iter()
        .find(|r| r["name"] == "ingress/shop/front/default")
        .unwrap();
    assert_eq!(default["source"]["kind"], "ingress_default_backend");
    assert_eq!(default["source"]["namespace"], "shop");
    // The file's routers stay file routers.
    let app = routers.iter().find(|r| r["name"] == "app").unwrap();
    assert_eq!(
        app["source"],
        serde_json::json!({"kind": "file", "router": "app"})
    );
}

#[tokio::test]
async fn routes_carry_rule_source_tls_and_counters() {
    let f = fixture(None);
    f.shared.metrics.route("app", "app").observe(200, 0.001);
    f.shared.metrics.route("app", "app").observe(502, 0.001);
    let v = get_json(&f, "/api/v1/routes").await;
    let routers = v["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 3);
    let app = routers.iter().find(|r| r["name"] == "app").unwrap();
    assert_eq!(app["rule"], "Host(`app.example.com`)");
    assert_eq!(app["service"], "app");
    assert_eq!(app["source"]["kind"], "file");
    assert_eq!(app["tls"], true);
    assert_eq!(app["cert_resolver"], "le");
    assert_eq!(app["entrypoints"], serde_json::json!(["web", "websecure"]));
    assert_eq!(app["requests_total"], 2);
    assert_eq!(app["errors_total"], 1);
    let api = routers.iter().find(|r| r["name"] == "api").unwrap();
    assert_eq!(api["entrypoints"], serde_json::json!(["websecure"]));
    assert_eq!(api["cert_resolver"], Value::Null);
    // The services ride along (the first `/api/routes` shape, still relied on by scripts).
    let services = v["services"].as_array().unwrap();
    assert_eq!(
        services,
        get_json(&f, "/api/v1/services").await["services"]
            .as_array()
            .unwrap()
    );
    assert_eq!(services[1]["endpoints"][0]["available"], true);
}

#[tokio::test]
async fn services_show_policy_health_and_inflight() {
    let f = fixture(None);
    {
        let rt = f.shared.runtime.load();
        let ServiceKind::Upstream(u) = &rt.services["app"].kind else {
            panic!("upstream")
        };
        // Eject the second endpoint (one failure with max_failures = 1), far into the future.
        u.set.load().endpoints[1]
            .passive()
            .record_failure(1, 3_600_000, now_ms());
    }
    let v = get_json(&f, "/api/v1/services").await;
    let services = v["services"].as_array().unwrap();
    let app = services.iter().find(|s| s["name"] == "app").unwrap();
    assert_eq!(app["kind"], "upstream");
    assert_eq!(app["load_balancer"], "least_requests");
    let eps = app["endpoints"].as_array().unwrap();
    assert_eq!(eps[0]["url"], "http://127.0.0.1:9");
    assert_eq!(eps[0]["state"], "healthy");
    assert_eq!(eps[0]["inflight"], 0);
    assert_eq!(eps[1]["state"], "ejected");
    assert_eq!(eps[1]["ejected"], true);
    let api = services.iter().find(|s| s["name"] == "api").unwrap();
    assert_eq!(api["kind"], "static");
    assert_eq!(api["status"], 200);

    let problems = get_json(&f, "/api/v1/problems").await;
    assert!(
        problems["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "endpoint_ejected"
                && p["subject"].as_str().unwrap().contains("127.0.0.1:10")),
        "{problems}"
    );
}

#[tokio::test]
async fn certificates_sorted_by_expiry_with_days_left() {
    let f = fixture(None);
    let v = get_json(&f, "/api/v1/certificates").await;
    assert_eq!(v["available"], true);
    assert_eq!(
        v["renewal_facts"], false,
        "the proxy serves, it does not renew"
    );
    assert_eq!(v["now"], "2030-01-01T00:00:00Z");
    let certs = v["certificates"].as_array().unwrap();
    let domains: Vec<&str> = certs
        .iter()
        .map(|c| c["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        domains,
        ["old.example.com", "soon.example.com", "app.example.com"]
    );
    assert_eq!(certs[0]["status"], "expired");
    assert_eq!(certs[1]["status"], "expiring");
    assert_eq!(certs[1]["days_left"], 5);
    assert_eq!(certs[2]["status"], "ok");
    assert_eq!(certs[2]["days_left"], 60);
    assert_eq!(certs[2]["sans"], serde_json::json!(["www.example.com"]));
    assert_eq!(certs[2]["resolver"], "le");
    assert_eq!(certs[2]["key_type"], "EC256");
    assert_eq!(certs[2]["not_after"], "2030-03-02T00:00:00Z");
    assert_eq!(certs[2]["lifetime_days"], 90);
    assert!(certs[2]["issuer"].as_str().unwrap().len() > 2);
    assert!(certs[2].get("key").is_none());
}

#[tokio::test]
async fn problems_flag_expiry_collisions_and_failed_reloads() {
    let f = fixture(None);
    let config: ProxyConfig = toml::from_str(CONFIG).unwrap();
    f.shared.dashboard.record_reload(
        RouterFacts::of(&config),
        &Err::<(), _>("routers.x.rule: bad rule"),
        now(),
    );
    let v = get_json(&f, "/api/v1/problems").await;
    let problems = v["problems"].as_array().unwrap();
    let kinds: Vec<&str> = problems
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    // Expired first, then expiring; the healthy certificate is not a problem.
    assert_eq!(kinds[0], "certificate_expired");
    assert_eq!(kinds[1], "certificate_expiring");
    assert!(
        problems[1]["subject"]
            .as_str()
            .unwrap()
            .contains("soon.example.com")
    );
    assert!(
        !problems
            .iter()
            .any(|p| p["subject"].as_str().unwrap().contains("app.example.com ("))
    );
    // `shadow` has the same rule and priority (23 = rule length) as `app` on both entrypoints.
    let collisions: Vec<&Value> = problems
        .iter()
        .filter(|p| p["kind"] == "route_collision")
        .collect();
    assert_eq!(collisions.len(), 2, "{v}");
    assert!(collisions[0]["message"].as_str().unwrap().contains("`app`"));
    let reload = problems
        .iter()
        .find(|p| p["kind"] == "reload_failed")
        .unwrap();
    assert!(
        reload["message"]
            .as_str()
            .unwrap()
            .contains("routers.x.rule: bad rule")
    );
    assert_eq!(v["reloads"]["failures"], 1);
    assert_eq!(v["reloads"]["last_ok"], false);

    // A later good reload clears the reload problem.
    f.shared
        .dashboard
        .record_reload(RouterFacts::of(&config), &Ok::<(), String>(()), now());
    let v = get_json(&f, "/api/v1/problems").await;
    assert!(
        !v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "reload_failed")
    );
    // A file the binary could not even parse is reported the same way.
    f.shared
        .dashboard
        .record_rejected("fairway.toml:1:2: unclosed table".into(), now());
    let v = get_json(&f, "/api/v1/problems").await;
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "reload_failed"
                && p["message"].as_str().unwrap().contains("unclosed table"))
    );
    assert_eq!(v["reloads"]["attempts"], 3);
    assert_eq!(v["reloads"]["failures"], 2);
}

#[tokio::test]
async fn explain_reports_winner_and_losers_per_entrypoint() {
    let f = fixture(None);
    let v = get_json(
        &f,
        "/api/v1/explain?url=https%3A%2F%2Fapp.example.com%2Fapi%2Fusers%3Fx%3D1&method=post",
    )
    .await;
    assert_eq!(v["method"], "POST");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let web = &results[0];
    assert_eq!(web["entrypoint"], "web");
    assert_eq!(web["matched"]["router"], "app");
    assert_eq!(web["request"]["host"], "app.example.com");
    assert_eq!(web["request"]["path"], "/api/users");
    assert_eq!(web["request"]["method"], "POST");
    let secure = &results[1];
    assert_eq!(secure["matched"]["router"], "api");
    assert_eq!(secure["matched"]["service"], "api");
    assert!(!secure["losers"].as_array().unwrap().is_empty());
    assert!(secure["reason"].as_str().unwrap().len() > 5);

    // Without a scheme, for one entrypoint, nothing matching.
    let v = get_json(&f, "/api/v1/explain?url=other.example.org/&entrypoint=web").await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["matched"], Value::Null);

    for bad in [
        "/api/v1/explain",
        "/api/v1/explain?url=",
        "/api/v1/explain?url=a.example&entrypoint=nope",
        "/api/v1/explain?url=a.example&method=G%20T",
        "/api/v1/explain?url=http%3A%2F%2F%5B",
    ] {
        let (status, body) = get(&f, bad, &HeaderMap::new()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
}

#[tokio::test]
async fn vips_are_not_the_proxys_part() {
    let f = fixture(None);
    let v = get_json(&f, "/api/v1/vips").await;
    assert_eq!(v["available"], false);
    assert_eq!(v["vips"], serde_json::json!([]));
    let (status, _) = get(&f, "/api/v1/nope", &HeaderMap::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unversioned_paths_are_the_current_version() {
    let f = fixture(None);
    // Every path the issue names, and the rest, answer exactly like `/api/v1/...`.
    for doc in DOCUMENTS {
        let query = if doc == "explain" {
            "?url=app.example.com%2Fapi"
        } else {
            ""
        };
        let alias = get_json(&f, &format!("/api/{doc}{query}")).await;
        let v1 = get_json(&f, &format!("/api/v1/{doc}{query}")).await;
        assert_eq!(alias, v1, "/api/{doc}");
        assert_eq!(alias["api_version"], 1, "/api/{doc}");
    }
    assert_eq!(get_json(&f, "/api").await, get_json(&f, "/api/v1").await);
    let routes = get_json(&f, "/api/routes").await;
    assert_eq!(routes["routers"].as_array().unwrap().len(), 3);
    assert!(routes["routers"][0]["requests_per_second"].is_null());
    let alias = get_json(&f, "/api/explain?url=app.example.com").await;
    assert_eq!(alias["results"][0]["matched"]["router"], "app");
    let (status, body) = get(&f, "/api/nope", &HeaderMap::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The index lists documents that exist.
    let index = get_json(&f, "/api/v1").await;
    for s in index["sections"].as_array().unwrap() {
        assert!(DOCUMENTS.contains(&s.as_str().unwrap()), "{s}");
    }
}

#[tokio::test]
async fn no_response_carries_key_material() {
    let f = fixture(None);
    // Traffic and samples, so every document is as full as it gets.
    f.shared.metrics.route("app", "app").observe(200, 0.001);
    f.shared
        .dashboard
        .sample_rates(&f.shared.runtime.load(), &f.shared.metrics, 1);
    let stripped: Vec<String> = f
        .key_pems
        .iter()
        .map(|pem| {
            // The base64 body of each key, as one string, and a long slice of it.
            pem.lines().filter(|l| !l.starts_with("-----")).collect()
        })
        .collect();
    // Every endpoint of the admin listener: each document, versioned and not, the page, the
    // probes and the metrics.
    let mut paths: Vec<String> = ["/api/v1", "/api", "/metrics", "/healthz", "/readyz"]
        .map(String::from)
        .to_vec();
    for doc in DOCUMENTS {
        let query = if doc == "explain" {
            "?url=https%3A%2F%2Fapp.example.com%2F"
        } else {
            ""
        };
        paths.push(format!("/api/v1/{doc}{query}"));
        paths.push(format!("/api/{doc}{query}"));
    }
    for page in [
        "/",
        "/dashboard/",
        "/dashboard/app.js",
        "/dashboard/app.css",
    ] {
        assert!(crate::dashboard::asset(page).is_some(), "{page}");
        paths.push(page.to_owned());
    }
    for path in &paths {
        let (status, body) = listener_get(&f, &http::Method::GET, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains("PRIVATE KEY"), "{path}");
        for key in &stripped {
            assert!(!body.contains(key.as_str()), "{path} leaks a key");
            assert!(!body.contains(&key[20..60]), "{path} leaks key bytes");
        }
    }
    // The certificates really are there (the check above is not vacuous).
    let (_, certs) = listener_get(&f, &http::Method::GET, "/api/v1/certificates").await;
    assert!(certs.contains("soon.example.com"));
}

#[tokio::test]
async fn the_listener_is_read_only() {
    let f = fixture(None);
    for method in [
        http::Method::POST,
        http::Method::PUT,
        http::Method::DELETE,
        http::Method::PATCH,
    ] {
        for path in ["/api/v1/routes", "/api/routes", "/", "/metrics"] {
            let (status, _) = listener_get(&f, &method, path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    let (status, _) = listener_get(&f, &http::Method::HEAD, "/api/v1/routes").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn token_is_required_everywhere_but_probes_and_the_page() {
    let token = "s3cret-token-0123456789";
    let f = fixture(Some(token));
    let none = HeaderMap::new();
    let mut wrong = HeaderMap::new();
    wrong.insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer s3cret-token-0123456780"),
    );
    let mut right = HeaderMap::new();
    right.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    for path in [
        "/api/v1",
        "/api/v1/certificates",
        "/api/v1/explain?url=x",
        "/api/routes",
        "/metrics",
    ] {
        for h in [&none, &wrong] {
            let uri: Uri = path.parse().unwrap();
            let r = answer(&f.shared, &uri, h, now()).expect("refused");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert!(r.headers().contains_key(WWW_AUTHENTICATE));
        }
    }
    let (status, _) = get(&f, "/api/v1/certificates", &right).await;
    assert_eq!(status, StatusCode::OK);
    // With the token, the listener's own paths fall through to it.
    let uri: Uri = "/metrics".parse().unwrap();
    assert!(answer(&f.shared, &uri, &right, now()).is_none());
    // Probes and the static page need no token (the page holds no data).
    for path in ["/healthz", "/readyz"] {
        let uri: Uri = path.parse().unwrap();
        assert!(answer(&f.shared, &uri, &none, now()).is_none(), "{path}");
    }
    let (status, body) = get(&f, "/", &none).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<html"));
    assert!(!format!("{:?}", f.shared.dashboard).contains(token));
}

#[test]
fn admin_config_needs_a_token_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |toml_text: &str| -> ProxyConfig { toml::from_str(toml_text).unwrap() };
    let open = cfg("[admin]\naddress = \"0.0.0.0:9900\"\n");
    let err = open.validate().unwrap_err();
    assert_eq!(err.field, "admin.token_file");
    let local = cfg("[admin]\naddress = \"127.0.0.1:9900\"\n");
    local.validate().unwrap();
    assert!(DashboardState::new(&local, &[]).unwrap().token.is_none());

    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "  0123456789abcdef0123\n").unwrap();
    let with = |p: &std::path::Path| {
        cfg(&format!(
            "[admin]\naddress = \"0.0.0.0:9900\"\ntoken_file = {:?}\n",
            p.display().to_string()
        ))
    };
    with(&good).validate().unwrap();
    let state = DashboardState::new(&with(&good), &[]).unwrap();
    assert_eq!(state.token.as_deref(), Some("0123456789abcdef0123"));
    let err = DashboardState::new(&with(&short), &[]).unwrap_err();
    assert!(err.reason.contains("16 characters"), "{err}");
    let err = DashboardState::new(&with(&dir.path().join("missing")), &[]).unwrap_err();
    assert!(err.reason.contains("cannot read"), "{err}");
}

#[test]
fn rfc3339_and_form_decoding() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(now()), "2030-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723)),
        "2000-02-29T01:02:03Z"
    );
    assert_eq!(form_decode("a%2Fb+c").as_deref(), Some("a/b c"));
    assert_eq!(form_decode("%zz"), None);
    assert_eq!(
        query_param("x=1&url=a.example%2Fp&y", "url").as_deref(),
        Some("a.example/p")
    );
    assert_eq!(query_param("y", "y").as_deref(), Some(""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
