//! Table-driven checks of the documented semantics beyond the conformance features: Ingress
//! precedence and collisions, Traefik rule priorities and matchers, and how the two coexist.
//! Every case runs against the compiled table and the reference.

use std::net::IpAddr;

use http::HeaderMap;
use ingress_router::ingress::{parse_manifests, routes_from_all};
use ingress_router::reference::Reference;
use ingress_router::{FileRoute, IngressRoute, RequestView, RouteSource, Table};

fn ingress(yaml: &str) -> Vec<IngressRoute<String>> {
    let ings = parse_manifests(yaml, "test").unwrap();
    let (routes, warnings) = routes_from_all(&ings);
    assert!(warnings.is_empty(), "{warnings:?}");
    routes
        .into_iter()
        .map(|r| r.map_backend(|b| b.service))
        .collect()
}

fn rules(list: &[(&str, &str, Option<i64>)]) -> Vec<FileRoute<String>> {
    list.iter()
        .map(|(name, rule, prio)| {
            FileRoute::new(*name, rule, *prio, format!("svc-{name}")).unwrap()
        })
        .collect()
}

/// (host, path, expected backend) cases against both matchers.
fn check(
    file: Vec<FileRoute<String>>,
    ing: Vec<IngressRoute<String>>,
    cases: &[(&str, &str, Option<&str>)],
) {
    let table = Table::new(file.clone(), ing.clone()).unwrap();
    let reference = Reference::new(file, ing).unwrap();
    for (host, path, want) in cases {
        let req = RequestView::new(host, path);
        let got = table.route(&req).map(|m| m.backend.as_str());
        let r = reference.route(&req).map(|m| m.backend.as_str());
        assert_eq!(
            got,
            *want,
            "table: {host}{path}\n{:#?}",
            table.explain(&req).reason
        );
        assert_eq!(r, *want, "reference: {host}{path}");
    }
}

const PRECEDENCE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: p, namespace: ns}
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /foo, pathType: Exact, backend: {service: {name: foo-exact, port: {number: 1}}}}
      - {path: /foo/, pathType: Prefix, backend: {service: {name: foo-slash-prefix, port: {number: 1}}}}
      - {path: /bar, pathType: Prefix, backend: {service: {name: bar-prefix, port: {number: 1}}}}
      - {path: /bar, pathType: Exact, backend: {service: {name: bar-exact, port: {number: 1}}}}
      - {path: "", pathType: ImplementationSpecific, backend: {service: {name: impl-root, port: {number: 1}}}}
      - {path: /impl, pathType: ImplementationSpecific, backend: {service: {name: impl, port: {number: 1}}}}
  - host: "*.example.com"
    http:
      paths:
      - {path: /w, pathType: Prefix, backend: {service: {name: wildcard, port: {number: 1}}}}
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: hostless, port: {number: 1}}}}
      - {path: /foo, pathType: Prefix, backend: {service: {name: hostless-foo, port: {number: 1}}}}
"#;

#[test]
fn ingress_precedence() {
    check(
        Vec::new(),
        ingress(PRECEDENCE),
        &[
            // Prefix `/foo/` (5 bytes) is longer than Exact `/foo` (4): it wins on `/foo`.
            ("a.example.com", "/foo", Some("foo-slash-prefix")),
            ("a.example.com", "/foo/x", Some("foo-slash-prefix")),
            // Equal length: Exact beats Prefix.
            ("a.example.com", "/bar", Some("bar-exact")),
            ("a.example.com", "/bar/", Some("bar-prefix")),
            // ImplementationSpecific = Prefix, empty path = `/`.
            ("a.example.com", "/impl/x", Some("impl")),
            ("a.example.com", "/implx", Some("impl-root")),
            ("A.EXAMPLE.COM:8443", "/", Some("impl-root")),
            ("a.example.com.", "/bar", Some("bar-exact")),
            // Wildcard: one label; virtual host first (no fall-through to host-less rules).
            ("b.example.com", "/w/1", Some("wildcard")),
            ("b.example.com", "/foo", None),
            ("x.b.example.com", "/w", Some("hostless")),
            ("example.com", "/foo/bar", Some("hostless-foo")),
            ("", "/foo", Some("hostless-foo")),
            ("[2001:db8::1]:80", "/", Some("hostless")),
        ],
    );
}

const COLLIDING: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: young, namespace: a, creationTimestamp: "2025-06-01T00:00:00Z"}
  spec:
    defaultBackend: {service: {name: young-default, port: {number: 1}}}
    rules:
    - host: c.example.com
      http:
        paths:
        - {path: /x, pathType: Prefix, backend: {service: {name: young-x, port: {number: 1}}}}
        - {path: /only-young, pathType: Prefix, backend: {service: {name: young-only, port: {number: 1}}}}
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: old, namespace: z, creationTimestamp: "2020-01-01T00:00:00Z"}
  spec:
    defaultBackend: {service: {name: old-default, port: {number: 1}}}
    rules:
    - host: c.example.com
      http:
        paths:
        - {path: /x, pathType: Prefix, backend: {service: {name: old-x, port: {number: 1}}}}
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: b-same-age, namespace: m, creationTimestamp: "2020-01-01T00:00:00Z"}
  spec:
    rules:
    - host: d.example.com
      http:
        paths:
        - {path: /y, pathType: Exact, backend: {service: {name: mb, port: {number: 1}}}}
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: a-same-age, namespace: m, creationTimestamp: "2020-01-01T00:00:00Z"}
  spec:
    rules:
    - host: d.example.com
      http:
        paths:
        - {path: /y, pathType: Exact, backend: {service: {name: ma, port: {number: 1}}}}
