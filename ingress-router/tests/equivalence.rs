//! Property tests: the compiled table routes exactly like the naive reference (sort by
//! precedence, scan), `explain` agrees with both, and rules print and parse back unchanged.

use std::net::{IpAddr, Ipv4Addr};

use http::HeaderMap;
use ingress_router::reference::Reference;
use ingress_router::rule::{Matcher, Rule};
use ingress_router::{
    FileRoute, IngressMatch, IngressOrigin, IngressRoute, PathType, RequestView, Table,
};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;

const HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "x.b.a.com",
    "c.org",
    "A.com",
    "b.a.com.",
];
const RULE_HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "*.a.com",
    "*.b.a.com",
    "c.org",
    "*",
    "C.ORG",
];
const PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/a/bc", "/b", "/b/a", "//", "/a//b", "/A",
];
const REQ_PATHS: &[&str] = &[
    "", "/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/abc", "/a/bc", "/b", "/b/a/x", "//", "/a//b",
    "/A", "x", "/a?q",
];

fn leaf() -> impl Strategy<Value = Rule> {
    prop_oneof![
        4 => proptest::sample::select(RULE_HOSTS).prop_map(|h| Matcher::Host(h.into())),
        3 => proptest::sample::select(PATHS).prop_map(|p| Matcher::PathPrefix(p.into())),
        2 => proptest::sample::select(PATHS).prop_map(|p| Matcher::Path(p.into())),
        1 => proptest::sample::select(&["GET", "post"][..]).prop_map(|m| Matcher::Method(m.into())),
        1 => Just(Matcher::Header("x-a".into(), "1".into())),
        1 => Just(Matcher::HeaderRegexp("x-a".into(), "^[0-9]+$".into())),
        1 => Just(Matcher::Query("k".into(), Some("v w".into()))),
        1 => Just(Matcher::Query("k".into(), None)),
        1 => Just(Matcher::ClientIP("10.0.0.0/8".into())),
        1 => Just(Matcher::PathRegexp("^/a/[a-z]+$".into())),
        1 => Just(Matcher::HostRegexp("^[a-z]\\.a\\.com$".into())),
    ]
    .prop_map(Rule::Match)
}

fn rule() -> impl Strategy<Value = Rule> {
    leaf().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| Rule::And(Box::new(a), Box::new(b))),
            2 => (inner.clone(), inner.clone()).prop_map(|(a, b)| Rule::Or(Box::new(a), Box::new(b))),
            1 => inner.prop_map(|a| Rule::Not(Box::new(a))),
        ]
    })
}

fn file_routes() -> impl Strategy<Value = Vec<FileRoute<u32>>> {
    proptest::collection::vec((rule(), proptest::option::of(-2i64..4)), 0..8).prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, (r, prio))| {
                // Names in an order unrelated to insertion, to exercise the tie-break.
                FileRoute::new(format!("r{}", (i * 7) % 11), &r.to_string(), prio, i as u32)
                    .unwrap()
            })
            .collect()
    })
}

fn ingress_routes() -> impl Strategy<Value = Vec<IngressRoute<u32>>> {
    let one = (
        0usize..4,
        proptest::option::of(proptest::sample::select(
            &["a.com", "b.a.com", "*.a.com", "*.b.a.com", "A.com."][..],
        )),
        proptest::sample::select(
            &[
                PathType::Exact,
                PathType::Prefix,
                PathType::ImplementationSpecific,
            ][..],
        ),
        proptest::sample::select(PATHS),
        any::<bool>(),
    );
    proptest::collection::vec(one, 0..14).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (ing, host, path_type, path, default))| {
                let created = [Some(300), Some(100), None, Some(100)][ing]
                    .map(|s| Timestamp::from_second(s).unwrap());
                let origin = IngressOrigin {
                    namespace: ["ns2", "ns1", "ns1", "ns0"][ing].into(),
                    name: format!("ing{ing}"),
                    created,
                };
                let matcher = if default && i % 3 == 0 {
                    IngressMatch::DefaultBackend
                } else {
                    IngressMatch::Path {
                        rule_index: i % 2,
                        path_index: i,
                        host: host.map(str::to_owned),
                        path_type,
                        path: path.into(),
                    }
                };
                IngressRoute {
                    origin,
                    matcher,
                    backend: 1000 + i as u32,
                }
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
struct Req {
    host: String,
    path: String,
    method: &'static str,
    header: Option<&'static str>,
    query: &'static str,
    ip: Option<IpAddr>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::sample::select(HOSTS),
        proptest::option::of(8000u16..8002),
        proptest::sample::select(REQ_PATHS),
        proptest::sample::select(&["GET", "POST", "put"][..]),
        proptest::option::of(proptest::sample::select(&["1", "12", "x"][..])),
        proptest::sample::select(&["", "k=v+w", "k", "a=1&k=v%20w", "k=x"][..]),
        proptest::option::of(proptest::sample::select(
            &[[10, 1, 2, 3], [192, 0, 2, 1]][..],
        )),
    )
        .prop_map(|(host, port, path, method, header, query, ip)| Req {
            host: match port {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            },
            path: path.to_owned(),
            method,
            header,
            query,
            ip: ip.map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        })
}

