//! Ingresses → live routes: kube-runtime watchers on IngressClasses, Ingresses, Services and
//! EndpointSlices feed an [`ingress_router::SharedTable`] whose backends carry live endpoints.
//!
//! Incremental by construction:
//! - an Ingress event recomputes only that Ingress's routes (cached per object), then the table
//!   is recompiled from the cached routes once per burst (events arriving within `debounce` are
//!   coalesced), so a 10k-Ingress initial list compiles once;
//! - a Service or EndpointSlice event re-resolves only the backends of that Service and swaps
//!   their endpoint lists in place ([`Backend`]) — the table is not rebuilt at all.
//!
//! The first table is published only after every watcher has listed, so a starting proxy never
//! serves a partial table. Ingress `status.loadBalancer` is written for our class only, through
//! `/status`, and only when it differs.

pub mod acme;
pub mod backends;
pub mod class;
pub(crate) mod status;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::task::OwnedTask;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use ingress_router::ingress::{self as ring, ServiceBackend};
use ingress_router::{IngressRoute, SharedTable, Table};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;

pub use acme::{ACME_RESOLVER_ANNOTATION, CertRequest, cert_requests};
pub use backends::{Backend, SERVICE_NAME_LABEL};
pub use class::{CONTROLLER_NAME, OurClasses};

/// The route table type the watcher publishes.
pub type KubeTable = Table<Arc<Backend>>;

/// One route of the published table, as compiled into it.
pub type KubeRoute = IngressRoute<Arc<Backend>>;

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Our IngressClass controller name.
    pub controller: String,
    /// Watch one namespace only (`None`: all namespaces; needs cluster-wide RBAC).
    pub namespace: Option<String>,
    /// Addresses written to `status.loadBalancer.ingress` of our Ingresses (empty: write nothing).
    pub status_ips: Vec<IpAddr>,
    /// How long to wait for more Ingress events before recompiling the table.
    pub debounce: Duration,
    /// Take class-less Ingresses even when no IngressClass of ours is marked default (we are
    /// the cluster's only Ingress controller).
    pub default_class: bool,
    /// Compile the watcher's own route table ([`IngressWatcher::table`]) on every change. A
    /// consumer that compiles the routes itself — the proxy's [`crate::KubernetesProvider`]
    /// turns this off — saves one compile on each change's path; the table then stays empty
    /// and [`Published::warnings`] too (the consumer's table has them).
    pub compile_table: bool,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            controller: CONTROLLER_NAME.into(),
            namespace: None,
            status_ips: Vec::new(),
            debounce: Duration::from_millis(5),
            default_class: false,
            compile_table: true,
        }
    }
}

/// What the watcher last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Increases with every table compiled (0: nothing yet, i.e. not synced).
    pub table_generation: u64,
    /// Increases with every endpoint change applied in place.
    pub endpoints_generation: u64,
    /// Ingresses of our class in the table.
    pub ingresses: usize,
    /// Routes in the table.
    pub routes: usize,
    /// Table warnings (collisions, skipped paths), as text.
    pub warnings: Vec<String>,
    /// The TLS Secrets (`namespace`, `secretName`) our Ingresses name in `spec.tls`: what a proxy
    /// must load certificates from (e.g. one [`crate::SecretStore`] per namespace).
    pub tls_secrets: std::collections::BTreeSet<(String, String)>,
}

/// A running watcher. Dropping it stops the watches.
#[derive(Debug)]
pub struct IngressWatcher {
    table: Arc<SharedTable<Arc<Backend>>>,
    routes: Arc<arc_swap::ArcSwap<Vec<KubeRoute>>>,
    rx: watch::Receiver<Published>,
    _task: OwnedTask,
}

impl IngressWatcher {
    /// Starts the watches on the current runtime.
    pub fn start(client: Client, config: WatchConfig) -> Self {
        let table = Arc::new(SharedTable::default());
        let routes = Arc::new(arc_swap::ArcSwap::from_pointee(Vec::new()));
        let (tx, rx) = watch::channel(Published::default());
        let slots = Slots {
            table: Arc::clone(&table),
            routes: Arc::clone(&routes),
        };
        let task = OwnedTask::spawn(run(client, config, slots, tx));
        IngressWatcher {
            table,
            routes,
            rx,
            _task: task,
        }
    }

    /// The routes compiled into the current table (same backends, so endpoint changes show
    /// through [`Backend::endpoints`]): for consumers that compile their own table, such as the
    /// proxy's Kubernetes provider. Swapped together with the table, before the notification.
    pub fn routes(&self) -> Arc<Vec<KubeRoute>> {
        self.routes.load_full()
    }

