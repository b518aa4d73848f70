//! Rotation on real sockets: resumption after a rotation and after a configuration reload,
//! in-flight connections untouched, and 100 rotations under handshake load with no failed
//! handshake and every new serial observed within 100 ms of its write.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acme_store::{CertStore, MemoryStore, Snapshot};
use common::{client_config, client_config_with, issue, put, rustls_get, serve};
use rcgen::PKCS_ECDSA_P256_SHA256;
use rustls::pki_types::ServerName;
use tls_acceptor::{ALPN_HTTP11, TlsContext, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Waits (bounded) until the resolver serves `snapshot`.
async fn until_applied(tls: &TlsContext, snapshot: &Snapshot) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls.resolver().generation() < snapshot.generation() {
        assert!(
            Instant::now() < deadline,
            "snapshot {} never applied",
            snapshot.generation()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn resumption_survives_rotation_and_reload() {
    let store = MemoryStore::default();
    put(
        &store,
        issue(&["resume.test"], &PKCS_ECDSA_P256_SHA256, 0x101),
    );
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let _watch = tls.watch(store.subscribe());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;

    let client = client_config(&[]);
    let first = rustls_get(addr, &client, "resume.test")
        .await
        .expect("full");
    assert!(!first.resumed);
    assert_eq!(first.serial(), "101");

    // An in-flight connection, opened before the rotation.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut inflight = TlsConnector::from(client_config_with(&[], &[], false))
        .connect(ServerName::try_from("resume.test").expect("name"), tcp)
        .await
        .expect("in-flight handshake");

    let rotated = put(
        &store,
        issue(&["resume.test"], &PKCS_ECDSA_P256_SHA256, 0x102),
    );
    until_applied(&tls, &rotated).await;

    let resumed = rustls_get(addr, &client, "resume.test")
        .await
        .expect("resumed");
    assert!(
        resumed.resumed,
        "ticket issued before the rotation must resume"
    );
    let fresh = rustls_get(addr, &client_config_with(&[], &[], false), "resume.test")
        .await
        .expect("full after rotation");
    assert_eq!(fresh.serial(), "102");

    // The in-flight connection still works on its old certificate.
    inflight
        .write_all(b"GET / HTTP/1.1\r\nhost: resume.test\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    inflight.read_to_end(&mut response).await.expect("read");
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let leaf = inflight.get_ref().1.peer_certificates().expect("certs")[0].to_vec();
    assert_eq!(common::serial_hex(&leaf), "101");

    // A configuration reload builds a new context: the process-wide ticketer still resumes.
    let reloaded = TlsContext::new(TlsSettings::default()).expect("context");
    let _watch2 = reloaded.watch(store.subscribe());
    let (addr2, _events2) = serve(reloaded.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let after_reload = rustls_get(addr2, &client, "resume.test")
        .await
        .expect("resumed");
    assert!(
        after_reload.resumed,
        "ticket must resume on a reloaded context"
    );
}

#[derive(Debug, Clone, Copy)]
struct Handshake {
    started: Instant,
    finished: Instant,
    serial: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_rotations_under_load() {
    const ROTATIONS: u64 = 100;
    const CLIENTS: usize = 3;
    const FIRST: u64 = 0x1000;
    let budget = Duration::from_secs(20);
    let test_start = Instant::now();

    let store = Arc::new(MemoryStore::default());
    put(&store, issue(&["rot.test"], &PKCS_ECDSA_P256_SHA256, FIRST));
    let certs: Vec<_> = (1..=ROTATIONS)
        .map(|i| issue(&["rot.test"], &PKCS_ECDSA_P256_SHA256, FIRST + i))
        .collect();
    let tls = TlsContext::new(TlsSettings {
        sni_strict: true,
        ..TlsSettings::default()
    })
    .expect("context");
    let _watch = tls.watch(store.subscribe());
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let newest_seen = Arc::new(AtomicU64::new(0));
    let seen: Arc<Mutex<Vec<Handshake>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, newest_seen, seen, failures) = (
            stop.clone(),
            newest_seen.clone(),
            seen.clone(),
            failures.clone(),
        );
        clients.push(tokio::spawn(async move {
            // No resumption: every handshake must select a certificate.
            let config = client_config_with(&[], &[], false);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match rustls_get(addr, &config, "rot.test").await {
                    Ok(view) => {
                        let serial = u64::from_str_radix(&view.serial(), 16).expect("hex serial");
                        newest_seen.fetch_max(serial, Ordering::Relaxed);
                        seen.lock().expect("lock").push(Handshake {
                            started,
                            finished: Instant::now(),
                            serial,
                        });
                    }
                    Err(e) => failures.lock().expect("lock").push(e.to_string()),
                }
            }
        }));
    }

    let mut writes = Vec::new();
    for (i, cert) in certs.into_iter().enumerate() {
        assert!(
            test_start.elapsed() < budget,
            "rotation test over its time budget at {i}"
        );
        let serial = FIRST + 1 + i as u64;
        let store = store.clone();
        let written_at = Instant::now();
        tokio::task::spawn_blocking(move || put(&store, cert))
            .await
            .expect("put");
        writes.push((serial, written_at));
        // Wait (bounded) until a client has seen it before rotating again.
        let deadline = Instant::now() + Duration::from_secs(2);
        while newest_seen.load(Ordering::Relaxed) < serial && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Let clients run a little on the final certificate.
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "{} failed handshakes: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let seen = seen.lock().expect("lock").clone();
    let limit = Duration::from_millis(100);
    let mut worst = Duration::ZERO;
    for &(serial, written_at) in &writes {
        let first = seen
            .iter()
            .filter(|h| h.serial == serial)
            .map(|h| h.finished)
            .min()
            .unwrap_or_else(|| panic!("serial {serial:x} never observed"));
        let latency = first.saturating_duration_since(written_at);
        worst = worst.max(latency);
        assert!(
            latency <= limit,
            "serial {serial:x} first observed {latency:?} after its write"
        );
        // And no handshake that started 100 ms after the write got an older certificate.
        if let Some(stale) = seen
            .iter()
            .find(|h| h.started >= written_at + limit && h.serial < serial)
        {
            panic!(
                "handshake started {:?} after write of {serial:x} got {:x}",
                stale.started - written_at,
                stale.serial
            );
        }
    }
    eprintln!(
        "{} handshakes, {} rotations, worst first-observation latency {worst:?}, {:?} total",
        seen.len(),
        writes.len(),
        test_start.elapsed()
    );
}
