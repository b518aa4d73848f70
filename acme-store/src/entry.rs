//! Decoded, serving-ready certificates and the problems found while decoding.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::document::{StoredCert, decode_base64};

/// A private key that never shows up in `Debug` output, logs or error messages.
#[derive(PartialEq, Eq)]
pub struct PrivateKey(PrivateKeyDer<'static>);

impl PrivateKey {
    /// Wraps a DER key.
    pub fn new(der: PrivateKeyDer<'static>) -> Self {
        PrivateKey(der)
    }

    /// The key, for building a TLS signing key.
    pub fn der(&self) -> &PrivateKeyDer<'static> {
        &self.0
    }

    /// The PKCS#1/SEC1/PKCS#8 flavour name, e.g. for `fairway acme dump`.
    pub fn pem_label(&self) -> &'static str {
        match &self.0 {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        }
    }
}

impl PrivateKey {
    /// The key as PKCS#8 DER, the encoding lego v5 (Traefik >= 3.7.6) writes and every Traefik
    /// reads. PKCS#1 keys are wrapped as `rsaEncryption`; SEC1 keys as `id-ecPublicKey` on the
    /// curve of `key_type` (the certificate's). `None` for an EC key of an unknown curve.
    pub fn to_pkcs8(&self, key_type: &KeyType) -> Option<PrivatePkcs8KeyDer<'static>> {
        // DER: OIDs with their tag and length.
        const RSA_ENCRYPTION: &[u8] = &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        const DER_NULL: &[u8] = &[0x05, 0x00];
        const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
        let (algorithm, inner): (Vec<u8>, &[u8]) = match &self.0 {
            PrivateKeyDer::Pkcs8(k) => {
                return Some(PrivatePkcs8KeyDer::from(k.secret_pkcs8_der().to_vec()));
            }
            PrivateKeyDer::Pkcs1(k) => ([RSA_ENCRYPTION, DER_NULL].concat(), k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => {
                let curve = match key_type {
                    KeyType::EcdsaP256 => P256,
                    KeyType::EcdsaP384 => P384,
                    KeyType::EcdsaP521 => P521,
                    _ => return None,
                };
                ([EC_PUBLIC_KEY, curve].concat(), k.secret_sec1_der())
            }
            _ => return None,
        };
        let body = [
            &[0x02, 0x01, 0x00][..], // version 0
            &der_tlv(0x30, &algorithm),
            &der_tlv(0x04, inner),
        ]
        .concat();
        Some(PrivatePkcs8KeyDer::from(der_tlv(0x30, &body)))
    }

    /// [`to_pkcs8`](Self::to_pkcs8) as a PKCS#8 `PRIVATE KEY` PEM block (64-column base64).
    pub fn to_pkcs8_pem(&self, key_type: &KeyType) -> Option<String> {
        self.to_pkcs8(key_type)
            .map(|k| pem_encode("PRIVATE KEY", k.secret_pkcs8_der()))
    }
}

/// A DER tag-length-value.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// PEM with 64-column base64 lines and `\n` line ends, as Go's `pem.Encode` writes.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Clone for PrivateKey {
    fn clone(&self) -> Self {
        PrivateKey(self.0.clone_key())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// The certificate's public key algorithm (what tls-acceptor picks between for a client).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// ECDSA on P-521.
    EcdsaP521,
    /// RSA with this modulus size in bits.
    Rsa(u32),
    /// Ed25519.
    Ed25519,
    /// Anything else, by algorithm OID.
    Other(String),
}

impl fmt::Display for KeyType {
    /// Traefik's `keyType` spelling (`EC256`, `RSA4096`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::EcdsaP256 => f.write_str("EC256"),
            KeyType::EcdsaP384 => f.write_str("EC384"),
            KeyType::EcdsaP521 => f.write_str("EC521"),
            KeyType::Rsa(bits) => write!(f, "RSA{bits}"),
            KeyType::Ed25519 => f.write_str("ED25519"),
            KeyType::Other(oid) => write!(f, "OID:{oid}"),
        }
    }
}

