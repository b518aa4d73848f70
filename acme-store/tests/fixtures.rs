//! Every shared fixture parses, is detected as the right generation, and rewrites to its own bytes.

use std::path::PathBuf;

use acme_store::{AcmeDocument, Format, V1_RESOLVER};

fn fixture_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/acme-json");
    if dir.exists() {
        dir
    } else {
        PathBuf::from("/work/shared/fixtures/acme-json")
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Not only the four known by name: every `.json` file in the shared fixture directory parses,
/// and each one Fairway can write (all but the read-only legacy format) rewrites to its own
/// bytes, modulo the one trailing newline some of them carry.
#[test]
fn every_shared_fixture_parses_and_rewrites_to_its_bytes() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let doc = AcmeDocument::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        if doc.format != Format::Legacy {
            let out = doc.to_json().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out.as_bytes(), strip_one_newline(&bytes), "{name}");
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "certs-dumper-v2-acme.json",
            "migration-tool-v1.6-acme.json",
            "migration-tool-v2-new-acme.json",
            "traefik-v1.7-legacy-acme_example.json",
        ],
        "a new fixture: give it a content test below too"
    );
}

/// The certs-dumper fixture is the one written by Go with no trailing newline (the notes say so):
/// it must come back exactly, with nothing stripped.
#[test]
fn certs_dumper_fixture_is_reproduced_exactly() {
    let bytes = fixture("certs-dumper-v2-acme.json");
    assert_ne!(bytes.last(), Some(&b'\n'));
    let out = AcmeDocument::parse(&bytes).unwrap().to_json().unwrap();
    assert_eq!(out.as_bytes(), &bytes[..]);
}

/// The fixtures other than the certs-dumper one end with a newline that Go's writer never adds.
fn strip_one_newline(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}

#[test]
fn v2_fixture_round_trips_byte_for_byte() {
    for name in [
        "certs-dumper-v2-acme.json",
        "migration-tool-v2-new-acme.json",
    ] {
        let bytes = fixture(name);
        let doc = AcmeDocument::parse(&bytes).unwrap();
        assert_eq!(doc.format, Format::V2, "{name}");
        let out = doc.to_json().unwrap();
        assert_eq!(out.as_bytes(), strip_one_newline(&bytes), "{name}");
    }
}

#[test]
fn certs_dumper_fixture_content() {
    let doc = AcmeDocument::parse(&fixture("certs-dumper-v2-acme.json")).unwrap();
    let r = &doc.resolvers["default"];
    let account = r.account.as_ref().unwrap();
    assert_eq!(account.email, "test@email.com");
    assert_eq!(account.key_type.as_deref(), Some("4096"));
    assert_eq!(
        account.registration_uri(),
        Some("https://acme-v02.api.letsencrypt.org/acme/acct/12345678")
    );
    let mains: Vec<_> = r
        .certificates
        .iter()
        .map(|c| c.domain.main.as_str())
        .collect();
    assert_eq!(mains, ["my.domain.com", "my.domain2.com"]);
    assert_eq!(r.certificates[0].store, "default");
}

#[test]
fn v1_fixture_round_trips_and_migrates_like_the_migration_tool() {
    let bytes = fixture("migration-tool-v1.6-acme.json");
    let doc = AcmeDocument::parse(&bytes).unwrap();
    assert_eq!(doc.format, Format::V1);
    assert_eq!(
        doc.resolvers[V1_RESOLVER].certificates[0].domain.main,
        "test.example.com"
    );
    assert_eq!(doc.to_json().unwrap().as_bytes(), strip_one_newline(&bytes));

    let migrated = doc.migrate_to_v2("myresolver");
    let expected = fixture("migration-tool-v2-new-acme.json");
    assert_eq!(
        migrated.to_json().unwrap().as_bytes(),
        strip_one_newline(&expected)
    );
}

#[test]
fn legacy_fixture_is_read_only_and_decodes() {
    let doc = AcmeDocument::parse(&fixture("traefik-v1.7-legacy-acme_example.json")).unwrap();
    assert_eq!(doc.format, Format::Legacy);
    assert!(doc.to_json().is_err());
    let r = &doc.resolvers[V1_RESOLVER];
    let account = r.account.as_ref().unwrap();
    assert_eq!(account.email, "test@traefik.io");
    let der = account.private_key_der().unwrap().unwrap();
    assert_eq!(der[0], 0x30, "account key is DER");
    let key = account.private_key().unwrap().unwrap();
    assert_eq!(
        key.pem_label(),
        "RSA PRIVATE KEY",
        "Traefik account keys are PKCS#1"
    );
    assert_eq!(format!("{key:?}"), "PrivateKey(<redacted>)");
    // The dummy payload of the v2 fixtures is reported, not a panic.
    let dummy = AcmeDocument::parse(&fixture("certs-dumper-v2-acme.json")).unwrap();
    assert!(
        dummy.resolvers["default"]
            .account
            .as_ref()
            .unwrap()
            .private_key()
            .unwrap()
            .is_err()
    );
    assert_eq!(r.certificates.len(), 1);
    assert_eq!(r.certificates[0].domain.main, "local1.com");

    let snap = acme_store::Snapshot::build(std::sync::Arc::new(doc.clone()), 1, None);
    assert!(snap.problems().is_empty(), "{:?}", snap.problems());
    let e = &snap.entries()[0];
    assert!(
        matches!(e.key_type(), acme_store::KeyType::Rsa(_)),
        "{:?}",
        e.key_type()
    );
    assert!(
        e.names().contains(&"local1.com".to_owned()),
        "{:?}",
        e.names()
    );
    assert!(
        e.issuer().contains("h2ppy h2cker fake CA"),
        "{}",
        e.issuer()
    );
    assert_eq!(e.chain().len(), 2);

    let v2 = doc.migrate_to_v2("le");
    let text = v2.to_json().unwrap();
    let again = AcmeDocument::parse(text.as_bytes()).unwrap();
    assert_eq!(again.format, Format::V2);
    assert_eq!(again.resolvers["le"].certificates[0].store, "default");
}

