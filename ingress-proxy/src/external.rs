//! Routes from an external provider (the Kubernetes Ingress watcher): Ingress-derived routes
//! whose backends name services given as endpoint lists.
//!
//! Why a separate input rather than more `[routers]`: Ingress paths have Kubernetes semantics
//! (`Exact`/`Prefix` by path element, host wildcards of one label, the Ingress precedence
//! rules) that Traefik rules do not express exactly; `ingress_router::Table` compiles both kinds
//! side by side. The provider hands a whole new set to [`crate::Proxy::set_external_routes`].
//! When only endpoint lists changed, the proxy swaps each changed service's list in place (the
//! services hold it behind an `arc-swap`); otherwise it compiles a new snapshot off the request
//! path and swaps it in like a file reload. Either way the request path reads snapshots, with no
//! lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ingress_router::IngressRoute;

use crate::config::{EndpointConfig, ServiceConfig};

/// Every route and service an external provider currently contributes.
#[derive(Debug, Clone, Default)]
pub struct ExternalRoutes {
    /// Ingress-derived routes; each backend names a key of [`ExternalRoutes::services`].
    /// They are attached to every entrypoint. Shared: a provider whose routes did not change
    /// (an EndpointSlice update) sends the same `Arc` again, and the proxy, seeing the same
    /// pointer, goes straight to swapping endpoint lists without comparing the routes.
    pub routes: Arc<[IngressRoute<String>]>,
    /// The services the routes lead to. Names must not collide with `[services]` of the file.
    pub services: BTreeMap<String, ServiceConfig>,
}

impl ExternalRoutes {
    /// A plain-HTTP upstream service over `endpoints` (round robin, passive health, retries on
    /// connect failure, client `Host` kept), as an Ingress backend expects.
    pub fn service_for(endpoints: &[SocketAddr]) -> ServiceConfig {
        ServiceConfig {
            load_balancer: Default::default(),
            endpoints: endpoints
                .iter()
                .map(|a| EndpointConfig {
                    url: format!("http://{a}"),
                    weight: 1,
                })
                .collect(),
            respond: None,
            h2c: false,
            timeouts: Default::default(),
            passive_health: Default::default(),
            health_check: None,
            retry: true,
            pass_host_header: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_for_renders_ipv4_and_ipv6_urls() {
        let svc = ExternalRoutes::service_for(&[
            "198.51.100.2:8080".parse().unwrap(),
            "[2001:db8::1]:80".parse().unwrap(),
        ]);
        let urls: Vec<_> = svc.endpoints.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            urls,
            ["http://198.51.100.2:8080", "http://[2001:db8::1]:80"]
        );
        assert!(svc.pass_host_header && svc.respond.is_none());
    }
}
