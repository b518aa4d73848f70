//! A certificate store over `kubernetes.io/tls` Secrets: every proxy replica serves what the
//! elected controller writes.
//!
//! Each TLS Secret in the namespace is one `acme.json` certificate entry ([`mapping`]): `tls.crt`
//! / `tls.key`, the resolver from `fairway.dev/acme-resolver` (or cert-manager's
//! `cert-manager.io/issuer-name`), names from cert-manager's `alt-names`/`common-name` annotations
//! or the certificate itself — so cert-manager-issued Secrets are served as they are. ACME
//! accounts live in one Opaque Secret (key `acme.json`, an `acme.json` without certificates).
//!
//! Reads: a watch keeps an [`acme_store::Snapshot`] current (decoding reused for unchanged
//! entries). Writes ([`CertStore::update`]): list, apply the change to the document, then write
//! only the Secrets that differ — `PUT`s and `DELETE`s conditional on the resourceVersion read,
//! creates that fail if the name exists — and start over on a conflict. Writes carry the
//! writer's fencing epoch ([`SecretStore::set_epoch`]) as an annotation.
//!
//! A proxy serves only the Secrets its Ingresses name: [`SecretStore::start_serving`] takes a
//! live set of Secret names and publishes only those (the watch still lists every TLS Secret
//! of the namespace, since a field selector cannot name several objects, so a newly named
//! Secret is served as soon as the name arrives, with no new list). Such a store is read-only.

pub mod mapping;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use acme_store::{AcmeDocument, CertStore, Snapshot, StoredCert, UpdateFn};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

pub use mapping::{SecretRef, TLS_SECRET_TYPE};

use crate::Error;
use crate::task::OwnedTask;

/// Where the store keeps its Secrets.
#[derive(Debug, Clone)]
pub struct SecretStoreConfig {
    /// The namespace of the Secrets.
    pub namespace: String,
    /// Only TLS Secrets matching this label selector (`None`: all TLS Secrets of the namespace).
    pub label_selector: Option<String>,
    /// Resolver of Secrets that name none.
    pub default_resolver: String,
    /// Prefix of the names of Secrets the store creates.
    pub name_prefix: String,
    /// The Opaque Secret holding the ACME accounts.
    pub accounts_secret: String,
}

impl SecretStoreConfig {
    /// Defaults for `namespace`: all TLS Secrets, resolver `kubernetes`, prefix `fairway-tls-`,
    /// accounts in `fairway-acme-accounts`.
    pub fn new(namespace: impl Into<String>) -> Self {
        SecretStoreConfig {
            namespace: namespace.into(),
            label_selector: None,
            default_resolver: "kubernetes".into(),
            name_prefix: "fairway-tls-".into(),
            accounts_secret: "fairway-acme-accounts".into(),
        }
    }
}

struct Inner {
    api: Api<Secret>,
    config: SecretStoreConfig,
    current: ArcSwap<Snapshot>,
    tx: watch::Sender<Arc<Snapshot>>,
    generation: AtomicU64,
    epoch: AtomicU64,
    handle: tokio::runtime::Handle,
    /// Secret names for new certificates, by (resolver, name set): from Ingress `tls[].secretName`.
    names: std::sync::Mutex<BTreeMap<(String, Vec<String>), String>>,
    /// Serve only these Secret names (a proxy's view; `None`: every TLS Secret).
    serving: Option<watch::Receiver<Arc<BTreeSet<String>>>>,
}

/// The Secret-backed [`CertStore`]. Dropping it stops the watch.
pub struct SecretStore {
    inner: Arc<Inner>,
    _task: OwnedTask,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("config", &self.inner.config)
            .field("snapshot", &self.inner.current.load())
            .finish()
    }
}

