//! Service backends and their endpoints (pure resolution + the shared, swappable slot).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ingress_router::ingress::{ServiceBackend, ServicePort};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One Ingress backend (a Service port) and its current ready endpoints.
///
/// Route tables hold `Arc<Backend>`; endpoint changes swap [`Backend::endpoints`] in place, so an
/// EndpointSlice update never recompiles the route table.
#[derive(Debug)]
pub struct Backend {
    key: ServiceBackend,
    endpoints: ArcSwap<Vec<SocketAddr>>,
}

impl Backend {
    /// A backend for `key` with `endpoints`.
    pub fn new(key: ServiceBackend, endpoints: Vec<SocketAddr>) -> Self {
        Backend {
            key,
            endpoints: ArcSwap::from_pointee(endpoints),
        }
    }

    /// Which Service port this is.
    pub fn key(&self) -> &ServiceBackend {
        &self.key
    }

    /// The ready endpoints now (lock-free; empty when the Service or its endpoints are missing).
    pub fn endpoints(&self) -> Arc<Vec<SocketAddr>> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoints; returns whether they changed.
    pub(crate) fn set_endpoints(&self, endpoints: Vec<SocketAddr>) -> bool {
        if **self.endpoints.load() == endpoints {
            return false;
        }
        self.endpoints.store(Arc::new(endpoints));
        true
    }
}

/// The ready endpoints of `backend`: the Service port it names (by number or name), then the
/// EndpointSlice port of that port's name, then every ready address (`ready` unset counts as
/// ready, per the EndpointSlice API) at the slice port. Sorted and deduplicated.
pub fn resolve<'a>(
    backend: &ServiceBackend,
    service: Option<&Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<SocketAddr> {
    let Some(ports) = service
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
    else {
        return Vec::new();
    };
    let port = ports.iter().find(|p| match &backend.port {
        ServicePort::Number(n) => p.port == *n,
        ServicePort::Name(name) => p.name.as_deref() == Some(name.as_str()),
    });
    let Some(port) = port else { return Vec::new() };
    let port_name = port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        let Some(slice_port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, slice_port));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort as K8sPort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

    fn service() -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![
                    K8sPort {
                        name: Some("http".into()),
                        port: 80,
                        ..Default::default()
                    },
                    K8sPort {
                        name: Some("admin".into()),
                        port: 9000,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(port_name: &str, port: i32, eps: &[(&str, Option<bool>)]) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some(port_name.into()),
                port: Some(port),
                ..Default::default()
            }]),
            endpoints: eps
                .iter()
                .map(|(a, ready)| Endpoint {
                    addresses: vec![a.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn key(port: ServicePort) -> ServiceBackend {
        ServiceBackend {
            namespace: "ns".into(),
            service: "web".into(),
            port,
        }
    }

    #[test]
    fn resolves_by_number_or_name_through_the_slice_port() {
        let slices = [
            slice(
                "http",
                8080,
                &[
                    ("10.1.0.1", Some(true)),
                    ("10.1.0.2", None),
                    ("10.1.0.3", Some(false)),
                ],
            ),
            slice("admin", 9090, &[("10.1.0.9", Some(true))]),
        ];
        let svc = service();
        let want: Vec<SocketAddr> = vec![
            "10.1.0.1:8080".parse().unwrap(),
            "10.1.0.2:8080".parse().unwrap(),
        ];
        assert_eq!(
            resolve(&key(ServicePort::Number(80)), Some(&svc), &slices),
            want
        );
        assert_eq!(
            resolve(&key(ServicePort::Name("http".into())), Some(&svc), &slices),
            want
        );
        assert_eq!(
            resolve(&key(ServicePort::Name("admin".into())), Some(&svc), &slices),
            vec!["10.1.0.9:9090".parse::<SocketAddr>().unwrap()]
        );
        assert!(resolve(&key(ServicePort::Number(81)), Some(&svc), &slices).is_empty());
        assert!(resolve(&key(ServicePort::Number(80)), None, &slices).is_empty());
    }

    #[test]
    fn swapping_endpoints_reports_change() {
        let b = Backend::new(key(ServicePort::Number(80)), vec![]);
        assert!(b.set_endpoints(vec!["10.0.0.1:1".parse().unwrap()]));
        assert!(!b.set_endpoints(vec!["10.0.0.1:1".parse().unwrap()]));
        assert_eq!(b.endpoints().len(), 1);
    }
}