"#;

#[test]
fn collisions_go_to_the_oldest_then_name_and_warn() {
    let routes = ingress(COLLIDING);
    check(
        Vec::new(),
        routes.clone(),
        &[
            ("c.example.com", "/x/1", Some("old-x")),
            ("c.example.com", "/only-young", Some("young-only")),
            // Paths merge per host; a miss in the host goes to the (oldest) defaultBackend.
            ("c.example.com", "/nope", Some("old-default")),
            ("d.example.com", "/y", Some("ma")),
            ("zzz", "/", Some("old-default")),
        ],
    );
    let table = Table::new(Vec::new(), routes).unwrap();
    let w: Vec<String> = table.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(
        w.iter()
            .any(|w| w.starts_with("Ingress a/young rules[0].http.paths[0]")
                && w.contains("z/old")
                && w.contains("older creationTimestamp")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|w| w.starts_with("Ingress m/b-same-age") && w.contains("namespace/name")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|w| w.starts_with("Ingress a/young defaultBackend")),
        "{w:#?}"
    );
}

#[test]
fn invalid_ingress_parts_are_skipped_with_warnings() {
    let yaml = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad}
spec:
  rules:
  - host: "*"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 1}}}}]}
  - host: "a.*.com"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 1}}}}]}
  - host: ok.com
    http: {paths: [{path: rel, pathType: Exact, backend: {service: {name: s, port: {number: 1}}}},
                   {path: /p, pathType: Weird, backend: {service: {name: s, port: {number: 1}}}}]}
"#;
    let ings = parse_manifests(yaml, "bad.yaml").unwrap();
    let (routes, warnings) = routes_from_all(&ings);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let table = Table::new(
        Vec::new(),
        routes
            .into_iter()
            .map(|r| r.map_backend(|b| b.service))
            .collect(),
    )
    .unwrap();
    assert_eq!(table.warnings().len(), 3, "{:?}", table.warnings());
    assert!(table.route(&RequestView::new("ok.com", "/")).is_none());
}

#[test]
fn traefik_priorities_and_ties() {
    let file = rules(&[
        // 34 bytes beats 26 bytes (the Traefik docs example).
        ("regexp", "HostRegexp(`[a-z]+\\.traefik\\.com`)", None),
        ("host", "Host(`foobar.traefik.com`)", None),
        // Equal explicit priorities: the smaller name wins.
        ("b-tie", "PathPrefix(`/tie`)", Some(500)),
        ("a-tie", "PathPrefix(`/t`)", Some(500)),
        // Character-wise PathPrefix.
        (
            "products",
            "Host(`shop.com`) && PathPrefix(`/products`)",
            None,
        ),
        ("all", "Host(`*`)", Some(-1)),
        ("neg", "Host(`x.com`) && !Path(`/private`)", None),
        (
            "or",
            "(Host(`o1.com`) || Host(`o2.com`)) && Path(`/o`)",
            None,
        ),
        ("wild", "Host(`*.w.com`)", None),
    ]);
    check(
        file,
        Vec::new(),
        &[
            ("foobar.traefik.com", "/", Some("svc-regexp")),
            ("any", "/tie/1", Some("svc-a-tie")),
            ("shop.com", "/products-for-sale", Some("svc-products")),
            ("x.com", "/public", Some("svc-neg")),
            ("x.com", "/private", Some("svc-all")),
            ("", "/anything", Some("svc-all")),
            ("o2.com", "/o", Some("svc-or")),
            ("o2.com", "/o/", Some("svc-all")),
            ("a.w.com", "/", Some("svc-wild")),
            ("a.b.w.com", "/", Some("svc-all")),
        ],
    );
}

