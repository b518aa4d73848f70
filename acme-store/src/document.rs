//! The typed `acme.json` document, as Traefik stores it, with every unknown field kept.
//!
//! Certificates and keys stay in their stored text form (base64) here: a bad entry must be
//! written back byte for byte, so decoding happens in [`crate::entry`], never on this layer.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use crate::format::json::Value;

/// Unknown members of a JSON object, in input order. They are written back after the known ones.
pub type Fields = Vec<(String, Value)>;

/// The resolver name given to the single resolver of a Traefik v1 (or legacy) file, and the
/// default target of a v1 -> v2 migration (traefik-migration-tool uses the same default).
pub const V1_RESOLVER: &str = "default";

/// The `Store` value Traefik's ACME provider always writes.
pub const DEFAULT_STORE: &str = "default";

/// The generation of an `acme.json` file, detected from the shape of its values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Traefik <= 1.5: one account at the top level, certificates under `DomainsCertificate`.
    /// Read-only.
    Legacy,
    /// Traefik 1.6 - 1.7: `Account`, `Certificates`, `HTTPChallenges`, `TLSChallenges`.
    V1,
    /// Traefik 2.x / 3.x: an object keyed by certificate resolver name.
    #[default]
    V2,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Legacy => "legacy (Traefik <= 1.5)",
            Format::V1 => "v1 (Traefik 1.6-1.7)",
            Format::V2 => "v2/v3 (Traefik 2.x-3.x)",
        })
    }
}

/// A whole `acme.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcmeDocument {
    /// The generation it was read in; also the generation it is written in.
    pub format: Format,
    /// Resolvers by name (sorted, as Go writes map keys). A v1 or legacy file has exactly one,
    /// named [`V1_RESOLVER`].
    pub resolvers: BTreeMap<String, ResolverData>,
    /// The top-level parts of a v1 file that have no v2 equivalent.
    pub v1: V1Extras,
}

/// Top-level members of a Traefik v1 file besides `Account` and `Certificates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Extras {
    /// `HTTPChallenges` (token -> domain -> key authorisation), kept as is.
    pub http_challenges: Value,
    /// `TLSChallenges`, kept as is.
    pub tls_challenges: Value,
    /// Unknown top-level members.
    pub extra: Fields,
}

impl Default for V1Extras {
    fn default() -> Self {
        // What Traefik 1.7 writes for a fresh store.
        V1Extras {
            http_challenges: Value::Null,
            tls_challenges: Value::Object(Vec::new()),
            extra: Vec::new(),
        }
    }
}

/// One resolver's data (`StoredData` in Traefik).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverData {
    /// The ACME account, `null` until one is registered.
    pub account: Option<Account>,
    /// The certificates.
    pub certificates: Vec<StoredCert>,
    /// When `certificates` is empty: write `null` (Go's nil slice) rather than `[]`.
    pub certificates_null: bool,
    /// Unknown members.
    pub extra: Fields,
}

impl Default for ResolverData {
    fn default() -> Self {
        ResolverData {
            account: None,
            certificates: Vec::new(),
            certificates_null: true,
            extra: Vec::new(),
        }
    }
}

impl ResolverData {
    /// Adds `cert`, replacing any certificate for the same set of domain names (case-insensitive,
    /// order-insensitive), which is how Traefik identifies a certificate. Returns the replaced one.
    pub fn upsert(&mut self, cert: StoredCert) -> Option<StoredCert> {
        let names = cert.domain.name_set();
        if let Some(pos) = self
            .certificates
            .iter()
            .position(|c| c.domain.name_set() == names)
        {
            Some(std::mem::replace(&mut self.certificates[pos], cert))
        } else {
            self.certificates.push(cert);
            None
        }
    }

    /// Removes the certificates whose main domain is `main` (case-insensitive); returns how many.
    pub fn remove_main(&mut self, main: &str) -> usize {
        let before = self.certificates.len();
        self.certificates
            .retain(|c| !c.domain.main.eq_ignore_ascii_case(main));
        before - self.certificates.len()
    }
}

