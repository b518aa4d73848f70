//! `fairway-proxy`: Fairway's data plane. Wiring only: configuration, TLS, certificate store,
//! signals and logging; the proxy itself is `ingress_proxy`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acme_store::CertStore as _;
use clap::Parser;
use ingress_proxy::Proxy;
use tokio::signal::unix::{SignalKind, signal};

/// Command line of `fairway-proxy`.
#[derive(Debug, Parser)]
#[command(
    name = "fairway-proxy",
    version,
    about = "Fairway's HTTP/HTTPS ingress proxy"
)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// How long SIGTERM waits for in-flight requests.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How often the configuration file is checked for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    watch_interval: Duration,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ingress_proxy::config::duration::parse(s)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let file = match bins::config::load(&args.config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fairway-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging(file.access_log.json);
    // One worker: a current-thread runtime does the same work without work-stealing
    // bookkeeping (Pingora's "no steal" mode). More: the multi-threaded scheduler.
    let mut rt = match args.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fairway-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(args, file));
    // Do not wait for idle blocking threads (file polling) at exit.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairway-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAIRWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: Args, file: bins::config::ConfigFile) -> Result<(), Box<dyn std::error::Error>> {
    let config = file.proxy();
    let mut builder = Proxy::builder(config.clone());
    // `[kubernetes]`: routes from Ingresses, certificates from the TLS Secrets they name.
    let kube = match &file.kubernetes {
        Some(k) => Some(k8s_glue::KubernetesProvider::start_namespaces(
            k.client().await?,
            k.watch_config(),
            &k.namespaces,
        )),
        None => None,
    };
    let (mut store, mut alpn) = (None, None);
    let needs_tls = config.entrypoints.values().any(|e| e.tls.is_some());
    if needs_tls {
        let mut settings = tls_acceptor::TlsSettings {
            sni_strict: file.tls.sni_strict,
            handshake_timeout: config.limits.tls_handshake_timeout,
            ..Default::default()
        };
        if let Some(pair) = &file.tls.default_certificate {
            settings.default_certificate = Some(tls_acceptor::DefaultCertificate::from_pem_files(
                &pair.cert, &pair.key,
            )?);
        }
        let tls = Arc::new(tls_acceptor::TlsContext::new(settings)?);
        if let Some(path) = &file.tls.store {
            let opts = acme_store::FileStoreOptions {
                watch: true,
                ..Default::default()
            };
            let s = acme_store::FileStore::open(path, opts)?;
            // With `[kubernetes]` the served certificates come from the Secrets instead.
            if kube.is_none() {
                tls.watch(s.subscribe());
            }
            store = Some(Arc::new(s));
        }
        if let Some(k) = &kube {
            tls.watch(k.certificates());
        }
        alpn = Some(tls.challenges().clone());
        builder = builder.tls(tls);
    }
    let challenges = acme_store::challenge::Http01Registry::new();
    builder = builder.challenges(Arc::new(challenges.clone()));
    let proxy = builder.start().await?;
    // `[acme]` present: issue in-process (single node), under the same file lock as the controller.
    let parts = bins::proxy_acme::ProxyParts {
        store: store.clone(),
        http01: &challenges,
        alpn,
    };
    let _issuer = bins::proxy_acme::spawn(&args.config, parts)?;
    if let (Some(s), None) = (&store, &kube) {
        proxy.watch_certificates(s.subscribe());
    }
    let (_no_kube, idle) = tokio::sync::watch::channel(Arc::default());
    let mut ingress_routes = match &kube {
        Some(k) => {
            if store.is_some() {
                tracing::warn!(
                    "[tls] store is not served with [kubernetes]: certificates come from the Ingresses' TLS Secrets"
                );
            }
            proxy.watch_certificates(k.certificates());
            k.routes()
        }
        None => idle,
    };
    // Signal handlers and the file watcher (with its first fingerprint) are in place before
    // the URLs are printed: whoever reacts to them may already signal or edit the file.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut changed = ingress_proxy::reload::watch_file(args.config.clone(), args.watch_interval);
    print_urls(&proxy, &file);
    let mut tls_section = file.tls.clone();
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            Some(()) = changed.recv() => "file changed",
            Ok(()) = ingress_routes.changed() => {
                let routes = ingress_routes.borrow_and_update().clone();
                match proxy.set_external_routes(routes) {
                    Ok(()) => tracing::debug!("Ingress routes applied"),
                    Err(e) => tracing::error!(
                        "Ingress routes rejected, still serving the previous ones: {e}"
                    ),
                }
                continue;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        match bins::config::load(&args.config) {
            Ok(new) => match proxy.reload(new.proxy()) {
                Ok(()) => {
                    tracing::info!(reason = why, "configuration reloaded");
                    if new.tls != tls_section {
                        tracing::warn!(
                            "the [tls] section changed; it takes effect after a restart"
                        );
                        tls_section = new.tls;
                    }
                }
                Err(e) => tracing::error!(
                    reason = why,
                    "configuration rejected, still serving the previous one: {}: {e}",
                    args.config.display()
                ),
            },
            Err(e) => {
                tracing::error!(
                    reason = why,
                    "configuration rejected, still serving the previous one: {e}"
                );
                proxy.report_rejected_config(&e);
            }
        }
    }
    tracing::info!(deadline = ?args.drain_timeout, "draining");
    let drained = proxy.shutdown(args.drain_timeout).await;
    if !drained {
        tracing::warn!("drain deadline reached; closing the remaining connections");
    }
    drop(store);
    drop(kube);
    Ok(())
}

fn print_urls(proxy: &Proxy, file: &bins::config::ConfigFile) {
    println!("fairway-proxy is running");
    for (name, addr) in proxy.entrypoints() {
        let scheme = if file.entrypoints[name].tls.is_some() {
            "https"
        } else {
            "http"
        };
        let host = match addr.ip() {
            ip if ip.is_loopback() || ip.is_unspecified() => "localhost".to_owned(),
            ip if ip.is_ipv6() => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        println!("  entrypoint {name:<12} {scheme}://{host}:{}/", addr.port());
    }
    if let Some(admin) = proxy.admin_addr() {
        println!("  dashboard               http://{admin}/");
        println!("  admin                   http://{admin}/metrics");
        println!("                          http://{admin}/api/routes");
        println!("                          http://{admin}/healthz");
    }
}
