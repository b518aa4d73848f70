//! The compiled configuration snapshot the request path reads.
//!
//! A [`Runtime`] is built from a validated [`ProxyConfig`] off the hot path, then swapped in
//! whole (`arc-swap`): a request sees either the old or the new configuration, never a mix. A
//! build that fails leaves the running snapshot untouched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
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
use crate::upstream::service::{
    AbortOnDrop, EndpointSet, Service, ServiceKind, StaticService, UpstreamService,
};

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
    /// The file's routers, documented for `/api/routes`.
    file_docs: Vec<RouterDoc>,
    /// Every entrypoint, in order: the external provider's routes are attached to all.
    entrypoint_names: Vec<String>,
    /// The external provider's routes and their targets, index for index: documented on
    /// demand (rendering 10 000 docs per route change would cost more than the change), and
    /// lent to the next build, which reuses the target of every route that did not change.
    ingress: Arc<[IngressRoute<String>]>,
    ingress_targets: Box<[Arc<RouteTarget>]>,
    pub(crate) services: BTreeMap<String, Arc<Service>>,
}

/// One router as `/api/routes` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouterDoc {
    pub(crate) name: String,
    pub(crate) rule: String,
    pub(crate) priority: i64,
    pub(crate) service: String,
    pub(crate) entrypoints: Vec<String>,
}

/// The endpoint `prev`'s service `name` has for `url`, so a rebuilt service keeps its
/// endpoints' health, in-flight counts and idle connections.
fn previous_endpoint(prev: Option<&Runtime>, name: &str, url: &str) -> Option<Arc<Endpoint>> {
    match &prev?.services.get(name)?.kind {
        ServiceKind::Upstream(u) => u.set.load().find(url).cloned(),
        ServiceKind::Static(_) => None,
    }
}

/// The previous snapshot's targets of the external provider's routes, for reuse: a target
/// carries the route's name and metric handles (a dozen allocations and as many registry
/// lookups to make), and after a route change all but a few routes are the same.
struct PreviousTargets<'a> {
    prev: Option<&'a Runtime>,
    /// Built on the first miss at the same index (an insertion or removal shifted the list).
    index: Option<HashMap<&'a IngressRoute<String>, &'a Arc<RouteTarget>>>,
}

impl<'a> PreviousTargets<'a> {
    /// The target of the same route at `at` (or anywhere) in `prev`, if it leads to `service`.
    fn get(
        &mut self,
        at: usize,
        route: &IngressRoute<String>,
        service: &Arc<Service>,
    ) -> Option<Arc<RouteTarget>> {
        let prev = self.prev?;
        let found = if prev.ingress.get(at) == Some(route) {
            prev.ingress_targets.get(at)
        } else {
            let index = self.index.get_or_insert_with(|| {
                prev.ingress
                    .iter()
                    .zip(prev.ingress_targets.iter())
                    .collect()
            });
            index.get(route).copied()
        };
        found.filter(|t| Arc::ptr_eq(&t.service, service)).cloned()
    }
}

/// The service `prev` already runs for exactly `cfg` (same settings and endpoint list), to be
/// kept as it is: its balancer position, health-check task and metrics carry on.
fn unchanged_service(
    prev: Option<&Runtime>,
    name: &str,
    cfg: &ServiceConfig,
) -> Option<Arc<Service>> {
    let svc = prev?.services.get(name)?;
    if !svc.shape.same_but_endpoints(cfg) {
        return None;
    }
    match &svc.kind {
        ServiceKind::Static(_) => Some(svc.clone()),
        ServiceKind::Upstream(u) => u.set.load().matches(&cfg.endpoints).then(|| svc.clone()),
    }
}

/// The endpoint list of service `name`, each endpoint taken from `existing` when it has the URL
/// (so its health, in-flight count and idle connections carry over), with its balancer.
fn endpoint_set(
    name: &str,
    cfg: &ServiceConfig,
    existing: impl Fn(&str) -> Option<Arc<Endpoint>>,
) -> Result<EndpointSet, ConfigError> {
    let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
    let mut weights = Vec::with_capacity(cfg.endpoints.len());
    for (i, ep) in cfg.endpoints.iter().enumerate() {
        let endpoint = match existing(&ep.url) {
            Some(existing) => existing,
            None => Arc::new(Endpoint::new(&ep.url).map_err(|reason| {
                ConfigError::new(format!("services.{name}.endpoints[{i}].url"), reason)
            })?),
        };
        endpoints.push(endpoint);
        weights.push(ep.weight.max(1));
    }
    Ok(EndpointSet {
        balancer: Balancer::new(cfg.load_balancer, &weights),
        endpoints: endpoints.into_boxed_slice(),
    })
}

