//! What the issuer reads from and writes to the certificate store.
//!
//! The issuer talks to storage through [`IssuerStore`], a narrow seam with four operations. The
//! production implementation writes Traefik's `acme.json` through `acme-store`
//! ([`crate::AcmeJsonStore`]); [`MemoryIssuerStore`] is the reference implementation used by
//! tests and embedders without persistence.
//!
//! Interrupted orders are persisted as [`PendingOrder`]s (order URL + the new private key),
//! written right after `newOrder` and before any challenge is presented, so a restarted process or
//! a new leader resumes the order with `account.order(url)` instead of creating a duplicate.
//! In `acme.json` they live under the resolver's `FairwayPending` key, which Traefik ignores.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::key::{CertKeyType, SecretPem};
use crate::policy::renewal::Validity;
use crate::{Error, Step};

/// The JSON key of pending orders inside a resolver object of `acme.json`.
pub const PENDING_KEY: &str = "FairwayPending";

/// A resolver's ACME account in Traefik's terms (`Account` of `acme.json`).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// `Email`.
    pub email: String,
    /// `Registration.uri`: the account URL.
    pub uri: Option<String>,
    /// `PrivateKey` decoded from base64: PKCS#8 P-256 for Fairway accounts, PKCS#1 RSA for
    /// Traefik's.
    pub private_key_der: Option<Vec<u8>>,
    /// `KeyType` (`"P256"` for Fairway accounts).
    pub key_type: Option<String>,
}

impl std::fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRecord")
            .field("email", &self.email)
            .field("uri", &self.uri)
            .field(
                "private_key_der",
                &self.private_key_der.as_ref().map(|_| "<redacted>"),
            )
            .field("key_type", &self.key_type)
            .finish()
    }
}

/// A certificate already in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingCert {
    /// Main domain then SANs, lowercased.
    pub domains: Vec<String>,
    /// The leaf certificate (DER).
    pub leaf_der: Vec<u8>,
    /// The leaf's validity.
    pub validity: Validity,
    /// The leaf's serial number, lowercase hex.
    pub serial_hex: String,
}

impl ExistingCert {
    /// Parse the leaf of a PEM chain.
    pub fn from_chain_pem(domains: Vec<String>, chain_pem: &str) -> Result<Self, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .ok_or("no certificate in chain")?
            .map_err(|e| format!("bad PEM: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("bad certificate: {e}"))?;
        let to_time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                SystemTime::UNIX_EPOCH
            }
        };
        let validity = Validity {
            not_before: to_time(cert.validity().not_before),
            not_after: to_time(cert.validity().not_after),
        };
        let serial_hex = cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            domains,
            leaf_der: leaf.as_ref().to_vec(),
            validity,
            serial_hex,
        })
    }

    /// Whether this certificate covers exactly `names` (case-insensitive, order-free).
    pub fn covers_exactly(&self, names: &[String]) -> bool {
        same_names(&self.domains, names)
    }
}

/// An order that was created but not yet turned into a stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOrder {
    /// Main domain then SANs.
    pub domains: Vec<String>,
    /// The ACME order URL, for `account.order(url)`.
    pub order_url: String,
    /// The certificate key the CSR will be (or was) made with.
    pub key_pem: SecretPem,
    /// Its type.
    pub key_type: CertKeyType,
    /// Leader epoch that created the order (for diagnostics).
    pub epoch: u64,
}

/// `acme.json` shape of a [`PendingOrder`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingJson {
    domains: Vec<String>,
    order_url: String,
    /// base64(PEM), like Traefik's `key`.
    key: String,
    key_type: String,
    epoch: u64,
}