fn check(
    file: Vec<FileRoute<u32>>,
    ingress: Vec<IngressRoute<u32>>,
    reqs: &[Req],
) -> Result<(), TestCaseError> {
    let fail = |e: ingress_router::RouterError| TestCaseError::fail(e.to_string());
    let table = Table::new(file.clone(), ingress.clone()).map_err(fail)?;
    let reference = Reference::new(file, ingress).map_err(fail)?;
    for r in reqs {
        let mut headers = HeaderMap::new();
        if let Some(v) = r.header {
            headers.insert("x-a", http::HeaderValue::from_static(v));
        }
        let mut view = RequestView::new(&r.host, &r.path)
            .with_method(r.method)
            .with_headers(&headers);
        if !r.query.is_empty() {
            view = view.with_query(r.query);
        }
        if let Some(ip) = r.ip {
            view = view.with_client_ip(ip);
        }
        let got = table.route(&view).map(|m| (*m.backend, m.route.clone()));
        let want = reference
            .route(&view)
            .map(|m| (*m.backend, m.route.clone()));
        prop_assert_eq!(&got, &want, "request {:?}", r);
        let explained = table.explain(&view);
        let explained = explained.matched.map(|m| (*m.backend, m.route.clone()));
        prop_assert_eq!(&explained, &want, "explain, request {:?}", r);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn compiled_matches_reference(
        file in file_routes(),
        ingress in ingress_routes(),
        reqs in proptest::collection::vec(request(), 1..24),
    ) {
        check(file, ingress, &reqs)?;
    }

    #[test]
    fn ingress_only_matches_reference(
        ingress in ingress_routes(),
        reqs in proptest::collection::vec(request(), 1..24),
    ) {
        check(Vec::new(), ingress, &reqs)?;
    }
}

/// Segments for the flattened-trie cases: many short siblings (more than the 8 a node scans
/// linearly), lengths around the 8-byte inline limit, a long one and the empty segment.
const SEGMENTS: &[&str] = &[
    "s0",
    "s1",
    "s2",
    "s3",
    "s4",
    "s5",
    "s6",
    "s7",
    "s8",
    "s9",
    "s10",
    "s11",
    "abcdefgh",
    "abcdefgi",
    "abcdefghi",
    "abcdefghj",
    "a-segment-longer-than-eight-bytes",
    "",
];
/// Hosts around the 24-byte inline key limit of the host table.
const LONG_HOSTS: &[&str] = &[
    "abcdefghijklmnop.example",
    "abcdefghijklmnoq.example",
    "abcdefghijklmnop.example.org",
    "x.abcdefghijklmnop.example",
    "a-host-name-well-over-twenty-four-bytes.example.com",
    "b.a-host-name-well-over-twenty-four-bytes.example.com",
];
const LONG_RULE_HOSTS: &[&str] = &[
    "abcdefghijklmnop.example",
    "abcdefghijklmnop.example.org",
    "*.abcdefghijklmnop.example",
    "a-host-name-well-over-twenty-four-bytes.example.com",
    "*.a-host-name-well-over-twenty-four-bytes.example.com",
];

fn seg_path(max: usize) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..max),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && !p.ends_with('/') {
                p.push('/');
            }
            p
        })
}

fn wide_ingress_routes() -> impl Strategy<Value = Vec<IngressRoute<u32>>> {
    let one = (
        proptest::option::of(proptest::sample::select(LONG_RULE_HOSTS)),
        proptest::sample::select(&[PathType::Exact, PathType::Prefix][..]),
        seg_path(4),
    );
    proptest::collection::vec(one, 0..48).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (host, path_type, path))| IngressRoute {
                origin: IngressOrigin {
                    namespace: "ns".into(),
                    name: format!("ing{}", i % 3),
                    created: None,
                },
                matcher: IngressMatch::Path {
                    rule_index: 0,
                    path_index: i,
                    host: host.map(str::to_owned),
                    path_type,
                    path,
                },
                backend: i as u32,
            })
            .collect()
    })
}

