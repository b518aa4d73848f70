//! The proxy's Kubernetes provider: the [`IngressWatcher`]'s live routes as
//! [`ingress_proxy::ExternalRoutes`], and the TLS Secrets our Ingresses name as one merged
//! certificate snapshot for the proxy's TLS context.
//!
//! The proxy compiles its own table (its backends carry metrics, balancers and connection pools),
//! so the watchers compile none, and the provider hands the proxy their routes with each backend
//! turned into a named service over the backend's current endpoints. An endpoint change re-sends
//! the set with the same route list (the same `Arc`), which the proxy applies by swapping the
//! changed services' endpoint lists, without a rebuild. The request path never sees this.
//!
//! Certificates: one serving [`SecretStore`] per namespace that holds a Secret named in an
//! Ingress's `spec.tls` (started when the first such Ingress appears, stopped when the last
//! goes), filtered to exactly the Secret names our Ingresses reference there — an unreferenced
//! TLS Secret in the same namespace is not served, and a newly referenced one is served as soon
//! as the route table naming it is published (the store already watches it; no relist). The
//! stores' snapshots are merged into one [`acme_store::Snapshot`] whose resolvers are named
//! `<namespace>/<resolver>`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use acme_store::{AcmeDocument, CertStore, Snapshot};
use ingress_proxy::ExternalRoutes;
use ingress_proxy::config::ServiceConfig;
use kube::Client;
use tokio::sync::{mpsc, watch};

use crate::routes::KubeRoute;
use crate::task::OwnedTask;
use crate::{Backend, IngressWatcher, Published, SecretStore, SecretStoreConfig, WatchConfig};

/// Prefix of the proxy service names of Kubernetes backends (`k8s/<ns>/<service>:<port>`),
/// which keeps them apart from `[services]` of the file.
pub const SERVICE_PREFIX: &str = "k8s/";

/// A running provider. Dropping it stops the watches, the Secret stores and the feeds.
#[derive(Debug)]
pub struct KubernetesProvider {
    _watchers: Vec<IngressWatcher>,
    published: watch::Receiver<Published>,
    routes: watch::Receiver<Arc<ExternalRoutes>>,
    certificates: watch::Receiver<Arc<Snapshot>>,
    _tasks: [OwnedTask; 3],
}

impl KubernetesProvider {
    /// Starts watching on the current runtime. Nothing is sent on [`KubernetesProvider::routes`]
    /// until every watch has listed (a starting proxy never serves a partial table).
    pub fn start(client: Client, config: WatchConfig) -> Self {
        Self::start_namespaces(client, config, &[])
    }

    /// Like [`KubernetesProvider::start`], watching each of `namespaces` (one watcher each,
    /// routes compiled together); empty: `config.namespace` alone.
    pub fn start_namespaces(client: Client, config: WatchConfig, namespaces: &[String]) -> Self {
        // The proxy compiles the routes into its own table.
        let config = WatchConfig {
            compile_table: false,
            ..config
        };
        let watchers: Vec<IngressWatcher> = if namespaces.is_empty() {
            vec![IngressWatcher::start(client.clone(), config)]
        } else {
            namespaces
                .iter()
                .map(|ns| {
                    let config = WatchConfig {
                        namespace: Some(ns.clone()),
                        ..config.clone()
                    };
                    IngressWatcher::start(client.clone(), config)
                })
                .collect()
        };
        let slot = Arc::new(arc_swap::ArcSwap::from_pointee(Vec::new()));
        let (published_tx, published) = watch::channel(Published::default());
        let combine_task = OwnedTask::spawn(combine(
            watchers.iter().map(IngressWatcher::subscribe).collect(),
            watchers.iter().map(IngressWatcher::routes_slot).collect(),
            Arc::clone(&slot),
            published_tx,
        ));
        let (routes_tx, routes) = watch::channel(Arc::new(ExternalRoutes::default()));
        let (certs_tx, certificates) = watch::channel(Arc::new(Snapshot::empty()));
        let feed = OwnedTask::spawn(feed_routes(published.clone(), slot, routes_tx));
        let certs = OwnedTask::spawn(feed_certificates(client, published.clone(), certs_tx));
        KubernetesProvider {
            _watchers: watchers,
            published,
            routes,
            certificates,
            _tasks: [combine_task, feed, certs],
        }
    }

