//! Property tests: document round trips, writer stability, the JSON layer against serde_json,
//! and the SNI index against a linear-scan reference.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acme_store::format::json;
use acme_store::{
    Account, AcmeDocument, Domain, Format, ResolverData, SniIndex, StoredCert, Value,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9<>&\"\\\\ é\u{2028}\u{2029}\n\t\u{1}\u{7f}/=+.*-]{0,10}"
}

fn extra_key() -> impl Strategy<Value = String> {
    // Prefixed so it never folds onto a known field name.
    text().prop_map(|s| format!("x-{s}"))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (any::<i32>(), 0u32..1000).prop_map(|(i, f)| format!("{i}.{f}")),
        Just("1e-7".to_owned()),
        Just("-0".to_owned()),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4).prop_map(Value::Object),
        ]
    })
}

fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec((extra_key(), value()), 0..2)
}

fn nonempty() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/]{1,12}={0,2}"
}

/// A registration in the canonical shape the reader produces (lego's fields, `omitempty`,
/// `body` always present), plus unknown members.
fn registration() -> impl Strategy<Value = Value> {
    (
        prop::option::of("[a-z]{1,8}"),
        prop::collection::vec(text(), 0..3),
        any::<bool>(),
        prop::option::of(value()),
        prop::option::of("[a-z:/.]{1,12}"),
        extras(),
        extras(),
    )
        .prop_map(|(status, contact, tos, eab, uri, body_extra, extra)| {
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
            if let Some(v) = eab {
                body.push(("externalAccountBinding".to_owned(), v));
            }
            body.extend(body_extra);
            let mut reg = vec![("body".to_owned(), Value::Object(body))];
            if let Some(u) = uri {
                reg.push(("uri".to_owned(), Value::String(u)));
            }
            reg.extend(extra);
            Value::Object(reg)
        })
}

fn account() -> impl Strategy<Value = Account> {
    (
        text(),
        prop::option::of(registration()),
        prop::option::of(prop_oneof![nonempty(), Just(String::new())]),
        prop::option::of(text()),
        extras(),
    )
        .prop_map(
            |(email, registration, private_key, key_type, extra)| Account {
                email,
                registration,
                private_key,
                key_type,
                extra,
            },
        )
}

fn cert() -> impl Strategy<Value = StoredCert> {
    (
        text(),
        prop::collection::vec(text(), 0..3),
        extras(),
        prop::option::of(nonempty()),
        prop::option::of(nonempty()),
        text(),
        extras(),
    )
        .prop_map(
            |(main, sans, dextra, certificate, key, store, extra)| StoredCert {
                domain: Domain {
                    main,
                    sans,
                    extra: dextra,
                },
                certificate,
                key,
                store,
                extra,
            },
        )
}

fn resolver() -> impl Strategy<Value = ResolverData> {
    (
        prop::option::of(account()),
        prop::collection::vec(cert(), 0..3),
        any::<bool>(),
        extras(),
    )
        .prop_map(|(account, certificates, null, extra)| ResolverData {
            certificates_null: certificates.is_empty() && null,
            account,
            certificates,
            extra,
        })
}

fn v2_document() -> impl Strategy<Value = AcmeDocument> {
    prop::collection::btree_map(text(), resolver(), 0..4).prop_map(|resolvers| AcmeDocument {
        format: Format::V2,
        resolvers,
        ..AcmeDocument::default()
    })
}

