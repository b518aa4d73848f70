//! The Kubernetes mode of `fairway-controller`, as library pieces the binary wires together.
//!
//! One replica at a time leads (the [`crate::LeaseElector`]); the leader issues into Secrets
//! (the [`crate::SecretStore`], every write stamped with the term's fencing epoch) and, when
//! pools are configured, allocates LoadBalancer addresses. What it issues is the configuration's
//! static certificates plus, live, the TLS hosts of annotated Ingresses ([`IngressCertRequests`]).
//!
//! - [`FencedElector`] republishes an elector's leadership only *after* stamping the store with
//!   the new term's epoch, so the issuer can never write a Secret with the previous term's epoch.
//! - [`IngressCertRequests`] watches IngressClasses and Ingresses and publishes the certificate
//!   requests ([`crate::routes::cert_requests`]) of the Secret namespace; [`feed_issuer`] turns
//!   them into the issuer's wanted list and the store's Secret names.
//! - [`while_leader`] runs a task (the [`crate::LbController`]) during each term only: two
//!   allocators would race for the same addresses.
//! - [`publish_ingress_status`] (leader only) writes the proxies' LoadBalancer address into
//!   our Ingresses' `status.loadBalancer`, as ingress-nginx's `--publish-service` does.
//! - [`label_pod`] marks the leader's pod with [`LEADER_LABEL`], so the HTTP-01 challenge
//!   Service can select the leader alone: only the leader listens on the challenge port, and a
//!   Service over every replica would send some validations to a closed port.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use acme_issuer::{LeaderElector, Leadership, WantedCert};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SecretStore;
use crate::routes::acme::{CertRequest, RequestProblem, cert_requests};
use crate::routes::class::OurClasses;
use crate::task::OwnedTask;

/// An elector whose leadership is published only once `store` carries the term's epoch.
///
/// Wraps any [`LeaderElector`]; give this one to the issuer. Dropping it stops the relay.
#[derive(Debug)]
pub struct FencedElector {
    tx: watch::Sender<Leadership>,
    _task: OwnedTask,
}

impl FencedElector {
    /// Relays `inner`'s leadership, setting `store`'s epoch before each change is visible.
    pub fn start(inner: &dyn LeaderElector, store: Arc<SecretStore>) -> Self {
        let mut rx = inner.subscribe();
        let first = *rx.borrow_and_update();
        store.set_epoch(first.epoch);
        let tx = watch::Sender::new(first);
        let relay = tx.clone();
        let task = OwnedTask::spawn(async move {
            while rx.changed().await.is_ok() {
                let now = *rx.borrow_and_update();
                store.set_epoch(now.epoch);
                relay.send_replace(now);
            }
        });
        FencedElector { tx, _task: task }
    }
}

impl LeaderElector for FencedElector {
    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.tx.subscribe()
    }
}

