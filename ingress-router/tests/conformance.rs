//! The SIG-Network Ingress conformance scenarios (`path_rules`, `host_rules`,
//! `default_backend`), read straight from the verbatim `.feature` files in `tests/conformance/`
//! and run as a table against the compiled table, the reference matcher and `explain`.

use std::path::PathBuf;

use ingress_router::ingress::{ServiceBackend, parse_manifests, routes_from_all};
use ingress_router::reference::Reference;
use ingress_router::{RequestView, Table};

/// One `When I send ... Then ...` case.
#[derive(Debug)]
struct Case {
    scenario: String,
    method: String,
    url: String,
    /// `None` = 404 expected.
    service: Option<String>,
}

struct Feature {
    manifest: String,
    cases: Vec<Case>,
}

fn read(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "conformance", name]
        .iter()
        .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first `"""` doc string of the text, dedented to the opening quotes.
fn doc_string(text: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != "\"\"\"");
    let open = lines.next().expect("a doc string");
    let indent = open.len() - open.trim_start().len();
    lines
        .take_while(|l| l.trim() != "\"\"\"")
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim_start()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Values between double quotes on a line.
fn quoted(line: &str) -> Vec<String> {
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn scenarios(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n  Scenario").skip(1) {
        let title = block.lines().next().unwrap_or_default().trim().to_owned();
        let mut method = String::new();
        let mut url = String::new();
        let mut status = 0;
        let mut service = None;
        for line in block.lines().map(str::trim) {
            if line.starts_with("When I send a") {
                method = quoted(line)[0].clone();
                // `to "http://h/p"` or, in outlines, `to http://"<host>"/"<path>"`.
                url = line
                    .split("request to ")
                    .nth(1)
                    .expect("url")
                    .replace('"', "");
            } else if let Some(code) = line.strip_prefix("Then the response status-code must be ") {
                status = code.trim().parse().expect("status code");
            } else if let Some(code) = line.strip_prefix("And the response status-code must be ") {
                status = code.trim().parse().expect("status code");
            } else if line.contains("the response must be served by the") {
                service = Some(quoted(line)[0].clone());
            }
        }
        if let Some(examples) = block.split("Examples:").nth(1) {
            // Scenario Outline: substitute every row of the Examples table.
            let rows: Vec<Vec<String>> = examples
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with('|'))
                .map(|l| {
                    l.trim_matches('|')
                        .split('|')
                        .map(|c| c.trim().to_owned())
                        .collect()
                })
                .collect();
            let (header, rows) = rows.split_first().expect("examples header");
            for row in rows {
                let subst = |s: &str| {
                    header.iter().zip(row).fold(s.to_owned(), |acc, (k, v)| {
                        acc.replace(&format!("<{k}>"), v)
                    })
                };
                cases.push(Case {
                    scenario: format!("{title} {row:?}"),
                    method: subst(&method),
                    url: subst(&url),
                    service: service.as_deref().map(subst),
                });
            }
        } else {
            assert!(status == 200 || status == 404, "{title}: status {status}");
            assert_eq!(status == 200, service.is_some(), "{title}");
            cases.push(Case {
                scenario: title,
                method,
                url,
                service,
            });
        }
    }
    cases
}

fn feature(name: &str) -> Feature {
    let text = read(name);
    let background = text.split("\n  Scenario").next().expect("background");
    let mut manifest = doc_string(background);
    if let Some(line) = background
        .lines()
        .find(|l| l.contains("Given an Ingress resource named"))
    {
        // `default_backend.feature` gives only the spec.
        let name = &quoted(line)[0];
        let spec: String = manifest.lines().map(|l| format!("  {l}\n")).collect();
        manifest = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\nspec:\n{spec}"
        );
    }
    Feature {
        manifest,
        cases: scenarios(&text),
    }
}

/// Splits `http://host/path` (the harness's URL) into host and path.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

fn run(name: &str, expected_cases: usize) {
    let f = feature(name);
    assert_eq!(
        f.cases.len(),
        expected_cases,
        "{name}: scenarios found: {:#?}",
        f.cases
    );
    let ingresses = parse_manifests(&f.manifest, name).expect("manifest parses");
    assert_eq!(ingresses.len(), 1);
    let (routes, warnings) = routes_from_all(&ingresses);
    assert!(warnings.is_empty(), "{warnings:?}");
    let table: Table<ServiceBackend> = Table::new(Vec::new(), routes.clone()).expect("table");
    assert!(table.warnings().is_empty(), "{:?}", table.warnings());
    let reference = Reference::new(Vec::new(), routes).expect("reference");
    let mut failures = Vec::new();
    for case in &f.cases {
        let (host, path) = split_url(&case.url);
        assert!(path.starts_with('/') && !case.url.contains('<'), "{case:?}");
        let req = RequestView::new(host, path).with_method(&case.method);
        let got = table.route(&req).map(|m| m.backend.service.clone());
        let want_ref = reference.route(&req).map(|m| m.backend.service.clone());
        let explained = table
            .explain(&req)
            .matched
            .map(|m| m.backend.service.clone());
        if got != case.service || want_ref != case.service || explained != case.service {
            failures.push(format!(
                "{}: {} {} -> table {got:?}, reference {want_ref:?}, explain {explained:?}, want {:?}",
                case.scenario, case.method, case.url, case.service
            ));
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn path_rules_feature() {
    run("path_rules.feature", 16);
}

#[test]
fn host_rules_feature() {
    run("host_rules.feature", 6);
}

#[test]
fn default_backend_feature() {
    run("default_backend.feature", 6);
}
