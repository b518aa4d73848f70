//! [`IssuerStore`] over `acme-store`: the issuer's state lives in Traefik's `acme.json`.
//!
//! Every write goes through [`CertStore::update`] (concurrent writes share one, see
//! [`AcmeJsonStore`]), i.e. a locked read-modify-write of the latest
//! document, so several controller processes sharing one file never lose each other's writes and
//! a new leader always acts on what the previous one wrote. Reads use an update that changes
//! nothing (nothing is written) to get the freshest document under the lock.
//!
//! Layout written (one resolver object; everything else in the file is kept as it was):
//! `Account` = `{Email, Registration: {body: {status, contact}, uri}, PrivateKey: base64(PKCS#8
//! P-256 DER), KeyType: "P256"}`; certificates as Traefik writes them (base64 PEM, `Store:
//! "default"`); interrupted orders under `FairwayPending` (Traefik ignores unknown keys).

use std::sync::{Arc, Condvar, Mutex};

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
///
/// Writes are *group-committed*: writes submitted while another one is being stored are applied
/// together in the next single [`CertStore::update`] (one rewrite, one fsync, one snapshot
/// instead of one each). Every caller still returns only once its own change is durable, so a
/// pending order is saved before its challenges are presented, as before. With many orders in
/// flight this turns ~2 whole-file rewrites per certificate into a few per batch.
#[derive(Clone)]
pub struct AcmeJsonStore {
    inner: Arc<dyn CertStore>,
    commits: Arc<GroupCommit>,
}

/// One queued change to a resolver's data.
type Change = Box<dyn FnMut(&mut ResolverData) -> Result<(), String> + Send>;

struct Queued {
    id: u64,
    resolver: String,
    action: &'static str,
    change: Change,
}

#[derive(Default)]
struct Batch {
    queue: Vec<Queued>,
    results: std::collections::HashMap<u64, Result<(), Error>>,
    writing: bool,
    next_id: u64,
}

/// Leader/follower group commit: the first writer to find nobody writing stores everything queued
/// so far in one update; the others wait for their result.
#[derive(Default)]
struct GroupCommit {
    batch: Mutex<Batch>,
    done: Condvar,
}

impl std::fmt::Debug for AcmeJsonStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeJsonStore").finish_non_exhaustive()
    }
}

impl AcmeJsonStore {
    /// Wrap a certificate store.
    pub fn new(inner: Arc<dyn CertStore>) -> Self {
        Self {
            inner,
            commits: Arc::default(),
        }
    }

    /// The wrapped store (to subscribe to snapshots).
    pub fn inner(&self) -> &Arc<dyn CertStore> {
        &self.inner
    }