fn store_err(
    config: &SecretStoreConfig,
    name: &str,
    op: &'static str,
    e: impl std::fmt::Display,
) -> acme_store::Error {
    acme_store::Error::Io {
        path: PathBuf::from(format!("kubernetes:secrets/{}/{name}", config.namespace)),
        op,
        source: std::io::Error::other(e.to_string()),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

const ACCOUNTS_KEY: &str = "acme.json";

impl Inner {
    fn list_params(&self) -> ListParams {
        let mut lp = ListParams::default().fields(&format!("type={TLS_SECRET_TYPE}"));
        if let Some(sel) = &self.config.label_selector {
            lp = lp.labels(sel);
        }
        lp
    }

    fn publish(&self, doc: AcmeDocument) -> Arc<Snapshot> {
        let prev = self.current.load_full();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snap = Arc::new(Snapshot::build(Arc::new(doc), generation, Some(&prev)));
        self.current.store(Arc::clone(&snap));
        self.tx.send_replace(Arc::clone(&snap));
        snap
    }

    fn accounts_of(&self, secret: Option<&Secret>) -> Option<AcmeDocument> {
        let bytes = secret?.data.as_ref()?.get(ACCOUNTS_KEY)?;
        match AcmeDocument::parse(&bytes.0) {
            Ok(doc) => Some(doc),
            Err(e) => {
                tracing::warn!(secret = %self.config.accounts_secret, error = %e, "unreadable accounts Secret");
                None
            }
        }
    }

    /// One optimistic round: read, change, write the differences. `Ok(None)` = conflict, retry.
    async fn try_update(
        &self,
        f: &mut UpdateFn<'_>,
    ) -> Result<Option<Arc<Snapshot>>, acme_store::Error> {
        let cfg = &self.config;
        let list = self
            .api
            .list(&self.list_params())
            .await
            .map_err(|e| store_err(cfg, "*", "list", e))?;
        let accounts_secret = self
            .api
            .get_opt(&cfg.accounts_secret)
            .await
            .map_err(|e| store_err(cfg, &cfg.accounts_secret, "get", e))?;
        let accounts = self.accounts_of(accounts_secret.as_ref());
        let (before, origin) =
            mapping::document_of(&list.items, &cfg.default_resolver, accounts.as_ref());
        let mut after = before.clone();
        f(&mut after)?;
        if after == before {
            return Ok(Some(self.current.load_full()));
        }
        let epoch = match self.epoch.load(Ordering::Relaxed) {
            0 => None,
            e => Some(e),
        };
        // Index the old entries by (resolver, name set), Traefik's identity of a certificate.
        let mut old: BTreeMap<(String, Vec<String>), (&StoredCert, &SecretRef)> = BTreeMap::new();
        for ((resolver, i), r) in &origin {
            let cert = &before.resolvers[resolver].certificates[*i];
            old.insert((resolver.clone(), cert.domain.name_set()), (cert, r));
        }
        let pp = PostParams::default();
        for (resolver, data) in &after.resolvers {
            for cert in &data.certificates {
                let id = (resolver.clone(), cert.domain.name_set());
                let result = match old.remove(&id) {
                    Some((prev, _))
                        if prev.certificate == cert.certificate && prev.key == cert.key =>
                    {
                        continue;
                    }
                    Some((_, r)) => {
                        let mut s =
                            mapping::secret_for(&r.name, &cfg.namespace, resolver, cert, epoch)
                                .map_err(acme_store::Error::Rejected)?;
                        s.metadata.resource_version = r.resource_version.clone();
                        self.api.replace(&r.name, &pp, &s).await.map(drop)
                    }
                    None => {
                        let named = self
                            .names
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&id)
                            .cloned();
                        let name = named.unwrap_or_else(|| {
                            mapping::secret_name(&cfg.name_prefix, &cert.domain.main)
                        });
                        let s = mapping::secret_for(&name, &cfg.namespace, resolver, cert, epoch)
                            .map_err(acme_store::Error::Rejected)?;
                        self.api.create(&pp, &s).await.map(drop)
                    }
                };
                match result {
                    Ok(()) => {}
                    Err(e) if is_conflict(&e) => return Ok(None),
                    Err(e) => return Err(store_err(cfg, &cert.domain.main, "write", e)),
                }
            }
        }
        for (_, (_, r)) in old {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: r.resource_version.clone(),
                    uid: None,
                }),
                ..Default::default()
            };
            match self.api.delete(&r.name, &dp).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => return Ok(None),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(store_err(cfg, &r.name, "delete", e)),
            }
        }
        let strip = |d: &AcmeDocument| {
            let mut d = d.clone();
            for r in d.resolvers.values_mut() {
                r.certificates.clear();
                r.certificates_null = true;
            }
            d
        };
        let (accounts_before, accounts_after) = (strip(&before), strip(&after));
        if accounts_before != accounts_after
            || (accounts_secret.is_none() && after.resolvers.values().any(|r| r.account.is_some()))
        {
            let json = accounts_after
                .to_json()
                .map_err(|e| store_err(cfg, &cfg.accounts_secret, "serialise", e))?;
            let mut s = Secret {
                metadata: ObjectMeta {
                    name: Some(cfg.accounts_secret.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        mapping::MANAGED_LABEL.to_string(),
                        "true".to_string(),
                    )])),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(BTreeMap::from([(
                    ACCOUNTS_KEY.to_string(),
                    ByteString(json.into_bytes()),
                )])),
                ..Default::default()
            };
            let result = match &accounts_secret {
                Some(old) => {
                    s.metadata.resource_version = old.resource_version();
                    self.api
                        .replace(&cfg.accounts_secret, &pp, &s)
                        .await
                        .map(drop)
                }
                None => self.api.create(&pp, &s).await.map(drop),
            };
            match result {
                Ok(()) => {}
                Err(e) if is_conflict(&e) => return Ok(None),
                Err(e) => return Err(store_err(cfg, &cfg.accounts_secret, "write", e)),
            }
        }
        Ok(Some(self.publish(after)))
    }
}