/// Traefik rules over the same hosts and paths: buckets with more path conditions than the
/// small-bucket scan takes, paths longer than 8 bytes, exact and prefix conditions mixed.
fn wide_file_routes() -> impl Strategy<Value = Vec<FileRoute<u32>>> {
    let one = (
        proptest::option::of(proptest::sample::select(&LONG_RULE_HOSTS[..3])),
        proptest::option::of(any::<bool>()),
        seg_path(3),
        proptest::option::of(1i64..4),
    );
    proptest::collection::vec(one, 0..64).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (host, path_kind, path, prio))| {
                let host = host.map(|h| format!("Host(`{h}`)"));
                let path = path_kind.map(|exact| {
                    let m = if exact { "Path" } else { "PathPrefix" };
                    format!("{m}(`{path}`)")
                });
                let rule = match (host, path) {
                    (Some(h), Some(p)) => format!("{h} && {p}"),
                    (Some(h), None) => h,
                    (None, Some(p)) => p,
                    (None, None) => "PathPrefix(`/`)".to_owned(),
                };
                FileRoute::new(format!("w{i}"), &rule, prio, i as u32).unwrap()
            })
            .collect()
    })
}

fn wide_request() -> impl Strategy<Value = Req> {
    (proptest::sample::select(LONG_HOSTS), seg_path(6)).prop_map(|(host, path)| Req {
        host: host.to_owned(),
        path,
        method: "GET",
        header: None,
        query: "",
        ip: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The flattened trie's corner cases: nodes with more children than it scans linearly,
    /// segments and hosts on both sides of the inline-storage limits, empty segments.
    #[test]
    fn wide_and_long_tries_match_reference(
        ingress in wide_ingress_routes(),
        reqs in proptest::collection::vec(wide_request(), 1..32),
    ) {
        check(Vec::new(), ingress, &reqs)?;
    }

    /// The file-rule index's small (contiguous, rank-ordered) and big (probe list) buckets.
    #[test]
    fn wide_file_rules_match_reference(
        file in wide_file_routes(),
        ingress in wide_ingress_routes(),
        reqs in proptest::collection::vec(wide_request(), 1..32),
    ) {
        check(file, ingress, &reqs)?;
    }
}

fn value() -> impl Strategy<Value = String> {
    "[a-z`\"\\\\ é/.*-]{0,8}"
}

fn any_rule() -> impl Strategy<Value = Rule> {
    let leaf = prop_oneof![
        "[a-z]{1,6}(\\.[a-z]{1,4}){0,2}".prop_map(Matcher::Host),
        Just(Matcher::Host("*.x.org".into())),
        value().prop_map(|v| Matcher::Path(format!("/{v}"))),
        value().prop_map(|v| Matcher::PathPrefix(format!("/{v}"))),
        proptest::sample::select(&["^/a$", "a`b", "\\d+\"", "[\\\\/]"][..])
            .prop_map(|v| Matcher::PathRegexp(v.into())),
        proptest::sample::select(&["^a\\.b$", "x"][..]).prop_map(|v| Matcher::HostRegexp(v.into())),
        "[A-Z]{1,7}".prop_map(Matcher::Method),
        ("[a-z][a-z0-9-]{0,5}", value()).prop_map(|(k, v)| Matcher::Header(k, v)),
        (
            "[a-z][a-z0-9-]{0,5}",
            proptest::sample::select(&["a|b", "`x`"][..])
        )
            .prop_map(|(k, v)| Matcher::HeaderRegexp(k, v.into())),
        ("[a-z`]{1,5}", proptest::option::of(value())).prop_map(|(k, v)| Matcher::Query(k, v)),
        proptest::sample::select(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"][..])
            .prop_map(|v| Matcher::ClientIP(v.into())),
    ]
    .prop_map(Rule::Match);
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Rule::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Rule::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Rule::Not(Box::new(a))),
        ]
    })
}

proptest! {
    #[test]
    fn rule_print_parse_identity(rule in any_rule()) {
        let text = rule.to_string();
        let parsed = Rule::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&parsed, &rule, "{}", text);
        prop_assert_eq!(parsed.to_string(), text);
    }
}
