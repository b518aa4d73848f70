//! Protocol policy on real sockets: TLS 1.0/1.1 refused, 1.2 and 1.3 accepted, ALPN per
//! entrypoint, default certificate and `sni_strict` without any store certificate, handshake
//! timeout, plain entrypoints.

mod common;

use std::time::Duration;

use common::{ServerEvent, client_config, common_name, openssl, rustls_get, serve};
use tls_acceptor::{ALPN_H2, ALPN_HTTP11, Accepted, Acceptor, Error, TlsContext, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn tls10_and_tls11_are_refused_12_and_13_accepted() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    for flag in ["-tls1", "-tls1_1"] {
        // OpenSSL 3 refuses to even offer these at its default security level.
        let run = openssl(
            addr,
            &[
                flag,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-servername",
                "a.test",
            ],
        )
        .await;
        assert!(
            !run.success && !run.handshake_done(),
            "{flag} was accepted: {run:?}"
        );
        // `ssl3_read_bytes ... alert`: the alert was *received*, i.e. the server refused
        // (rustls answers a ClientHello without 1.2/1.3 with handshake_failure).
        assert!(
            run.stderr.contains("ssl3_read_bytes") && run.stderr.contains("SSL alert number"),
            "{flag}: expected an alert from the server: {}",
            run.stderr
        );
    }
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let run = openssl(addr, &[flag, "-servername", "a.test"]).await;
        assert!(run.handshake_done(), "{flag}: {run:?}");
        assert!(run.stdout.contains(version), "{flag}: {}", run.stdout);
    }
}

#[tokio::test]
async fn only_aead_suites_are_negotiable_on_tls12() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let run = openssl(
        addr,
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA",
            "-servername",
            "a.test",
        ],
    )
    .await;
    assert!(!run.handshake_done(), "CBC suite accepted: {run:?}");
}

