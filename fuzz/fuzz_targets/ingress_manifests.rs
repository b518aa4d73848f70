//! `ingress_router::ingress::parse_manifests` on arbitrary text (YAML or JSON, multi-document).
//! Properties: no panic; the routes of whatever parses compile (or fail cleanly), and the
//! compiled `Table` agrees with the naive `Reference` on requests for the manifests' own hosts
//! and paths.
#![no_main]

use ingress_router::ingress::{parse_manifests, routes_from_all};
use ingress_router::reference::Reference;
use ingress_router::{IngressMatch, RequestView, TableBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ingresses) = parse_manifests(text, "fuzz") else {
        return;
    };
    let (routes, _warnings) = routes_from_all(&ingresses);
    let mut hosts = vec!["example.com".to_owned()];
    let mut paths = vec!["/".to_owned()];
    for r in &routes {
        if let IngressMatch::Path { host, path, .. } = &r.matcher {
            if let Some(h) = host {
                hosts.push(h.replace('*', "x"));
            }
            paths.push(path.clone());
        }
    }
    let mut builder = TableBuilder::new();
    builder.ingress_routes(routes.clone());
    let Ok(table) = builder.build() else {
        return;
    };
    let reference = Reference::new(Vec::new(), routes).expect("the table built");
    hosts.truncate(6);
    paths.truncate(6);
    for host in &hosts {
        for path in &paths {
            let req = RequestView::new(host, path);
            let got = table.route(&req).map(|m| (m.route, m.backend));
            let want = reference.route(&req).map(|m| (m.route, m.backend));
            assert_eq!(got, want, "table and reference disagree on {host} {path}");
        }
    }
});
