//! End to end: routes from an external provider (Kubernetes Ingresses) next to the file's
//! routers: Kubernetes path and host semantics, kept across file reloads, rejected whole on a
//! service-name collision, removed by an empty set.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use http::StatusCode;
use ingress_proxy::ExternalRoutes;
use ingress_router::{IngressMatch, IngressOrigin, IngressRoute, PathType};

const FILE: &str = r#"
[entrypoints.web]
address = "127.0.0.1:0"
[routers.file]
rule = "Host(`file.test`)"
service = "main"
[services.main]
[[services.main.endpoints]]
url = "URL"
"#;

fn path(host: &str, path_type: PathType, path: &str, index: usize) -> IngressRoute<String> {
    IngressRoute {
        origin: IngressOrigin {
            namespace: "ns".into(),
            name: "app".into(),
            created: None,
        },
        matcher: IngressMatch::Path {
            rule_index: 0,
            path_index: index,
            host: Some(host.into()),
            path_type,
            path: path.into(),
        },
        backend: "k8s/ns/web:80".into(),
    }
}

fn external(service: &str, endpoint: SocketAddr) -> Arc<ExternalRoutes> {
    let routes = vec![
        path("a.test", PathType::Prefix, "/app", 0),
        path("a.test", PathType::Exact, "/exact", 1),
        path("*.wild.test", PathType::Prefix, "/", 2),
    ]
    .into_iter()
    .map(|r| r.map_backend(|_| service.to_owned()))
    .collect();
    Arc::new(ExternalRoutes {
        routes,
        services: BTreeMap::from([(service.to_owned(), ExternalRoutes::service_for(&[endpoint]))]),
    })
}

#[tokio::test]
async fn ingress_routes_follow_kubernetes_semantics_and_survive_file_reloads() {
    let file_up = upstream("file").await;
    let k8s_up = upstream("k8s").await;
    let toml = FILE.replace("URL", &file_up.url());
    let proxy = start(&toml).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();

    assert_eq!(
        get(&c, addr, "a.test", "/app").await.0,
        StatusCode::NOT_FOUND
    );
    proxy
        .set_external_routes(external("k8s/ns/web:80", k8s_up.addr))
        .unwrap();

    let cases = [
        ("a.test", "/app", Some("k8s")),
        ("a.test", "/app/x", Some("k8s")),
        ("A.TEST:80", "/app/", Some("k8s")),
        ("a.test", "/apple", None), // Prefix matches whole path elements
        ("a.test", "/exact", Some("k8s")),
        ("a.test", "/exact/", None), // Exact is exact
        ("x.wild.test", "/anything", Some("k8s")),
        ("a.b.wild.test", "/", None), // a wildcard covers one label
        ("file.test", "/", Some("file")),
    ];
    for (host, p, want) in cases {
        let (status, up, _) = get(&c, addr, host, p).await;
        match want {
            Some(name) => {
                assert_eq!((status, up.as_str()), (StatusCode::OK, name), "{host}{p}")
            }
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{host}{p}"),
        }
    }

    // A file reload keeps the external routes.
    let reloaded =
        format!("{toml}[routers.other]\nrule = \"Host(`other.test`)\"\nservice = \"main\"\n");
    proxy.reload(config(&reloaded)).unwrap();
    assert_eq!(get(&c, addr, "other.test", "/").await.1, "file");
    assert_eq!(get(&c, addr, "a.test", "/app/x").await.1, "k8s");

    // A service name taken by the file is rejected whole; the running routes keep serving.
    let err = proxy
        .set_external_routes(external("main", k8s_up.addr))
        .unwrap_err();
    assert!(err.to_string().contains("services.main"), "{err}");
    assert_eq!(get(&c, addr, "a.test", "/app/x").await.1, "k8s");

    // An empty set removes them.
    proxy.set_external_routes(Arc::default()).unwrap();
    assert_eq!(
        get(&c, addr, "a.test", "/app/x").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&c, addr, "file.test", "/").await.1, "file");
}

/// The count of `router`'s 2xx requests in the metrics text (0 when absent).
fn ok_count(proxy: &ingress_proxy::Proxy, router: &str) -> u64 {
    let text = proxy.metrics().render();
    text.lines()
        .filter(|l| l.contains(&format!("router=\"{router}\"")) && l.contains("code=\"2xx\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A new route set (here: the same routes over another endpoint, as an EndpointSlice change
/// sends) keeps each route's metrics: its counters continue rather than restart, and a route
/// whose service changes counts under the new service.
#[tokio::test]
async fn route_metrics_continue_across_route_sets() {
    let file_up = upstream("file").await;
    let one = upstream("one").await;
    let two = upstream("two").await;
    let proxy = start(&FILE.replace("URL", &file_up.url())).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = client();
    let router = "ingress/ns/app/0/0";
    proxy
        .set_external_routes(external("k8s/ns/web:80", one.addr))
        .unwrap();
    assert_eq!(get(&c, addr, "a.test", "/app").await.1, "one");
    assert_eq!(ok_count(&proxy, router), 1);
    proxy
        .set_external_routes(external("k8s/ns/web:80", two.addr))
        .unwrap();
    assert_eq!(get(&c, addr, "a.test", "/app").await.1, "two");
    assert_eq!(ok_count(&proxy, router), 2, "the same counter, continued");
    // Same route name, another service: counted under that service.
    proxy
        .set_external_routes(external("k8s/ns/api:80", one.addr))
        .unwrap();
    assert_eq!(get(&c, addr, "a.test", "/app").await.1, "one");
    let text = proxy.metrics().render();
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("router=\"{router}\""))
                && l.contains("service=\"k8s/ns/api:80\"")
                && l.contains("code=\"2xx\"")
                && l.ends_with(" 1")),
        "{text}"
    );
}
