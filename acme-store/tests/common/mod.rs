//! Test material generated with rcgen: CA-signed leaves with P-256, P-384, RSA or Ed25519 keys,
//! and the key in PKCS#8, PKCS#1 (RSA) or SEC1 (ECDSA) PEM.
#![allow(dead_code)]

use acme_store::StoredCert;
use base64::Engine as _;
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Leaf key algorithm.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Alg {
    P256,
    P384,
    Rsa2048,
    Ed25519,
}

/// Key PEM flavour.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyPem {
    Pkcs8,
    /// PKCS#1 for RSA, SEC1 for ECDSA.
    Traditional,
}

/// A generated certificate.
pub(crate) struct Material {
    /// Leaf then issuer.
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
    pub(crate) serial: Vec<u8>,
}

pub(crate) fn keypair(alg: Alg) -> KeyPair {
    match alg {
        Alg::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        Alg::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
        }
        Alg::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
    }
}

/// Issues a certificate for `names` (first is the CN), valid between the given years.
pub(crate) fn issue(names: &[&str], alg: Alg, pem: KeyPem, years: (i32, i32)) -> Material {
    let key = keypair(alg);
    issue_with_key(names, &key, pem, years)
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) fn issue_with_key(
    names: &[&str],
    key: &KeyPair,
    pem: KeyPem,
    years: (i32, i32),
) -> Material {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Fairway Test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let serial = SERIAL
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_be_bytes()
        .to_vec();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let leaf = params.signed_by(key, &issuer).unwrap();
    Material {
        chain_pem: format!("{}{}", leaf.pem(), ca_cert.pem()),
        key_pem: key_pem(key, pem),
        serial,
    }
}

pub(crate) fn key_pem(key: &KeyPair, pem: KeyPem) -> String {
    match pem {
        KeyPem::Pkcs8 => key.serialize_pem(),
        KeyPem::Traditional => {
            let pkcs8 = key.serialize_der();
            let inner = pkcs8_inner(&pkcs8);
            let label = if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
                "RSA PRIVATE KEY"
            } else {
                "EC PRIVATE KEY"
            };
            to_pem(label, inner)
        }
    }
}

pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One DER TLV: (tag, content, rest).
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = der[0];
    let (len, hdr) = if der[1] < 0x80 {
        (der[1] as usize, 2)
    } else {
        let n = (der[1] & 0x7f) as usize;
        let mut len = 0usize;
        for b in &der[2..2 + n] {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    (tag, &der[hdr..hdr + len], &der[hdr + len..])
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo` (the PKCS#1 or SEC1 key).
fn pkcs8_inner(der: &[u8]) -> &[u8] {
    let (_, seq, _) = tlv(der);
    let (_, _version, rest) = tlv(seq);
    let (_, _alg, rest) = tlv(rest);
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    key
}

/// A stored entry for generated material.
pub(crate) fn stored(m: &Material, main: &str, sans: &[&str]) -> StoredCert {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    StoredCert::from_pem(main, &sans, &m.chain_pem, &m.key_pem)
}
