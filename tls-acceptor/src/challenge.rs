//! ACME `tls-alpn-01` (RFC 8737): challenge certificates answered on `acme-tls/1`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};
use crate::provider::provider;
use crate::serving::normalize_name;

/// The ALPN protocol id of RFC 8737.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The registered challenge certificates, by lowercase domain.
///
/// The ACME issuer calls [`register`](Self::register) with the SHA-256 digest of the key
/// authorization before telling the CA to validate, and [`remove`](Self::remove) afterwards.
/// Registration generates the self-signed certificate immediately (off the handshake path);
/// a handshake only looks the domain up. Cheap to clone: clones share the same registry.
#[derive(Clone, Default)]
pub struct AlpnChallenges {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    certs: ArcSwap<HashMap<Box<str>, Arc<CertifiedKey>>>,
    writers: Mutex<()>,
}

impl fmt::Debug for AlpnChallenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlpnChallenges")
            .field(
                "domains",
                &self.inner.certs.load().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AlpnChallenges {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the challenge for `domain`: a fresh self-signed P-256
    /// certificate whose only SAN is `domain` and which carries the critical acmeIdentifier
    /// extension (OID 1.3.6.1.5.5.7.1.31) holding `key_authorization_sha256`.
    pub fn register(&self, domain: &str, key_authorization_sha256: [u8; 32]) -> Result<()> {
        let domain = normalize_name(domain);
        if domain.is_empty() || domain.starts_with("*.") {
            // RFC 8737 §3: tls-alpn-01 cannot validate wildcard names.
            return Err(Error::InvalidDomain(domain));
        }
        let certified = Arc::new(challenge_cert(&domain, &key_authorization_sha256)?);
        let _guard = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = HashMap::clone(&self.inner.certs.load());
        map.insert(domain.into_boxed_str(), certified);
        self.inner.certs.store(Arc::new(map));
        Ok(())
    }

    /// Removes the challenge for `domain`; returns whether one was registered.
    pub fn remove(&self, domain: &str) -> bool {
        let domain = normalize_name(domain);
        let _guard = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = HashMap::clone(&self.inner.certs.load());
        let removed = map.remove(domain.as_str()).is_some();
        if removed {
            self.inner.certs.store(Arc::new(map));
        }
        removed
    }

    /// Whether a challenge is registered for `server_name` (lowercase, as rustls gives it).
    pub fn contains(&self, server_name: &str) -> bool {
        self.get(server_name).is_some()
    }

    /// The challenge certificate for `server_name`.
    pub(crate) fn get(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.strip_suffix('.').unwrap_or(server_name);
        self.inner.certs.load().get(name).cloned()
    }
}

/// Builds the RFC 8737 §3 certificate. The key is ephemeral: it proves nothing and lives only
/// as long as the registration.
fn challenge_cert(domain: &str, digest: &[u8; 32]) -> Result<CertifiedKey> {
    let fail = |e: rcgen::Error| Error::Generate {
        domain: domain.to_owned(),
        reason: e.to_string(),
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = CertificateParams::new(vec![domain.to_owned()]).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(fail)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its consistency check parses the leaf with webpki, which
    // rejects the (deliberately) critical acmeIdentifier extension. The key was made here, so
    // it matches by construction.
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| Error::Generate {
            domain: domain.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

/// Resolver of the dedicated acme-tls/1 configuration: challenge certificates only.
#[derive(Debug)]
pub(crate) struct ChallengeResolver(pub(crate) AlpnChallenges);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get(client_hello.server_name()?)
    }
}
