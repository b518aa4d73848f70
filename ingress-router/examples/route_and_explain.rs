//! Build a table from an Ingress manifest plus two Traefik-rule routers, route a few requests,
//! hot-swap the table, and print one explanation as JSON.
//!
//! Run with `cargo run -p ingress-router --example route_and_explain`.

use ingress_router::ingress::{parse_manifests, routes_from_all};
use ingress_router::{RequestView, SharedTable, Table};

const MANIFEST: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: prod, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  defaultBackend: {service: {name: not-found-page, port: {number: 80}}}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /api, pathType: Exact, backend: {service: {name: api-index, port: {name: http}}}}
  - host: "*.example.com"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: tenants, port: {number: 80}}}}
"#;

fn build(maintenance: bool) -> Result<Table<String>, Box<dyn std::error::Error>> {
    let ingresses = parse_manifests(MANIFEST, "inline manifest")?;
    let (routes, warnings) = routes_from_all(&ingresses);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut builder = Table::builder();
    builder.ingress_routes(routes.into_iter().map(|r| r.map_backend(|b| b.to_string())));
    builder.rule(
        "status",
        "Host(`status.example.com`) || PathPrefix(`/.status`)",
        None,
        "status-page".into(),
    )?;
    if maintenance {
        builder.rule(
            "maintenance",
            "Host(`shop.example.com`) && !ClientIP(`10.0.0.0/8`)",
            Some(10_000),
            "maintenance".into(),
        )?;
    }
    Ok(builder.build()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedTable::new(build(false)?);
    let requests = [
        ("shop.example.com", "/api"),
        ("SHOP.example.com:443", "/api/v1/orders"),
        ("shop.example.com", "/apiary"),
        ("acme.example.com", "/"),
        ("a.b.example.com", "/"),
        ("status.example.com", "/"),
    ];
    for (host, path) in requests {
        let table = shared.load();
        let m = table.route(&RequestView::new(host, path));
        match m {
            Some(m) => println!("{host}{path} -> {} ({})", m.backend, m.route.source),
            None => println!("{host}{path} -> 404"),
        }
    }

    // A reload: build the new table off the hot path, then swap it in.
    shared.store(build(true)?);
    let table = shared.load();
    let explanation = table.explain(&RequestView::new("shop.example.com", "/api"));
    println!("{}", serde_json::to_string_pretty(&explanation)?);
    Ok(())
}
