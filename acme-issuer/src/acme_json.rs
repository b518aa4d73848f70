//! [`IssuerStore`] over `acme-store`: the issuer's state lives in Traefik's `acme.json`.
//!
//! Every operation is one [`CertStore::update`], i.e. a locked read-modify-write of the latest
//! document, so several controller processes sharing one file never lose each other's writes and
//! a new leader always acts on what the previous one wrote. Reads use an update that changes
//! nothing (nothing is written) to get the freshest document under the lock.
//!
//! Layout written (one resolver object; everything else in the file is kept as it was):
//! `Account` = `{Email, Registration: {body: {status, contact}, uri}, PrivateKey: base64(PKCS#8
//! P-256 DER), KeyType: "P256"}`; certificates as Traefik writes them (base64 PEM, `Store:
//! "default"`); interrupted orders under `FairwayPending` (Traefik ignores unknown keys).

use std::sync::Arc;

use acme_store::format::json::{Value, parse, write_go};
use acme_store::{AcmeDocument, CertStore, ResolverData, StoredCert};
use base64::Engine as _;

use crate::Error;
use crate::key::SecretPem;
use crate::store::{
    AccountRecord, ExistingCert, IssuerStore, PENDING_KEY, PendingOrder, ResolverState, same_names,
    store_error,
};

/// The issuer's storage in an `acme-store` [`CertStore`] (file, memory or Kubernetes Secret).
#[derive(Clone)]
pub struct AcmeJsonStore {
    inner: Arc<dyn CertStore>,
}

impl std::fmt::Debug for AcmeJsonStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeJsonStore").finish_non_exhaustive()
    }
}

impl AcmeJsonStore {
    /// Wrap a certificate store.
    pub fn new(inner: Arc<dyn CertStore>) -> Self {
        Self { inner }
    }

    /// The wrapped store (to subscribe to snapshots).
    pub fn inner(&self) -> &Arc<dyn CertStore> {
        &self.inner
    }

    fn modify(
        &self,
        resolver: &str,
        action: &str,
        mut f: impl FnMut(&mut ResolverData) -> Result<(), String>,
    ) -> Result<(), Error> {
        let mut failure = None;
        let result = self.inner.update(&mut |doc: &mut AcmeDocument| {
            let data = doc.resolvers.entry(resolver.to_owned()).or_default();
            if let Err(e) = f(data) {
                failure = Some(e);
            }
            Ok(())
        });
        if let Some(e) = failure {
            return Err(store_error(resolver, action, e));
        }
        result
            .map(|_| ())
            .map_err(|e| store_error(resolver, action, e))
    }
}

fn pending_of(data: &ResolverData) -> Vec<PendingOrder> {
    let Some((_, Value::Array(items))) = data.extra.iter().find(|(k, _)| k == PENDING_KEY) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let mut text = String::new();
            write_go(item, &mut text);
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            match PendingOrder::from_json(&json) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable pending order");
                    None
                }
            }
        })
        .collect()
}

fn set_pending(data: &mut ResolverData, pending: &[PendingOrder]) -> Result<(), String> {
    data.extra.retain(|(k, _)| k != PENDING_KEY);
    if pending.is_empty() {
        return Ok(());
    }
    let json = serde_json::Value::Array(pending.iter().map(PendingOrder::to_json).collect());
    let value = parse(&json.to_string()).map_err(|e| format!("encoding pending orders: {e}"))?;
    data.extra.push((PENDING_KEY.to_owned(), value));
    Ok(())
}

fn record_of(account: &acme_store::Account) -> AccountRecord {
    AccountRecord {
        email: account.email.clone(),
        uri: account.registration_uri().map(str::to_owned),
        private_key_der: account.private_key_der().and_then(Result::ok),
        key_type: account.key_type.clone(),
    }
}

