//! Configuration types: process-wide TLS settings and the default certificate.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// ALPN id for HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id for HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Process-wide TLS settings (the `[tls]` section), shared by every TLS entrypoint.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Served when no store certificate matches; generated at start when `None`.
    pub default_certificate: Option<DefaultCertificate>,
    /// Refuse handshakes for names no store certificate covers (and without SNI).
    pub sni_strict: bool,
    /// Capacity of the stateful session cache (TLS 1.2 session ids, TLS 1.3 when tickets
    /// are off). Default 16384; rustls' own default of 256 is far too small for an edge.
    pub session_cache_size: usize,
    /// TLS 1.3 tickets sent after each full handshake. Default 1: browsers use one per
    /// connection, and each ticket costs an encryption and a write.
    pub tls13_tickets: usize,
    /// How long a client may take to complete the handshake. Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            default_certificate: None,
            sni_strict: false,
            session_cache_size: 16 * 1024,
            tls13_tickets: 1,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A configured default certificate: chain (leaf first) and key.
///
/// `Debug` shows the chain length only; the key is never printed.
#[derive(Clone)]
pub struct DefaultCertificate {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: std::sync::Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for DefaultCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultCertificate")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl DefaultCertificate {
    /// From DER values.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self {
            chain,
            key: std::sync::Arc::new(key),
        }
    }

    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::DefaultCertificateFile {
                path: cert.display().to_string(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(Error::DefaultCertificateFile {
                path: cert.display().to_string(),
                reason: "no CERTIFICATE block".into(),
            });
        }
        // pki-types' PEM errors describe the section, never its contents.
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::DefaultCertificateFile {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(chain, key))
    }
}