impl SecretStore {
    /// Starts watching and returns once the first complete list is in the snapshot.
    pub async fn start(client: Client, config: SecretStoreConfig) -> Result<Self, Error> {
        Self::start_with(client, config, None).await
    }

    /// Like [`SecretStore::start`], but the snapshot holds only the TLS Secrets whose names are
    /// in `names` — its value now and every later one (a new set is applied within the 5 ms
    /// debounce, without relisting). For proxies, which must serve exactly the Secrets their
    /// Ingresses reference; the accounts Secret is ignored and [`CertStore::update`] is refused
    /// (the snapshot is a filtered view, so a write from it could delete what it does not see).
    pub async fn start_serving(
        client: Client,
        config: SecretStoreConfig,
        names: watch::Receiver<Arc<BTreeSet<String>>>,
    ) -> Result<Self, Error> {
        Self::start_with(client, config, Some(names)).await
    }

    async fn start_with(
        client: Client,
        config: SecretStoreConfig,
        serving: Option<watch::Receiver<Arc<BTreeSet<String>>>>,
    ) -> Result<Self, Error> {
        let api: Api<Secret> = Api::namespaced(client, &config.namespace);
        let empty = Arc::new(Snapshot::empty());
        let inner = Arc::new(Inner {
            api,
            current: ArcSwap::new(Arc::clone(&empty)),
            tx: watch::Sender::new(empty),
            config,
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            handle: tokio::runtime::Handle::current(),
            names: std::sync::Mutex::new(BTreeMap::new()),
            serving,
        });
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let task = OwnedTask::spawn(run(Arc::clone(&inner), ready_tx));
        let ns = inner.config.namespace.clone();
        tokio::time::timeout(Duration::from_secs(30), ready_rx.wait_for(|r| *r))
            .await
            .map_err(|_| Error::Object {
                object: format!("Secrets in {ns}"),
                message: "no complete list within 30 s".into(),
            })?
            .map_err(|_| Error::Object {
                object: format!("Secrets in {ns}"),
                message: "watch task ended".into(),
            })?;
        Ok(SecretStore { inner, _task: task })
    }

    /// Stamps later writes with fencing epoch `epoch` (the elector's `Leadership::epoch`).
    pub fn set_epoch(&self, epoch: u64) {
        self.inner.epoch.store(epoch, Ordering::Relaxed);
    }

