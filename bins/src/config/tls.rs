//! `[tls]` section: the certificate store, the default certificate and SNI strictness.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The Traefik-compatible `acme.json` store to serve certificates from (optional).
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// A PEM certificate + key served when no store certificate matches; a self-signed one
    /// is generated at start when absent.
    #[serde(default)]
    pub default_certificate: Option<CertKeyPaths>,
    /// Refuse handshakes for names no store certificate covers.
    #[serde(default)]
    pub sni_strict: bool,
}

/// A certificate chain and key, as PEM files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertKeyPaths {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsSection {
    /// Makes relative paths relative to the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(store) = &mut self.store {
            *store = base.join(&*store);
        }
        if let Some(pair) = &mut self.default_certificate {
            pair.cert = base.join(&pair.cert);
            pair.key = base.join(&pair.key);
        }
    }
}
