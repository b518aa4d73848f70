//! End to end in one process: certificates come from an `acme-store` (in memory here; a
//! `FileStore` over `acme.json` works the same), a TLS entrypoint serves them by SNI, a
//! certificate is rotated while the server runs, and a client resumes its session across the
//! rotation. Also registers an acme-tls/1 challenge the way the ACME issuer does.
//!
//! ```text
//! cargo run -p tls-acceptor --example store_rotation
//! ```

use std::sync::Arc;
use std::time::Duration;

use acme_store::{CertStore, CertStoreExt, MemoryStore, StoredCert};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tls_acceptor::{ALPN_H2, ALPN_HTTP11, Accepted, TlsContext, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A private CA standing in for Let's Encrypt.
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Example CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let issue = |serial: u64| -> Result<StoredCert, BoxError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["demo.test".to_owned()])?;
        params.serial_number = Some(serial.into());
        let leaf = params.signed_by(&key, &ca)?;
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        Ok(StoredCert::from_pem(
            "demo.test",
            &[],
            &chain,
            &key.serialize_pem(),
        ))
    };

    // The store and the TLS context following it.
    let store = MemoryStore::default();
    let put = |cert: StoredCert| {
        store.modify(|doc| {
            doc.resolvers
                .entry("le".into())
                .or_default()
                .upsert(cert.clone());
            Ok(())
        })
    };
    put(issue(1)?)?;
    let tls = TlsContext::new(TlsSettings::default())?;
    let _watcher = tls.watch(store.subscribe());
    println!(
        "serving snapshot generation {} ({} names)",
        tls.resolver().generation(),
        tls.resolver().name_count()
    );

    // What the ACME issuer does for tls-alpn-01 (RFC 8737).
    let digest: [u8; 32] = Sha256::digest(b"token.account-thumbprint").into();
    tls.challenges().register("demo.test", digest)?;
    println!("acme-tls/1 challenge registered for demo.test");
    tls.challenges().remove("demo.test");

    // A TLS entrypoint offering h2 and http/1.1.
    let acceptor = tls.acceptor(&[ALPN_H2, ALPN_HTTP11])?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(Accepted::Connection(mut conn)) = acceptor.accept(tcp).await {
                    let info = conn.info().clone();
                    let body = format!(
                        "sni={:?} alpn={:?} resumed={}\n",
                        info.sni(),
                        info.alpn()
                            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()),
                        info.resumed()
                    );
                    let _ = conn.write_all(body.as_bytes()).await;
                    let _ = conn.shutdown().await;
                }
            });
        }
    });

    // A client trusting the CA, with session resumption on.
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec()))?;
    let mut client = ClientConfig::builder_with_provider(tls_acceptor::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    let connector = TlsConnector::from(Arc::new(client));

    let fetch = || async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector
            .connect(ServerName::try_from("demo.test")?, tcp)
            .await?;
        let serial = x509_serial(&tls.get_ref().1.peer_certificates().unwrap_or_default()[0]);
        let mut body = String::new();
        tls.read_to_string(&mut body).await?;
        Ok::<_, BoxError>(format!("leaf serial {serial}; server says {}", body.trim()))
    };

    println!("before rotation: {}", fetch().await?);
    let snapshot = put(issue(2)?)?;
    while tls.resolver().generation() < snapshot.generation() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "after rotation (resumed session, old leaf kept): {}",
        fetch().await?
    );
    // A client without a session sees the new certificate.
    println!("new client after rotation: {}", {
        let tcp = TcpStream::connect(addr).await?;
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der().to_vec()))?;
        let fresh = ClientConfig::builder_with_provider(tls_acceptor::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = TlsConnector::from(Arc::new(fresh))
            .connect(ServerName::try_from("demo.test")?, tcp)
            .await?;
        format!(
            "leaf serial {}",
            x509_serial(&tls.get_ref().1.peer_certificates().unwrap_or_default()[0])
        )
    });
    Ok(())
}

fn x509_serial(der: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .map(|(_, c)| c.raw_serial_as_string())
        .unwrap_or_default()
}