    /// The slot behind [`IngressWatcher::routes`], for a feed task that outlives a borrow.
    pub(crate) fn routes_slot(&self) -> Arc<arc_swap::ArcSwap<Vec<KubeRoute>>> {
        Arc::clone(&self.routes)
    }

    /// The live table (per request: `table().load().route(&view)`).
    pub fn table(&self) -> &Arc<SharedTable<Arc<Backend>>> {
        &self.table
    }

    /// Notifications of every table or endpoint publication.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.rx.clone()
    }
}

/// Where `compile` publishes.
struct Slots {
    table: Arc<SharedTable<Arc<Backend>>>,
    routes: Arc<arc_swap::ArcSwap<Vec<KubeRoute>>>,
}

/// One change from any of the watches.
enum Change {
    Class(watcher::Event<IngressClass>),
    Ingress(watcher::Event<Ingress>),
    Service(Box<watcher::Event<Service>>),
    Slice(watcher::Event<EndpointSlice>),
    Failed(&'static str, watcher::Error),
}

type Key = (String, String);

fn key_of<K: ResourceExt>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn slice_service(s: &EndpointSlice) -> Option<Key> {
    Some((s.namespace()?, s.labels().get(SERVICE_NAME_LABEL)?.clone()))
}

/// A watcher's object map with relist buffering: `Init..InitDone` replaces the map atomically.
struct Mirror<K> {
    objects: HashMap<Key, K>,
    buffer: Option<HashMap<Key, K>>,
    synced: bool,
}

impl<K: ResourceExt> Mirror<K> {
    fn new() -> Self {
        Mirror {
            objects: HashMap::new(),
            buffer: None,
            synced: false,
        }
    }

    /// Applies an event; returns the keys whose object changed (for a relist: all old and new).
    fn apply(&mut self, event: watcher::Event<K>) -> Vec<Key> {
        match event {
            watcher::Event::Init => {
                self.buffer = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(key_of(&o), o);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let new = self.buffer.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, new);
                self.synced = true;
                old.into_keys()
                    .chain(self.objects.keys().cloned())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect()
            }
            watcher::Event::Apply(o) => {
                let k = key_of(&o);
                self.objects.insert(k.clone(), o);
                vec![k]
            }
            watcher::Event::Delete(o) => {
                let k = key_of(&o);
                self.objects.remove(&k);
                vec![k]
            }
        }
    }
}

fn stream_of<K>(
    api: Api<K>,
    wrap: fn(watcher::Event<K>) -> Change,
    what: &'static str,
) -> impl Stream<Item = Change>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher(api, watcher::Config::default()).map(move |r| match r {
        Ok(e) => wrap(e),
        Err(e) => Change::Failed(what, e),
    })
}

struct State {
    config: WatchConfig,
    client: Client,
    classes: Mirror<IngressClass>,
    ingresses: Mirror<Ingress>,
    services: Mirror<Service>,
    slices: Mirror<EndpointSlice>,
    ours: OurClasses,
    /// Routes of each Ingress of our class, cached so one event recomputes one Ingress.
    routes: BTreeMap<Key, Vec<IngressRoute<ServiceBackend>>>,
    /// The `spec.tls[].secretName`s of each Ingress of our class.
    tls: BTreeMap<Key, Vec<String>>,
    /// One shared slot per backend in use.
    backends: HashMap<ServiceBackend, Arc<Backend>>,
    /// Slices by Service, so endpoint resolution does not scan every slice.
    slices_by_service: HashMap<Key, HashSet<Key>>,
    /// The Service each slice was indexed under.
    slice_owner: HashMap<Key, Key>,
    table_dirty: bool,
    published: Published,
}

impl State {
    fn synced(&self) -> bool {
        self.classes.synced && self.ingresses.synced && self.services.synced && self.slices.synced
    }

