//! Decoding stored entries into serving-ready certificates, with generated material.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_store::{
    AcmeDocument, CertStore, CertStoreExt, KeyType, MemoryStore, ProblemKind, Snapshot, StoredCert,
};
use common::{Alg, KeyPem, issue, stored};

fn snapshot_of(certs: Vec<StoredCert>) -> Snapshot {
    let mut doc = AcmeDocument::default();
    doc.resolvers.entry("le".into()).or_default().certificates = certs;
    Snapshot::build(Arc::new(doc), 1, None)
}

#[test]
fn every_key_algorithm_and_pem_flavour_decodes_and_matches() {
    let cases = [
        (Alg::P256, KeyPem::Pkcs8, KeyType::EcdsaP256),
        (Alg::P256, KeyPem::Traditional, KeyType::EcdsaP256),
        (Alg::P384, KeyPem::Pkcs8, KeyType::EcdsaP384),
        (Alg::P384, KeyPem::Traditional, KeyType::EcdsaP384),
        (Alg::Rsa2048, KeyPem::Pkcs8, KeyType::Rsa(2048)),
        (Alg::Rsa2048, KeyPem::Traditional, KeyType::Rsa(2048)),
        (Alg::Ed25519, KeyPem::Pkcs8, KeyType::Ed25519),
    ];
    for (alg, pem, expected) in cases {
        let m = issue(
            &["a.example.com", "*.b.example.com"],
            alg,
            pem,
            (2020, 2099),
        );
        let snap = snapshot_of(vec![stored(&m, "a.example.com", &["*.b.example.com"])]);
        assert!(
            snap.problems().is_empty(),
            "{alg:?} {pem:?}: {:?}",
            snap.problems()
        );
        let e = &snap.entries()[0];
        assert_eq!(e.key_type(), &expected, "{alg:?} {pem:?}");
        assert_eq!(e.names(), ["*.b.example.com", "a.example.com"]);
        assert_eq!(e.chain().len(), 2, "leaf and issuer");
        assert_eq!(e.resolver(), "le");
        assert_eq!(e.main(), "a.example.com");
        assert_eq!(e.sans(), ["*.b.example.com"]);
        assert_eq!(e.store(), "default");
        assert!(e.issuer().contains("Fairway Test CA"), "{}", e.issuer());
        assert_eq!(
            e.serial_hex(),
            m.serial
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .trim_start_matches("00")
        );
        assert!(e.is_valid_at(SystemTime::now()));
        let expected_label = match (alg, pem) {
            (_, KeyPem::Pkcs8) => "PRIVATE KEY",
            (Alg::Rsa2048, _) => "RSA PRIVATE KEY",
            _ => "EC PRIVATE KEY",
        };
        assert_eq!(e.key().pem_label(), expected_label);
        assert_eq!(format!("{:?}", e.key()), "PrivateKey(<redacted>)");
        assert!(!format!("{e:?}").contains(&m.key_pem[30..60]));
    }
}

#[test]
fn mismatched_key_is_a_problem_named_by_resolver_and_domain() {
    let a = issue(&["a.example.com"], Alg::P256, KeyPem::Pkcs8, (2020, 2099));
    let b = issue(&["b.example.com"], Alg::P256, KeyPem::Pkcs8, (2020, 2099));
    let mut bad = stored(&a, "a.example.com", &[]);
    bad.key = stored(&b, "b.example.com", &[]).key;
    let snap = snapshot_of(vec![bad, stored(&b, "b.example.com", &[])]);
    assert_eq!(snap.entries().len(), 1);
    let p = &snap.problems()[0];
    assert_eq!(
        (p.resolver.as_str(), p.domain.as_str(), p.index),
        ("le", "a.example.com", 0)
    );
    assert_eq!(p.kind, ProblemKind::KeyMismatch);
    assert!(p.to_string().contains("key mismatch"), "{p}");
    assert!(snap.lookup("a.example.com", SystemTime::now()).is_none());
    assert!(snap.lookup("b.example.com", SystemTime::now()).is_some());
}

#[test]
fn bad_entries_are_reported_and_kept_byte_for_byte() {
    let good = issue(
        &["good.example.com"],
        Alg::P256,
        KeyPem::Pkcs8,
        (2020, 2099),
    );
    let text = r#"{
  "le": {
    "Account": null,
    "Certificates": [
      {
        "domain": {
          "main": "nob64.example.com"
        },
        "certificate": "!!not base64!!",
        "key": "Q2VydGlmaWNhdGUgS2V5",
        "Store": "default"
      },
      {
        "domain": {
          "main": "dummy.example.com"
        },
        "certificate": "Q2VydGlmaWNhdGU=",
        "key": "Q2VydGlmaWNhdGUgS2V5",
        "Store": "default"
      },
      {
        "domain": {
          "main": "nokey.example.com"
        },
        "certificate": "Q2VydGlmaWNhdGU=",
        "Store": "default"
      }
    ]
  }
}"#;
    let doc = AcmeDocument::parse(text.as_bytes()).unwrap();
    let store = MemoryStore::new(doc);
    let snap = store.snapshot();
    let kinds: Vec<_> = snap
        .problems()
        .iter()
        .map(|p| (p.domain.as_str(), p.kind.to_string()))
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds[0].1.contains("base64"), "{kinds:?}");
    assert!(kinds[1].1.contains("undecodable"), "{kinds:?}");
    assert_eq!(kinds[2].1, "undecodable: no key");

    // Adding a good certificate leaves the bad ones exactly as they were.
    let snap = store
        .modify(|doc| {
            doc.resolvers
                .get_mut("le")
                .unwrap()
                .upsert(stored(&good, "good.example.com", &[]));
            Ok(())
        })
        .unwrap();
    let out = snap.document().to_json().unwrap();
    let prefix_end = text.rfind("\n    ]").unwrap();
    assert!(out.starts_with(&text[..prefix_end]), "{out}");
    assert_eq!(snap.entries().len(), 1);
    assert_eq!(snap.problems().len(), 3);
}

