//! Watches Nodes, speaker Pods, Services and EndpointSlices and keeps a [`SpeakerView`] current.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{SpeakerSettings, SpeakerView, view};
use crate::task::OwnedTask;

/// Events closer together than this are applied as one recomputation.
const DEBOUNCE: Duration = Duration::from_millis(5);

/// A running watch feeding a speaker. Dropping it stops the watches.
#[derive(Debug)]
pub struct SpeakerWatcher {
    rx: watch::Receiver<Option<Arc<SpeakerView>>>,
    _task: OwnedTask,
}

impl SpeakerWatcher {
    /// Starts the four watches on the current runtime (Nodes, Services and EndpointSlices
    /// cluster-wide; Pods per `settings.pod_namespace` and `pod_selector`).
    pub fn start(client: Client, settings: SpeakerSettings) -> Self {
        let (tx, rx) = watch::channel(None);
        let task = OwnedTask::spawn(run(client, settings, tx));
        SpeakerWatcher { rx, _task: task }
    }

    /// The current view: `None` until every watch has listed, then a new value whenever the
    /// cluster or an address changes (unchanged recomputations are not sent).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<SpeakerView>>> {
        self.rx.clone()
    }
}

enum Change {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
    Failed(&'static str, watcher::Error),
}

/// One watch's objects by `namespace/name`, with relist buffering.
struct Objects<K> {
    map: BTreeMap<String, K>,
    buffer: Option<BTreeMap<String, K>>,
    synced: bool,
}

impl<K: ResourceExt + Clone> Objects<K> {
    fn new() -> Self {
        Objects {
            map: BTreeMap::new(),
            buffer: None,
            synced: false,
        }
    }

    fn key(o: &K) -> String {
        format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
    }

    fn apply(&mut self, e: watcher::Event<K>) {
        match e {
            watcher::Event::Init => self.buffer = Some(BTreeMap::new()),
            watcher::Event::InitApply(o) => {
                self.buffer
                    .get_or_insert_with(BTreeMap::new)
                    .insert(Self::key(&o), o);
            }
            watcher::Event::InitDone => {
                self.map = self.buffer.take().unwrap_or_default();
                self.synced = true;
            }
            watcher::Event::Apply(o) => {
                self.map.insert(Self::key(&o), o);
            }
            watcher::Event::Delete(o) => {
                self.map.remove(&Self::key(&o));
            }
        }
    }

    fn all(&self) -> Vec<K> {
        self.map.values().cloned().collect()
    }
}

fn stream_of<K>(
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(watcher::Event<K>) -> Change,
    what: &'static str,
) -> impl Stream<Item = Change>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher(api, config).map(move |r| match r {
        Ok(e) => wrap(e),
        Err(e) => Change::Failed(what, e),
    })
}

async fn run(
    client: Client,
    settings: SpeakerSettings,
    tx: watch::Sender<Option<Arc<SpeakerView>>>,
) {
    let pods: Api<Pod> = match &settings.pod_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut streams = futures_util::stream::select_all([
        stream_of(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            |e| Change::Node(Box::new(e)),
            "Node",
        )
        .boxed(),
        stream_of(
            pods,
            watcher::Config::default().labels(&settings.pod_selector),
            |e| Change::Pod(Box::new(e)),
            "Pod",
        )
        .boxed(),
        stream_of(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            |e| Change::Service(Box::new(e)),
            "Service",
        )
        .boxed(),
        stream_of(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
            |e| Change::Slice(Box::new(e)),
            "EndpointSlice",
        )
        .boxed(),
    ]);
    let (mut nodes, mut pods, mut services, mut slices) = (
        Objects::new(),
        Objects::new(),
        Objects::new(),
        Objects::new(),
    );
    let mut dirty = false;
    loop {
        let next = if dirty {
            match tokio::time::timeout(DEBOUNCE, streams.next()).await {
                Ok(c) => c,
                Err(_) => {
                    dirty = false;
                    if nodes.synced && pods.synced && services.synced && slices.synced {
                        let v = view(
                            &settings,
                            &nodes.all(),
                            &pods.all(),
                            &services.all(),
                            &slices.all(),
                        );
                        tx.send_if_modified(|current| {
                            let changed = current.as_deref() != Some(&v);
                            if changed {
                                *current = Some(Arc::new(v));
                            }
                            changed
                        });
                    }
                    continue;
                }
            }
        } else {
            streams.next().await
        };
        let Some(change) = next else { break };
        match change {
            Change::Node(e) => nodes.apply(*e),
            Change::Pod(e) => pods.apply(*e),
            Change::Service(e) => services.apply(*e),
            Change::Slice(e) => slices.apply(*e),
            Change::Failed(what, e) => {
                tracing::warn!(kind = what, error = %e, "speaker watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        dirty = true;
    }
}