fn build_service(
    name: &str,
    cfg: &ServiceConfig,
    clients: &ClientCache,
    metrics: &Metrics,
    prev: Option<&Runtime>,
) -> Result<Service, ConfigError> {
    let shape = ServiceConfig {
        endpoints: Vec::new(),
        ..cfg.clone()
    };
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
            shape,
        });
    }
    let set = endpoint_set(name, cfg, |url| previous_endpoint(prev, name, url))?;
    let client = clients.get(ClientKey {
        connect_timeout: cfg.timeouts.connect,
        idle_timeout: cfg.timeouts.idle,
        h2c: cfg.h2c,
    });
    if cfg.health_check.is_none() {
        // An endpoint kept from a snapshot that had active checks must not stay marked down.
        set.endpoints
            .iter()
            .for_each(|ep| ep.set_active_down(false));
    }
    let set = Arc::new(ArcSwap::from_pointee(set));
    let health_task = match (&cfg.health_check, tokio::runtime::Handle::try_current()) {
        (Some(hc), Ok(handle)) => {
            let task = handle.spawn(crate::upstream::health::run_active_checks(
                client.clone(),
                set.clone(),
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
            set,
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
        shape,
    })
}

impl Runtime {
    /// Compiles `config` and the external provider's routes (attached to every entrypoint next
    /// to the file's routers) for the fixed entrypoint list `entrypoint_names`. `prev` lends
    /// its endpoint state and every service whose configuration did not change.
    pub(crate) fn build(
        config: &ProxyConfig,
        entrypoint_names: &[String],
        bound_ports: &[u16],
        clients: &ClientCache,
        metrics: &Metrics,
        prev: Option<&Runtime>,
        external: &ExternalRoutes,
    ) -> Result<Runtime, ConfigError> {
        config.validate()?;
        let mut services = BTreeMap::new();
        let service = |name: &str, cfg: &ServiceConfig| match unchanged_service(prev, name, cfg) {
            Some(svc) => Ok(svc),
            None => build_service(name, cfg, clients, metrics, prev).map(Arc::new),
        };
        for (name, cfg) in &config.services {
            services.insert(name.clone(), service(name, cfg)?);
        }
        for (name, cfg) in &external.services {
            if services.contains_key(name) {
                return Err(ConfigError::new(
                    format!("services.{name}"),
                    "collides with a service of the Kubernetes provider",
                ));
            }
            services.insert(name.clone(), service(name, cfg)?);
        }
        let mut ingress_routes = Vec::with_capacity(external.routes.len());
        let mut ingress_targets = Vec::with_capacity(external.routes.len());
        let mut previous_targets = PreviousTargets { prev, index: None };
        for (at, route) in external.routes.iter().enumerate() {
            let service = services.get(&route.backend).ok_or_else(|| {
                ConfigError::new(
                    format!("ingress {}/{}", route.origin.namespace, route.origin.name),
                    format!("unknown service {}", route.backend),
                )
            })?;
            let target = match previous_targets.get(at, route, service) {
                Some(target) => target,
                None => {
                    let name = ingress_route_name(route);
                    Arc::new(RouteTarget {
                        metrics: metrics.route(&name, &route.backend),
                        name: name.into(),
                        service: Arc::clone(service),
                    })
                }
            };
            ingress_routes.push(IngressRoute {
                origin: route.origin.clone(),
                matcher: route.matcher.clone(),
                backend: Arc::clone(&target),
            });
            ingress_targets.push(target);
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
                    build_service("acme-challenge", &cfg, clients, metrics, None)
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
            file_docs: docs,
            entrypoint_names: entrypoint_names.to_vec(),
            ingress: Arc::clone(&external.routes),
            ingress_targets: ingress_targets.into_boxed_slice(),
            services,
        })
    }

    /// Every router, for `/api/routes`: the file's, then the external provider's.
    pub(crate) fn router_docs(&self) -> Vec<RouterDoc> {
        let mut docs = self.file_docs.clone();
        docs.extend(
            self.ingress
                .iter()
                .zip(self.ingress_targets.iter())
                .map(|(route, target)| RouterDoc {
                    name: target.name.to_string(),
                    rule: describe_ingress_match(&route.matcher),
                    priority: 0,
                    service: route.backend.clone(),
                    entrypoints: self.entrypoint_names.clone(),
                }),
        );
        docs
    }

    /// Takes `next` in place when it differs from `current` (the external routes this snapshot
    /// was built with) only in services' endpoint lists: each changed service gets a new
    /// [`EndpointSet`], and the route table, every other service and the snapshot itself stay.
    /// Returns `Ok(false)`, having changed nothing, when anything else differs (a rebuild is
    /// needed), and an error, having changed nothing, when a new endpoint is invalid.
    pub(crate) fn swap_endpoints(
        &self,
        current: &ExternalRoutes,
        next: &ExternalRoutes,
    ) -> Result<bool, ConfigError> {
        let same_routes =
            Arc::ptr_eq(&current.routes, &next.routes) || current.routes == next.routes;
        if !same_routes || !current.services.keys().eq(next.services.keys()) {
            return Ok(false);
        }
        let mut swaps = Vec::new();
        for (name, cfg) in &next.services {
            let Some(svc) = self.services.get(name) else {
                return Ok(false);
            };
            let ServiceKind::Upstream(u) = &svc.kind else {
                return Ok(false);
            };
            if !svc.shape.same_but_endpoints(cfg) {
                return Ok(false);
            }
            let set = u.set.load();
            if set.matches(&cfg.endpoints) {
                continue;
            }
            let new = endpoint_set(name, cfg, |url| set.find(url).cloned())?;
            swaps.push((&u.set, new));
        }
        for (slot, set) in swaps {
            slot.store(Arc::new(set));
        }
        Ok(true)
    }
}