#[test]
fn base64_with_line_breaks_is_accepted_like_go() {
    let m = issue(&["a.example.com"], Alg::P256, KeyPem::Pkcs8, (2020, 2099));
    let mut s = stored(&m, "a.example.com", &[]);
    let c = s.certificate.take().unwrap();
    let wrapped: String = c
        .as_bytes()
        .chunks(76)
        .map(|ch| format!("{}\r\n", std::str::from_utf8(ch).unwrap()))
        .collect();
    s.certificate = Some(wrapped);
    let snap = snapshot_of(vec![s]);
    assert!(snap.problems().is_empty(), "{:?}", snap.problems());
}

#[test]
fn lookup_prefers_exact_then_wildcard_and_valid_latest() {
    let now = SystemTime::now();
    let old = issue(&["www.example.com"], Alg::P256, KeyPem::Pkcs8, (2020, 2090));
    let newer = issue(&["www.example.com"], Alg::P256, KeyPem::Pkcs8, (2021, 2095));
    let expired = issue(&["www.example.com"], Alg::P256, KeyPem::Pkcs8, (2000, 2001));
    let future = issue(&["www.example.com"], Alg::P256, KeyPem::Pkcs8, (2090, 2099));
    let wild = issue(&["*.example.com"], Alg::P384, KeyPem::Pkcs8, (2020, 2099));
    let snap = snapshot_of(vec![
        stored(&old, "www.example.com", &[]),
        stored(&expired, "www.example.com", &[]),
        stored(&newer, "www.example.com", &[]),
        stored(&future, "www.example.com", &[]),
        stored(&wild, "*.example.com", &[]),
    ]);
    let hit = snap.lookup("WWW.Example.COM.", now).unwrap();
    assert_eq!(hit.index(), 2, "valid now with the latest notAfter");
    assert_eq!(snap.candidates("www.example.com").len(), 4);
    assert_eq!(
        snap.candidates("www.example.com")[0].index(),
        3,
        "latest notAfter first"
    );
    assert_eq!(snap.lookup("api.example.com", now).unwrap().index(), 4);
    assert!(
        snap.lookup("a.b.example.com", now).is_none(),
        "one label only"
    );
    assert!(snap.lookup("example.com", now).is_none());
    // Far in the future everything is expired: the latest notAfter wins.
    let later = now + Duration::from_secs(100 * 365 * 86400);
    assert_eq!(snap.lookup("www.example.com", later).unwrap().index(), 3);
}

#[test]
fn unchanged_entries_reuse_decoding_across_snapshots() {
    let m = issue(&["a.example.com"], Alg::P256, KeyPem::Pkcs8, (2020, 2099));
    let store = MemoryStore::default();
    let first = store
        .modify(|d| {
            d.resolvers
                .entry("le".into())
                .or_default()
                .upsert(stored(&m, "a.example.com", &[]));
            Ok(())
        })
        .unwrap();
    let second = store
        .modify(|d| {
            d.resolvers.entry("other".into()).or_default();
            Ok(())
        })
        .unwrap();
    assert!(Arc::ptr_eq(&first.entries()[0], &second.entries()[0]));
    assert!(second.generation() > first.generation());
}

#[test]
fn memory_store_notifies_subscribers_only_on_change() {
    let store = MemoryStore::default();
    let mut rx = store.subscribe();
    assert!(!rx.has_changed().unwrap());
    let g0 = store.snapshot().generation();
    store
        .modify(|d| {
            d.resolvers.entry("le".into()).or_default();
            Ok(())
        })
        .unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().generation(), g0 + 1);
    store.modify(|_| Ok(())).unwrap();
    assert!(
        !rx.has_changed().unwrap(),
        "a no-op update publishes nothing"
    );
    assert_eq!(store.snapshot().generation(), g0 + 1);
}

#[test]
fn traditional_keys_convert_to_pkcs8_that_still_match() {
    for alg in [Alg::Rsa2048, Alg::P256, Alg::P384] {
        let m = issue(&["a.example.com"], alg, KeyPem::Traditional, (2020, 2099));
        let snap = snapshot_of(vec![stored(&m, "a.example.com", &[])]);
        let e = &snap.entries()[0];
        let pem = e.key().to_pkcs8_pem(e.key_type()).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg:?}");
        let converted = StoredCert::from_pem("a.example.com", &[], &m.chain_pem, &pem);
        let snap = snapshot_of(vec![converted]);
        assert!(snap.problems().is_empty(), "{alg:?}: {:?}", snap.problems());
        assert_eq!(snap.entries()[0].key().pem_label(), "PRIVATE KEY");
    }
    // PKCS#8 stays byte-identical.
    let m = issue(&["a.example.com"], Alg::P256, KeyPem::Pkcs8, (2020, 2099));
    let snap = snapshot_of(vec![stored(&m, "a.example.com", &[])]);
    let e = &snap.entries()[0];
    let rustls_pki_types::PrivateKeyDer::Pkcs8(orig) = e.key().der() else {
        panic!("rcgen writes PKCS#8")
    };
    assert_eq!(
        e.key().to_pkcs8(e.key_type()).unwrap().secret_pkcs8_der(),
        orig.secret_pkcs8_der()
    );
}