    /// Names the Secrets that new certificates go to: a certificate of `resolver` for exactly
    /// `domain`'s names is created as Secret `name` (e.g. from [`crate::routes::cert_requests`]:
    /// the Ingress's `tls[].secretName`) instead of `<prefix><main name>`. Replaces the previous map.
    pub fn set_secret_names<'a>(
        &self,
        names: impl IntoIterator<Item = (&'a str, &'a acme_store::Domain, &'a str)>,
    ) {
        let map = names
            .into_iter()
            .map(|(resolver, domain, name)| {
                ((resolver.to_string(), domain.name_set()), name.to_string())
            })
            .collect();
        *self.inner.names.lock().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// The configuration in use.
    pub fn config(&self) -> &SecretStoreConfig {
        &self.inner.config
    }

    /// The async form of [`CertStore::update`].
    pub async fn update_async(
        &self,
        f: &mut UpdateFn<'_>,
    ) -> Result<Arc<Snapshot>, acme_store::Error> {
        if self.inner.serving.is_some() {
            return Err(acme_store::Error::Rejected(format!(
                "Secrets in {}: this store serves a filtered view and is read-only",
                self.inner.config.namespace
            )));
        }
        for _ in 0..8 {
            if let Some(snap) = self.inner.try_update(f).await? {
                return Ok(snap);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(acme_store::Error::Rejected(format!(
            "Secrets in {}: still conflicting after 8 attempts",
            self.inner.config.namespace
        )))
    }

    /// Imports a whole `acme.json` (any Traefik generation; v1/legacy are migrated to resolver
    /// `resolver`): its accounts and certificates are merged into the Secrets (certificates
    /// replace those with the same names).
    pub async fn import_acme_json(
        &self,
        bytes: &[u8],
        resolver: &str,
    ) -> Result<Arc<Snapshot>, acme_store::Error> {
        let incoming = AcmeDocument::parse(bytes)
            .map_err(|source| acme_store::Error::Format {
                path: PathBuf::from("acme.json"),
                source,
            })?
            .migrate_to_v2(resolver);
        self.update_async(&mut |doc: &mut AcmeDocument| {
            for (name, data) in &incoming.resolvers {
                let target = doc.resolvers.entry(name.clone()).or_default();
                if data.account.is_some() {
                    target.account = data.account.clone();
                }
                for cert in &data.certificates {
                    target.upsert(cert.clone());
                }
                target.certificates_null = target.certificates.is_empty();
            }
            Ok(())
        })
        .await
    }

    /// Exports the current document as a Traefik v2/v3 `acme.json`.
    pub fn export_acme_json(&self) -> Result<String, acme_store::Error> {
        let snap = self.inner.current.load();
        let mut doc = AcmeDocument::clone(snap.document());
        doc.format = acme_store::Format::V2;
        doc.to_json().map_err(|source| acme_store::Error::Format {
            path: PathBuf::from("acme.json"),
            source,
        })
    }
}

impl CertStore for SecretStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    /// Blocking, like the file store. Call it from a plain thread or `spawn_blocking`, or from a
    /// multi-threaded runtime (it uses `block_in_place` there); async code should prefer
    /// [`SecretStore::update_async`].
    fn update(&self, f: &mut UpdateFn<'_>) -> Result<Arc<Snapshot>, acme_store::Error> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let fut = self.update_async(f);
        match Handle::try_current() {
            Err(_) => self.inner.handle.block_on(fut),
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.inner.handle.block_on(fut))
            }
            Ok(_) => Err(acme_store::Error::Rejected(
                "SecretStore::update called on a current-thread runtime; use update_async or spawn_blocking".into(),
            )),
        }
    }
}

enum Change {
    Tls(watcher::Event<Secret>),
    Accounts(watcher::Event<Secret>),
    /// The set of Secret names to serve changed.
    Serving,
    Failed(watcher::Error),
}