    /// Every new route set, for [`ingress_proxy::Proxy::set_external_routes`]. The first
    /// `changed()` fires once the watcher has synced.
    pub fn routes(&self) -> watch::Receiver<Arc<ExternalRoutes>> {
        self.routes.clone()
    }

    /// The merged certificates of the referenced Secrets (only those), for
    /// `tls_acceptor::TlsContext::watch` and [`ingress_proxy::Proxy::watch_certificates`].
    pub fn certificates(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.certificates.clone()
    }

    /// The watchers' publications, combined (generations and counts summed; the table
    /// generation stays 0 until every watcher has synced; Secrets joined). No warnings: the
    /// watchers compile no table here — the proxy's own table reports them (admin API problems).
    pub fn published(&self) -> watch::Receiver<Published> {
        self.published.clone()
    }
}

/// The proxy's view of `routes`: each distinct backend becomes service
/// `k8s/<ns>/<service>:<port>` over its current endpoints.
pub fn external_routes(routes: &[KubeRoute]) -> ExternalRoutes {
    ExternalRoutes {
        routes: routes
            .iter()
            .map(|r| r.clone().map_backend(|b| service_name(&b)))
            .collect(),
        services: services(routes),
    }
}

/// `previous` with its services over the current endpoints of `routes` — for an endpoint-only
/// change: the route list is shared, not rebuilt, so the proxy only swaps endpoint lists.
/// `routes` must be the routes `previous` was made from.
pub fn with_current_endpoints(previous: &ExternalRoutes, routes: &[KubeRoute]) -> ExternalRoutes {
    ExternalRoutes {
        routes: Arc::clone(&previous.routes),
        services: services(routes),
    }
}

fn service_name(backend: &Backend) -> String {
    format!("{SERVICE_PREFIX}{}", backend.key())
}

/// One service per distinct backend (routes share an `Arc<Backend>` per Service port).
fn services(routes: &[KubeRoute]) -> BTreeMap<String, ServiceConfig> {
    let mut seen = HashSet::new();
    let mut out = BTreeMap::new();
    for r in routes {
        if seen.insert(Arc::as_ptr(&r.backend)) {
            out.entry(service_name(&r.backend))
                .or_insert_with(|| ExternalRoutes::service_for(&r.backend.endpoints()));
        }
    }
    out
}

/// Joins several watchers' publications and routes into one.
async fn combine(
    mut rxs: Vec<watch::Receiver<Published>>,
    slots: Vec<Arc<arc_swap::ArcSwap<Vec<KubeRoute>>>>,
    slot: Arc<arc_swap::ArcSwap<Vec<KubeRoute>>>,
    tx: watch::Sender<Published>,
) {
    loop {
        let changes = rxs.iter_mut().map(|r| Box::pin(r.changed()));
        let (changed, _, _) = futures_util::future::select_all(changes).await;
        if changed.is_err() {
            break;
        }
        let pubs: Vec<Published> = rxs
            .iter_mut()
            .map(|r| r.borrow_and_update().clone())
            .collect();
        let all_synced = pubs.iter().all(|p| p.table_generation > 0);
        let mut joined = Published::default();
        for p in &pubs {
            joined.table_generation += p.table_generation;
            joined.endpoints_generation += p.endpoints_generation;
            joined.ingresses += p.ingresses;
            joined.routes += p.routes;
            joined.warnings.extend(p.warnings.iter().cloned());
            joined.tls_secrets.extend(p.tls_secrets.iter().cloned());
        }
        if !all_synced {
            joined.table_generation = 0;
        }
        let routes: Vec<KubeRoute> = slots
            .iter()
            .flat_map(|s| s.load().iter().cloned().collect::<Vec<_>>())
            .collect();
        slot.store(Arc::new(routes));
        tx.send_replace(joined);
    }
}