fn stored_account(record: &AccountRecord) -> acme_store::Account {
    let mut body = vec![("status".to_owned(), Value::String("valid".into()))];
    if !record.email.is_empty() {
        body.push((
            "contact".to_owned(),
            Value::Array(vec![Value::String(format!("mailto:{}", record.email))]),
        ));
    }
    let mut registration = vec![("body".to_owned(), Value::Object(body))];
    if let Some(uri) = &record.uri {
        registration.push(("uri".to_owned(), Value::String(uri.clone())));
    }
    acme_store::Account {
        email: record.email.clone(),
        registration: Some(Value::Object(registration)),
        private_key: record
            .private_key_der
            .as_ref()
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k)),
        key_type: record.key_type.clone(),
        extra: Vec::new(),
    }
}

fn existing_of(cert: &StoredCert) -> Option<ExistingCert> {
    let pem = acme_store::decode_base64(cert.certificate.as_deref()?).ok()?;
    let pem = String::from_utf8(pem).ok()?;
    let domains: Vec<String> = std::iter::once(&cert.domain.main)
        .chain(&cert.domain.sans)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect();
    ExistingCert::from_chain_pem(domains, &pem).ok()
}

impl IssuerStore for AcmeJsonStore {
    fn load(&self, resolver: &str) -> Result<ResolverState, Error> {
        let mut state = ResolverState::default();
        self.inner
            .update(&mut |doc: &mut AcmeDocument| {
                state = ResolverState::default();
                if let Some(data) = doc.resolvers.get(resolver) {
                    state.account = data.account.as_ref().map(record_of);
                    state.certificates = data.certificates.iter().filter_map(existing_of).collect();
                    state.pending = pending_of(data);
                }
                Ok(())
            })
            .map_err(|e| store_error(resolver, "read", e))?;
        Ok(state)
    }

    fn save_account(&self, resolver: &str, account: &AccountRecord) -> Result<(), Error> {
        let stored = stored_account(account);
        self.modify(resolver, "save account", |data| {
            data.account = Some(stored.clone());
            Ok(())
        })
    }

    fn save_pending(&self, resolver: &str, pending: &PendingOrder) -> Result<(), Error> {
        self.modify(resolver, "save pending order", |data| {
            let mut all = pending_of(data);
            all.retain(|p| !same_names(&p.domains, &pending.domains));
            all.push(pending.clone());
            set_pending(data, &all)
        })
    }

    fn save_certificate(
        &self,
        resolver: &str,
        domains: &[String],
        chain_pem: &str,
        key: &SecretPem,
    ) -> Result<(), Error> {
        let (main, sans) = domains.split_first().ok_or_else(|| {
            store_error(resolver, "save certificate", "certificate without domains")
        })?;
        let cert = StoredCert::from_pem(main, sans, chain_pem, key.expose());
        self.modify(resolver, "save certificate", |data| {
            data.upsert(cert.clone());
            data.certificates_null = false;
            let mut all = pending_of(data);
            all.retain(|p| !same_names(&p.domains, domains));
            set_pending(data, &all)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::CertKeyType;

    #[test]
    fn round_trips_through_a_memory_store() {
        let store = AcmeJsonStore::new(Arc::new(acme_store::MemoryStore::new(
            AcmeDocument::default(),
        )));
        let account = AccountRecord {
            email: "ops@example.test".into(),
            uri: Some("https://ca.test/acct/1".into()),
            private_key_der: Some(vec![1, 2, 3]),
            key_type: Some("P256".into()),
        };
        store.save_account("le", &account).unwrap();
        let pending = PendingOrder {
            domains: vec!["a.test".into()],
            order_url: "https://ca.test/order/9".into(),
            key_pem: SecretPem::new("KEY".into()),
            key_type: CertKeyType::EcdsaP256,
            epoch: 3,
        };
        store.save_pending("le", &pending).unwrap();
        let state = store.load("le").unwrap();
        assert_eq!(state.account, Some(account));
        assert_eq!(state.pending, vec![pending]);
        assert!(store.load("other").unwrap().account.is_none());
    }
}