/// A v1 document whose certificates have no store (v1 has none) and whose domains have no
/// unknown fields at the domain level in `SANs` position.
fn v1_document() -> impl Strategy<Value = AcmeDocument> {
    (resolver(), value(), value(), extras()).prop_map(|(mut data, http, tls, extra)| {
        for c in &mut data.certificates {
            c.store.clear();
        }
        // v1 writes `"SANs": null` and `"Certificate": null`, which read back as empty.
        let mut doc = AcmeDocument {
            format: Format::V1,
            ..AcmeDocument::default()
        };
        doc.v1.http_challenges = http;
        doc.v1.tls_challenges = tls;
        doc.v1.extra = extra;
        data.extra.clear();
        doc.resolvers
            .insert(acme_store::V1_RESOLVER.to_owned(), data);
        doc
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v2_write_then_read_is_equal(doc in v2_document()) {
        let text = doc.to_json().unwrap();
        prop_assert!(!text.ends_with('\n'));
        let back = AcmeDocument::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(&back, &doc);
        // Stable: writing what was read gives the same bytes.
        prop_assert_eq!(back.to_json().unwrap(), text);
    }

    #[test]
    fn v1_write_then_read_is_equal(doc in v1_document()) {
        let text = doc.to_json().unwrap();
        let back = AcmeDocument::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(&back, &doc);
        prop_assert_eq!(back.to_json().unwrap(), text);
    }

    #[test]
    fn json_layer_matches_serde_json(v in value()) {
        let mut ours = String::new();
        json::write_go(&v, &mut ours);
        // serde_json agrees on what the text means...
        let reference: serde_json::Value = serde_json::from_str(&ours).unwrap();
        let via_serde = serde_json::to_string(&reference).unwrap();
        // ...and our parser reads serde_json's compact rendering back to an equal value
        // (modulo number spelling, which serde_json may normalise).
        let back = json::parse(&via_serde).unwrap();
        let mut again = String::new();
        json::write_go(&back, &mut again);
        let a: serde_json::Value = serde_json::from_str(&again).unwrap();
        prop_assert_eq!(a, reference);
        // And our parser reads our own output exactly.
        prop_assert_eq!(json::parse(&ours).unwrap(), v);
    }

    #[test]
    fn go_strings_never_contain_html_specials(s in text()) {
        let mut out = String::new();
        json::write_go_string(&s, &mut out);
        let specials = ['<', '>', '&', '\u{2028}', '\u{2029}'];
        prop_assert!(!out.contains(specials), "{}", out);
        prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
    }

    #[test]
    fn parser_accepts_exactly_what_serde_json_accepts(s in "[\\[\\]{}:,\"a0-9.eE+\\- \n]{0,24}|(true|false|null|[0-9]|-|\\.|e|,|\\[|\\]|\\{|\\}|:|\"a\"| ){0,12}") {
        // No backslashes: lone surrogate escapes are where Go (and we) are laxer than serde_json.
        let ours = json::parse(&s).is_ok();
        let reference = serde_json::from_str::<serde_json::Value>(&s).is_ok();
        prop_assert_eq!(ours, reference, "input {:?}", s);
    }

    #[test]
    fn garbage_never_panics(s in "[\\[\\]{}:,\"a0-9.eE+\\- \n\\\\u]{0,40}") {
        let _ = AcmeDocument::parse(s.as_bytes());
    }
}

// ---- SNI index against a reference ----

#[derive(Clone, Debug)]
struct RefEntry {
    names: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
}

fn name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![Just("a"), Just("B"), Just("c"), Just("*")],
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(labels, dot)| format!("{}{}", labels.join("."), if dot { "." } else { "" }))
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn reference_lookup(entries: &[RefEntry], q: &str, now: SystemTime) -> Option<usize> {
    let norm = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let q = norm(q);
    if q.is_empty() {
        return None;
    }
    let wildcard_target = q
        .split_once('.')
        .filter(|(f, r)| !f.is_empty() && !r.is_empty())
        .map(|(_, r)| format!("*.{r}"));
    let matching = |want: &str| -> Vec<usize> {
        (0..entries.len())
            .filter(|&i| entries[i].names.iter().any(|n| norm(n) == want))
            .collect()
    };
    let exact = matching(&q);
    let wild = wildcard_target.map(|w| matching(&w)).unwrap_or_default();
    let best = |ids: &[usize], only_valid: bool| -> Option<usize> {
        let mut best: Option<usize> = None;
        for &i in ids {
            let e = &entries[i];
            if only_valid && !(e.not_before <= now && now <= e.not_after) {
                continue;
            }
            if best.is_none_or(|b| e.not_after > entries[b].not_after) {
                best = Some(i);
            }
        }
        best
    };
    best(&exact, true)
        .or_else(|| best(&wild, true))
        .or_else(|| best(&exact, false))
        .or_else(|| best(&wild, false))
}

/// Exact matches if any, else one-label wildcard matches; latest `notAfter` first, ties in
/// insertion order.
fn reference_candidates(entries: &[RefEntry], q: &str) -> Vec<usize> {
    let norm = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let q = norm(q);
    if q.is_empty() {
        return Vec::new();
    }
    let matching = |want: &str| -> Vec<usize> {
        let mut ids: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].names.iter().any(|n| norm(n) == want))
            .collect();
        ids.sort_by_key(|&i| std::cmp::Reverse(entries[i].not_after));
        ids
    };
    let exact = matching(&q);
    if !exact.is_empty() {
        return exact;
    }
    q.split_once('.')
        .filter(|(f, r)| !f.is_empty() && !r.is_empty())
        .map(|(_, r)| matching(&format!("*.{r}")))
        .unwrap_or_default()
}

#[derive(Clone, Debug)]
enum RegistryOp {
    Publish(String, String),
    Withdraw(String),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn http01_registry_matches_a_hashmap(ops in prop::collection::vec(prop_oneof![
        ("[abc]{1,2}", "[a-z.]{0,6}").prop_map(|(t, k)| RegistryOp::Publish(t, k)),
        "[abc]{1,2}".prop_map(RegistryOp::Withdraw),
    ], 0..30)) {
        let registry = acme_store::challenge::Http01Registry::new();
        let clone = registry.clone();
        let mut reference = std::collections::HashMap::new();
        for op in ops {
            match op {
                RegistryOp::Publish(t, k) => {
                    registry.publish(&t, &k);
                    reference.insert(t, k);
                }
                RegistryOp::Withdraw(t) => {
                    prop_assert_eq!(clone.withdraw(&t), reference.remove(&t).is_some());
                }
            }
            prop_assert_eq!(clone.len(), reference.len());
            for t in ["a", "b", "c", "aa", "ab", "ba", "cc"] {
                let got = clone.get(t);
                prop_assert_eq!(got.as_deref(), reference.get(t).map(String::as_str));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sni_index_matches_reference(
        raw in prop::collection::vec((prop::collection::vec(name(), 1..3), 0u64..10, 0u64..10), 0..12),
        queries in prop::collection::vec((name(), 0u64..12), 1..8),
    ) {
        let entries: Vec<RefEntry> = raw
            .into_iter()
            .map(|(names, a, b)| RefEntry { names, not_before: time(a.min(b)), not_after: time(a.max(b)) })
            .collect();
        let mut builder = SniIndex::builder();
        for (i, e) in entries.iter().enumerate() {
            let v = Arc::new(i);
            for n in &e.names {
                builder.insert(n, e.not_before, e.not_after, &v);
            }
        }
        let index = builder.build();
        for (q, t) in queries {
            let got = index.lookup(&q, time(t)).map(|v| **v);
            prop_assert_eq!(got, reference_lookup(&entries, &q, time(t)), "query {}", q);
            let got: Vec<usize> = index.candidates(&q).iter().map(|v| **v).collect();
            prop_assert_eq!(got, reference_candidates(&entries, &q), "candidates {}", q);
        }
    }
}