async fn feed_routes(
    mut published: watch::Receiver<Published>,
    routes: Arc<arc_swap::ArcSwap<Vec<KubeRoute>>>,
    tx: watch::Sender<Arc<ExternalRoutes>>,
) {
    // The table generation of the last set sent: while it holds, only endpoints changed.
    let mut sent_table = 0;
    while published.changed().await.is_ok() {
        let table = published.borrow_and_update().table_generation;
        if table == 0 {
            continue;
        }
        let current = routes.load_full();
        let previous = tx.borrow().clone();
        let next = match (table == sent_table).then(|| with_current_endpoints(&previous, &current))
        {
            // A newer table may already be in the slot (its publication is on its way, and
            // will send the full set): only an unchanged service list is safe to pair with
            // the routes sent before.
            Some(next) if next.services.keys().eq(previous.services.keys()) => next,
            _ => external_routes(&current),
        };
        sent_table = table;
        if tx.send(Arc::new(next)).is_err() {
            break;
        }
    }
}

/// One snapshot of every store's certificates; resolver names become `<namespace>/<resolver>`
/// so equal resolver names in two namespaces stay apart.
pub fn merge_snapshots<'a>(
    stores: impl IntoIterator<Item = (&'a str, Arc<Snapshot>)>,
    generation: u64,
    previous: Option<&Snapshot>,
) -> Snapshot {
    let mut doc = AcmeDocument::default();
    for (ns, snap) in stores {
        for (resolver, data) in &snap.document().resolvers {
            doc.resolvers
                .insert(format!("{ns}/{resolver}"), data.clone());
        }
    }
    Snapshot::build(Arc::new(doc), generation, previous)
}

