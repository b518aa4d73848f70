//! Serving certificates: a rustls [`CertifiedKey`] plus the facts the resolver needs per
//! handshake (names, validity, which signature schemes the key can produce), all computed
//! once when a snapshot arrives so that a handshake only compares.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::SignatureScheme;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::provider::provider;

/// Every scheme a server key might sign with; probed once per key at build time.
const PROBE_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

/// Key family, in the order the resolver prefers them when the client accepts several:
/// ECDSA handshakes are several times cheaper for the server than RSA ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyFamily {
    /// ECDSA (P-256, P-384, P-521).
    Ecdsa,
    /// Ed25519.
    Ed25519,
    /// RSA (PKCS#1 v1.5 and PSS).
    Rsa,
}

/// Where a serving certificate came from; used in logs and to find the last good
/// certificate of a broken store entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertOrigin {
    /// The ACME resolver (Traefik `certResolver`) name, empty for non-store certificates.
    pub resolver: String,
    /// The main domain of the certificate.
    pub main: String,
}

/// One certificate ready to serve.
pub struct ServingCert {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) schemes: Box<[SignatureScheme]>,
    pub(crate) family: KeyFamily,
    pub(crate) names: Box<[Box<str>]>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) serial_hex: Box<str>,
    pub(crate) origin: CertOrigin,
    /// SHA-256 over the chain and the key: the cache key that lets a rebuild reuse an
    /// unchanged certificate instead of re-parsing its key.
    pub(crate) fingerprint: [u8; 32],
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material, by construction: only public facts.
        f.debug_struct("ServingCert")
            .field("origin", &self.origin)
            .field("names", &self.names)
            .field("family", &self.family)
            .field("serial_hex", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

/// Everything needed to build a [`ServingCert`], borrowed from wherever the certificate
/// lives (a store entry, a PEM file, a freshly generated certificate).
pub(crate) struct CertInput<'a> {
    pub(crate) origin: CertOrigin,
    /// Lowercased DNS names, wildcards as `*.example.com`.
    pub(crate) names: Vec<String>,
    pub(crate) chain: &'a [CertificateDer<'static>],
    pub(crate) key: &'a PrivateKeyDer<'static>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) serial_hex: String,
}

impl CertInput<'_> {
    /// SHA-256 over chain and key bytes. The digest is a cache key only; it is never logged.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for c in self.chain {
            h.update((c.len() as u64).to_be_bytes());
            h.update(c.as_ref());
        }
        h.update(self.key.secret_der());
        h.finalize().into()
    }

    /// Parses the key with aws-lc-rs, checks it matches the leaf, and probes its schemes.
    pub(crate) fn build(&self) -> Result<ServingCert> {
        let fail = |reason: String| Error::Certificate {
            domain: self.origin.main.clone(),
            reason,
        };
        if self.chain.is_empty() {
            return Err(fail("empty certificate chain".into()));
        }
        // rustls key errors describe the problem, never the bytes.
        let certified =
            CertifiedKey::from_der(self.chain.to_vec(), self.key.clone_key(), &provider())
                .map_err(|e| fail(format!("private key unusable: {e}")))?;
        let schemes: Box<[SignatureScheme]> = PROBE_SCHEMES
            .iter()
            .copied()
            .filter(|s| certified.key.choose_scheme(&[*s]).is_some())
            .collect();
        let family = match certified.key.algorithm() {
            rustls::SignatureAlgorithm::ECDSA => KeyFamily::Ecdsa,
            rustls::SignatureAlgorithm::ED25519 => KeyFamily::Ed25519,
            rustls::SignatureAlgorithm::RSA => KeyFamily::Rsa,
            other => return Err(fail(format!("unsupported key algorithm {other:?}"))),
        };
        if schemes.is_empty() {
            return Err(fail("key supports no TLS signature scheme".into()));
        }
        let names: Box<[Box<str>]> = self
            .names
            .iter()
            .map(|n| normalize_name(n).into_boxed_str())
            .collect();
        if names.is_empty() {
            return Err(fail("certificate names no domain".into()));
        }
        Ok(ServingCert {
            certified: Arc::new(certified),
            schemes,
            family,
            names,
            not_before: self.not_before,
            not_after: self.not_after,
            serial_hex: self.serial_hex.clone().into_boxed_str(),
            origin: self.origin.clone(),
            fingerprint: self.fingerprint(),
        })
    }
}

impl ServingCert {
    /// The rustls certified key (chain + signing key).
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }
    /// The names the certificate serves (lowercase; wildcards as `*.example.com`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }
    /// Serial number, lowercase hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
    /// Key family.
    pub fn family(&self) -> KeyFamily {
        self.family
    }
    /// Where it came from.
    pub fn origin(&self) -> &CertOrigin {
        &self.origin
    }
    /// Whether `now` lies in `[notBefore, notAfter]`.
    pub(crate) fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
    /// Whether the key can sign with one of the schemes the client offered.
    pub(crate) fn compatible(&self, offered: &[SignatureScheme]) -> bool {
        self.schemes.iter().any(|s| offered.contains(s))
    }
}

/// Lowercases and strips one trailing dot: the canonical form of names in the index.
pub(crate) fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}
