//! LoadBalancer Services, MetalLB-style: addresses from configured pools, written to
//! `status.loadBalancer` through the `/status` subresource, only on change, with Events.
//!
//! [`alloc`] is the pure allocation logic; [`LbController`] feeds it from a Service watch. Run the
//! controller on the elected leader only: two allocators would race for the same addresses.

pub mod alloc;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

pub use alloc::{AddressRange, AllocError, Allocator, DEFAULT_LB_CLASS, LbConfig, Pool, Request};

use crate::Error;

/// Every Service's addresses (`namespace/name` → IPs), as last written. Speakers announce these.
pub type Allocations = BTreeMap<String, Vec<IpAddr>>;

/// Allocates LoadBalancer addresses for the Services we implement.
pub struct LbController {
    client: Client,
    config: LbConfig,
    recorder: Recorder,
    allocator: Allocator,
    tx: watch::Sender<Allocations>,
    /// Services whose allocation failed, retried whenever an address is freed.
    failed: BTreeMap<String, Service>,
    /// Set when an address was released since the last retry.
    freed: bool,
}

impl std::fmt::Debug for LbController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbController")
            .field("config", &self.config)
            .field("allocator", &self.allocator)
            .finish()
    }
}

fn key_of(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

impl LbController {
    /// A controller for `config`, publishing Events as `reporter` (e.g. the pod name).
    pub fn new(client: Client, config: LbConfig, reporter: &str) -> Result<Self, Error> {
        config.validate()?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "fairway-controller".into(),
                instance: Some(reporter.to_string()),
            },
        );
        Ok(LbController {
            allocator: Allocator::new(config.pools.clone()),
            client,
            config,
            recorder,
            tx: watch::Sender::new(Allocations::new()),
            failed: BTreeMap::new(),
            freed: false,
        })
    }

    /// A receiver of the current allocations (updated after every status write).
    pub fn allocations(&self) -> watch::Receiver<Allocations> {
        self.tx.subscribe()
    }

    /// Watches Services in all namespaces and reconciles each change; returns only if the watch
    /// stream ends. Watch errors are retried with backoff by the caller's restart (logged here).
    pub async fn run(mut self) -> Result<(), Error> {
        let api: Api<Service> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        let mut init: Vec<Service> = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => init.clear(),
                Ok(watcher::Event::InitApply(svc)) => init.push(svc),
                Ok(watcher::Event::InitDone) => {
                    // Services that already have addresses first, so they keep them (MetalLB).
                    init.sort_by_key(|s| alloc::status_ips(s).is_empty());
                    let listed: HashSet<String> = init.iter().map(key_of).collect();
                    let gone: Vec<String> = self
                        .tx
                        .borrow()
                        .keys()
                        .filter(|k| !listed.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.forget(&key);
                    }
                    for svc in std::mem::take(&mut init) {
                        self.reconcile(&svc).await;
                    }
                }
                Ok(watcher::Event::Apply(svc)) => self.reconcile(&svc).await,
                Ok(watcher::Event::Delete(svc)) => {
                    self.failed.remove(&key_of(&svc));
                    self.forget(&key_of(&svc));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Service watch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            self.retry_failed().await;
        }
        Ok(())
    }

    /// Retries the Services that got no address, once something was freed (a Service deleted,
    /// no longer ours, or moved to another address).
    async fn retry_failed(&mut self) {
        while std::mem::take(&mut self.freed) && !self.failed.is_empty() {
            for svc in std::mem::take(&mut self.failed).into_values() {
                self.reconcile(&svc).await;
            }
        }
    }

    fn forget(&mut self, key: &str) {
        self.freed |= !self.allocator.held(key).is_empty();
        self.allocator.release(key);
        self.tx.send_if_modified(|a| a.remove(key).is_some());
    }

    /// Brings one Service's status in line with its allocation.
    pub async fn reconcile(&mut self, svc: &Service) {
        let key = key_of(svc);
        let current = alloc::status_ips(svc);
        if !self.config.is_ours(svc) {
            self.failed.remove(&key);
            // Not (or no longer, e.g. type changed) ours: clear what we wrote, free the address.
            if !self.allocator.held(&key).is_empty() {
                self.forget(&key);
                self.write_status(svc, &[]).await;
            }
            return;
        }
        let result = alloc::request(svc).and_then(|req| {
            if req.deprecated {
                tracing::debug!(service = %key, "deprecated load-balancer IP request");
            }
            let before = self.allocator.held(&key).to_vec();
            let assigned = self.allocator.assign(&key, &req, &current);
            self.freed |= before
                .iter()
                .any(|ip| assigned.as_ref().map_or(true, |now| !now.contains(ip)));
            assigned
        });
        match result {
            Ok(ips) => {
                self.failed.remove(&key);
                self.tx.send_if_modified(|a| {
                    let changed = a.get(&key) != Some(&ips);
                    a.insert(key.clone(), ips.clone());
                    changed
                });
                if ips != current {
                    self.write_status(svc, &ips).await;
                    let note = ips
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    self.event(
                        svc,
                        EventType::Normal,
                        "IPAllocated",
                        format!("Assigned IP [{note}]"),
                    )
                    .await;
                }
            }
            Err(e) => {
                self.forget(&key);
                self.failed.insert(key.clone(), svc.clone());
                if !current.is_empty() {
                    self.write_status(svc, &[]).await;
                }
                self.event(
                    svc,
                    EventType::Warning,
                    "AllocationFailed",
                    format!("Failed to allocate IP for {key}: {e}"),
                )
                .await;
            }
        }
    }

    async fn write_status(&self, svc: &Service, ips: &[IpAddr]) {
        let api: Api<Service> =
            Api::namespaced(self.client.clone(), &svc.namespace().unwrap_or_default());
        let status = alloc::lb_status(ips);
        let body = serde_json::json!({
            "status": {"loadBalancer": {"ingress": status.ingress}}
        });
        if let Err(e) = api
            .patch_status(
                &svc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            tracing::warn!(service = %key_of(svc), error = %e, "writing LoadBalancer status failed");
        }
    }

    async fn event(&self, svc: &Service, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Allocate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &svc.object_ref(&())).await {
            tracing::warn!(service = %key_of(svc), error = %e, "publishing Event failed");
        }
    }
}