impl PendingOrder {
    /// The JSON value stored in `acme.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let json = PendingJson {
            domains: self.domains.clone(),
            order_url: self.order_url.clone(),
            key: base64::engine::general_purpose::STANDARD.encode(self.key_pem.expose()),
            key_type: self.key_type.traefik_name().to_owned(),
            epoch: self.epoch,
        };
        serde_json::to_value(json).unwrap_or(serde_json::Value::Null)
    }

    /// Parse one stored pending order.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let json: PendingJson =
            serde_json::from_value(value.clone()).map_err(|e| format!("pending order: {e}"))?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(json.key.as_bytes())
            .map_err(|e| format!("pending order key: {e}"))?;
        let pem = String::from_utf8(pem).map_err(|_| "pending order key: not UTF-8".to_owned())?;
        Ok(Self {
            domains: json.domains,
            order_url: json.order_url,
            key_pem: SecretPem::new(pem),
            key_type: json.key_type.parse()?,
            epoch: json.epoch,
        })
    }
}

/// Everything the issuer needs to know about one resolver.
#[derive(Debug, Clone, Default)]
pub struct ResolverState {
    /// The stored account, if any.
    pub account: Option<AccountRecord>,
    /// Certificates with a parseable leaf.
    pub certificates: Vec<ExistingCert>,
    /// Orders in flight.
    pub pending: Vec<PendingOrder>,
}

impl ResolverState {
    /// The stored certificate for exactly `names` with the latest `notAfter`.
    pub fn best_for(&self, names: &[String]) -> Option<&ExistingCert> {
        self.certificates
            .iter()
            .filter(|c| c.covers_exactly(names))
            .max_by_key(|c| c.validity.not_after)
    }

    /// The pending order for exactly `names`, if any.
    pub fn pending_for(&self, names: &[String]) -> Option<&PendingOrder> {
        self.pending.iter().find(|p| same_names(&p.domains, names))
    }
}

/// Storage operations of the issuer. Every write is a locked read-modify-write of one resolver's
/// part of the document; nothing else in the file changes.
pub trait IssuerStore: Send + Sync + 'static {
    /// Read one resolver's state (re-reading the backing file if it changed).
    fn load(&self, resolver: &str) -> Result<ResolverState, Error>;
    /// Replace the resolver's account.
    fn save_account(&self, resolver: &str, account: &AccountRecord) -> Result<(), Error>;
    /// Record (or replace) the pending order for the same names.
    fn save_pending(&self, resolver: &str, pending: &PendingOrder) -> Result<(), Error>;
    /// Store an issued certificate (replacing the one for the same names) and drop the pending
    /// order for those names.
    fn save_certificate(
        &self,
        resolver: &str,
        domains: &[String],
        chain_pem: &str,
        key: &SecretPem,
    ) -> Result<(), Error>;
}

/// Whether two name lists hold the same names (case-insensitive, order-free, duplicates ignored).
pub fn same_names(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

/// A store error naming the resolver and the operation.
pub(crate) fn store_error(resolver: &str, action: &str, reason: impl std::fmt::Display) -> Error {
    Error::Store(format!("resolver {resolver}: {action}: {reason}"))
}

#[derive(Debug, Default)]
struct MemoryResolver {
    account: Option<AccountRecord>,
    certificates: Vec<(Vec<String>, String, SecretPem)>,
    pending: Vec<PendingOrder>,
}

/// An in-memory [`IssuerStore`]: the reference implementation, and for embedders that keep
/// certificates elsewhere.
#[derive(Debug, Default)]
pub struct MemoryIssuerStore {
    resolvers: Mutex<HashMap<String, MemoryResolver>>,
}

impl MemoryIssuerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored chain PEM for exactly `names`.
    pub fn chain_for(&self, resolver: &str, names: &[String]) -> Option<String> {
        let map = self.resolvers.lock().ok()?;
        map.get(resolver)?
            .certificates
            .iter()
            .find(|(d, _, _)| same_names(d, names))
            .map(|(_, chain, _)| chain.clone())
    }

    fn with<T>(
        &self,
        resolver: &str,
        f: impl FnOnce(&mut MemoryResolver) -> T,
    ) -> Result<T, Error> {
        let mut map = self
            .resolvers
            .lock()
            .map_err(|_| store_error(resolver, "lock", "poisoned"))?;
        Ok(f(map.entry(resolver.to_owned()).or_default()))
    }
}