    /// Apply `change` to `resolver`'s data, together with whatever other writes are queued.
    fn modify(
        &self,
        resolver: &str,
        action: &'static str,
        change: impl FnMut(&mut ResolverData) -> Result<(), String> + Send + 'static,
    ) -> Result<(), Error> {
        let commits = &self.commits;
        let mut batch = commits.batch.lock().unwrap_or_else(|e| e.into_inner());
        let id = batch.next_id;
        batch.next_id += 1;
        batch.queue.push(Queued {
            id,
            resolver: resolver.to_owned(),
            action,
            change: Box::new(change),
        });
        loop {
            if let Some(result) = batch.results.remove(&id) {
                return result;
            }
            if batch.writing {
                batch = commits.done.wait(batch).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            batch.writing = true;
            let queued = std::mem::take(&mut batch.queue);
            drop(batch);
            let results =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(queued)))
                    .unwrap_or_default();
            batch = commits.batch.lock().unwrap_or_else(|e| e.into_inner());
            batch.results.extend(results);
            batch.writing = false;
            commits.done.notify_all();
            if !batch.results.contains_key(&id) {
                // The update panicked: report it rather than waiting for ever.
                return Err(store_error(resolver, action, "store update panicked"));
            }
        }
    }

    /// Store `queued` in one update. A change that fails leaves its resolver as it was (the
    /// others are still written); a failed update fails them all.
    fn commit(&self, mut queued: Vec<Queued>) -> Vec<(u64, Result<(), Error>)> {
        let mut failures: Vec<Option<String>> = vec![None; queued.len()];
        let result = self.inner.update(&mut |doc: &mut AcmeDocument| {
            for (q, failure) in queued.iter_mut().zip(failures.iter_mut()) {
                let data = doc.resolvers.entry(q.resolver.clone()).or_default();
                let before = data.clone();
                *failure = (q.change)(data).err();
                if failure.is_some() {
                    *data = before;
                }
            }
            Ok(())
        });
        queued
            .iter()
            .zip(failures)
            .map(|(q, failure)| {
                let r = match (&result, failure) {
                    (Err(e), _) => Err(store_error(&q.resolver, q.action, e)),
                    (Ok(_), Some(f)) => Err(store_error(&q.resolver, q.action, f)),
                    (Ok(_), None) => Ok(()),
                };
                (q.id, r)
            })
            .collect()
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
        self.modify(resolver, "save account", move |data| {
            data.account = Some(stored.clone());
            Ok(())
        })
    }

    fn save_pending(&self, resolver: &str, pending: &PendingOrder) -> Result<(), Error> {
        let pending = pending.clone();
        self.modify(resolver, "save pending order", move |data| {
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
        let domains = domains.to_vec();
        self.modify(resolver, "save certificate", move |data| {
            data.upsert(cert.clone());
            data.certificates_null = false;
            let mut all = pending_of(data);
            all.retain(|p| !same_names(&p.domains, &domains));
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

    /// A store whose updates are slow (like an fsync) and counted.
    struct SlowStore {
        inner: acme_store::MemoryStore,
        updates: std::sync::atomic::AtomicUsize,
    }

    impl CertStore for SlowStore {
        fn snapshot(&self) -> Arc<acme_store::Snapshot> {
            self.inner.snapshot()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<acme_store::Snapshot>> {
            self.inner.subscribe()
        }
        fn update(
            &self,
            f: &mut acme_store::UpdateFn<'_>,
        ) -> Result<Arc<acme_store::Snapshot>, acme_store::Error> {
            self.updates
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(50));
            self.inner.update(f)
        }
    }

    fn pending(i: usize) -> PendingOrder {
        PendingOrder {
            domains: vec![format!("d{i}.test")],
            order_url: format!("https://ca.test/order/{i}"),
            key_pem: SecretPem::new(format!("KEY{i}")),
            key_type: CertKeyType::EcdsaP256,
            epoch: 1,
        }
    }

    #[test]
    fn concurrent_writes_are_group_committed_and_all_durable() {
        const N: usize = 16;
        let slow = Arc::new(SlowStore {
            inner: acme_store::MemoryStore::new(AcmeDocument::default()),
            updates: Default::default(),
        });
        let store = AcmeJsonStore::new(slow.clone());
        let start = Arc::new(std::sync::Barrier::new(N));
        let threads: Vec<_> = (0..N)
            .map(|i| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let resolver = if i % 2 == 0 { "le" } else { "other" };
                    store.save_pending(resolver, &pending(i))
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        // Each save returned only after its change was stored: all are there.
        let mut found: Vec<PendingOrder> = store.load("le").unwrap().pending;
        found.extend(store.load("other").unwrap().pending);
        found.sort_by_key(|p| p.order_url.clone());
        let mut want: Vec<PendingOrder> = (0..N).map(pending).collect();
        want.sort_by_key(|p| p.order_url.clone());
        assert_eq!(found, want);
        // 16 writers, 2 loads: far fewer than one update per write.
        let updates = slow.updates.load(std::sync::atomic::Ordering::SeqCst) - 2;
        assert!(updates < N, "{updates} updates for {N} writes");
    }
}
