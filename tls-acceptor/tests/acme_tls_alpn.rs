//! acme-tls/1 (RFC 8737) on real sockets: the challenge certificate, the closed connection,
//! and the refusal without a registered challenge.

mod common;

use common::{ServerEvent, client_config, openssl, rustls_get, serve};
use sha2::{Digest, Sha256};
use tls_acceptor::{ACME_TLS_ALPN, ALPN_H2, ALPN_HTTP11, TlsContext, TlsSettings};
use x509_parser::prelude::*;

const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

#[tokio::test]
async fn challenge_certificate_follows_rfc8737() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let digest: [u8; 32] = Sha256::digest(b"token.thumbprint").into();
    tls.challenges()
        .register("Challenge.Example.COM", digest)
        .expect("register");
    let (addr, mut events) = serve(tls.acceptor(&[ALPN_H2, ALPN_HTTP11]).expect("acceptor")).await;

    let view = rustls_get(
        addr,
        &client_config(&[ACME_TLS_ALPN]),
        "challenge.example.com",
    )
    .await
    .expect("handshake");
    assert_eq!(view.alpn.as_deref(), Some(ACME_TLS_ALPN));
    match events.recv().await.expect("event") {
        ServerEvent::Challenge { server_name } => assert_eq!(server_name, "challenge.example.com"),
        other => panic!("expected a challenge answer, got {other:?}"),
    }

    let (_, cert) = X509Certificate::from_der(&view.leaf).expect("parse");
    // §3: exactly one SAN, the dNSName being validated.
    let san = cert
        .subject_alternative_name()
        .expect("san ok")
        .expect("san present");
    let names: Vec<_> = san.value.general_names.iter().collect();
    assert_eq!(names.len(), 1);
    assert!(matches!(
        names[0],
        GeneralName::DNSName("challenge.example.com")
    ));
    // §3: the acmeIdentifier extension is critical and holds the DER OCTET STRING of the digest.
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .expect("acmeIdentifier present");
    assert!(ext.critical, "acmeIdentifier must be critical");
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&digest);
    assert_eq!(ext.value, &expected[..]);
    // Self-signed (issuer is the subject).
    assert_eq!(cert.subject(), cert.issuer());

    // The connection was closed after the handshake: no application data, EOF.
    // (rustls_get already read to EOF; a second client sees the same and the same cert.)
    let again = rustls_get(
        addr,
        &client_config(&[ACME_TLS_ALPN]),
        "challenge.example.com",
    )
    .await
    .expect("second handshake");
    assert_eq!(again.leaf, view.leaf);
}

#[tokio::test]
async fn challenge_seen_by_openssl_and_removed() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let digest: [u8; 32] = Sha256::digest(b"other.key-authorization").into();
    tls.challenges()
        .register("acme.test", digest)
        .expect("register");
    let (addr, _events) = serve(tls.acceptor(&[ALPN_H2, ALPN_HTTP11]).expect("acceptor")).await;

    let run = openssl(addr, &["-servername", "acme.test", "-alpn", "acme-tls/1"]).await;
    assert!(run.stdout.contains("ALPN protocol: acme-tls/1"), "{run:?}");
    assert_eq!(run.leaf_sans(), ["acme.test"]);

    // Removed: the ALPN is refused (no_application_protocol) and no certificate is served.
    assert!(tls.challenges().remove("acme.test"));
    assert!(!tls.challenges().remove("acme.test"));
    let err = rustls_get(addr, &client_config(&[ACME_TLS_ALPN]), "acme.test")
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("noapplicationprotocol"),
        "{err}"
    );
    let run = openssl(addr, &["-servername", "acme.test", "-alpn", "acme-tls/1"]).await;
    assert!(!run.handshake_done(), "{run:?}");
    assert!(run.stderr.contains("no application protocol"), "{run:?}");
}

#[tokio::test]
async fn refused_even_when_entrypoint_has_no_alpn() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    let (addr, _events) = serve(tls.acceptor(&[]).expect("acceptor")).await;
    let err = rustls_get(addr, &client_config(&[ACME_TLS_ALPN]), "nochallenge.test")
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("noapplicationprotocol"),
        "{err}"
    );
    // Ordinary clients on that entrypoint negotiate no ALPN and get the default cert.
    let view = rustls_get(addr, &client_config(&[]), "nochallenge.test")
        .await
        .expect("plain handshake");
    assert_eq!(view.alpn, None);
}

#[test]
fn wildcard_challenges_are_rejected() {
    let tls = TlsContext::new(TlsSettings::default()).expect("context");
    assert!(tls.challenges().register("*.example.com", [0; 32]).is_err());
}
