//! `ingress_router::rule::Rule::parse` on arbitrary text. Properties: a parsed rule's `Display`
//! re-parses to an equal `Rule` and prints identically again; and the compiled `Table` agrees
//! with the naive `Reference` matcher on requests built from the rule's own values.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use ingress_router::http::{HeaderMap, HeaderName, HeaderValue};
use ingress_router::reference::Reference;
use ingress_router::rule::{Matcher, Rule};
use ingress_router::{FileRoute, RequestView, TableBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rule) = Rule::parse(text) else {
        return;
    };
    let printed = rule.to_string();
    let again = Rule::parse(&printed)
        .unwrap_or_else(|e| panic!("Display output does not parse: {e}\n{printed}"));
    assert_eq!(again, rule, "Display does not round-trip: {printed}");
    assert_eq!(again.to_string(), printed, "Display is not canonical");

    differential(text, &rule);
});

/// The indexed table and the linear reference must pick the same route.
fn differential(text: &str, rule: &Rule) {
    let route = FileRoute::new("fuzz", text, None, 1u8).expect("parsed above");
    let mut builder = TableBuilder::new();
    builder.file_route(route.clone());
    let Ok(table) = builder.build() else {
        return;
    };
    let reference = Reference::new(vec![route], Vec::new()).expect("the table built");

    let mut hosts = vec!["example.com".to_owned()];
    let mut paths = vec!["/".to_owned()];
    let mut method = String::from("GET");
    let mut headers = HeaderMap::new();
    let mut query = String::new();
    let mut ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    rule.for_each_matcher(&mut |m| match m {
        Matcher::Host(h) => hosts.push(h.replace('*', "x")),
        Matcher::Path(p) | Matcher::PathPrefix(p) => paths.push(p.clone()),
        Matcher::Method(m) => method.clone_from(m),
        Matcher::Header(k, v) => {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.append(k, v);
            }
        }
        Matcher::Query(k, v) => {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(k);
            if let Some(v) = v {
                query.push('=');
                query.push_str(v);
            }
        }
        Matcher::ClientIP(v) => {
            if let Some(a) = v.split('/').next().and_then(|a| a.parse().ok()) {
                ip = a;
            }
        }
        _ => {}
    });
    hosts.truncate(4);
    paths.truncate(4);
    for host in &hosts {
        for path in &paths {
            let plain = RequestView::new(host, path);
            let full = RequestView::new(host, path)
                .with_method(&method)
                .with_headers(&headers)
                .with_query(&query)
                .with_client_ip(ip);
            for req in [plain, full] {
                let got = table.route(&req).map(|m| *m.backend);
                let want = reference.route(&req).map(|m| *m.backend);
                assert_eq!(
                    got, want,
                    "table and reference disagree on {host} {path} for {text}"
                );
            }
        }
    }
}