/// An ACME account (`Account` in Traefik).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// The contact e-mail.
    pub email: String,
    /// The ACME registration resource (`{"body": {...}, "uri": "..."}`), in the shape Go writes
    /// it (lego's field names and order, `omitempty`); unknown members are kept after those.
    pub registration: Option<Value>,
    /// base64 of the DER account key (Traefik: PKCS#1 RSA), as stored.
    pub private_key: Option<String>,
    /// lego's key type string (`"P256"`, `"4096"`, ...); `None` when absent (Traefik >= 3.7.6).
    pub key_type: Option<String>,
    /// Unknown members.
    pub extra: Fields,
}

impl Account {
    /// The account URL (`Registration.uri`), if any.
    pub fn registration_uri(&self) -> Option<&str> {
        let members = self.registration.as_ref()?.as_object()?;
        members
            .iter()
            .rev()
            .find(|(k, _)| crate::format::fold_eq(k, "uri"))
            .and_then(|(_, v)| v.as_str())
    }

    /// The decoded DER of the account key (base64 ignoring CR/LF, as Go does).
    pub fn private_key_der(&self) -> Option<Result<Vec<u8>, base64::DecodeError>> {
        self.private_key.as_deref().map(decode_base64)
    }

    /// The account key as a typed, redacting key. Traefik stores DER PKCS#1 RSA; PKCS#8 and SEC1
    /// (e.g. the P-256 keys instant-acme creates) are recognised too, by trying each encoding
    /// with rustls' aws-lc-rs provider. `None` when the account has no key.
    pub fn private_key(&self) -> Option<Result<crate::PrivateKey, String>> {
        use rustls_pki_types::{
            PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
        };
        let der = match self.private_key_der()? {
            Ok(der) => der,
            Err(e) => return Some(Err(format!("account key is not base64: {e}"))),
        };
        let candidates = [
            PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.clone())),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
            PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        ];
        for key in candidates {
            if rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).is_ok() {
                return Some(Ok(crate::PrivateKey::new(key)));
            }
        }
        Some(Err(
            "account key is not a DER PKCS#1, PKCS#8 or SEC1 private key".into(),
        ))
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("email", &self.email)
            .field("registration", &self.registration)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("key_type", &self.key_type)
            .field("extra", &self.extra)
            .finish()
    }
}

/// One stored certificate (`CertAndStore` in Traefik), undecoded.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoredCert {
    /// The domain set it was requested for.
    pub domain: Domain,
    /// base64 of the PEM chain (leaf first), exactly as stored.
    pub certificate: Option<String>,
    /// base64 of the PEM private key, exactly as stored.
    pub key: Option<String>,
    /// The TLS store name (Traefik always writes `"default"`).
    pub store: String,
    /// Unknown members.
    pub extra: Fields,
}

impl StoredCert {
    /// A new entry in Traefik's encoding: base64 of the PEM texts, store `"default"`.
    pub fn from_pem(main: &str, sans: &[String], chain_pem: &str, key_pem: &str) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        StoredCert {
            domain: Domain {
                main: main.to_owned(),
                sans: sans.to_vec(),
                extra: Vec::new(),
            },
            certificate: Some(b64.encode(chain_pem)),
            key: Some(b64.encode(key_pem)),
            store: DEFAULT_STORE.to_owned(),
            extra: Vec::new(),
        }
    }
}

impl fmt::Debug for StoredCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCert")
            .field("domain", &self.domain)
            .field("certificate", &self.certificate.as_ref().map(String::len))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("store", &self.store)
            .field("extra", &self.extra)
            .finish()
    }
}

/// A certificate's domain set (`types.Domain`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Domain {
    /// The main domain (the certificate's CN).
    pub main: String,
    /// The other names.
    pub sans: Vec<String>,
    /// Unknown members.
    pub extra: Fields,
}

impl Domain {
    /// All names, lowercased, sorted and deduplicated.
    pub fn name_set(&self) -> Vec<String> {
        let mut v: Vec<String> = std::iter::once(&self.main)
            .chain(&self.sans)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_ascii_lowercase())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Decodes standard base64 the way Go's `encoding/json` does for `[]byte`: `\r` and `\n` are
/// ignored, padding is required.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if s.contains(['\r', '\n']) {
        let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        b64.decode(cleaned)
    } else {
        b64.decode(s)
    }
}
