//! Differential test against Go's `encoding/json` with Traefik's own store types
//! (`tests/go/roundtrip.go`): for generated documents in the shape Traefik writes, and for
//! hand-written inputs with odd key casing, our read + write gives exactly Go's
//! `Unmarshal` + `MarshalIndent` bytes. Needs the `go` tool; without it the test says so and
//! checks nothing else.

use std::path::Path;
use std::process::Command;

use acme_store::{Account, AcmeDocument, Domain, Format, ResolverData, StoredCert, Value};
use base64::Engine as _;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9<>&\"\\\\ é\u{2028}\u{2029}\n\t\r\u{1}\u{8}\u{c}\u{1f}\u{7f}/=+.*-]{0,10}"
}

fn nonempty_text() -> impl Strategy<Value = String> {
    text().prop_map(|s| format!("n{s}"))
}

/// Non-empty bytes as Go's encoder writes them (standard base64 with padding).
fn bytes_b64() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 1..24)
        .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

/// A lego registration as Go writes it: `body` (fields in lego order, omitempty) then `uri`.
fn registration() -> impl Strategy<Value = Value> {
    (
        prop::option::of(nonempty_text()),
        prop::collection::vec(nonempty_text(), 0..3),
        any::<bool>(),
        prop::option::of(nonempty_text()),
    )
        .prop_map(|(status, contact, tos, uri)| {
            let mut body = Vec::new();
            if let Some(s) = status {
                body.push(("status".to_owned(), Value::String(s)));
            }
            if !contact.is_empty() {
                body.push((
                    "contact".to_owned(),
                    Value::Array(contact.into_iter().map(Value::String).collect()),
                ));
            }
            if tos {
                body.push(("termsOfServiceAgreed".to_owned(), Value::Bool(true)));
            }
            let mut reg = vec![("body".to_owned(), Value::Object(body))];
            if let Some(u) = uri {
                reg.push(("uri".to_owned(), Value::String(u)));
            }
            Value::Object(reg)
        })
}

/// `v5`: the lego v5 account, without `KeyType`.
fn account(v5: bool) -> impl Strategy<Value = Account> {
    (
        text(),
        prop::option::of(registration()),
        prop::option::of(bytes_b64()),
        text(),
    )
        .prop_map(
            move |(email, registration, private_key, key_type)| Account {
                email,
                registration,
                private_key,
                key_type: (!v5).then_some(key_type),
                extra: Vec::new(),
            },
        )
}

fn cert() -> impl Strategy<Value = StoredCert> {
    (
        text(),
        prop::collection::vec(text(), 0..3),
        prop::option::of(bytes_b64()),
        prop::option::of(bytes_b64()),
        text(),
    )
        .prop_map(|(main, sans, certificate, key, store)| StoredCert {
            domain: Domain {
                main,
                sans,
                extra: Vec::new(),
            },
            certificate,
            key,
            store,
            extra: Vec::new(),
        })
}

fn document(v5: bool) -> impl Strategy<Value = AcmeDocument> {
    let resolver = (
        prop::option::of(account(v5)),
        prop::collection::vec(cert(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(account, certificates, null)| ResolverData {
            certificates_null: certificates.is_empty() && null,
            account,
            certificates,
            extra: Vec::new(),
        });
    prop::collection::btree_map(text(), resolver, 0..3).prop_map(|resolvers| AcmeDocument {
        format: Format::V2,
        resolvers,
        ..AcmeDocument::default()
    })
}

/// Inputs Traefik did not write but Go reads (each account has a `KeyType`: the oracle uses the
/// Traefik <= 3.6 struct, which always writes it, while we keep its absence for >= 3.7.6): odd key casing (including the Kelvin sign, which
/// Go folds to `k`), duplicate keys (the last wins), `null`s, missing fields, empty strings.
const HAND_WRITTEN: &[&str] = &[
    r#"{"le":{"ACCOUNT":{"email":"a@b.c","REGISTRATION":{"BODY":{"STATUS":"valid","Contact":["mailto:a@b.c"]},"URI":"https://x/acct/1"},"privatekey":"AAEC","\u212Aeytype":"P256"},"certificates":[{"DOMAIN":{"MAIN":"a.com","Sans":["b.com"]},"Certificate":"AAEC","KEY":"AwQF","store":"default"}]}}"#,
    r#"{"le":{"Account":null,"Certificates":[{"domain":{},"Store":""}]},"other":{}}"#,
    r#"{"le":{"Account":{"Email":null,"Registration":null,"PrivateKey":"","KeyType":null},"Certificates":[]}}"#,
    r#"{"le":{"Certificates":[{"domain":{"main":"a.com"},"certificate":"","key":null,"Store":"default"}]}}"#,
    r#"{"le":{"Account":{"Email":"first","KeyType":""},"account":{"Email":"second","KeyType":"4096"}}}"#,
    r#"{"<&>\u2028":{"Account":{"Email":"\u003c\u0008\u000c\u001f\u007f\ud83d\ude00","KeyType":"EC256"}}}"#,
];

#[test]
fn reader_and_writer_agree_with_go_encoding_json() {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("SKIPPED: the `go` tool is not installed; Go differential test not run");
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    // Traefik <= 3.6.21 (with KeyType): generated documents plus hand-written odd inputs.
    let mut cases: Vec<(String, String)> = Vec::new(); // (input, our output)
    for _ in 0..150 {
        let ours = document(false)
            .new_tree(&mut runner)
            .unwrap()
            .current()
            .to_json()
            .unwrap();
        cases.push((ours.clone(), ours));
    }
    for input in HAND_WRITTEN {
        let ours = AcmeDocument::parse(input.as_bytes())
            .unwrap()
            .to_json()
            .unwrap();
        cases.push(((*input).to_owned(), ours));
    }
    compare_with_go(&cases, false);
    // Traefik >= 3.7.6 (lego v5, no KeyType).
    let v5: Vec<(String, String)> = (0..50)
        .map(|_| {
            let ours = document(true)
                .new_tree(&mut runner)
                .unwrap()
                .current()
                .to_json()
                .unwrap();
            (ours.clone(), ours)
        })
        .collect();
    compare_with_go(&v5, true);
}

fn compare_with_go(cases: &[(String, String)], v5: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (input, _)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("case{i}.json"));
        std::fs::write(&p, input).unwrap();
        files.push(p);
    }
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/roundtrip.go");
    let mut cmd = Command::new("go");
    cmd.arg("run").arg(&program);
    if v5 {
        cmd.arg("-v5");
    }
    let out = cmd
        .args(&files)
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, (input, ours)) in cases.iter().enumerate() {
        let go = std::fs::read_to_string(files[i].with_extension("json.go")).unwrap();
        assert_eq!(ours, &go, "case {i} (v5: {v5}), input:\n{input}");
    }
}