#[test]
fn traefik_request_matchers() {
    let file = rules(&[
        ("method", "Method(`post`) && Path(`/m`)", None),
        ("header", "Header(`X-Env`, `canary`)", Some(900)),
        ("header-re", "HeaderRegexp(`X-Id`, `^[0-9]+$`)", Some(800)),
        ("query", "Query(`q`, `a b`)", Some(700)),
        ("query-key", "Query(`flag`)", Some(600)),
        ("ip", "ClientIP(`192.0.2.0/24`)", Some(500)),
        ("ip6", "ClientIP(`2001:db8::1`)", Some(500)),
        ("path-re", "PathRegexp(`^/u/[0-9]+$`)", None),
    ]);
    let table = Table::new(file.clone(), Vec::new()).unwrap();
    let reference = Reference::new(file, Vec::new()).unwrap();
    let mut canary = HeaderMap::new();
    canary.insert("x-env", "canary".parse().unwrap());
    let mut id = HeaderMap::new();
    id.append("x-id", "abc".parse().unwrap());
    id.append("x-id", "42".parse().unwrap());
    let none = HeaderMap::new();
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let cases: Vec<(RequestView<'_>, Option<&str>)> = vec![
        (
            RequestView::new("h", "/m").with_method("POST"),
            Some("svc-method"),
        ),
        (RequestView::new("h", "/m"), None),
        (
            RequestView::new("h", "/").with_headers(&canary),
            Some("svc-header"),
        ),
        (
            RequestView::new("h", "/").with_headers(&id),
            Some("svc-header-re"),
        ),
        (
            RequestView::new("h", "/")
                .with_headers(&none)
                .with_query("x=1&q=a%20b"),
            Some("svc-query"),
        ),
        (RequestView::new("h", "/?q=a+b"), Some("svc-query")),
        (RequestView::new("h", "/?q=ab"), None),
        (RequestView::new("h", "/?flag"), Some("svc-query-key")),
        (
            RequestView::new("h", "/").with_client_ip(v4),
            Some("svc-ip"),
        ),
        (
            RequestView::new("h", "/").with_client_ip(mapped),
            Some("svc-ip"),
        ),
        (
            RequestView::new("h", "/").with_client_ip(v6),
            Some("svc-ip6"),
        ),
        (RequestView::new("h", "/u/12"), Some("svc-path-re")),
        (RequestView::new("h", "/u/12/x"), None),
    ];
    for (req, want) in &cases {
        assert_eq!(
            table.route(req).map(|m| m.backend.as_str()),
            *want,
            "{req:?}"
        );
        assert_eq!(
            reference.route(req).map(|m| m.backend.as_str()),
            *want,
            "{req:?}"
        );
    }
}

#[test]
fn file_routes_take_precedence_over_ingress() {
    let file = rules(&[("maint", "Host(`a.example.com`) && PathPrefix(`/foo`)", None)]);
    check(
        file,
        ingress(PRECEDENCE),
        &[
            ("a.example.com", "/foo", Some("svc-maint")),
            ("a.example.com", "/bar", Some("bar-exact")),
        ],
    );
}

#[test]
fn explain_names_source_reason_and_losers() {
    let table = Table::new(Vec::new(), ingress(PRECEDENCE)).unwrap();
    let e = table.explain(&RequestView::new("b.example.com", "/w/x"));
    let m = e.matched.as_ref().unwrap();
    assert_eq!(
        m.route.source,
        RouteSource::Ingress {
            namespace: "ns".into(),
            name: "p".into(),
            rule_index: 1,
            path_index: 0
        }
    );
    assert!(
        e.reason.contains("wildcard `*.example.com`"),
        "{}",
        e.reason
    );
    assert!(
        e.reason.contains("path `/w` Prefix, longest of 1"),
        "{}",
        e.reason
    );
    // The host-less `/` rule would match but loses to the virtual host.
    assert!(
        e.losers
            .iter()
            .any(|l| l.why.contains("virtual host first")),
        "{:#?}",
        e.losers
    );

    let e = table.explain(&RequestView::new("a.example.com", "/foo"));
    assert!(e.reason.contains("longest of 3"), "{}", e.reason);
    assert!(
        e.losers
            .iter()
            .any(|l| l.route.rule.contains("`/foo` Exact") && l.why.contains("shorter")),
        "{:#?}",
        e.losers
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["matched"]["backend"], "foo-slash-prefix");
    assert_eq!(json["matched"]["route"]["source"]["kind"], "ingress");

    let e = table.explain(&RequestView::new("b.example.com", "/nope"));
    assert!(e.matched.is_none());
    assert!(e.reason.contains("no route matched"), "{}", e.reason);
}

#[test]
fn tables_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let shared = ingress_router::SharedTable::new(
        Table::new(rules(&[("a", "Host(`a`)", None)]), Vec::new()).unwrap(),
    );
    assert_send_sync(&shared);
    let old = shared.store(Table::new(rules(&[("b", "Host(`a`)", None)]), Vec::new()).unwrap());
    assert_eq!(
        old.route(&RequestView::new("a", "/"))
            .map(|m| m.backend.as_str()),
        Some("svc-a")
    );
    let handle = std::thread::spawn(move || {
        shared
            .load()
            .route(&RequestView::new("a", "/"))
            .map(|m| m.backend.clone())
    });
    assert_eq!(handle.join().unwrap().as_deref(), Some("svc-b"));
}

#[test]
fn duplicate_router_names_are_rejected() {
    let err = Table::new(
        rules(&[
            ("x", "Host(`a`)", None),
            ("y", "Host(`b`)", None),
            ("x", "Host(`c`)", None),
        ]),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "router `x`: duplicate router name");
    let err = FileRoute::new("bad", "Host(`a`) &&", None, ()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("router `bad`: rule `Host(`a`) &&`: column 13"),
        "{err}"
    );
}