/// One decoded certificate of a store, ready to serve.
#[derive(Clone, Debug)]
pub struct CertEntry {
    resolver: Arc<str>,
    index: usize,
    main: String,
    sans: Vec<String>,
    store: String,
    names: Vec<String>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKey,
    key_type: KeyType,
    not_before: SystemTime,
    not_after: SystemTime,
    serial_hex: String,
    issuer: String,
    subject: String,
    common_name: Option<String>,
}

impl CertEntry {
    /// The resolver holding it.
    pub fn resolver(&self) -> &str {
        &self.resolver
    }
    /// Its position in the resolver's `Certificates` array.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The stored main domain.
    pub fn main(&self) -> &str {
        &self.main
    }
    /// The stored SANs.
    pub fn sans(&self) -> &[String] {
        &self.sans
    }
    /// The TLS store name (`"default"`).
    pub fn store(&self) -> &str {
        &self.store
    }
    /// The DNS names the leaf covers (its SAN DNS names, or its CN when it has none), lowercased,
    /// without trailing dot; wildcards kept as `*.example.com`.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    /// The leaf's private key (redacted in `Debug`).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
    /// The leaf's key algorithm.
    pub fn key_type(&self) -> &KeyType {
        &self.key_type
    }
    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// Whether `now` lies within the validity period.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
    /// The serial number, lowercase hex without separators.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
    /// The issuer's distinguished name (RFC 4514 style).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The subject's distinguished name.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The subject's common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// Decodes entry `index` of `resolver`. Any failure is a [`ProblemKind`]; the caller reports it
    /// with the resolver and domain and keeps the stored text untouched.
    pub fn decode(
        resolver: Arc<str>,
        index: usize,
        stored: &StoredCert,
    ) -> Result<Self, ProblemKind> {
        let cert_b64 = stored
            .certificate
            .as_deref()
            .ok_or(ProblemKind::MissingCertificate)?;
        let key_b64 = stored.key.as_deref().ok_or(ProblemKind::MissingKey)?;
        let cert_pem = decode_base64(cert_b64)
            .map_err(|e| ProblemKind::Undecodable(format!("certificate is not base64: {e}")))?;
        let key_pem = decode_base64(key_b64)
            .map_err(|e| ProblemKind::Undecodable(format!("key is not base64: {e}")))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProblemKind::Undecodable(format!("certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(ProblemKind::Undecodable(
                "no CERTIFICATE block in the certificate PEM".into(),
            ));
        }
        // The PEM error could quote key text, so it is not passed on.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            ProblemKind::Undecodable("key is not a PEM private key (PKCS#1, SEC1 or PKCS#8)".into())
        })?;
        let (_, leaf) = X509Certificate::from_der(&chain[0])
            .map_err(|e| ProblemKind::Undecodable(format!("leaf certificate: {e}")))?;
        check_key_matches(&key, leaf.public_key())?;
        let key_type = key_type(leaf.public_key());
        let names = leaf_names(&leaf);
        let meta = LeafInfo {
            not_before: to_system_time(leaf.validity().not_before.timestamp()),
            not_after: to_system_time(leaf.validity().not_after.timestamp()),
            serial_hex: leaf
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            issuer: leaf.issuer().to_string(),
            subject: leaf.subject().to_string(),
            common_name: leaf
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
        };
        Ok(CertEntry {
            resolver,
            index,
            main: stored.domain.main.clone(),
            sans: stored.domain.sans.clone(),
            store: stored.store.clone(),
            names,
            chain,
            key: PrivateKey(key),
            key_type,
            not_before: meta.not_before,
            not_after: meta.not_after,
            serial_hex: meta.serial_hex,
            issuer: meta.issuer,
            subject: meta.subject,
            common_name: meta.common_name,
        })
    }

    /// The same decoded material under new stored metadata (used to reuse decoding work when
    /// only the position or the domain fields of an entry changed).
    pub(crate) fn relabel(&self, resolver: Arc<str>, index: usize, stored: &StoredCert) -> Self {
        let mut e = self.clone();
        e.resolver = resolver;
        e.index = index;
        e.main.clone_from(&stored.domain.main);
        e.sans.clone_from(&stored.domain.sans);
        e.store.clone_from(&stored.store);
        e
    }

    /// Whether this entry was decoded at `index` of `resolver` from an entry with this metadata.
    pub(crate) fn same_label(&self, resolver: &str, index: usize, stored: &StoredCert) -> bool {
        &*self.resolver == resolver
            && self.index == index
            && self.main == stored.domain.main
            && self.sans == stored.domain.sans
            && self.store == stored.store
    }
}