#[tokio::test]
async fn alpn_is_negotiated_per_entrypoint() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let (both, mut both_events) =
        serve(tls.acceptor(&[ALPN_H2, ALPN_HTTP11]).expect("acceptor")).await;
    let (h1_only, _e) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;

    let v = rustls_get(both, &client_config(&[ALPN_H2, ALPN_HTTP11]), "a.test")
        .await
        .expect("h2");
    assert_eq!(v.alpn.as_deref(), Some(ALPN_H2));
    match both_events.recv().await.expect("event") {
        ServerEvent::Served { sni, alpn, .. } => {
            assert_eq!(sni.as_deref(), Some("a.test"));
            assert_eq!(alpn.as_deref(), Some(ALPN_H2));
        }
        other => panic!("{other:?}"),
    }
    let v = rustls_get(both, &client_config(&[ALPN_HTTP11]), "a.test")
        .await
        .expect("h1");
    assert_eq!(v.alpn.as_deref(), Some(ALPN_HTTP11));
    let v = rustls_get(h1_only, &client_config(&[ALPN_H2, ALPN_HTTP11]), "a.test")
        .await
        .expect("h1");
    assert_eq!(v.alpn.as_deref(), Some(ALPN_HTTP11));
    let v = rustls_get(both, &client_config(&[]), "a.test")
        .await
        .expect("no alpn");
    assert_eq!(v.alpn, None);
    rustls_get(h1_only, &client_config(&[ALPN_H2]), "a.test")
        .await
        .expect_err("h2-only client on an http/1.1 entrypoint");

    let run = openssl(both, &["-alpn", "h2,http/1.1", "-servername", "a.test"]).await;
    assert!(run.stdout.contains("ALPN protocol: h2"), "{}", run.stdout);
    let run = openssl(h1_only, &["-alpn", "h2,http/1.1", "-servername", "a.test"]).await;
    assert!(
        run.stdout.contains("ALPN protocol: http/1.1"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn generated_default_certificate_is_served_for_unknown_names() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let default = tls.resolver().default_cert().expect("generated").clone();
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let v = rustls_get(addr, &client_config(&[]), "unknown.test")
        .await
        .expect("default");
    assert_eq!(common_name(&v.leaf), "FAIRWAY DEFAULT CERT");
    assert_eq!(v.leaf, default.certified_key().cert[0].to_vec());
    let run = openssl(addr, &["-servername", "unknown.test"]).await;
    assert!(
        run.stdout.contains("FAIRWAY DEFAULT CERT"),
        "{}",
        run.stdout
    );
    // No SNI at all: the default certificate too.
    let run = openssl(addr, &["-noservername"]).await;
    assert!(
        run.stdout.contains("FAIRWAY DEFAULT CERT"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn sni_strict_without_certificates_refuses_everything() {
    let tls = TlsContext::new(TlsSettings {
        sni_strict: true,
        ..TlsSettings::default()
    })
    .expect("context");
    assert!(tls.resolver().default_cert().is_none());
    let (addr, mut events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    rustls_get(addr, &client_config(&[]), "unknown.test")
        .await
        .expect_err("refused");
    match events.recv().await.expect("event") {
        ServerEvent::Failed(e) => assert!(e.contains("127.0.0.1"), "error names the peer: {e}"),
        other => panic!("{other:?}"),
    }
    let run = openssl(addr, &["-servername", "unknown.test"]).await;
    assert!(!run.handshake_done(), "{run:?}");
    let run = openssl(addr, &["-noservername"]).await;
    assert!(!run.handshake_done(), "{run:?}");
}

#[tokio::test]
async fn stalled_handshake_times_out() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let acceptor = tls
        .acceptor(&[ALPN_HTTP11])
        .expect("acceptor")
        .with_handshake_timeout(Duration::from_millis(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _client = TcpStream::connect(addr).await.expect("connect");
    let (tcp, _) = listener.accept().await.expect("accept");
    let started = std::time::Instant::now();
    match acceptor.accept(tcp).await {
        Err(Error::HandshakeTimeout { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(200))
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn plain_entrypoint_passes_bytes_through() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (tcp, _) = listener.accept().await.expect("accept");
    let Accepted::Connection(mut conn) = Acceptor::plain().accept(tcp).await.expect("accept")
    else {
        panic!("plain entrypoints never answer challenges");
    };
    assert!(!conn.info().is_tls());
    assert_eq!(
        conn.info().peer(),
        Some(client.local_addr().expect("local"))
    );
    client.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn configured_default_certificate_and_reload_keeps_generated_one() {
    // A configured default certificate (PEM files) is served for unknown names.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["fallback.test".to_owned()]).expect("params");
    params.serial_number = Some(0xdef.into());
    let cert = params.self_signed(&key).expect("cert");
    let (cert_path, key_path) = (
        dir.path().join("default.crt"),
        dir.path().join("default.key"),
    );
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let configured =
        tls_acceptor::DefaultCertificate::from_pem_files(&cert_path, &key_path).expect("pem");
    assert!(!format!("{configured:?}").contains("PRIVATE"));
    let tls = TlsContext::new(TlsSettings {
        default_certificate: Some(configured),
        ..TlsSettings::default()
    })
    .expect("context");
    let (addr, _events) = serve(tls.acceptor(&[ALPN_HTTP11]).expect("acceptor")).await;
    let v = rustls_get(addr, &client_config(&[]), "whatever.test")
        .await
        .expect("default");
    assert_eq!(v.serial(), "def");

    // A missing key file is an error naming the file.
    let err =
        tls_acceptor::DefaultCertificate::from_pem_files(&cert_path, &dir.path().join("nope.key"))
            .expect_err("missing");
    assert!(err.to_string().contains("nope.key"), "{err}");

    // Two contexts (a configuration reload) share the one generated default certificate.
    let a = TlsContext::new(TlsSettings::default()).expect("a");
    let b = TlsContext::new(TlsSettings::default()).expect("b");
    assert_eq!(
        a.resolver().default_cert().expect("a").certified_key().cert,
        b.resolver().default_cert().expect("b").certified_key().cert
    );
}
