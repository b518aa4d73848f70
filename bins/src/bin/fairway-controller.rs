//! `fairway-controller`: Fairway's ACME controller. Wiring only: configuration, certificate
//! store, leader election, challenge and admin listeners, signals and logging; the issuer itself
//! is `acme_issuer`, the Kubernetes pieces are `k8s_glue`.
//!
//! ## File mode (no `[kubernetes]` section)
//!
//! Run as many replicas as you like against one `acme.json` (one host: the file-lock elector):
//! exactly one issues, the others wait for the lock. Only the leader binds
//! `[acme].challenge_address` (it alone holds the HTTP-01 tokens), so proxies forward
//! `/.well-known/acme-challenge/*` to that one address (`[acme_challenge].forward_to`).
//!
//! ## Kubernetes mode (`[kubernetes]` present)
//!
//! - **Election**: a `coordination.k8s.io` Lease (`[kubernetes.lease]`: name
//!   `fairway-controller` in the pod's namespace by default, identity `$POD_NAME` or the host
//!   name, client-go timings 15 s / 10 s / 2 s unless configured). SIGTERM releases the Lease so
//!   the standby takes over on its next retry.
//! - **State**: the ACME account (Secret `fairway-acme-accounts`) and the certificates
//!   (`kubernetes.io/tls` Secrets) live in the Lease's namespace; every write carries the term's
//!   fencing epoch (`fairway.dev/epoch`), stamped before the issuer sees the term start.
//! - **What is issued**: `[[acme.certificates]]` and routers' `tls.cert_resolver` hosts, plus,
//!   live, each `spec.tls[]` entry of Ingresses of our class annotated
//!   `fairway.dev/acme-resolver: <resolver>`, into that entry's `secretName` (in the Lease's
//!   namespace only; Ingresses elsewhere are logged as ignored). Every `fairway-proxy` with
//!   `[kubernetes]` serves those Secrets. The file's certificates go to Secrets named
//!   `fairway-tls-<main domain>` (served once an Ingress names them).
//! - **Challenges**: as in file mode, the leader alone serves HTTP-01 tokens on
//!   `[acme].challenge_address`; proxies forward to it through a Service. Only the leader
//!   listens, so in a pod (`$POD_NAME` set) the controller labels its own pod
//!   `fairway.dev/acme-leader: "true"` while leading (`"false"` otherwise) and the challenge
//!   Service selects that label (deploy/40-controller.yaml).
//! - **LoadBalancer Services**: with `[[kubernetes.load_balancer.pools]]`, the leader allocates
//!   addresses to Services of `[kubernetes.load_balancer].class` and writes their status.
//! - The admin listener (`[acme].admin_address`) works in both modes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acme_issuer::{
    AcmeJsonStore, ChallengeSolver, FileLockElector, Http01Solver, Issuer, IssuerParts,
    LeaderElector as _, TlsAlpn01Solver,
};
use acme_store::challenge::Http01Registry;
use acme_store::{FileStore, FileStoreOptions};
use bins::config::acme::AcmeConfig;
use bins::config::kubernetes::{KubernetesSection, PodEnv};
use bins::dashboard::controller::LeaderView;
use clap::Parser;
use k8s_glue::controller::{
    CertRequestsConfig, FencedElector, IngressCertRequests, feed_issuer, label_pod,
    publish_ingress_status, while_leader,
};
use k8s_glue::{LbController, LeaseElector, SecretStore};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Command line of `fairway-controller`.
#[derive(Debug, Parser)]
#[command(
    name = "fairway-controller",
    version,
    about = "Fairway's ACME controller: leader-elected certificate issuance into acme.json"
)]
struct Args {
    /// The TOML configuration file (reads `[acme]`, `[routers]`, `[tls].store`, `[kubernetes]`).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match bins::config::acme::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fairway-controller: {e}");
            return ExitCode::from(2);
        }
    };
    let kube = if config.kubernetes {
        let section = std::fs::read_to_string(&args.config)
            .map_err(|e| format!("{}: {e}", args.config.display()))
            .and_then(|text| bins::config::kubernetes::section_of(&args.config, &text));
        match section {
            Ok(Some(k)) => Some(k),
            Ok(None) => None,
            Err(e) => {
                eprintln!("fairway-controller: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    if args.check {
        let mode = match &kube {
            Some(k) => {
                // Outside a pod the namespace and identity come from the pod at run time.
                let mut env = PodEnv::read();
                env.pod_namespace
                    .get_or_insert_with(|| "pod-namespace".into());
                env.pod_name.get_or_insert_with(|| "pod-name".into());
                match k.controller_settings(&env) {
                    Ok(s) => format!(
                        "kubernetes: Lease {}/{}, {} LoadBalancer pools",
                        if k.lease.namespace.is_some() {
                            s.lease.namespace.as_str()
                        } else {
                            "<pod namespace>"
                        },
                        s.lease.name,
                        s.load_balancer.map_or(0, |l| l.pools.len())
                    ),
                    Err(e) => {
                        eprintln!("fairway-controller: {}: {e}", args.config.display());
                        return ExitCode::from(2);
                    }
                }
            }
            None => format!("file store {}", config.store.display()),
        };
        println!(
            "{}: ok ({} resolvers, {} certificates; {mode})",
            args.config.display(),
            config.section.resolvers.len(),
            config.wanted.len()
        );
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // One process-wide provider: instant-acme, hyper-rustls and tls-acceptor all use rustls 0.23.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fairway-controller: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match kube {
        Some(kube) => rt.block_on(run_kubernetes(config, kube)),
        None => rt.block_on(run(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairway-controller: {e}");
            ExitCode::FAILURE
        }
    }
}

/// File mode: `acme.json` + the file-lock elector.
async fn run(config: AcmeConfig) -> Result<(), String> {
    let resolvers = config.resolvers().map_err(|e| e.to_string())?;
    let store = FileStore::open(&config.store, FileStoreOptions::default())
        .map_err(|e| format!("{}: {e}", config.store.display()))?;
    let snapshots = acme_store::CertStore::subscribe(&store);
    let elector = Arc::new(
        FileLockElector::spawn(&config.lock_file, config.leader_retry())
            .map_err(|e| e.to_string())?,
    );
    let (solvers, tls_context) = challenges(&config, elector.subscribe()).await?;
    let issuer = Issuer::spawn(IssuerParts {
        resolvers,
        wanted: config.wanted.clone(),
        options: config.options(),
        store: Arc::new(AcmeJsonStore::new(Arc::new(store))),
        elector,
        solvers,
    })
    .map_err(|e| format!("{}: {e}", config.path.display()))?;
    let leader = tokio::sync::watch::channel(LeaderView::file_lock(&config.lock_file)).1;
    admin(&config, issuer.status(), leader, snapshots).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down");
    drop(issuer);
    drop(tls_context);
    Ok(())
}

/// Kubernetes mode: Secrets + the Lease elector, certificates wanted live from Ingresses,
/// LoadBalancer allocation on the leader.
async fn run_kubernetes(config: AcmeConfig, kube: KubernetesSection) -> Result<(), String> {
    let file = config.path.display().to_string();
    let env = PodEnv::read();
    let settings = kube
        .controller_settings(&env)
        .map_err(|e| format!("{file}: {e}"))?;
    if !config.store.as_os_str().is_empty() {
        tracing::warn!(
            store = %config.store.display(),
            "[acme].store / [tls].store is not used in Kubernetes mode: certificates live in Secrets"
        );
    }
    let resolvers = config.resolvers().map_err(|e| e.to_string())?;
    let resolver_names = resolvers.iter().map(|r| r.name.clone()).collect();
    let client = kube.client().await.map_err(|e| format!("{file}: {e}"))?;
    let namespace = settings.secrets.namespace.clone();
    let store = Arc::new(
        SecretStore::start(client.clone(), settings.secrets.clone())
            .await
            .map_err(|e| format!("{file}: kubernetes.lease.namespace ({namespace}): {e}"))?,
    );
    let snapshots = acme_store::CertStore::subscribe(&*store);
    let lease = LeaseElector::start(client.clone(), settings.lease.clone())
        .map_err(|e| format!("{file}: kubernetes.{e}"))?;
    tracing::info!(
        lease = %format!("{namespace}/{}", settings.lease.name),
        identity = %settings.lease.identity,
        "Kubernetes mode: electing with a Lease, certificates in Secrets"
    );
    let elector = Arc::new(FencedElector::start(&lease, store.clone()));
    let (solvers, tls_context) = challenges(&config, elector.subscribe()).await?;
    let issuer = Arc::new(
        Issuer::spawn(IssuerParts {
            resolvers,
            wanted: config.wanted.clone(),
            options: config.options(),
            store: Arc::new(AcmeJsonStore::new(store.clone())),
            elector: elector.clone(),
            solvers,
        })
        .map_err(|e| format!("{file}: {e}"))?,
    );

    let requests = IngressCertRequests::start(
        client.clone(),
        CertRequestsConfig {
            controller: kube.controller.clone(),
            default_class: kube.default_class,
            secret_namespace: namespace.clone(),
            debounce: Duration::from_millis(100),
        },
    );
    let feeding = {
        let issuer = issuer.clone();
        tokio::spawn(feed_issuer(
            requests.subscribe(),
            store.clone(),
            config.wanted.clone(),
            resolver_names,
            move |wanted| issuer.set_wanted(wanted),
        ))
    };

    let load_balancer = settings.load_balancer.clone().map(|lb| {
        tracing::info!(class = %lb.class, pools = lb.pools.len(), "allocating LoadBalancer addresses while leading");
        let identity = settings.lease.identity.clone();
        let client = client.clone();
        tokio::spawn(while_leader(
            elector.subscribe(),
            Duration::from_secs(2),
            move || {
                let controller = LbController::new(client.clone(), lb.clone(), &identity);
                async move {
                    match controller {
                        Ok(c) => {
                            if let Err(e) = c.run().await {
                                tracing::warn!(error = %e, "LoadBalancer controller stopped");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "LoadBalancer controller"),
                    }
                }
            },
        ))
    });

    let ingress_status = settings.ingress_status.clone().map(|status| {
        tracing::info!(service = ?status.publish_service, "publishing the proxies' address in Ingress status while leading");
        let client = client.clone();
        tokio::spawn(while_leader(
            elector.subscribe(),
            Duration::from_secs(2),
            move || publish_ingress_status(client.clone(), status.clone()),
        ))
    });

    // In a pod: the challenge Service selects the leader's pod by label.
    let labelling = env.pod_name.clone().map(|pod| {
        let (client, namespace, leadership) =
            (client.clone(), namespace.clone(), elector.subscribe());
        tokio::spawn(async move {
            label_pod(client, &namespace, &pod, leadership, Duration::from_secs(1)).await;
        })
    });

    // Who holds the Lease, for the dashboard (standbys name the leader too).
    let leader = bins::dashboard::controller::watch_lease(
        client.clone(),
        &settings.lease.namespace,
        &settings.lease.name,
        &settings.lease.identity,
        settings.lease.retry_period,
    );
    admin(&config, issuer.status(), leader, snapshots).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down; releasing the Lease");
    if let Some(task) = labelling {
        task.abort();
    }
    feeding.abort();
    if let Some(lb) = load_balancer {
        lb.abort();
    }
    if let Some(status) = ingress_status {
        status.abort();
    }
    drop(requests);
    drop(issuer);
    drop(tls_context);
    // Hand over at once rather than after a whole lease duration.
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "releasing the Lease failed");
    }
    Ok(())
}

/// The challenge solvers and listeners: HTTP-01 on `[acme].challenge_address` while leading,
/// TLS-ALPN-01 on `[acme].tls_challenge_address` if set.
async fn challenges(
    config: &AcmeConfig,
    leadership: tokio::sync::watch::Receiver<acme_issuer::Leadership>,
) -> Result<
    (
        Vec<Arc<dyn ChallengeSolver>>,
        Option<tls_acceptor::TlsContext>,
    ),
    String,
> {
    let registry = Http01Registry::new();
    let mut solvers: Vec<Arc<dyn ChallengeSolver>> =
        vec![Arc::new(Http01Solver::new(registry.clone()))];
    if let Some(addr) = config.section.challenge_address {
        // Bound only while leading: replicas on one host share the address, and only the
        // leader holds the tokens.
        tokio::spawn(acme_issuer::http01::serve_while_leader(
            addr, registry, leadership,
        ));
    }
    let mut tls_context = None;
    if let Some(addr) = config.section.tls_challenge_address {
        let ctx = tls_acceptor::TlsContext::new(tls_acceptor::TlsSettings::default())
            .map_err(|e| format!("acme.tls_challenge_address: {e}"))?;
        let acceptor = ctx
            .acceptor(&[])
            .map_err(|e| format!("acme.tls_challenge_address: {e}"))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("acme.tls_challenge_address {addr}: {e}"))?;
        tracing::info!(%addr, "serving TLS-ALPN-01 challenges");
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                // acme-tls/1 handshakes are completed and closed inside accept().
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        solvers.push(Arc::new(TlsAlpn01Solver::new(ctx.challenges().clone())));
        tls_context = Some(ctx);
    }
    Ok((solvers, tls_context))
}

/// The admin listener: /metrics, /healthz, and the dashboard's certificates + ACME leadership.
async fn admin(
    config: &AcmeConfig,
    status: tokio::sync::watch::Receiver<acme_issuer::IssuerStatus>,
    leader: tokio::sync::watch::Receiver<LeaderView>,
    snapshots: tokio::sync::watch::Receiver<Arc<acme_store::Snapshot>>,
) -> Result<(), String> {
    let Some(addr) = config.section.admin_address else {
        return Ok(());
    };
    let token = bins::dashboard::load_token(
        "acme.admin_token_file",
        config.section.admin_token_file.as_deref(),
    )
    .map_err(|e| format!("{}: {e}", config.path.display()))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("acme.admin_address {addr}: {e}"))?;
    tokio::spawn(bins::dashboard::controller::serve(
        listener,
        token,
        status,
        leader,
        snapshots,
        config.options().renewal,
    ));
    Ok(())
}

async fn shutdown_signal() -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
