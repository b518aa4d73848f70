//! The compiled configuration snapshot the request path reads.
//!
//! A [`Runtime`] is built from a validated [`ProxyConfig`] off the hot path, then swapped in
//! whole (`arc-swap`): a request sees either the old or the new configuration, never a mix. A
//! build that fails leaves the running snapshot untouched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Version};
use ingress_router::{FileRoute, IngressMatch, IngressRoute, Table};
use ipnet::IpNet;
use serde::Serialize;

use crate::config::{ProxyConfig, ServiceConfig};
use crate::error::ConfigError;
use crate::external::ExternalRoutes;
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Balancer;
use crate::upstream::client::{ClientCache, ClientKey};
use crate::upstream::endpoint::Endpoint;
use crate::upstream::service::{AbortOnDrop, Service, ServiceKind, StaticService, UpstreamService};

/// Where a matched route leads.
#[derive(Debug)]
pub(crate) struct RouteTarget {
    pub(crate) name: Arc<str>,
    pub(crate) service: Arc<Service>,
    pub(crate) metrics: RouteMetrics,
}

/// Per-entrypoint compiled state.
#[derive(Debug)]
pub(crate) struct EntrypointRuntime {
    pub(crate) table: Table<Arc<RouteTarget>>,
    /// Redirect everything (but ACME challenges) to `https://host:port`.
    pub(crate) redirect_port: Option<u16>,
}

/// One immutable configuration snapshot.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// Indexed like the proxy's entrypoint list (fixed for the process lifetime).
    pub(crate) entrypoints: Box<[EntrypointRuntime]>,
    pub(crate) trusted_proxies: Arc<[IpNet]>,
    pub(crate) access_log: bool,
    pub(crate) challenge_forward: Option<Arc<Service>>,
    /// For `/api/routes`.
    pub(crate) routes_doc: RoutesDoc,
    pub(crate) services: BTreeMap<String, Arc<Service>>,
    /// The external provider's routes this snapshot was built with, kept for the next build.
    pub(crate) external: Arc<ExternalRoutes>,
}

/// `/api/routes`: what is configured, rendered once per snapshot.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoutesDoc {
    pub(crate) routers: Vec<RouterDoc>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouterDoc {
    pub(crate) name: String,
    pub(crate) rule: String,
    pub(crate) priority: i64,
    pub(crate) service: String,
    pub(crate) entrypoints: Vec<String>,
}

/// The endpoint of each (service, url) in the running snapshot, so a reload keeps health and
/// in-flight state.
pub(crate) type EndpointRegistry = HashMap<(String, String), Arc<Endpoint>>;

fn previous_endpoints(prev: Option<&Runtime>) -> EndpointRegistry {
    let mut map = HashMap::new();
    if let Some(rt) = prev {
        for (name, svc) in &rt.services {
            if let ServiceKind::Upstream(u) = &svc.kind {
                for ep in u.endpoints.iter() {
                    map.insert((name.clone(), ep.url().to_owned()), ep.clone());
                }
            }
        }
    }
    map
}

