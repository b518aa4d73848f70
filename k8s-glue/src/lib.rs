//! Kubernetes glue for Fairway: Kubernetes as the distributed engine.
//!
//! - [`routes`]: watchers on IngressClasses, Ingresses, Services and EndpointSlices feeding an
//!   `ingress_router::SharedTable` whose backends carry live endpoints; Ingress status write-back.
//! - [`secrets`]: an `acme_store::CertStore` over `kubernetes.io/tls` Secrets, with
//!   cert-manager-compatible annotations, resourceVersion-checked writes, and `acme.json`
//!   import/export.
//! - [`lease`]: a client-go-style Lease [`LeaseElector`] implementing `acme_issuer::LeaderElector`,
//!   with `leaseTransitions` as the fencing epoch.
//! - [`provider`]: the proxy's Kubernetes provider: live Ingress routes as
//!   `ingress_proxy::ExternalRoutes`, referenced TLS Secrets as one certificate snapshot.
//! - [`controller`]: the Kubernetes mode of `fairway-controller`: epoch-fenced leadership for
//!   the Secret store, live certificate requests from annotated Ingresses, leader-only tasks.
//! - [`lb`]: MetalLB-compatible LoadBalancer address allocation and `/status` write-back.
//! - [`speakers`]: node/speaker-pod readiness and `externalTrafficPolicy: Local` endpoints as
//!   `vip-failover` eligibility (candidates per VIP).
//!
//! Everything that decides is pure and separately tested; the API-facing parts are tested against
//! a real kube-apiserver (see the `k8s-testenv` crate). Nothing here reads the environment: the
//! caller builds the `kube::Client`.

pub mod controller;
mod error;
pub mod lb;
pub mod lease;
pub mod provider;
pub mod routes;
pub mod secrets;
pub mod speakers;
mod task;

pub use error::Error;
pub use lb::{LbConfig, LbController, Pool};
pub use lease::{LeaseConfig, LeaseElector};
pub use provider::KubernetesProvider;
pub use routes::{Backend, IngressWatcher, Published, WatchConfig};
pub use secrets::{SecretStore, SecretStoreConfig};
