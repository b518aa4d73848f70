//! Helpers shared by the `controller_*` tests: Pebble (the acme-issuer harness), processes,
//! plain HTTP GETs, certificate checks against Pebble's root.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../acme-issuer/tests/support/pebble.rs"]
pub mod pebble;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Start `fairway-controller --config <config>`, logging to `<log>`.
pub fn spawn_controller(config: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_fairway-controller"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start fairway-controller")
}

/// `GET path` over plain HTTP/1.0; `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A metric's value from a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// Poll `f` every 50 ms until it returns `Some`, or panic with `what` after `within`.
pub fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Certificates in `acme.json` under `resolver` whose main domain is `main`, valid now and
/// verifying for `main` against `root_pem` only.
pub fn valid_cert_in_store(store: &Path, resolver: &str, main: &str, root_pem: &str) -> bool {
    let Ok(bytes) = std::fs::read(store) else {
        return false;
    };
    let Ok(doc) = acme_store::AcmeDocument::parse(&bytes) else {
        return false;
    };
    let Some(data) = doc.resolvers.get(resolver) else {
        return false;
    };
    data.certificates.iter().any(|c| {
        c.domain.main == main
            && c.certificate
                .as_deref()
                .and_then(|b| acme_store::decode_base64(b).ok())
                .and_then(|pem| String::from_utf8(pem).ok())
                .is_some_and(|pem| {
                    use rustls_pki_types::pem::PemObject;
                    let chain: Vec<_> =
                        rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                            .filter_map(Result::ok)
                            .collect();
                    pebble::verify_chain(&chain, root_pem, main).is_ok()
                })
    })
}

/// Seconds since the epoch (for seeding).
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// A child process killed and reaped when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TLS handshake to `127.0.0.1:port` for `name` by a client that trusts only `root_pem`
/// (Pebble's root): proof that the served certificate chains to the ACME CA.
pub async fn verified_handshake(port: u16, name: &str, root_pem: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let server_name =
        rustls_pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}
