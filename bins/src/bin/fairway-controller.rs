//! `fairway-controller`: Fairway's ACME controller. Wiring only: configuration, certificate
//! store, leader election, challenge and admin listeners, signals and logging; the issuer itself
//! is `acme_issuer`.
//!
//! Run as many replicas as you like against one `acme.json` (one host: the file-lock elector):
//! exactly one issues, the others wait for the lock. Only the leader binds
//! `[acme].challenge_address` (it alone holds the HTTP-01 tokens), so proxies forward
//! `/.well-known/acme-challenge/*` to that one address (`[acme_challenge].forward_to`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use acme_issuer::{
    AcmeJsonStore, ChallengeSolver, FileLockElector, Http01Solver, Issuer, IssuerParts,
    LeaderElector as _, TlsAlpn01Solver,
};
use acme_store::challenge::Http01Registry;
use acme_store::{FileStore, FileStoreOptions};
use clap::Parser;
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
    /// The TOML configuration file (reads `[acme]`, `[routers]`, `[tls].store`).
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
    if args.check {
        println!(
            "{}: ok ({} resolvers, {} certificates)",
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
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairway-controller: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: bins::config::acme::AcmeConfig) -> Result<(), String> {
    let resolvers = config.resolvers().map_err(|e| e.to_string())?;
    let store = FileStore::open(&config.store, FileStoreOptions::default())
        .map_err(|e| format!("{}: {e}", config.store.display()))?;
    let snapshots = acme_store::CertStore::subscribe(&store);
    let elector = Arc::new(
        FileLockElector::spawn(&config.lock_file, config.leader_retry())
            .map_err(|e| e.to_string())?,
    );

    let registry = Http01Registry::new();
    let mut solvers: Vec<Arc<dyn ChallengeSolver>> =
        vec![Arc::new(Http01Solver::new(registry.clone()))];
    if let Some(addr) = config.section.challenge_address {
        // Bound only while leading: replicas on one host share the address, and only the
        // leader holds the tokens.
        tokio::spawn(acme_issuer::http01::serve_while_leader(
            addr,
            registry.clone(),
            elector.subscribe(),
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

    let issuer = Issuer::spawn(IssuerParts {
        resolvers,
        wanted: config.wanted.clone(),
        options: config.options(),
        store: Arc::new(AcmeJsonStore::new(Arc::new(store))),
        elector,
        solvers,
    })
    .map_err(|e| format!("{}: {e}", config.path.display()))?;

    if let Some(addr) = config.section.admin_address {
        let token = bins::dashboard::load_token(
            "acme.admin_token_file",
            config.section.admin_token_file.as_deref(),
        )
        .map_err(|e| format!("{}: {e}", config.path.display()))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("acme.admin_address {addr}: {e}"))?;
        // /metrics, /healthz, and the dashboard's certificates + ACME leadership.
        tokio::spawn(bins::dashboard::controller::serve(
            listener,
            token,
            issuer.status(),
            snapshots,
            config.options().renewal,
        ));
    }

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    drop(issuer);
    drop(tls_context);
    Ok(())
}
