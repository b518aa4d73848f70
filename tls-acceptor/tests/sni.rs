//! Certificate selection from a store snapshot on real sockets, checked with a rustls client
//! and with `openssl s_client`: exact, one-label wildcard, default, `sni_strict`, ECDSA vs RSA
//! by the client's signature schemes, and a broken entry keeping its last good certificate.

mod common;

use acme_store::{CertStore, CertStoreExt, MemoryStore};
use common::{
    client_config, client_config_with, common_name, issue, openssl, put, rustls_get, serve,
};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use rustls::SignatureScheme;
use tls_acceptor::{ALPN_HTTP11, TlsContext, TlsSettings};

fn store_with_names() -> MemoryStore {
    let store = MemoryStore::default();
    put(
        &store,
        issue(
            &["www.example.com", "example.com"],
            &PKCS_ECDSA_P256_SHA256,
            0x1001,
        ),
    );
    put(
        &store,
        issue(&["*.example.com"], &PKCS_ECDSA_P256_SHA256, 0x1002),
    );
    store
}

#[tokio::test]
async fn exact_wildcard_default_with_rustls_and_openssl() {
    let store = store_with_names();
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let _watch = tls.watch(store.subscribe());
    assert_eq!(tls.resolver().generation(), store.snapshot().generation());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let client = client_config(&[]);

    for (sni, serial) in [
        ("www.example.com", "1001"),
        ("example.com", "1001"),
        ("api.example.com", "1002"),
        ("WWW.EXAMPLE.COM", "1001"),
    ] {
        let v = rustls_get(addr, &client, sni).await.expect(sni);
        assert_eq!(v.serial(), serial, "rustls {sni}");
        let run = openssl(addr, &["-servername", sni]).await;
        assert_eq!(
            run.leaf_serial().as_deref(),
            Some(serial),
            "openssl {sni}: {run:?}"
        );
    }
    // Two labels below the wildcard and unknown names get the default certificate.
    for sni in ["a.b.example.com", "unknown.test"] {
        let v = rustls_get(addr, &client, sni).await.expect(sni);
        assert_eq!(common_name(&v.leaf), "FAIRWAY DEFAULT CERT", "rustls {sni}");
        let run = openssl(addr, &["-servername", sni]).await;
        assert!(
            run.stdout.contains("FAIRWAY DEFAULT CERT"),
            "openssl {sni}: {}",
            run.stdout
        );
    }
}

#[tokio::test]
async fn sni_strict_serves_known_names_only() {
    let store = store_with_names();
    let tls = TlsContext::new(TlsSettings {
        sni_strict: true,
        ..TlsSettings::default()
    })
    .expect("context");
    let _watch = tls.watch(store.subscribe());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let client = client_config(&[]);

    assert_eq!(
        rustls_get(addr, &client, "www.example.com")
            .await
            .expect("known")
            .serial(),
        "1001"
    );
    assert_eq!(
        rustls_get(addr, &client, "x.example.com")
            .await
            .expect("wildcard")
            .serial(),
        "1002"
    );
    let err = rustls_get(addr, &client, "unknown.test")
        .await
        .expect_err("strict");
    // rustls answers a resolver refusal with an access_denied alert.
    assert!(err.to_string().contains("AccessDenied"), "{err}");

    let run = openssl(addr, &["-servername", "www.example.com"]).await;
    assert_eq!(run.leaf_serial().as_deref(), Some("1001"));
    let run = openssl(addr, &["-servername", "unknown.test"]).await;
    assert!(
        !run.handshake_done() && run.stderr.contains("access denied"),
        "{run:?}"
    );
    let run = openssl(addr, &["-noservername"]).await;
    assert!(!run.handshake_done(), "{run:?}");
}

#[tokio::test]
async fn ecdsa_or_rsa_by_client_signature_schemes() {
    let store = MemoryStore::default();
    // Same name set twice would be an upsert (Traefik identity), so give them different SANs.
    put(
        &store,
        issue(
            &["dual.test", "ec.dual.test"],
            &PKCS_ECDSA_P256_SHA256,
            0xec,
        ),
    );
    put(
        &store,
        issue(&["dual.test", "rsa.dual.test"], &PKCS_RSA_SHA256, 0x5a),
    );
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let _watch = tls.watch(store.subscribe());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;

    let all = client_config(&[]);
    assert_eq!(
        rustls_get(addr, &all, "dual.test")
            .await
            .expect("any")
            .serial(),
        "ec"
    );
    let rsa_only = client_config_with(
        &[],
        &[
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
        ],
        true,
    );
    assert_eq!(
        rustls_get(addr, &rsa_only, "dual.test")
            .await
            .expect("rsa")
            .serial(),
        "5a"
    );

    let run = openssl(
        addr,
        &[
            "-servername",
            "dual.test",
            "-sigalgs",
            "RSA-PSS+SHA256:RSA+SHA256",
        ],
    )
    .await;
    assert_eq!(run.leaf_serial().as_deref(), Some("5a"), "{run:?}");
    let run = openssl(
        addr,
        &["-servername", "dual.test", "-sigalgs", "ECDSA+SHA256"],
    )
    .await;
    assert_eq!(run.leaf_serial().as_deref(), Some("ec"), "{run:?}");
    // TLS 1.2 with an RSA-only suite list also gets the RSA certificate.
    let run = openssl(
        addr,
        &[
            "-servername",
            "dual.test",
            "-tls1_2",
            "-cipher",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ],
    )
    .await;
    assert_eq!(run.leaf_serial().as_deref(), Some("5a"), "{run:?}");
}

#[tokio::test]
async fn broken_entry_keeps_last_good_certificate() {
    let store = MemoryStore::default();
    put(
        &store,
        issue(&["keep.test"], &PKCS_ECDSA_P256_SHA256, 0x600d),
    );
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let _watch = tls.watch(store.subscribe());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let client = client_config_with(&[], &[], false);
    assert_eq!(
        rustls_get(addr, &client, "keep.test")
            .await
            .expect("good")
            .serial(),
        "600d"
    );

    // The issuer writes a certificate whose key belongs to another certificate.
    let mut broken = issue(&["keep.test"], &PKCS_ECDSA_P256_SHA256, 0xbad);
    broken.key = issue(&["other.test"], &PKCS_ECDSA_P256_SHA256, 1).key;
    let snapshot = put(&store, broken);
    assert_eq!(
        snapshot.problems().len(),
        1,
        "the store reports it: {:?}",
        snapshot.problems()
    );
    let report = tls.apply_snapshot(&snapshot);
    assert_eq!(report.kept_last_good, ["keep.test"]);
    assert!(!report.problems[0].contains("PRIVATE KEY"), "{report:?}");
    assert_eq!(
        rustls_get(addr, &client, "keep.test")
            .await
            .expect("last good")
            .serial(),
        "600d"
    );

    // Fixed: the new certificate is served.
    let snapshot = put(&store, issue(&["keep.test"], &PKCS_ECDSA_P256_SHA256, 0xf1));
    tls.apply_snapshot(&snapshot);
    assert_eq!(
        rustls_get(addr, &client, "keep.test")
            .await
            .expect("fixed")
            .serial(),
        "f1"
    );

    // Removed from the store: no longer served.
    let snapshot = store
        .modify(|doc| {
            doc.resolvers
                .entry("le".into())
                .or_default()
                .remove_main("keep.test");
            Ok(())
        })
        .expect("remove");
    tls.apply_snapshot(&snapshot);
    let v = rustls_get(addr, &client, "keep.test")
        .await
        .expect("default");
    assert_eq!(common_name(&v.leaf), "FAIRWAY DEFAULT CERT");
}
