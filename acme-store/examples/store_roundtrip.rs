//! Generates a large `acme.json`, or times reading and re-writing one (used by
//! `benches/go-peer.sh` to compare with Go's `encoding/json` on the same file).
//!
//! ```sh
//! cargo run --release -p acme-store --example store_roundtrip -- gen /tmp/acme-10k.json 10000
//! cargo run --release -p acme-store --example store_roundtrip -- time /tmp/acme-10k.json 20
//! ```

use std::time::Instant;

use acme_store::{AcmeDocument, StoredCert};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen", path, n] => generate(path, n.parse()?),
        ["time", path, iterations] => time(path, iterations.parse()?),
        _ => Err("usage: store_roundtrip gen FILE N | time FILE ITERATIONS".into()),
    }
}

/// `n` real certificates (one shared P-256 key, CA-less self-signed leaves) under resolver `le`.
fn generate(path: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let key_pem = key.serialize_pem();
    let mut doc = AcmeDocument::default();
    let le = doc.resolvers.entry("le".into()).or_default();
    for i in 0..n {
        let name = format!("host{i}.example.com");
        let cert = rcgen::CertificateParams::new(vec![name.clone()])?.self_signed(&key)?;
        le.certificates
            .push(StoredCert::from_pem(&name, &[], &cert.pem(), &key_pem));
    }
    std::fs::write(path, doc.to_json()?)?;
    Ok(())
}

/// Prints the mean milliseconds of parse and of write over `iterations`.
fn time(path: &str, iterations: u32) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let mut doc = AcmeDocument::parse(&bytes)?;
    let start = Instant::now();
    for _ in 0..iterations {
        doc = AcmeDocument::parse(std::hint::black_box(&bytes))?;
    }
    let parse = start.elapsed() / iterations;
    let start = Instant::now();
    let mut out = String::new();
    for _ in 0..iterations {
        out = std::hint::black_box(&doc).to_json()?;
    }
    let write = start.elapsed() / iterations;
    assert_eq!(
        out.as_bytes(),
        bytes.as_slice(),
        "re-written bytes differ from the input"
    );
    println!(
        "parse_ms={:.2} write_ms={:.2}",
        parse.as_secs_f64() * 1e3,
        write.as_secs_f64() * 1e3
    );
    Ok(())
}
