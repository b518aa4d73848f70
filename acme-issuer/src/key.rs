//! Certificate keys and CSRs.
//!
//! ECDSA P-256 is the default: small, fast handshakes, accepted everywhere. RSA 2048/4096 is
//! available for old clients. Keys are generated with `rcgen` on aws-lc-rs and kept as PKCS#8 PEM
//! inside [`SecretPem`], which never prints its contents.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize};

use crate::Error;

/// The key type of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CertKeyType {
    /// ECDSA on P-256 (default).
    #[default]
    EcdsaP256,
    /// RSA 2048-bit.
    Rsa2048,
    /// RSA 4096-bit.
    Rsa4096,
}

impl CertKeyType {
    /// Traefik's configuration name (`certificatesResolvers.<n>.acme.keyType`).
    pub fn traefik_name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "EC256",
            Self::Rsa2048 => "RSA2048",
            Self::Rsa4096 => "RSA4096",
        }
    }
}

impl std::str::FromStr for CertKeyType {
    type Err = String;

    /// Accepts Traefik's names (`EC256`, `RSA2048`, `RSA4096`), lego's stored names (`P256`,
    /// `2048`, `4096`) and `ecdsa-p256`, `rsa-2048`, `rsa-4096`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "ec256" | "p256" | "ecdsap256" | "ecdsa" => Ok(Self::EcdsaP256),
            "rsa2048" | "2048" => Ok(Self::Rsa2048),
            "rsa4096" | "4096" => Ok(Self::Rsa4096),
            _ => Err(format!(
                "unsupported key type `{s}` (expected EC256, RSA2048 or RSA4096)"
            )),
        }
    }
}

/// A PEM private key that never appears in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    /// Wrap PEM text.
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    /// The PEM text, for writing to the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// Generate a fresh certificate key.
pub fn generate(kind: CertKeyType, domain: &str) -> Result<KeyPair, Error> {
    let result = match kind {
        CertKeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        CertKeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        CertKeyType::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    result.map_err(|e| Error::Key {
        domain: domain.to_owned(),
        reason: format!("generating {} key: {e}", kind.traefik_name()),
    })
}

/// Load a key persisted by an interrupted order.
pub fn from_pem(pem: &SecretPem, domain: &str) -> Result<KeyPair, Error> {
    KeyPair::from_pem(pem.expose()).map_err(|e| Error::Key {
        domain: domain.to_owned(),
        reason: format!("unreadable persisted key: {e}"),
    })
}

/// A DER CSR for `names` (first = subject CN), signed by `key`.
pub fn csr_der(key: &KeyPair, names: &[String]) -> Result<Vec<u8>, Error> {
    let domain = names.first().map(String::as_str).unwrap_or("");
    let err = |e: rcgen::Error| Error::Key {
        domain: domain.to_owned(),
        reason: format!("building CSR: {e}"),
    };
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let csr = params.serialize_request(key).map_err(err)?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_round_trip() {
        for k in [
            CertKeyType::EcdsaP256,
            CertKeyType::Rsa2048,
            CertKeyType::Rsa4096,
        ] {
            assert_eq!(k.traefik_name().parse::<CertKeyType>(), Ok(k));
        }
        assert_eq!("P256".parse(), Ok(CertKeyType::EcdsaP256));
        assert_eq!("4096".parse(), Ok(CertKeyType::Rsa4096));
        assert!("EC384".parse::<CertKeyType>().is_err());
    }

    #[test]
    fn csr_names_and_key_reload() {
        let key = generate(CertKeyType::EcdsaP256, "a.test").unwrap();
        let pem = SecretPem::new(key.serialize_pem());
        assert_eq!(format!("{pem:?}"), "SecretPem(<redacted>)");
        let again = from_pem(&pem, "a.test").unwrap();
        assert_eq!(again.public_key_pem(), key.public_key_pem());
        let der = csr_der(&again, &["a.test".into(), "b.test".into()]).unwrap();
        use x509_parser::prelude::FromDer as _;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let text = format!(
            "{:?}",
            csr.requested_extensions().map(|e| e.collect::<Vec<_>>())
        );
        assert!(text.contains("a.test") && text.contains("b.test"), "{text}");
    }

    #[test]
    fn rsa_2048_generates() {
        let key = generate(CertKeyType::Rsa2048, "r.test").unwrap();
        assert!(key.serialize_pem().contains("PRIVATE KEY"));
    }
}
