//! The production wiring: a `FileStore` over an `acme.json` file, changed by another writer
//! (as the ACME controller does), followed by a running TLS entrypoint. Also serves the real
//! Boulder test-CA certificate of the Traefik legacy fixture.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use acme_store::{CertStore, CertStoreExt, FileStore, FileStoreOptions};
use common::{client_config_with, issue, rustls_get, serve};
use rcgen::PKCS_ECDSA_P256_SHA256;
use tls_acceptor::{ALPN_HTTP11, TlsContext, TlsSettings};

fn fixture(name: &str) -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/acme-json");
    let dir = if beside.exists() {
        beside
    } else {
        PathBuf::from("/work/shared/fixtures/acme-json")
    };
    dir.join(name)
}

fn options() -> FileStoreOptions {
    FileStoreOptions {
        poll_interval: Duration::from_millis(100),
        ..FileStoreOptions::default()
    }
}

fn put(store: &FileStore, cert: acme_store::StoredCert) {
    store
        .modify(|doc| {
            doc.resolvers
                .entry("le".to_owned())
                .or_default()
                .upsert(cert.clone());
            Ok(())
        })
        .expect("store update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_written_by_another_process_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acme.json");
    // The controller's handle writes; the proxy's handle only watches.
    let writer = FileStore::open(
        &path,
        FileStoreOptions {
            watch: false,
            ..options()
        },
    )
    .expect("writer");
    put(
        &writer,
        issue(&["file.test"], &PKCS_ECDSA_P256_SHA256, 0xf01),
    );
    let proxy_store = FileStore::open(&path, options()).expect("proxy store");
    let tls = TlsContext::new(TlsSettings {
        sni_strict: true,
        ..TlsSettings::default()
    })
    .expect("context");
    let _watch = tls.watch(proxy_store.subscribe());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let client = client_config_with(&[], &[], false);
    assert_eq!(
        rustls_get(addr, &client, "file.test")
            .await
            .expect("first")
            .serial(),
        "f01"
    );

    let written = Instant::now();
    put(
        &writer,
        issue(&["file.test"], &PKCS_ECDSA_P256_SHA256, 0xf02),
    );
    loop {
        let serial = rustls_get(addr, &client, "file.test")
            .await
            .expect("handshake")
            .serial();
        if serial == "f02" {
            break;
        }
        assert_eq!(serial, "f01");
        // inotify is prompt; the 100 ms metadata poll is the fallback. Loose for busy CI.
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "file change never served"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("file rotation served after {:?}", written.elapsed());
}

#[tokio::test]
async fn legacy_fixture_certificate_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acme.json");
    std::fs::copy(fixture("traefik-v1.7-legacy-acme_example.json"), &path).expect("copy fixture");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let store = FileStore::open(
        &path,
        FileStoreOptions {
            watch: false,
            ..options()
        },
    )
    .expect("open");
    let snapshot = store.snapshot();
    let entry = snapshot
        .entries()
        .first()
        .expect("the fixture holds a certificate")
        .clone();
    let name = entry
        .names()
        .iter()
        .find(|n| !n.starts_with('*'))
        .expect("a name")
        .clone();

    let tls = TlsContext::new(TlsSettings {
        sni_strict: true,
        ..TlsSettings::default()
    })
    .expect("context");
    let report = tls.apply_snapshot(&snapshot);
    assert_eq!(report.built, snapshot.entries().len(), "{report:?}");
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    // The Boulder test certificate has long expired; with no other candidate it is still
    // served (a client sees the expiry rather than a name mismatch).
    let view = rustls_get(addr, &client_config_with(&[], &[], false), &name)
        .await
        .expect("handshake");
    assert_eq!(
        view.serial(),
        entry.serial_hex().trim_start_matches('0').to_lowercase()
    );
}