impl IssuerStore for MemoryIssuerStore {
    fn load(&self, resolver: &str) -> Result<ResolverState, Error> {
        self.with(resolver, |r| {
            let certificates = r
                .certificates
                .iter()
                .filter_map(|(d, chain, _)| ExistingCert::from_chain_pem(d.clone(), chain).ok())
                .collect();
            ResolverState {
                account: r.account.clone(),
                certificates,
                pending: r.pending.clone(),
            }
        })
    }

    fn save_account(&self, resolver: &str, account: &AccountRecord) -> Result<(), Error> {
        self.with(resolver, |r| r.account = Some(account.clone()))
    }

    fn save_pending(&self, resolver: &str, pending: &PendingOrder) -> Result<(), Error> {
        self.with(resolver, |r| {
            r.pending
                .retain(|p| !same_names(&p.domains, &pending.domains));
            r.pending.push(pending.clone());
        })
    }

    fn save_certificate(
        &self,
        resolver: &str,
        domains: &[String],
        chain_pem: &str,
        key: &SecretPem,
    ) -> Result<(), Error> {
        ExistingCert::from_chain_pem(domains.to_vec(), chain_pem).map_err(|reason| {
            Error::Acme {
                domain: domains.first().cloned().unwrap_or_default(),
                step: Step::Certificate,
                detail: reason,
                problem_type: None,
                retry_after: None,
            }
        })?;
        self.with(resolver, |r| {
            r.certificates.retain(|(d, _, _)| !same_names(d, domains));
            r.certificates
                .push((domains.to_vec(), chain_pem.to_owned(), key.clone()));
            r.pending.retain(|p| !same_names(&p.domains, domains));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any pending order survives the acme.json encoding, and the key never appears as PEM.
        #[test]
        fn pending_json_round_trips(
            domains in proptest::collection::vec("[a-z0-9.-]{1,20}", 1..4),
            url in "https://[a-z0-9./-]{1,40}",
            key in "[ -~\n]{0,80}",
            kind in 0usize..3,
            epoch in any::<u64>(),
        ) {
            let p = PendingOrder {
                domains,
                order_url: url,
                key_pem: SecretPem::new(key),
                key_type: [CertKeyType::EcdsaP256, CertKeyType::Rsa2048, CertKeyType::Rsa4096][kind],
                epoch,
            };
            let json = p.to_json();
            prop_assert_eq!(PendingOrder::from_json(&json).unwrap(), p);
        }

        /// `same_names` agrees with comparing lowercased, sorted, deduplicated lists.
        #[test]
        fn same_names_is_set_equality(a in proptest::collection::vec("[a-cA-C]{1,2}", 0..5), b in proptest::collection::vec("[a-cA-C]{1,2}", 0..5)) {
            let set = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<std::collections::BTreeSet<_>>();
            prop_assert_eq!(same_names(&a, &b), set(&a) == set(&b));
        }
    }

    #[test]
    fn pending_order_json_round_trip_and_names() {
        let p = PendingOrder {
            domains: vec!["a.test".into(), "b.test".into()],
            order_url: "https://ca/order/1".into(),
            // Generated at run time: no key material in the source tree.
            key_pem: SecretPem::new(rcgen::KeyPair::generate().unwrap().serialize_pem()),
            key_type: CertKeyType::Rsa2048,
            epoch: 7,
        };
        let json = p.to_json();
        assert_eq!(json["orderUrl"], "https://ca/order/1");
        assert!(
            !json.to_string().contains("BEGIN"),
            "key must be base64-wrapped"
        );
        assert_eq!(PendingOrder::from_json(&json).unwrap(), p);
        assert!(same_names(&p.domains, &["B.test".into(), "a.test".into()]));
        assert!(!same_names(&p.domains, &["a.test".into()]));
    }
}
