//! `fairway route explain`: real binary, real files, JSON output and exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const CONFIG: &str = r#"
[entrypoints.web]
address = "127.0.0.1:8080"

[routers.api]
rule = "Host(`example.com`) && PathPrefix(`/api`)"
service = "api"

[routers.web]
rule = "Host(`example.com`)"
service = "web"

[routers.canary]
rule = "Host(`example.com`) && Header(`X-Canary`, `1`)"
service = "canary"
priority = 1000

[services.api]
load_balancer = "round_robin"
"#;

const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: host-rules, namespace: shop}
spec:
  rules:
  - host: "*.foo.com"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wildcard-foo-com, port: {number: 8080}}}}
  - host: foo.bar.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: foo-bar-com, port: {name: http}}}}
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn fairway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fairway"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn toml_routers_json_output_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, "fairway.toml", CONFIG);
    let cfg = cfg.to_str().unwrap();

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        cfg,
        "--url",
        "http://EXAMPLE.com:8080/api/x",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["matched"], true);
    assert_eq!(v["backend"]["service"], "api");
    assert_eq!(v["backend"]["port"], Value::Null);
    assert_eq!(v["source"]["kind"], "file");
    assert_eq!(v["source"]["router"], "api");
    assert_eq!(v["rule"], "Host(`example.com`) && PathPrefix(`/api`)");
    assert!(v["reason"].as_str().unwrap().contains("priority"));
    assert!(
        v["losers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["route"]["source"]["router"] == "web")
    );

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        cfg,
        "--url",
        "http://example.com/",
        "--header",
        "X-Canary: 1",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["backend"]["service"], "canary");

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        cfg,
        "--url",
        "http://other.com/",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["matched"], false);
    assert_eq!(v["backend"], Value::Null);

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        cfg,
        "--url",
        "http://example.com/",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("matched: service web"));
}

#[test]
fn ingress_manifests_with_named_ports() {
    let dir = tempfile::tempdir().unwrap();
    let ing = write(&dir, "ingress.yaml", INGRESS);
    let ing = ing.to_str().unwrap();
    let out = fairway(&[
        "route",
        "explain",
        "--config",
        ing,
        "--url",
        "https://foo.bar.com",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(
        v["backend"],
        serde_json::json!({"service": "foo-bar-com", "port": "http", "namespace": "shop"})
    );
    assert_eq!(v["source"]["kind"], "ingress");
    assert_eq!(v["source"]["name"], "host-rules");
    assert_eq!(v["source"]["rule_index"], 1);

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        ing,
        "--url",
        "http://bar.foo.com/x",
        "--output",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(v["backend"]["port"], 8080);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("wildcard `*.foo.com`"),
        "{v}"
    );

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        ing,
        "--url",
        "http://baz.bar.foo.com/",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.toml",
        "[routers.x]\nrule = \"Host('a')\"\nservice = \"s\"\n",
    );
    let out = fairway(&[
        "route",
        "explain",
        "--config",
        bad.to_str().unwrap(),
        "--url",
        "http://a/",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("column 6"),
        "{err}"
    );

    let out = fairway(&[
        "route",
        "explain",
        "--config",
        "/nonexistent/x.yaml",
        "--url",
        "http://a/",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml"));

    let yaml = write(&dir, "broken.yaml", "kind: [\n");
    let out = fairway(&[
        "route",
        "explain",
        "--config",
        yaml.to_str().unwrap(),
        "--url",
        "http://a/",
    ]);
    assert_eq!(out.status.code(), Some(2));

    let ok = write(&dir, "ok.toml", CONFIG);
    let out = fairway(&[
        "route",
        "explain",
        "--config",
        ok.to_str().unwrap(),
        "--url",
        "http://a/",
        "--header",
        "nocolon",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