async fn feed_certificates(
    client: Client,
    mut published: watch::Receiver<Published>,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    // Per namespace: its store and the names it serves.
    let mut stores: BTreeMap<String, SecretStore> = BTreeMap::new();
    let mut filters: BTreeMap<String, watch::Sender<Arc<BTreeSet<String>>>> = BTreeMap::new();
    let (dirty_tx, mut dirty_rx) = mpsc::unbounded_channel::<()>();
    let mut generation = 0u64;
    loop {
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    break;
                }
                let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (ns, name) in &published.borrow_and_update().tls_secrets {
                    wanted.entry(ns.clone()).or_default().insert(name.clone());
                }
                let before = stores.len();
                stores.retain(|ns, _| wanted.contains_key(ns));
                filters.retain(|ns, _| wanted.contains_key(ns));
                let mut touched = stores.len() != before;
                for (ns, names) in wanted {
                    if let Some(filter) = filters.get(&ns) {
                        // The store republishes (and notifies `dirty`) if the set differs.
                        filter.send_if_modified(|current| {
                            let differs = **current != names;
                            if differs {
                                *current = Arc::new(names.clone());
                            }
                            differs
                        });
                    }
                    if stores.contains_key(&ns) {
                        continue;
                    }
                    let (filter, names) = watch::channel(Arc::new(names));
                    let config = SecretStoreConfig::new(ns.clone());
                    match SecretStore::start_serving(client.clone(), config, names).await {
                        Ok(store) => {
                            let mut rx = store.subscribe();
                            let dirty = dirty_tx.clone();
                            // Ends when the store (its sender) is dropped.
                            tokio::spawn(async move {
                                while rx.changed().await.is_ok() {
                                    if dirty.send(()).is_err() {
                                        break;
                                    }
                                }
                            });
                            stores.insert(ns.clone(), store);
                            filters.insert(ns, filter);
                            touched = true;
                        }
                        Err(e) => tracing::warn!(namespace = %ns, error = %e, "cannot watch the TLS Secrets; retrying on the next Ingress change"),
                    }
                }
                if !touched {
                    continue;
                }
            }
            Some(()) = dirty_rx.recv() => {}
        }
        generation += 1;
        let previous = tx.borrow().clone();
        let merged = merge_snapshots(
            stores.iter().map(|(ns, s)| (ns.as_str(), s.snapshot())),
            generation,
            Some(&previous),
        );
        tx.send_replace(Arc::new(merged));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;
    use ingress_router::ingress::{ServiceBackend, ServicePort};
    use ingress_router::{IngressMatch, IngressOrigin, IngressRoute, PathType};

    fn route(ns: &str, svc: &str, path: &str, backend: &Arc<Backend>) -> KubeRoute {
        IngressRoute {
            origin: IngressOrigin {
                namespace: ns.into(),
                name: "ing".into(),
                created: None,
            },
            matcher: IngressMatch::Path {
                rule_index: 0,
                path_index: 0,
                host: Some(format!("{svc}.test")),
                path_type: PathType::Prefix,
                path: path.into(),
            },
            backend: Arc::clone(backend),
        }
    }

    #[test]
    fn backends_become_one_service_each_with_live_endpoints() {
        let key = |svc: &str| ServiceBackend {
            namespace: "ns".into(),
            service: svc.into(),
            port: ServicePort::Number(80),
        };
        let web = Arc::new(Backend::new(
            key("web"),
            vec!["198.51.100.2:8080".parse().unwrap()],
        ));
        let api = Arc::new(Backend::new(key("api"), Vec::new()));
        let routes = vec![
            route("ns", "web", "/", &web),
            route("ns", "web", "/static", &web),
            route("ns", "api", "/", &api),
        ];
        let ext = external_routes(&routes);
        let names: Vec<_> = ext.routes.iter().map(|r| r.backend.as_str()).collect();
        assert_eq!(names, ["k8s/ns/web:80", "k8s/ns/web:80", "k8s/ns/api:80"]);
        assert_eq!(ext.services.len(), 2);
        let urls: Vec<_> = ext.services["k8s/ns/web:80"]
            .endpoints
            .iter()
            .map(|e| e.url.as_str())
            .collect();
        assert_eq!(urls, ["http://198.51.100.2:8080"]);
        assert!(ext.services["k8s/ns/api:80"].endpoints.is_empty());
        // The matcher and origin are carried over unchanged.
        assert_eq!(ext.routes[1].matcher, routes[1].matcher);
        assert_eq!(ext.routes[1].origin, routes[1].origin);
    }

    #[test]
    fn an_endpoint_change_shares_the_route_list() {
        let web = Arc::new(Backend::new(
            ServiceBackend {
                namespace: "ns".into(),
                service: "web".into(),
                port: ServicePort::Number(80),
            },
            vec!["198.51.100.2:8080".parse().unwrap()],
        ));
        let routes = vec![
            route("ns", "web", "/", &web),
            route("ns", "web", "/a", &web),
        ];
        let first = external_routes(&routes);
        web.set_endpoints(vec!["198.51.100.3:8080".parse().unwrap()]);
        let next = with_current_endpoints(&first, &routes);
        assert!(Arc::ptr_eq(&first.routes, &next.routes));
        let urls: Vec<_> = next.services["k8s/ns/web:80"]
            .endpoints
            .iter()
            .map(|e| e.url.as_str())
            .collect();
        assert_eq!(urls, ["http://198.51.100.3:8080"]);
    }

    #[test]
    fn merged_resolvers_are_namespaced() {
        let mut a = AcmeDocument::default();
        a.resolvers.insert("kubernetes".into(), Default::default());
        let sa = Arc::new(Snapshot::build(Arc::new(a.clone()), 1, None));
        let sb = Arc::new(Snapshot::build(Arc::new(a), 1, None));
        let merged = merge_snapshots([("one", sa), ("two", sb)], 7, None);
        let names: Vec<_> = merged.document().resolvers.keys().cloned().collect();
        assert_eq!(names, ["one/kubernetes", "two/kubernetes"]);
        assert_eq!(merged.generation(), 7);
    }
}