    fn recompute_ingress(&mut self, key: &Key) {
        let (routes, tls) = match self.ingresses.objects.get(key) {
            Some(ing) if self.ours.is_ours(ing) => {
                let tls: Vec<String> = ing
                    .spec
                    .iter()
                    .flat_map(|s| s.tls.iter().flatten())
                    .filter_map(|t| t.secret_name.clone())
                    .collect();
                (Some(ring::routes(ing).0), tls)
            }
            _ => (None, Vec::new()),
        };
        // The published TLS Secret names come with a compile: a change of them alone counts.
        let tls_changed = self.tls.get(key).map_or(&[][..], Vec::as_slice) != tls.as_slice();
        if tls_changed {
            if tls.is_empty() {
                self.tls.remove(key);
            } else {
                self.tls.insert(key.clone(), tls);
            }
        }
        let changed = match routes {
            // An event that leaves the routes as they were (e.g. our own status write-back,
            // an annotation) does not recompile the table, nor make the proxy rebuild.
            Some(r) if self.routes.get(key).is_some_and(|old| same_routes(old, &r)) => false,
            Some(r) => {
                self.routes.insert(key.clone(), r);
                true
            }
            None => self.routes.remove(key).is_some(),
        };
        self.table_dirty |= changed || tls_changed;
    }

    fn resolve(&self, backend: &ServiceBackend) -> Vec<std::net::SocketAddr> {
        let skey = (backend.namespace.clone(), backend.service.clone());
        let slices = self
            .slices_by_service
            .get(&skey)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.objects.get(k));
        backends::resolve(backend, self.services.objects.get(&skey), slices)
    }

    /// Re-resolves the backends of Service `skey` in place; returns whether any changed.
    fn refresh_service(&mut self, skey: &Key) -> bool {
        let mut changed = false;
        for (b, slot) in &self.backends {
            if b.namespace == skey.0 && b.service == skey.1 {
                changed |= slot.set_endpoints(self.resolve(b));
            }
        }
        changed
    }

    fn compile(&mut self, slots: &Slots) {
        let mut used: HashMap<ServiceBackend, Arc<Backend>> = HashMap::new();
        let mut all = Vec::new();
        for routes in self.routes.values() {
            for r in routes {
                let slot = match used.get(&r.backend) {
                    Some(s) => Arc::clone(s),
                    None => {
                        let s = match self.backends.get(&r.backend) {
                            Some(s) => Arc::clone(s),
                            None => {
                                Arc::new(Backend::new(r.backend.clone(), self.resolve(&r.backend)))
                            }
                        };
                        used.insert(r.backend.clone(), Arc::clone(&s));
                        s
                    }
                };
                all.push(r.clone().map_backend(|_| slot));
            }
        }
        let routes = all.len();
        let compiled = if self.config.compile_table {
            Table::new(Vec::new(), all.clone()).map(Some)
        } else {
            Ok(None)
        };
        match compiled {
            Ok(table) => {
                self.published.warnings = table
                    .as_ref()
                    .map(|t| t.warnings().iter().map(|w| w.to_string()).collect())
                    .unwrap_or_default();
                slots.routes.store(Arc::new(all));
                if let Some(t) = table {
                    slots.table.store(t);
                }
                self.backends = used;
                self.published.table_generation += 1;
                self.published.routes = routes;
                self.published.ingresses = self.routes.len();
                self.published.tls_secrets = self
                    .routes
                    .keys()
                    .filter_map(|k| self.ingresses.objects.get(k))
                    .flat_map(|ing| {
                        let ns = ing.namespace().unwrap_or_default();
                        ing.spec
                            .iter()
                            .flat_map(|s| s.tls.iter().flatten())
                            .filter_map(move |t| Some((ns.clone(), t.secret_name.clone()?)))
                    })
                    .collect();
            }
            Err(e) => {
                tracing::warn!(error = %e, "compiling the Ingress route table failed; keeping the previous one")
            }
        }
        self.table_dirty = false;
    }

    /// Hands our Ingresses among `keys` to the status writer task (which skips unchanged ones),
    /// so a burst of status PATCHes never delays route updates.
    fn queue_statuses(
        &self,
        keys: &[Key],
        writer: &tokio::sync::mpsc::UnboundedSender<Vec<Ingress>>,
    ) {
        if self.config.status_ips.is_empty() {
            return;
        }
        let batch: Vec<Ingress> = keys
            .iter()
            .filter_map(|k| self.ingresses.objects.get(k))
            .filter(|ing| self.ours.is_ours(ing))
            .cloned()
            .collect();
        if !batch.is_empty() {
            let _ = writer.send(batch);
        }
    }
}

/// Whether two route lists of one Ingress are the same (origin, match and backend, in order).
fn same_routes(a: &[IngressRoute<ServiceBackend>], b: &[IngressRoute<ServiceBackend>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.origin == y.origin && x.matcher == y.matcher && x.backend == y.backend)
}