#[test]
fn empty_inputs_are_empty_stores() {
    for input in [&b""[..], b"   \n", b"{}", b"null"] {
        let doc = AcmeDocument::parse(input).unwrap();
        assert!(doc.resolvers.is_empty());
        assert_eq!(doc.to_json().unwrap(), "{}");
    }
}

#[test]
fn resolver_named_account_is_v2() {
    let text = r#"{"Account": {"Account": null, "Certificates": []}, "le": {"Account": null, "Certificates": null}}"#;
    let doc = AcmeDocument::parse(text.as_bytes()).unwrap();
    assert_eq!(doc.format, Format::V2);
    assert!(doc.resolvers.contains_key("Account"));
    assert!(doc.resolvers.contains_key("le"));
}

/// Resolvers may carry any name, including the legacy top-level keys: their (object) values are
/// resolver data, so the file is v2.
#[test]
fn resolvers_named_like_legacy_keys_are_v2() {
    for name in ["DomainsCertificate", "Email", "PrivateKey", "Registration"] {
        for data in [
            "{}",
            "{\n    \"Account\": null,\n    \"Certificates\": null\n  }",
        ] {
            let text = format!("{{\n  \"{name}\": {data},\n  \"le\": {{}}\n}}");
            let doc = AcmeDocument::parse(text.as_bytes()).unwrap();
            assert_eq!(doc.format, Format::V2, "{text}");
            assert!(doc.resolvers.contains_key(name), "{text}");
        }
    }
    // The legacy shape itself is still legacy, even without an `Email`.
    let legacy = br#"{"Email": null, "DomainsCertificate": {"Certs": null}}"#;
    assert_eq!(AcmeDocument::parse(legacy).unwrap().format, Format::Legacy);
}

#[test]
fn hybrid_certs_dumper_v1_shape_is_read_case_insensitively() {
    let text = r#"{"Certificates":[{"domain":{"main":"a.com"},"certificate":"Q2VydGlmaWNhdGU=","key":"Q2VydGlmaWNhdGUgS2V5","Store":"default"}]}"#;
    let doc = AcmeDocument::parse(text.as_bytes()).unwrap();
    assert_eq!(doc.format, Format::V1);
    let c = &doc.resolvers[V1_RESOLVER].certificates[0];
    assert_eq!(c.domain.main, "a.com");
    assert_eq!(c.store, "default");
}

#[test]
fn corrupt_json_names_line_and_column() {
    let err = AcmeDocument::parse(b"{\n  \"le\": {\n    \"Account\": nul\n  }\n}").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("line 3, column 16"), "{msg}");
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let text = r#"{
  "le": {
    "Account": {
      "Email": "a@b.c",
      "Registration": null,
      "PrivateKey": null,
      "Future": 1.50
    },
    "Certificates": [
      {
        "domain": {
          "main": "x.com",
          "punycode": true
        },
        "certificate": "Q2VydGlmaWNhdGU=",
        "key": "Q2VydGlmaWNhdGUgS2V5",
        "Store": "default",
        "ocsp": "\u003cstaple\u003e"
      }
    ],
    "Extra": [
      "x"
    ]
  }
}"#;
    let doc = AcmeDocument::parse(text.as_bytes()).unwrap();
    assert_eq!(doc.to_json().unwrap(), text);
}

/// Found by the `acme_json` fuzz target: a legacy file's unknown top-level `Account` moved into
/// the migrated resolver next to its real `Account`, and being written after it, replaced the
/// real account on the next read.
#[test]
fn migrating_a_legacy_file_drops_unknown_fields_named_like_resolver_fields() {
    let legacy = br#"{"PrivateKey": "UHJpdmF0ZUtleQ==", "Account": {"Email": "x@example.com"},
        "certificates": [1], "Kept": true}"#;
    let doc = AcmeDocument::parse(legacy).unwrap();
    assert_eq!(doc.format, Format::Legacy);
    let v2 = doc.migrate_to_v2("le");
    let data = &v2.resolvers["le"];
    let account = data.account.as_ref().unwrap();
    assert_eq!(account.private_key.as_deref(), Some("UHJpdmF0ZUtleQ=="));
    let extra: Vec<&str> = data.extra.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(extra, ["Kept"]);
    let text = v2.to_json().unwrap();
    assert_eq!(AcmeDocument::parse(text.as_bytes()).unwrap(), v2, "{text}");
}

#[test]
fn file_store_edits_leave_a_traefik_file_byte_identical() {
    use acme_store::{CertStoreExt, FileStore, FileStoreOptions};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let original = fixture("certs-dumper-v2-acme.json");
    std::fs::write(&path, &original).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let opts = FileStoreOptions {
        watch: false,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open(&path, opts).unwrap();
    let added = store
        .modify(|doc| {
            doc.resolvers.entry("zz".into()).or_default();
            Ok(())
        })
        .unwrap();
    assert!(added.document().resolvers.contains_key("zz"));
    let with_extra = std::fs::read(&path).unwrap();
    assert_ne!(with_extra, original);
    store
        .modify(|doc| {
            doc.resolvers.remove("zz");
            Ok(())
        })
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), strip_one_newline(&original));
}
