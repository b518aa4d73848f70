//! [`Proxy`]: start the listeners, reload the configuration, drain.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tls_acceptor::{Acceptor, TlsContext};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::external::ExternalRoutes;
use crate::handler::ChallengeResponder;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::server::{EntrypointServer, Shared, http_builder};
use crate::upstream::client::ClientCache;

/// Configures and starts a [`Proxy`].
pub struct ProxyBuilder {
    config: ProxyConfig,
    tls: Option<Arc<TlsContext>>,
    challenges: Option<Arc<dyn ChallengeResponder>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ProxyBuilder {
    /// A proxy for `config`.
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            config,
            tls: None,
            challenges: None,
            metrics: None,
        }
    }

    /// The TLS context (certificates, session cache) used by every TLS entrypoint. Required
    /// when an entrypoint has `tls`.
    pub fn tls(mut self, tls: Arc<TlsContext>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Where HTTP-01 key authorizations come from (the process's challenge registry).
    pub fn challenges(mut self, challenges: Arc<dyn ChallengeResponder>) -> Self {
        self.challenges = Some(challenges);
        self
    }

    /// Use this metrics registry (to share it with other parts of the process).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Validates and compiles the configuration, binds every listener and starts serving.
    /// Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Proxy, ProxyError> {
        let config = self.config;
        config.validate()?;
        let metrics = self.metrics.unwrap_or_default();
        let names: Vec<String> = config.entrypoints.keys().cloned().collect();
        let mut listeners = Vec::with_capacity(names.len());
        for name in &names {
            let ep = &config.entrypoints[name];
            let listener = bind(ep.address).map_err(|source| ProxyError::Bind {
                entrypoint: name.clone(),
                addr: ep.address,
                source,
            })?;
            listeners.push(listener);
        }
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map_or(0, |a| a.port()))
            .collect();
        let clients = ClientCache::default();
        let runtime = Runtime::build(
            &config,
            &names,
            &ports,
            &clients,
            &metrics,
            None,
            &ExternalRoutes::default(),
        )?;
        let dashboard = crate::admin_api::DashboardState::new(&config, &names)?;
        let (drain, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            challenges: self.challenges,
            metrics: metrics.clone(),
            limits: config.limits,
            drain,
            ready: Default::default(),
            dashboard,
        });
        let builder = Arc::new(http_builder(&config.limits));
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        let mut semaphores = Vec::new();
        for (index, (name, listener)) in names.iter().zip(listeners).enumerate() {
            let ep = &config.entrypoints[name];
            let acceptor = match &ep.tls {
                None => Acceptor::plain(),
                Some(tls) => {
                    let ctx = self.tls.as_ref().ok_or_else(|| ProxyError::Tls {
                        entrypoint: name.clone(),
                        reason: "no TLS context was given to the proxy".into(),
                    })?;
                    let alpn: Vec<&[u8]> = tls.alpn.iter().map(|p| p.as_bytes()).collect();
                    ctx.acceptor(&alpn)
                        .map_err(|e| ProxyError::Tls {
                            entrypoint: name.clone(),
                            reason: e.to_string(),
                        })?
                        .with_handshake_timeout(config.limits.tls_handshake_timeout)
                }
            };
            addrs.push((name.clone(), listener.local_addr().unwrap_or(ep.address)));
            let sem = Arc::new(Semaphore::new(config.limits.max_connections));
            semaphores.push(sem.clone());
            let server = EntrypointServer {
                index,
                listener,
                acceptor,
                builder: builder.clone(),
                connections: sem,
                metrics: metrics.entrypoint(name),
            };
            tasks.push(tokio::spawn(server.run(shared.clone())));
        }
        let admin_addr = match &config.admin {
            Some(admin) => {
                let listener = bind(admin.address).map_err(|source| ProxyError::Bind {
                    entrypoint: "admin".into(),
                    addr: admin.address,
                    source,
                })?;
                let addr = listener.local_addr().unwrap_or(admin.address);
                tasks.push(tokio::spawn(crate::admin::run(listener, shared.clone())));
                Some(addr)
            }
            None => None,
        };
        shared.ready.store(true, Ordering::Relaxed);
        Ok(Proxy {
            shared,
            names,
            ports,
            clients,
            addrs,
            admin_addr,
            tasks,
            semaphores,
            max_connections: config.limits.max_connections,
            control: Mutex::new(Control {
                config,
                external: Arc::default(),
            }),
        })
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// A running proxy: its listeners, the live configuration snapshot and the admin endpoint.
pub struct Proxy {
    shared: Arc<Shared>,
    names: Vec<String>,
    ports: Vec<u16>,
    clients: ClientCache,
    addrs: Vec<(String, SocketAddr)>,
    admin_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    semaphores: Vec<Arc<Semaphore>>,
    max_connections: usize,
    /// What the running snapshot was built from. The lock serialises reloads and route
    /// updates (control plane only; requests never take it).
    control: Mutex<Control>,
}