fn build_service(
    name: &str,
    cfg: &ServiceConfig,
    clients: &ClientCache,
    metrics: &Metrics,
    previous: &EndpointRegistry,
) -> Result<Service, ConfigError> {
    if let Some(r) = &cfg.respond {
        let status = StatusCode::from_u16(r.status)
            .map_err(|_| ConfigError::new(format!("services.{name}.respond.status"), "invalid"))?;
        let content_type = HeaderValue::from_str(&r.content_type).map_err(|_| {
            ConfigError::new(format!("services.{name}.respond.content_type"), "invalid")
        })?;
        return Ok(Service {
            name: name.into(),
            kind: ServiceKind::Static(StaticService {
                status,
                content_type,
                body: Bytes::from(r.body.clone()),
            }),
        });
    }
    let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
    let mut weights = Vec::with_capacity(cfg.endpoints.len());
    for (i, ep) in cfg.endpoints.iter().enumerate() {
        let endpoint = match previous.get(&(name.to_owned(), ep.url.clone())) {
            Some(existing) => existing.clone(),
            None => Arc::new(Endpoint::new(&ep.url).map_err(|reason| {
                ConfigError::new(format!("services.{name}.endpoints[{i}].url"), reason)
            })?),
        };
        endpoints.push(endpoint);
        weights.push(ep.weight.max(1));
    }
    let client = clients.get(ClientKey {
        connect_timeout: cfg.timeouts.connect,
        idle_timeout: cfg.timeouts.idle,
        h2c: cfg.h2c,
    });
    if cfg.health_check.is_none() {
        // An endpoint kept from a snapshot that had active checks must not stay marked down.
        endpoints.iter().for_each(|ep| ep.set_active_down(false));
    }
    let health_task = match (&cfg.health_check, tokio::runtime::Handle::try_current()) {
        (Some(hc), Ok(handle)) => {
            let task = handle.spawn(crate::upstream::health::run_active_checks(
                client.clone(),
                endpoints.clone(),
                hc.path.clone(),
                hc.interval,
                hc.timeout,
            ));
            Some(AbortOnDrop(task.abort_handle()))
        }
        _ => None,
    };
    Ok(Service {
        name: name.into(),
        kind: ServiceKind::Upstream(Box::new(UpstreamService {
            balancer: Balancer::new(cfg.load_balancer, &weights),
            endpoints: endpoints.into_boxed_slice(),
            client,
            timeouts: cfg.timeouts,
            passive: cfg.passive_health,
            retry: cfg.retry,
            pass_host: cfg.pass_host_header,
            version: if cfg.h2c {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            metrics: metrics.service(name),
            _health_task: health_task,
        })),
    })
}

impl Runtime {
    /// Compiles `config` for the fixed entrypoint list `entrypoint_names`. `prev` lends its
    /// endpoint state and its external routes.
    pub(crate) fn build(
        config: &ProxyConfig,
        entrypoint_names: &[String],
        bound_ports: &[u16],
        clients: &ClientCache,
        metrics: &Metrics,
        prev: Option<&Runtime>,
    ) -> Result<Runtime, ConfigError> {
        let external = prev.map(|p| Arc::clone(&p.external)).unwrap_or_default();
        Self::build_with(
            config,
            entrypoint_names,
            bound_ports,
            clients,
            metrics,
            prev,
            external,
        )
    }

    /// [`Runtime::build`] with a new set of external (Ingress) routes, attached to every
    /// entrypoint next to the file's routers.
    pub(crate) fn build_with(
        config: &ProxyConfig,
        entrypoint_names: &[String],
        bound_ports: &[u16],
        clients: &ClientCache,
        metrics: &Metrics,
        prev: Option<&Runtime>,
        external: Arc<ExternalRoutes>,
    ) -> Result<Runtime, ConfigError> {
        config.validate()?;
        let previous = previous_endpoints(prev);
        let mut services = BTreeMap::new();
        for (name, cfg) in &config.services {
            services.insert(
                name.clone(),
                Arc::new(build_service(name, cfg, clients, metrics, &previous)?),
            );
        }
        for (name, cfg) in &external.services {
            if services.contains_key(name) {
                return Err(ConfigError::new(
                    format!("services.{name}"),
                    "collides with a service of the Kubernetes provider",
                ));
            }
            services.insert(
                name.clone(),
                Arc::new(build_service(name, cfg, clients, metrics, &previous)?),
            );
        }
        let mut ingress_routes = Vec::with_capacity(external.routes.len());
        let mut ingress_docs = Vec::with_capacity(external.routes.len());
        for route in &external.routes {
            let service = services.get(&route.backend).cloned().ok_or_else(|| {
                ConfigError::new(
                    format!("ingress {}/{}", route.origin.namespace, route.origin.name),
                    format!("unknown service {}", route.backend),
                )
            })?;
            let (name, rule) = describe_ingress_route(route);
            let target = Arc::new(RouteTarget {
                name: name.as_str().into(),
                service,
                metrics: metrics.route(&name, &route.backend),
            });
            ingress_docs.push(RouterDoc {
                name,
                rule,
                priority: 0,
                service: route.backend.clone(),
                entrypoints: entrypoint_names.to_vec(),
            });
            ingress_routes.push(IngressRoute {
                origin: route.origin.clone(),
                matcher: route.matcher.clone(),
                backend: target,
            });
        }
        let mut per_ep: Vec<Vec<FileRoute<Arc<RouteTarget>>>> =
            entrypoint_names.iter().map(|_| Vec::new()).collect();
        let mut docs = Vec::new();
        for (name, router) in &config.routers {
            let service = services.get(&router.service).cloned().ok_or_else(|| {
                ConfigError::new(format!("routers.{name}.service"), "unknown service")
            })?;
            let target = Arc::new(RouteTarget {
                name: name.as_str().into(),
                service,
                metrics: metrics.route(name, &router.service),
            });
            let route = FileRoute::new(name.clone(), &router.rule, router.priority, target)
                .map_err(|e| ConfigError::new(format!("routers.{name}.rule"), e.to_string()))?;
            let mut attached = Vec::new();
            for (i, ep_name) in entrypoint_names.iter().enumerate() {
                let on = router
                    .entrypoints
                    .as_ref()
                    .is_none_or(|eps| eps.contains(ep_name));
                if on {
                    per_ep[i].push(route.clone());
                    attached.push(ep_name.clone());
                }
            }
            docs.push(RouterDoc {
                name: name.clone(),
                rule: router.rule.clone(),
                priority: route.priority,
                service: router.service.clone(),
                entrypoints: attached,
            });
        }
        let mut entrypoints = Vec::with_capacity(entrypoint_names.len());
        docs.extend(ingress_docs);
        for (i, routes) in per_ep.into_iter().enumerate() {
            let table = Table::new(routes, ingress_routes.clone()).map_err(|e| {
                ConfigError::new(
                    format!("entrypoints.{}", entrypoint_names[i]),
                    e.to_string(),
                )
            })?;
            let redirect_port = config
                .entrypoints
                .get(&entrypoint_names[i])
                .and_then(|ep| ep.redirect_to.as_ref())
                .and_then(|t| entrypoint_names.iter().position(|n| n == t))
                .map(|t| bound_ports[t]);
            entrypoints.push(EntrypointRuntime {
                table,
                redirect_port,
            });
        }
        let challenge_forward = match &config.acme_challenge.forward_to {
            Some(url) => {
                let cfg = ServiceConfig {
                    load_balancer: Default::default(),
                    endpoints: vec![crate::config::EndpointConfig {
                        url: url.clone(),
                        weight: 1,
                    }],
                    respond: None,
                    h2c: false,
                    timeouts: Default::default(),
                    passive_health: crate::config::PassiveHealth {
                        max_failures: 0,
                        ..Default::default()
                    },
                    health_check: None,
                    retry: false,
                    pass_host_header: true,
                };
                Some(Arc::new(
                    build_service("acme-challenge", &cfg, clients, metrics, &previous)
                        .map_err(|e| ConfigError::new("acme_challenge.forward_to", e.reason))?,
                ))
            }
            None => None,
        };
        Ok(Runtime {
            entrypoints: entrypoints.into_boxed_slice(),
            trusted_proxies: config.forwarding.trusted_proxies.clone().into(),
            access_log: config.access_log.enabled,
            challenge_forward,
            routes_doc: RoutesDoc { routers: docs },
            services,
            external,
        })
    }
}

/// A router name (for metrics and `/api/routes`) and a readable match description of an
/// Ingress route: `ingress/<ns>/<name>/<rule>/<path>` and e.g. `Host a.test, Prefix /api`.
fn describe_ingress_route<B>(route: &IngressRoute<B>) -> (String, String) {
    let o = &route.origin;
    match &route.matcher {
        IngressMatch::Path {
            rule_index,
            path_index,
            host,
            path_type,
            path,
        } => (
            format!(
                "ingress/{}/{}/{rule_index}/{path_index}",
                o.namespace, o.name
            ),
            format!(
                "Ingress host {}, {path_type} {path}",
                host.as_deref().filter(|h| !h.is_empty()).unwrap_or("*")
            ),
        ),
        IngressMatch::DefaultBackend => (
            format!("ingress/{}/{}/default", o.namespace, o.name),
            "Ingress default backend".to_owned(),
        ),
    }
}
