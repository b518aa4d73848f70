//! Full and resumed TLS 1.3 handshakes per second, in memory: a rustls client and a server
//! built by `TlsContext` exchange buffers directly, so the numbers are CPU cost only.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConnection, SignatureScheme};
use tls_acceptor::{ALPN_H2, ALPN_HTTP11, TlsContext, TlsSettings};

// The socket tests' accept-anything verifier: the bench measures handshakes, not chain checks.
#[path = "../tests/common/mod.rs"]
mod common;
use common::AcceptAnything;

fn client_config(resume: bool) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(tls_acceptor::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything::default()))
        .with_no_client_auth();
    c.alpn_protocols = vec![ALPN_H2.to_vec()];
    if !resume {
        c.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(c)
}

/// Moves bytes both ways until neither side has anything to send.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection, buf: &mut Vec<u8>) {
    loop {
        let mut moved = false;
        while client.wants_write() {
            buf.clear();
            client.write_tls(buf).expect("client write");
            server.read_tls(&mut &buf[..]).expect("server read");
            server.process_new_packets().expect("server process");
            moved = true;
        }
        while server.wants_write() {
            buf.clear();
            server.write_tls(buf).expect("server write");
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets().expect("client process");
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn handshake(
    client_cfg: &Arc<ClientConfig>,
    server_cfg: &Arc<rustls::ServerConfig>,
    buf: &mut Vec<u8>,
) -> bool {
    let name = ServerName::try_from("bench.example.com").expect("name");
    let mut client = ClientConnection::new(client_cfg.clone(), name).expect("client");
    let mut server = ServerConnection::new(server_cfg.clone()).expect("server");
    pump(&mut client, &mut server, buf);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    server.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn bench(c: &mut Criterion) {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let server_cfg = tls.server_config(&[ALPN_H2, ALPN_HTTP11]).expect("config");
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut group = c.benchmark_group("tls13_handshake");
    group.throughput(Throughput::Elements(1));

    let full = client_config(false);
    group.bench_function("full_ecdsa_p256", |b| {
        b.iter(|| assert!(!handshake(&full, &server_cfg, &mut buf)))
    });

    let resuming = client_config(true);
    handshake(&resuming, &server_cfg, &mut buf);
    group.bench_function("resumed_ticket", |b| {
        b.iter(|| assert!(handshake(&resuming, &server_cfg, &mut buf)))
    });
    group.finish();
}

/// The per-handshake certificate choice alone, over a store of 1000 certificates with
/// 4 names each (exact hit, wildcard hit, miss to the default).
fn lookup(c: &mut Criterion) {
    use acme_store::{CertStore, CertStoreExt, MemoryStore, StoredCert};
    let store = MemoryStore::default();
    store
        .modify(|doc| {
            let le = doc.resolvers.entry("le".into()).or_default();
            for i in 0..1000 {
                let names = vec![
                    format!("site{i}.example.com"),
                    format!("www.site{i}.example.com"),
                    format!("api.site{i}.example.com"),
                    format!("*.app{i}.example.net"),
                ];
                let key = rcgen::KeyPair::generate().expect("key");
                let cert = rcgen::CertificateParams::new(names.clone())
                    .expect("params")
                    .self_signed(&key)
                    .expect("cert");
                le.certificates.push(StoredCert::from_pem(
                    &names[0],
                    &names[1..],
                    &cert.pem(),
                    &key.serialize_pem(),
                ));
            }
            Ok(())
        })
        .expect("store");
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    tls.apply_snapshot(&store.snapshot());
    let resolver = tls.resolver();
    let schemes = [
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::RSA_PSS_SHA256,
    ];
    let now = std::time::SystemTime::now();
    let mut group = c.benchmark_group("resolver_lookup_1000_certs");
    for (label, name) in [
        ("exact", "www.site517.example.com"),
        ("wildcard", "x.app517.example.net"),
        ("default", "unknown.example.org"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| resolver.lookup(Some(std::hint::black_box(name)), &schemes, now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, lookup);
criterion_main!(benches);