/// The inputs of the running snapshot.
#[derive(Debug)]
struct Control {
    config: ProxyConfig,
    external: Arc<ExternalRoutes>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("entrypoints", &self.addrs)
            .field("admin", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts building a proxy for `config`.
    pub fn builder(config: ProxyConfig) -> ProxyBuilder {
        ProxyBuilder::new(config)
    }

    /// The bound address of entrypoint `name` (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Every entrypoint with its bound address.
    pub fn entrypoints(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The admin listener's bound address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Keeps the certificate-expiry gauges in step with the store's snapshots until the
    /// sender is dropped or the proxy shuts down.
    pub fn watch_certificates(&self, mut snapshots: watch::Receiver<Arc<acme_store::Snapshot>>) {
        let shared = self.shared.clone();
        let metrics = self.shared.metrics.clone();
        let mut drain = self.shared.drain.subscribe();
        tokio::spawn(async move {
            loop {
                {
                    let snap = snapshots.borrow_and_update().clone();
                    shared.dashboard.set_certificates(snap.clone());
                    metrics.set_certificate_expiry(
                        snap.entries()
                            .iter()
                            .map(|e| (e.resolver(), e.main(), e.not_after())),
                        std::time::SystemTime::now(),
                    );
                }
                tokio::select! {
                    changed = snapshots.changed() => if changed.is_err() { break },
                    _ = drain.changed() => break,
                    // Refresh the countdown even when nothing changes.
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        });
    }

    /// Applies a new configuration atomically, or rejects it whole (the running one keeps
    /// serving). Entrypoints, limits and the admin listener are fixed at start; changing them
    /// is rejected with [`ProxyError::NeedsRestart`].
    pub fn reload(&self, config: ProxyConfig) -> Result<(), ProxyError> {
        let facts = crate::admin_api::RouterFacts::of(&config);
        let result = self.try_reload(config);
        self.shared.metrics.record_reload(result.is_ok());
        self.shared
            .dashboard
            .record_reload(facts, &result, std::time::SystemTime::now());
        result
    }

    /// Records a configuration the caller rejected before [`Proxy::reload`] (unreadable or
    /// unparsable file): counted as a rejected reload in the metrics and shown among the admin
    /// dashboard's problems until the next accepted reload.
    pub fn report_rejected_config(&self, error: &dyn std::fmt::Display) {
        self.shared.metrics.record_reload(false);
        self.shared
            .dashboard
            .record_rejected(error.to_string(), std::time::SystemTime::now());
    }

    /// Replaces the routes of an external provider (Kubernetes Ingresses). When only services'
    /// endpoint lists changed (an EndpointSlice update), the new lists are swapped into the
    /// running services in place, with no rebuild; otherwise the routes are compiled with the
    /// running configuration into a new snapshot (unchanged services carried over), swapped in
    /// atomically. On error the running snapshot keeps serving unchanged. Later file reloads
    /// keep the last set given here.
    pub fn set_external_routes(&self, routes: Arc<ExternalRoutes>) -> Result<(), ProxyError> {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let prev = self.shared.runtime.load_full();
        if !prev.swap_endpoints(&control.external, &routes)? {
            let runtime = Runtime::build(
                &control.config,
                &self.names,
                &self.ports,
                &self.clients,
                &self.shared.metrics,
                Some(&prev),
                &routes,
            )?;
            self.shared.runtime.store(Arc::new(runtime));
        }
        control.external = routes;
        Ok(())
    }

    fn try_reload(&self, config: ProxyConfig) -> Result<(), ProxyError> {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let current = &control.config;
        config.validate()?;
        let names: Vec<&String> = config.entrypoints.keys().collect();
        if names
            .iter()
            .map(|s| s.as_str())
            .ne(self.names.iter().map(|s| s.as_str()))
        {
            return Err(ProxyError::NeedsRestart {
                field: "entrypoints".into(),
                reason: "adding or removing entrypoints needs a restart".into(),
            });
        }
        for (name, ep) in &config.entrypoints {
            let old = &current.entrypoints[name];
            if old.address != ep.address || old.tls.is_some() != ep.tls.is_some() {
                return Err(ProxyError::NeedsRestart {
                    field: format!("entrypoints.{name}"),
                    reason: "changing an entrypoint's address or TLS needs a restart".into(),
                });
            }
        }
        if format!("{:?}", config.limits) != format!("{:?}", current.limits) {
            return Err(ProxyError::NeedsRestart {
                field: "limits".into(),
                reason: "changing limits needs a restart".into(),
            });
        }
        if config.admin.as_ref().map(|a| a.address) != current.admin.as_ref().map(|a| a.address) {
            return Err(ProxyError::NeedsRestart {
                field: "admin.address".into(),
                reason: "changing the admin listener needs a restart".into(),
            });
        }
        let prev = self.shared.runtime.load_full();
        let runtime = Runtime::build(
            &config,
            &self.names,
            &self.ports,
            &self.clients,
            &self.shared.metrics,
            Some(&prev),
            &control.external,
        )?;
        self.shared.runtime.store(Arc::new(runtime));
        control.config = config;
        Ok(())
    }

    /// Stops accepting, asks every connection to finish its in-flight requests (h1: close
    /// after the response; h2: GOAWAY), and waits up to `deadline`. Returns whether every
    /// connection closed in time; the rest are dropped.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.shared.ready.store(false, Ordering::Relaxed);
        let _ = self.shared.drain.send(true);
        let max = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let wait_all = async {
            for sem in &self.semaphores {
                let _ = sem.acquire_many(max).await;
            }
        };
        let drained = tokio::time::timeout(deadline, wait_all).await.is_ok();
        for t in &self.tasks {
            t.abort();
        }
        drained
    }
}
