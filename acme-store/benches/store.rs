//! Load/save of a 10k-certificate `acme.json`, and SNI lookups among 10k certificates (vs 10, to
//! show the lookup cost does not grow with the store).

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_store::{AcmeDocument, CertStoreExt, FileStore, FileStoreOptions, Snapshot};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/mod.rs"]
mod common;

/// `n` certificates (one shared key, so generation stays fast): `host<i>.example.com`, and every
/// tenth a wildcard `*.zone<i>.example.com`.
fn document(n: usize) -> AcmeDocument {
    let key = common::keypair(common::Alg::P256);
    let mut doc = AcmeDocument::default();
    let le = doc.resolvers.entry("le".into()).or_default();
    for i in 0..n {
        let name = if i % 10 == 0 {
            format!("*.zone{i}.example.com")
        } else {
            format!("host{i}.example.com")
        };
        let m = common::issue_with_key(&[&name], &key, common::KeyPem::Pkcs8, (2020, 2099));
        le.certificates.push(common::stored(&m, &name, &[]));
    }
    le.certificates_null = false;
    doc
}

fn load_save(c: &mut Criterion) {
    let doc = document(10_000);
    let text = doc.to_json().unwrap();
    let mut g = c.benchmark_group("acme_json_10k");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(criterion::Throughput::Bytes(text.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| AcmeDocument::parse(black_box(text.as_bytes())).unwrap())
    });
    g.bench_function("write_go_json", |b| {
        b.iter(|| black_box(&doc).to_json().unwrap())
    });
    let shared = Arc::new(doc.clone());
    g.bench_function("snapshot_build_decode_all", |b| {
        b.iter(|| Snapshot::build(Arc::clone(&shared), 1, None))
    });
    let first = Snapshot::build(Arc::clone(&shared), 1, None);
    g.bench_function("snapshot_rebuild_reusing_previous", |b| {
        b.iter(|| Snapshot::build(Arc::clone(&shared), 2, Some(&first)))
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    acme_store::write_atomic(&path, text.as_bytes(), 0o600).unwrap();
    let opts = FileStoreOptions {
        watch: false,
        ..FileStoreOptions::default()
    };
    g.bench_function("file_store_open", |b| {
        b.iter(|| FileStore::open(&path, opts.clone()).unwrap())
    });
    let store = FileStore::open(&path, opts.clone()).unwrap();
    let mut i = 0u64;
    g.bench_function("file_store_locked_update_fsync", |b| {
        b.iter(|| {
            i += 1;
            store
                .modify(|d| {
                    d.resolvers.entry("le".into()).or_default().certificates[1].store =
                        format!("s{i}");
                    Ok(())
                })
                .unwrap()
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let now = SystemTime::now();
    let mut g = c.benchmark_group("sni_lookup");
    for n in [10usize, 10_000] {
        let snap = Snapshot::build(Arc::new(document(n)), 1, None);
        assert_eq!(snap.entries().len(), n);
        let exact = format!("HOST{}.example.com.", n - 1);
        let wild = "api.zone0.example.com".to_owned();
        g.bench_function(format!("exact_hit/{n}"), |b| {
            b.iter(|| snap.lookup(black_box(&exact), now).unwrap())
        });
        g.bench_function(format!("wildcard_hit/{n}"), |b| {
            b.iter(|| snap.lookup(black_box(&wild), now).unwrap())
        });
        g.bench_function(format!("miss/{n}"), |b| {
            b.iter(|| snap.lookup(black_box("nope.example.org"), now))
        });
    }
    g.finish();
}

criterion_group!(benches, load_save, lookup);
criterion_main!(benches);
