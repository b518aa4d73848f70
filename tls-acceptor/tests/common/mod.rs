//! Shared helpers for the socket tests: a tiny TLS server on 127.0.0.1, a rustls client that
//! records what it was served, and an `openssl s_client` runner.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tls_acceptor::{Accepted, Acceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::*;

/// What the server saw for one connection.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    Served {
        sni: Option<String>,
        alpn: Option<Vec<u8>>,
        resumed: bool,
    },
    Challenge {
        server_name: String,
    },
    Failed(String),
}

/// Runs an accept loop; every TLS connection gets a one-line HTTP/1.1 response and is closed.
pub async fn serve(acceptor: Acceptor) -> (SocketAddr, mpsc::UnboundedReceiver<ServerEvent>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(Accepted::Connection(mut conn)) => {
                        let info = conn.info().clone();
                        let _ = tx.send(ServerEvent::Served {
                            sni: info.sni().map(str::to_owned),
                            alpn: info.alpn().map(|a| a.as_bytes().to_vec()),
                            resumed: info.resumed(),
                        });
                        let mut buf = [0u8; 1024];
                        // Answer once the client has sent something (or closed).
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                        let _ = conn.shutdown().await;
                    }
                    Ok(Accepted::AcmeChallenge { server_name }) => {
                        let _ = tx.send(ServerEvent::Challenge { server_name });
                    }
                    Err(e) => {
                        let _ = tx.send(ServerEvent::Failed(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Accepts any certificate (the tests inspect the served leaf themselves) and offers the
/// given signature schemes (all of the provider's when empty).
#[derive(Debug, Default)]
pub struct AcceptAnything(pub Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &tls_acceptor::provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Via the raw SPKI: webpki refuses to parse the RFC 8737 certificate (its critical
        // acmeIdentifier extension), and the tests need to see that certificate.
        let (_, parsed) = X509Certificate::from_der(cert)
            .map_err(|_| rustls::Error::General("unparsable leaf".into()))?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(
            parsed.tbs_certificate.subject_pki.raw,
        );
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &tls_acceptor::provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        if !self.0.is_empty() {
            return self.0.clone();
        }
        tls_acceptor::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config that accepts any certificate and offers `alpn`.
pub fn client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_with(alpn, &[], true)
}

/// A client config offering only `schemes` (all when empty), with or without resumption.
pub fn client_config_with(
    alpn: &[&[u8]],
    schemes: &[SignatureScheme],
    resume: bool,
) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(tls_acceptor::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes.to_vec())))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// What a client saw.
#[derive(Debug)]
pub struct ClientView {
    pub leaf: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub resumed: bool,
    pub version: Option<rustls::ProtocolVersion>,
}

impl ClientView {
    pub fn serial(&self) -> String {
        serial_hex(&self.leaf)
    }
    pub fn subject_alt_names(&self) -> Vec<String> {
        sans(&self.leaf)
    }
}

/// Handshakes with `sni`, sends a request and reads the response.
pub async fn rustls_get(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> Result<ClientView, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    let view = ClientView {
        leaf: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        version: conn.protocol_version(),
    };
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body).await;
    Ok(view)
}

pub fn serial_hex(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("parse leaf");
    let s = cert.raw_serial_as_string().replace(':', "");
    s.trim_start_matches('0').to_owned()
}

pub fn sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).expect("parse leaf");
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push((*d).to_owned());
            }
        }
    }
    out
}

pub fn common_name(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("parse leaf");
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Output of one `openssl s_client` run.
#[derive(Debug)]
pub struct OpensslRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl OpensslRun {
    /// The served leaf's SANs (parsed from the PEM that `-showcerts` prints).
    pub fn leaf_sans(&self) -> Vec<String> {
        self.leaf_der().map(|d| sans(&d)).unwrap_or_default()
    }
    pub fn leaf_serial(&self) -> Option<String> {
        self.leaf_der().map(|d| serial_hex(&d))
    }
    fn leaf_der(&self) -> Option<Vec<u8>> {
        use rustls::pki_types::pem::PemObject;
        let start = self.stdout.find("-----BEGIN CERTIFICATE-----")?;
        let end = self.stdout[start..].find("-----END CERTIFICATE-----")? + start + 25;
        CertificateDer::from_pem_slice(&self.stdout.as_bytes()[start..end])
            .ok()
            .map(|c| c.to_vec())
    }
    /// `Protocol  : TLSv1.3` / `New, TLSv1.3, Cipher is ...` handshake marker.
    pub fn handshake_done(&self) -> bool {
        self.stdout.contains("-----BEGIN CERTIFICATE-----")
            && !self.stdout.contains("Cipher is (NONE)")
            && !self.stderr.contains("alert")
    }
}

/// Runs `openssl s_client` against `addr` with extra args; stdin is closed at once.
pub async fn openssl(addr: SocketAddr, args: &[&str]) -> OpensslRun {
    let connect = addr.to_string();
    let mut cmd = tokio::process::Command::new("/usr/bin/openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(&connect)
        .arg("-showcerts")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("openssl finished")
        .expect("openssl runs");
    OpensslRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A certificate as the ACME issuer would store it (PEM texts, base64 inside `StoredCert`).
pub fn issue(
    names: &[&str],
    alg: &'static rcgen::SignatureAlgorithm,
    serial: u64,
) -> acme_store::StoredCert {
    let key = rcgen::KeyPair::generate_for(alg).expect("keygen");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2090, 1, 1);
    let cert = params.self_signed(&key).expect("sign");
    let sans: Vec<String> = names[1..].iter().map(|s| s.to_string()).collect();
    acme_store::StoredCert::from_pem(names[0], &sans, &cert.pem(), &key.serialize_pem())
}

/// Inserts or replaces (same name set) `cert` under resolver `le`.
pub fn put(
    store: &acme_store::MemoryStore,
    cert: acme_store::StoredCert,
) -> Arc<acme_store::Snapshot> {
    use acme_store::CertStoreExt;
    store
        .modify(|doc| {
            doc.resolvers
                .entry("le".to_owned())
                .or_default()
                .upsert(cert.clone());
            Ok(())
        })
        .expect("store update")
}