async fn run(client: Client, config: WatchConfig, slots: Slots, tx: watch::Sender<Published>) {
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let streams = futures_util::stream::select_all([
        stream_of(
            Api::<IngressClass>::all(client.clone()),
            Change::Class,
            "IngressClass",
        )
        .boxed(),
        stream_of(
            api::<Ingress>(&client, &config.namespace),
            Change::Ingress,
            "Ingress",
        )
        .boxed(),
        stream_of(
            api::<Service>(&client, &config.namespace),
            |e| Change::Service(Box::new(e)),
            "Service",
        )
        .boxed(),
        stream_of(
            api::<EndpointSlice>(&client, &config.namespace),
            Change::Slice,
            "EndpointSlice",
        )
        .boxed(),
    ]);
    let mut streams = streams;
    let debounce = config.debounce;
    let default_class = config.default_class;
    let mut state = State {
        config,
        client,
        classes: Mirror::new(),
        ingresses: Mirror::new(),
        services: Mirror::new(),
        slices: Mirror::new(),
        ours: OurClasses {
            default: default_class,
            ..OurClasses::default()
        },
        routes: BTreeMap::new(),
        tls: BTreeMap::new(),
        backends: HashMap::new(),
        slices_by_service: HashMap::new(),
        slice_owner: HashMap::new(),
        table_dirty: false,
        published: Published::default(),
    };
    // Status writes run beside the watch loop; the task ends when the loop (and the sender) does.
    let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Ingress>>();
    let (status_client, status_ips) = (state.client.clone(), state.config.status_ips.clone());
    tokio::spawn(async move {
        while let Some(batch) = status_rx.recv().await {
            for ing in &batch {
                status::sync(&status_client, ing, &status_ips).await;
            }
        }
    });
    let mut deadline: Option<Instant> = None;
    let mut status_pending: Vec<Key> = Vec::new();
    loop {
        let change = match deadline {
            Some(d) => tokio::select! {
                c = streams.next() => c,
                _ = tokio::time::sleep_until(d) => {
                    deadline = None;
                    if state.synced() {
                        if state.table_dirty || state.published.table_generation == 0 {
                            state.compile(&slots);
                            tx.send_replace(state.published.clone());
                        }
                        state.queue_statuses(&std::mem::take(&mut status_pending), &status_tx);
                    }
                    continue;
                }
            },
            None => streams.next().await,
        };
        let Some(change) = change else { break };
        let mut endpoints_changed = false;
        match change {
            Change::Class(e) => {
                state.classes.apply(e);
                let mut ours = OurClasses::from_classes(
                    state.classes.objects.values(),
                    &state.config.controller,
                );
                ours.default |= state.config.default_class;
                if ours != state.ours {
                    state.ours = ours;
                    let keys: Vec<Key> = state
                        .ingresses
                        .objects
                        .keys()
                        .cloned()
                        .chain(state.routes.keys().cloned())
                        .collect();
                    for k in &keys {
                        state.recompute_ingress(k);
                    }
                    status_pending.extend(keys);
                }
            }
            Change::Ingress(e) => {
                for k in state.ingresses.apply(e) {
                    state.recompute_ingress(&k);
                    status_pending.push(k);
                }
            }
            Change::Service(e) => {
                for k in state.services.apply(*e) {
                    endpoints_changed |= state.refresh_service(&k);
                }
            }
            Change::Slice(e) => {
                let touched = state.slices.apply(e);
                let mut services = HashSet::new();
                for k in touched {
                    // Move the slice to the Service it now names (the label may change).
                    if let Some(old) = state.slice_owner.remove(&k) {
                        if let Some(set) = state.slices_by_service.get_mut(&old) {
                            set.remove(&k);
                        }
                        services.insert(old);
                    }
                    if let Some(svc) = state.slices.objects.get(&k).and_then(slice_service) {
                        state
                            .slices_by_service
                            .entry(svc.clone())
                            .or_default()
                            .insert(k.clone());
                        state.slice_owner.insert(k, svc.clone());
                        services.insert(svc);
                    }
                }
                for svc in services {
                    endpoints_changed |= state.refresh_service(&svc);
                }
            }
            Change::Failed(what, e) => {
                tracing::warn!(kind = what, error = %e, "watch failed; the watcher retries");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if endpoints_changed && state.published.table_generation > 0 {
            state.published.endpoints_generation += 1;
            tx.send_replace(state.published.clone());
        }
        if (state.table_dirty
            || !status_pending.is_empty()
            || state.published.table_generation == 0)
            && deadline.is_none()
        {
            deadline = Some(Instant::now() + debounce);
        }
    }
}