/// Runs `make()`'s future during each term of leadership and aborts it when leadership is
/// lost; if it ends by itself while still leading, it is restarted after `restart_delay`.
/// Returns when the leadership channel closes.
pub async fn while_leader<F, Fut>(
    mut leadership: watch::Receiver<Leadership>,
    restart_delay: Duration,
    mut make: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running: Option<JoinHandle<()>> = None;
    loop {
        let leading = leadership.borrow_and_update().is_leader;
        match (&running, leading) {
            (None, true) => running = Some(tokio::spawn(make())),
            (Some(task), false) => {
                task.abort();
                running = None;
            }
            _ => {}
        }
        let finished = async {
            match running.as_mut() {
                Some(task) => {
                    let _ = task.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = finished => {
                running = None;
                tokio::time::sleep(restart_delay).await;
            }
        }
    }
    if let Some(task) = running {
        task.abort();
    }
}

/// The pod label the leader sets to `"true"` on its own pod (`"false"` otherwise).
pub const LEADER_LABEL: &str = "fairway.dev/acme-leader";

/// Keeps pod `namespace/pod`'s [`LEADER_LABEL`] equal to `leadership` (merge-patching only on
/// change, retrying failed patches every `retry`) until the channel closes.
pub async fn label_pod(
    client: Client,
    namespace: &str,
    pod: &str,
    mut leadership: watch::Receiver<Leadership>,
    retry: Duration,
) {
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let mut written: Option<bool> = None;
    loop {
        let leading = leadership.borrow_and_update().is_leader;
        if written != Some(leading) {
            let patch = serde_json::json!({
                "metadata": {"labels": {LEADER_LABEL: leading.to_string()}}
            });
            match api
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => written = Some(leading),
                Err(e) => {
                    tracing::warn!(pod = %format!("{namespace}/{pod}"), error = %e, "labelling the pod failed; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
        }
        if leadership.changed().await.is_err() {
            return;
        }
    }
}

/// What [`IngressCertRequests`] watches.
#[derive(Debug, Clone)]
pub struct CertRequestsConfig {
    /// Our IngressClass controller name.
    pub controller: String,
    /// Take class-less Ingresses even when none of our IngressClasses is marked default.
    pub default_class: bool,
    /// The namespace the store writes Secrets to: requests of Ingresses elsewhere are reported.
    pub secret_namespace: String,
    /// How long to wait for more events before recomputing.
    pub debounce: Duration,
}

/// The certificate requests of annotated Ingresses, as last computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// Both watches have listed everything at least once.
    pub synced: bool,
    /// Requests the store can honour (Ingresses in the Secret namespace).
    pub requests: Vec<CertRequest>,
    /// Requests that cannot be honoured, and why.
    pub problems: Vec<RequestProblem>,
}

/// Keeps only the requests of `namespace` (the store writes there only); the others become
/// problems.
pub fn in_namespace(
    requests: Vec<CertRequest>,
    mut problems: Vec<RequestProblem>,
    namespace: &str,
) -> Requested {
    let (here, elsewhere): (Vec<_>, Vec<_>) =
        requests.into_iter().partition(|r| r.namespace == namespace);
    for r in elsewhere {
        problems.push(RequestProblem {
            ingress: r.ingress,
            message: format!(
                "asks for Secret {}/{}, but the controller writes certificates into namespace {namespace} only",
                r.namespace, r.secret_name
            ),
        });
    }
    Requested {
        synced: true,
        requests: here,
        problems,
    }
}

/// Watches IngressClasses and Ingresses (all namespaces) and publishes [`Requested`].
/// Dropping it stops the watches.
#[derive(Debug)]
pub struct IngressCertRequests {
    rx: watch::Receiver<Requested>,
    _task: OwnedTask,
}

impl IngressCertRequests {
    /// Starts watching on the current tokio runtime.
    pub fn start(client: Client, config: CertRequestsConfig) -> Self {
        let (tx, rx) = watch::channel(Requested::default());
        let task = OwnedTask::spawn(watch_requests(client, config, tx));
        IngressCertRequests { rx, _task: task }
    }

    /// The requests, updated on every change (`synced` is false until both lists arrived).
    pub fn subscribe(&self) -> watch::Receiver<Requested> {
        self.rx.clone()
    }
}

/// Mirrors of every Ingress and IngressClass plus one stream of their (and `extra`'s) events,
/// each burst of events coalesced: the stream yields once `debounce` passed without another.
type Mirrors = (
    reflector::Store<Ingress>,
    reflector::Store<IngressClass>,
    futures_util::stream::BoxStream<'static, ()>,
);

fn ingress_mirrors(
    client: &Client,
    extra: Option<
        futures_util::stream::BoxStream<'static, Result<(), (&'static str, watcher::Error)>>,
    >,
    debounce: Duration,
) -> Mirrors {
    let (ingresses, ing_writer) = reflector::store::<Ingress>();
    let (classes, cls_writer) = reflector::store::<IngressClass>();
    let ing_events = reflector(
        ing_writer,
        watcher(
            Api::<Ingress>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|r| r.map(drop).map_err(|e| ("Ingress", e)))
    .boxed();
    let cls_events = reflector(
        cls_writer,
        watcher(
            Api::<IngressClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|r| r.map(drop).map_err(|e| ("IngressClass", e)))
    .boxed();
    let mut events = futures_util::stream::select(ing_events, cls_events).boxed();
    if let Some(extra) = extra {
        events = futures_util::stream::select(events, extra).boxed();
    }
    let settled = futures_util::stream::unfold(events, move |mut events| async move {
        while let Err((kind, e)) = events.next().await? {
            tracing::warn!(kind, error = %e, "Kubernetes watch failed; retrying");
        }
        // Let a burst settle, then recompute from the mirrors (a full pass: off every hot path).
        let settle = tokio::time::sleep(debounce);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                () = &mut settle => break,
                more = events.next() => if let Err((kind, e)) = more? {
                    tracing::warn!(kind, error = %e, "Kubernetes watch failed; retrying");
                },
            }
        }
        Some(((), events))
    })
    .boxed();
    (ingresses, classes, settled)
}

fn our_classes(
    classes: &reflector::Store<IngressClass>,
    controller: &str,
    default: bool,
) -> OurClasses {
    let mut ours = OurClasses::from_classes(classes.state().iter().map(|c| c.as_ref()), controller);
    ours.default |= default;
    ours
}

async fn watch_requests(client: Client, config: CertRequestsConfig, tx: watch::Sender<Requested>) {
    let (ingresses, classes, mut settled) = ingress_mirrors(&client, None, config.debounce);
    while settled.next().await.is_some() {
        if listed(&classes) && listed(&ingresses) {
            let ours = our_classes(&classes, &config.controller, config.default_class);
            let all = ingresses.state();
            let (requests, problems) = cert_requests(all.iter().map(|i| i.as_ref()), &ours);
            let next = in_namespace(requests, problems, &config.secret_namespace);
            tx.send_if_modified(|cur| {
                let changed = *cur != next;
                *cur = next;
                changed
            });
        }
    }
}

/// What [`publish_ingress_status`] writes, and for which Ingresses.
#[derive(Debug, Clone)]
pub struct IngressStatusConfig {
    /// Our IngressClass controller name.
    pub controller: String,
    /// Take class-less Ingresses even when none of our IngressClasses is marked default.
    pub default_class: bool,
    /// The proxies' Service (`namespace`, `name`), as ingress-nginx's `--publish-service`: its
    /// `status.loadBalancer` addresses (the VIPs the LoadBalancer controller allocated) become
    /// every Ingress's. `None`: `static_ips`.
    pub publish_service: Option<(String, String)>,
    /// The addresses to publish without a Service.
    pub static_ips: Vec<IpAddr>,
    /// How long to wait for more events before writing.
    pub debounce: Duration,
}

/// The addresses a Service's `status.loadBalancer` carries (IPs only; hostnames are skipped).
pub fn service_ips(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// Keeps `status.loadBalancer` of every Ingress of ours (and no other) equal to the published
/// addresses, through `/status` and only where it differs, until the watches end. Run it on
/// the leader only ([`while_leader`]): replicas writing the same status would only race.
pub async fn publish_ingress_status(client: Client, config: IngressStatusConfig) {
    let (services, extra) = match &config.publish_service {
        Some((namespace, name)) => {
            let (store, writer) = reflector::store::<Service>();
            let events = reflector(
                writer,
                watcher(
                    Api::<Service>::namespaced(client.clone(), namespace),
                    watcher::Config::default().fields(&format!("metadata.name={name}")),
                ),
            )
            .default_backoff()
            .map(|r| r.map(drop).map_err(|e| ("Service", e)))
            .boxed();
            (Some(store), Some(events))
        }
        None => (None, None),
    };
    let (ingresses, classes, mut settled) = ingress_mirrors(&client, extra, config.debounce);
    while settled.next().await.is_some() {
        if !(listed(&classes) && listed(&ingresses) && services.as_ref().is_none_or(listed)) {
            continue;
        }
        let ips = match &services {
            Some(store) => store
                .state()
                .first()
                .map(|s| service_ips(s))
                .unwrap_or_default(),
            None => config.static_ips.clone(),
        };
        let ours = our_classes(&classes, &config.controller, config.default_class);
        for ingress in ingresses.state().iter().filter(|i| ours.is_ours(i)) {
            crate::routes::status::sync(&client, ingress, &ips).await;
        }
    }
}

/// Whether a reflector store has completed its first list, without waiting.
fn listed<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    futures_util::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
}

/// The issuer's wanted list: `fixed` (the configuration's certificates) then one per request
/// whose resolver is in `resolvers`; requests naming an unknown resolver become problems.
pub fn wanted_certs(
    fixed: &[WantedCert],
    requests: &[CertRequest],
    resolvers: &BTreeSet<String>,
) -> (Vec<WantedCert>, Vec<RequestProblem>) {
    let mut wanted = fixed.to_vec();
    let mut problems = Vec::new();
    for r in requests {
        if !resolvers.contains(&r.resolver) {
            problems.push(RequestProblem {
                ingress: r.ingress.clone(),
                message: format!(
                    "names resolver `{}`, which is not configured ([acme.resolvers.{}])",
                    r.resolver, r.resolver
                ),
            });
            continue;
        }
        if !acme_issuer::issuer::is_wanted(&wanted, &r.resolver, &r.hosts) {
            wanted.push(WantedCert {
                resolver: r.resolver.clone(),
                domains: r.hosts.clone(),
                key_type: None,
            });
        }
    }
    (wanted, problems)
}

/// Applies every change of `requested` until it closes: first the Secret names to `store`
/// (so a new certificate lands in the Ingress's `tls[].secretName`), then the wanted list to
/// `set_wanted` (e.g. `Issuer::set_wanted`). Problems are logged once per change.
pub async fn feed_issuer(
    mut requested: watch::Receiver<Requested>,
    store: Arc<SecretStore>,
    fixed: Vec<WantedCert>,
    resolvers: BTreeSet<String>,
    set_wanted: impl Fn(Vec<WantedCert>),
) {
    loop {
        let now = requested.borrow_and_update().clone();
        if now.synced {
            let (wanted, unknown) = wanted_certs(&fixed, &now.requests, &resolvers);
            let domains: Vec<_> = now.requests.iter().map(CertRequest::domain).collect();
            store.set_secret_names(
                now.requests
                    .iter()
                    .zip(&domains)
                    .map(|(r, d)| (r.resolver.as_str(), d, r.secret_name.as_str())),
            );
            for p in now.problems.iter().chain(&unknown) {
                tracing::warn!(ingress = %p.ingress, "ACME request ignored: {}", p.message);
            }
            tracing::info!(
                wanted = wanted.len(),
                from_ingresses = now.requests.len(),
                "certificates wanted"
            );
            set_wanted(wanted);
        }
        if requested.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ns: &str, secret: &str, resolver: &str, hosts: &[&str]) -> CertRequest {
        CertRequest {
            namespace: ns.into(),
            secret_name: secret.into(),
            resolver: resolver.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ingress: format!("{ns}/ing-{secret}"),
        }
    }

    #[test]
    fn other_namespaces_and_unknown_resolvers_are_problems() {
        let r = in_namespace(
            vec![
                req("fairway", "a", "le", &["a.example.com"]),
                req("web", "b", "le", &["b.example.com"]),
            ],
            Vec::new(),
            "fairway",
        );
        assert!(r.synced);
        assert_eq!(r.requests.len(), 1);
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].message.contains("web/b"), "{:?}", r.problems);

        let fixed = vec![WantedCert {
            resolver: "le".into(),
            domains: vec!["a.example.com".into()],
            key_type: None,
        }];
        let resolvers = BTreeSet::from(["le".to_string()]);
        let (wanted, problems) = wanted_certs(
            &fixed,
            &[
                req("fairway", "a", "le", &["a.example.com"]),
                req(
                    "fairway",
                    "c",
                    "le",
                    &["c.example.com", "www.c.example.com"],
                ),
                req("fairway", "d", "nope", &["d.example.com"]),
            ],
            &resolvers,
        );
        assert_eq!(
            wanted.len(),
            2,
            "a duplicate of a fixed certificate is wanted once"
        );
        assert_eq!(wanted[1].domains, ["c.example.com", "www.c.example.com"]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("acme.resolvers.nope"));
    }

    #[tokio::test(start_paused = true)]
    async fn while_leader_runs_only_during_terms() {
        let (tx, rx) = watch::channel(Leadership::default());
        let (runs_tx, mut runs) = watch::channel(0u32);
        let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = running.clone();
        let gate = tokio::spawn(while_leader(rx, Duration::from_secs(1), move || {
            runs_tx.send_modify(|n| *n += 1);
            let flag = flag.clone();
            async move {
                struct Down(Arc<std::sync::atomic::AtomicBool>);
                impl Drop for Down {
                    fn drop(&mut self) {
                        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let _down = Down(flag);
                std::future::pending::<()>().await;
            }
        }));
        tokio::task::yield_now().await;
        assert_eq!(*runs.borrow(), 0, "not started while following");
        tx.send_replace(Leadership {
            is_leader: true,
            epoch: 1,
        });
        runs.wait_for(|n| *n == 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(running.load(std::sync::atomic::Ordering::SeqCst));
        tx.send_replace(Leadership {
            is_leader: false,
            epoch: 1,
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !running.load(std::sync::atomic::Ordering::SeqCst),
            "aborted when leadership is lost"
        );
        tx.send_replace(Leadership {
            is_leader: true,
            epoch: 2,
        });
        runs.wait_for(|n| *n == 2).await.unwrap();
        drop(tx);
        gate.await.unwrap();
    }
}