/// Whether Secret `name` is in the served set (`None`: every Secret is).
fn served(filter: Option<&BTreeSet<String>>, name: &str) -> bool {
    filter.is_none_or(|f| f.contains(name))
}

async fn run(inner: Arc<Inner>, ready: watch::Sender<bool>) {
    let cfg = &inner.config;
    let mut tls_cfg = watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
    if let Some(sel) = &cfg.label_selector {
        tls_cfg = tls_cfg.labels(sel);
    }
    let tls =
        watcher(inner.api.clone(), tls_cfg).map(|r| r.map_or_else(Change::Failed, Change::Tls));
    let acct_cfg =
        watcher::Config::default().fields(&format!("metadata.name={}", cfg.accounts_secret));
    let acct = watcher(inner.api.clone(), acct_cfg)
        .map(|r| r.map_or_else(Change::Failed, Change::Accounts));
    // A serving store ignores the accounts Secret (it never writes); the filter's changes
    // arrive as one more stream.
    let filter = inner.serving.clone();
    let acct = match &filter {
        None => acct.boxed(),
        Some(_) => futures_util::stream::once(async { Change::Accounts(watcher::Event::InitDone) })
            .chain(futures_util::stream::pending())
            .boxed(),
    };
    let serving = match filter.clone() {
        Some(rx) => futures_util::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some((Change::Serving, rx))
        })
        .boxed(),
        None => futures_util::stream::pending().boxed(),
    };
    let mut changes = futures_util::stream::select_all([tls.boxed(), acct, serving]);
    let mut secrets: BTreeMap<String, Secret> = BTreeMap::new();
    let mut buffer: Option<BTreeMap<String, Secret>> = None;
    let mut accounts: Option<Secret> = None;
    let (mut tls_synced, mut acct_synced) = (false, false);
    let mut dirty = false;
    loop {
        // Coalesce bursts: rebuild once the stream has been quiet for a few milliseconds.
        let next = if dirty {
            match tokio::time::timeout(Duration::from_millis(5), changes.next()).await {
                Ok(c) => c,
                Err(_) => {
                    let accounts_doc = inner.accounts_of(accounts.as_ref());
                    let names = filter.as_ref().map(|f| Arc::clone(&f.borrow()));
                    let (doc, _) = mapping::document_of(
                        secrets
                            .iter()
                            .filter(|(n, _)| served(names.as_deref(), n))
                            .map(|(_, s)| s),
                        &cfg.default_resolver,
                        accounts_doc.as_ref(),
                    );
                    if **inner.current.load().document() != doc
                        || inner.generation.load(Ordering::Relaxed) == 0
                    {
                        inner.publish(doc);
                    }
                    dirty = false;
                    ready.send_replace(true);
                    continue;
                }
            }
        } else {
            changes.next().await
        };
        let Some(change) = next else { break };
        match change {
            Change::Tls(watcher::Event::Init) => buffer = Some(BTreeMap::new()),
            Change::Tls(watcher::Event::InitApply(s)) => {
                buffer
                    .get_or_insert_with(BTreeMap::new)
                    .insert(s.name_any(), s);
            }
            Change::Tls(watcher::Event::InitDone) => {
                secrets = buffer.take().unwrap_or_default();
                tls_synced = true;
            }
            Change::Tls(watcher::Event::Apply(s)) => {
                secrets.insert(s.name_any(), s);
            }
            Change::Tls(watcher::Event::Delete(s)) => {
                secrets.remove(&s.name_any());
            }
            Change::Accounts(watcher::Event::Init) => {}
            Change::Accounts(watcher::Event::InitApply(s) | watcher::Event::Apply(s)) => {
                accounts = Some(s)
            }
            Change::Accounts(watcher::Event::InitDone) => acct_synced = true,
            Change::Accounts(watcher::Event::Delete(_)) => accounts = None,
            Change::Serving => {}
            Change::Failed(e) => {
                tracing::warn!(namespace = %cfg.namespace, error = %e, "Secret watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        dirty |= tls_synced && acct_synced && buffer.is_none();
    }
}