struct LeafInfo {
    not_before: SystemTime,
    not_after: SystemTime,
    serial_hex: String,
    issuer: String,
    subject: String,
    common_name: Option<String>,
}

fn to_system_time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

fn leaf_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::DNSName(n) = gn {
                names.push(normalize_name(n));
            }
        }
    }
    if names.is_empty() {
        for cn in leaf.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(normalize_name(s));
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

/// Lowercases and strips one trailing dot.
pub(crate) fn normalize_name(n: &str) -> String {
    let n = n.strip_suffix('.').unwrap_or(n);
    n.to_ascii_lowercase()
}

const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> KeyType {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyType::Rsa(rsa.key_size() as u32),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => KeyType::EcdsaP256,
                OID_P384 => KeyType::EcdsaP384,
                OID_P521 => KeyType::EcdsaP521,
                _ => KeyType::Other(format!("ec:{curve}")),
            }
        }
        _ => {
            let oid = spki.algorithm.algorithm.to_id_string();
            if oid == OID_ED25519 {
                KeyType::Ed25519
            } else {
                KeyType::Other(oid)
            }
        }
    }
}

/// Derives the public key from the private key with rustls' aws-lc-rs provider (which loads
/// PKCS#1 and PKCS#8 RSA, SEC1 and PKCS#8 ECDSA P-256/P-384/P-521, and Ed25519) and compares its
/// raw subject-public-key bits with the certificate's.
fn check_key_matches(
    key: &PrivateKeyDer<'_>,
    spki: &SubjectPublicKeyInfo<'_>,
) -> Result<(), ProblemKind> {
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(key)
        .map_err(|_| ProblemKind::Undecodable("unsupported or malformed private key".into()))?;
    let Some(pk) = signing.public_key() else {
        return Err(ProblemKind::Undecodable(
            "cannot derive the public key of the private key".into(),
        ));
    };
    let (_, derived) = SubjectPublicKeyInfo::from_der(pk.as_ref())
        .map_err(|_| ProblemKind::Undecodable("cannot parse the derived public key".into()))?;
    if derived.subject_public_key.data == spki.subject_public_key.data {
        Ok(())
    } else {
        Err(ProblemKind::KeyMismatch)
    }
}

/// Why a stored certificate cannot be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// `certificate` is missing or empty (Traefik #3162).
    MissingCertificate,
    /// `key` is missing or empty.
    MissingKey,
    /// Bad base64, PEM or X.509, or an unsupported key; the text says which.
    Undecodable(String),
    /// The private key is not the certificate's key.
    KeyMismatch,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::MissingCertificate => f.write_str("undecodable: no certificate"),
            ProblemKind::MissingKey => f.write_str("undecodable: no key"),
            ProblemKind::Undecodable(why) => write!(f, "undecodable: {why}"),
            ProblemKind::KeyMismatch => {
                f.write_str("key mismatch: the key does not belong to the certificate")
            }
        }
    }
}

/// A stored certificate that is skipped for serving (and kept byte for byte on write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The resolver holding it.
    pub resolver: String,
    /// Its stored main domain.
    pub domain: String,
    /// Its position in the resolver's `Certificates` array.
    pub index: usize,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resolver `{}`, domain `{}` (certificate #{}): {}",
            self.resolver, self.domain, self.index, self.kind
        )
    }
}
