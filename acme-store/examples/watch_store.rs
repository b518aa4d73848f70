//! Opens (or creates) an `acme.json`, imports a freshly generated self-signed certificate, looks
//! it up by SNI, and shows a second store instance picking the change up through its watch.
//!
//! ```sh
//! cargo run -p acme-store --example watch_store -- /tmp/acme.json
//! ```

use std::time::{Duration, Instant, SystemTime};

use acme_store::{CertStore, CertStoreExt, FileStore, FileStoreOptions, StoredCert};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let given = std::env::args().nth(1);
    let tmp = tempfile::tempdir()?;
    let path = given
        .clone()
        .unwrap_or_else(|| tmp.path().join("acme.json").display().to_string());

    // A reader (e.g. a proxy replica) watching the file.
    let reader = FileStore::open(&path, FileStoreOptions::default())?;
    let mut changes = reader.subscribe();
    println!(
        "{path}: {} certificate(s), format {}",
        reader.snapshot().entries().len(),
        reader.snapshot().document().format
    );

    // A writer (e.g. the ACME issuer or `fairway acme import`) in the same or another process.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert =
        rcgen::CertificateParams::new(vec!["demo.example.com".to_owned()])?.self_signed(&key)?;
    let writer = FileStore::open(
        &path,
        FileStoreOptions {
            watch: false,
            ..FileStoreOptions::default()
        },
    )?;
    writer.modify(|doc| {
        let le = doc.resolvers.entry("le".into()).or_default();
        le.upsert(StoredCert::from_pem(
            "demo.example.com",
            &[],
            &cert.pem(),
            &key.serialize_pem(),
        ));
        Ok(())
    })?;

    let deadline = Instant::now() + Duration::from_secs(10);
    while !changes.has_changed()? && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let snap = changes.borrow_and_update().clone();
    println!(
        "reader saw generation {} with {} certificate(s)",
        snap.generation(),
        snap.entries().len()
    );
    if let Some(e) = snap.lookup("Demo.Example.com.", SystemTime::now()) {
        println!(
            "SNI demo.example.com -> {} ({}), serial {}",
            e.main(),
            e.key_type(),
            e.serial_hex()
        );
    }
    for p in snap.problems() {
        println!("problem: {p}");
    }
    Ok(())
}