/// The router name of an Ingress route (for metrics and `/api/routes`):
/// `ingress/<ns>/<name>/<rule>/<path>`, or `ingress/<ns>/<name>/default`.
fn ingress_route_name<B>(route: &IngressRoute<B>) -> String {
    let o = &route.origin;
    match &route.matcher {
        IngressMatch::Path {
            rule_index,
            path_index,
            ..
        } => format!(
            "ingress/{}/{}/{rule_index}/{path_index}",
            o.namespace, o.name
        ),
        IngressMatch::DefaultBackend => format!("ingress/{}/{}/default", o.namespace, o.name),
    }
}

/// A readable match description of an Ingress route, e.g. `Ingress host a.test, Prefix /api`.
fn describe_ingress_match(matcher: &IngressMatch) -> String {
    match matcher {
        IngressMatch::Path {
            host,
            path_type,
            path,
            ..
        } => format!(
            "Ingress host {}, {path_type} {path}",
            host.as_deref().filter(|h| !h.is_empty()).unwrap_or("*")
        ),
        IngressMatch::DefaultBackend => "Ingress default backend".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_router::{IngressOrigin, PathType};

    const CONFIG: &str = r#"
[entrypoints.web]
address = "127.0.0.1:0"
"#;

    fn route(path: &str, backend: &str) -> IngressRoute<String> {
        IngressRoute {
            origin: IngressOrigin {
                namespace: "ns".into(),
                name: "app".into(),
                created: None,
            },
            matcher: IngressMatch::Path {
                rule_index: 0,
                path_index: 0,
                host: Some("a.test".into()),
                path_type: PathType::Prefix,
                path: path.into(),
            },
            backend: backend.into(),
        }
    }

    fn addrs(list: &[&str]) -> Vec<std::net::SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// Routes `/web` → `web` and `/api` → `api`, each service over its endpoints.
    fn external(web: &[&str], api: &[&str]) -> ExternalRoutes {
        ExternalRoutes {
            routes: [route("/web", "web"), route("/api", "api")].into(),
            services: BTreeMap::from([
                ("web".to_owned(), ExternalRoutes::service_for(&addrs(web))),
                ("api".to_owned(), ExternalRoutes::service_for(&addrs(api))),
            ]),
        }
    }

    fn build(prev: Option<&Runtime>, external: &ExternalRoutes) -> Runtime {
        let config: ProxyConfig = toml::from_str(CONFIG).unwrap();
        Runtime::build(
            &config,
            &["web".to_owned()],
            &[80],
            &ClientCache::default(),
            &Metrics::new(),
            prev,
            external,
        )
        .unwrap()
    }

    fn upstream(rt: &Runtime, name: &str) -> Arc<EndpointSet> {
        match &rt.services[name].kind {
            ServiceKind::Upstream(u) => u.set.load_full(),
            ServiceKind::Static(_) => panic!("{name} is static"),
        }
    }

    fn urls(set: &EndpointSet) -> Vec<&str> {
        set.endpoints.iter().map(|e| e.url()).collect()
    }

    const A: &str = "198.51.100.1:80";
    const B: &str = "198.51.100.2:80";
    const C: &str = "198.51.100.3:80";

    #[test]
    fn an_endpoint_only_change_is_swapped_into_the_running_service() {
        let before = external(&[A, B], &[C]);
        let rt = build(None, &before);
        let web = Arc::clone(&rt.services["web"]);
        let old = upstream(&rt, "web");
        let api = upstream(&rt, "api");
        let after = external(&[B, C], &[C]);
        assert!(rt.swap_endpoints(&before, &after).unwrap());
        // The same service (and snapshot), with the new list.
        assert!(Arc::ptr_eq(&web, &rt.services["web"]));
        let new = upstream(&rt, "web");
        assert_eq!(
            urls(&new),
            ["http://198.51.100.2:80", "http://198.51.100.3:80"]
        );
        // B kept its state (health, in-flight, idle connections); C is new.
        assert!(Arc::ptr_eq(&old.endpoints[1], &new.endpoints[0]));
        // An unchanged service's set is not even replaced.
        assert!(Arc::ptr_eq(&api, &upstream(&rt, "api")));
    }

    #[test]
    fn anything_but_endpoints_changing_asks_for_a_rebuild_and_changes_nothing() {
        let before = external(&[A], &[B]);
        let rt = build(None, &before);
        let web = upstream(&rt, "web");
        // A changed route.
        let mut routes = external(&[C], &[B]);
        routes.routes = [route("/other", "web"), route("/api", "api")].into();
        // A changed setting of a service.
        let mut settings = external(&[C], &[B]);
        settings.services.get_mut("web").unwrap().retry = false;
        // A service more.
        let mut more = external(&[C], &[B]);
        more.services
            .insert("extra".into(), ExternalRoutes::service_for(&addrs(&[A])));
        for next in [routes, settings, more] {
            assert!(!rt.swap_endpoints(&before, &next).unwrap());
            assert!(Arc::ptr_eq(&web, &upstream(&rt, "web")));
        }
    }

    #[test]
    fn a_bad_endpoint_rejects_the_whole_change() {
        let before = external(&[A], &[B]);
        let rt = build(None, &before);
        let (api, web) = (upstream(&rt, "api"), upstream(&rt, "web"));
        let mut next = external(&[C], &[C]);
        next.services.get_mut("web").unwrap().endpoints[0].url = "http://198.51.100.3/path".into();
        let err = rt.swap_endpoints(&before, &next).unwrap_err();
        assert_eq!(err.field, "services.web.endpoints[0].url");
        // `api` (checked first, valid) was not swapped either.
        assert!(Arc::ptr_eq(&api, &upstream(&rt, "api")));
        assert!(Arc::ptr_eq(&web, &upstream(&rt, "web")));
    }

    #[test]
    fn a_rebuild_keeps_the_services_that_did_not_change() {
        let before = external(&[A], &[B]);
        let rt = build(None, &before);
        let mut next = external(&[A], &[C]);
        next.routes = [
            route("/web", "web"),
            route("/api", "api"),
            route("/more", "web"),
        ]
        .into();
        let rebuilt = build(Some(&rt), &next);
        assert!(Arc::ptr_eq(&rt.services["web"], &rebuilt.services["web"]));
        assert!(!Arc::ptr_eq(&rt.services["api"], &rebuilt.services["api"]));
        assert_eq!(urls(&upstream(&rebuilt, "api")), ["http://198.51.100.3:80"]);
    }
}
