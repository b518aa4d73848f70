//! `fairway-speaker`: VIP failover for one node. Reads `[speaker]` from the shared TOML file,
//! runs `vip_failover::linux::Speaker`, serves `/metrics` and `/status` on the admin listener,
//! and on SIGTERM/SIGINT withdraws its VIPs and hands them over before exiting. On SIGHUP (file
//! mode) it re-reads the file and applies new members, VIPs and election settings live.
//!
//! With `[speaker.kubernetes]` the members, VIPs and candidates come from the API server
//! (`k8s_glue::speakers::SpeakerWatcher`): the speaker waits until its node is a member, starts
//! with that view, and applies every later one live (`Speaker::follow`).
//!
//! Wiring only: the election lives in `vip_failover::Machine`, the I/O in
//! `vip_failover::linux`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use vip_failover::linux::{Membership, Speaker, SpeakerOptions, SpeakerStatus};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "fairway-speaker",
    version,
    about = "Fairway VIP failover speaker"
)]
struct Args {
    /// The shared Fairway TOML file (reads `[speaker]`).
    #[arg(long, short)]
    config: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Validate the configuration (and read the key file) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAIRWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let mut config = match bins::config::speaker::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fairway-speaker: {e}");
            return ExitCode::from(2);
        }
    };
    if config.kubernetes.is_some() && config.node.is_empty() {
        match std::env::var("NODE_NAME") {
            Ok(n) if !n.is_empty() => config.node = n,
            _ => {
                eprintln!(
                    "fairway-speaker: {}: speaker.node: not set and $NODE_NAME is empty",
                    args.config.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    // The static file's options now; Kubernetes mode builds them from the first view.
    let options = match &config.kubernetes {
        Some(_) => None,
        None => match config.to_options(&args.config, incarnation) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("fairway-speaker: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if args.check {
        let key = match &options {
            Some(_) => Ok(()),
            // Kubernetes mode: members come later; the key file is read now all the same.
            None => vip_failover::wire::SharedKey::from_file(&config.key_file)
                .map(|_| ())
                .map_err(|e| format!("{}: speaker.key_file: {e}", args.config.display())),
        };
        if let Err(e) = key {
            eprintln!("fairway-speaker: {e}");
            return ExitCode::from(2);
        }
        match &options {
            Some(o) => println!(
                "{}: ok (node {}, {} nodes, {} VIPs, {:?})",
                args.config.display(),
                config.node,
                o.cluster.nodes.len(),
                o.cluster.vips.len(),
                config.timing()
            ),
            None => println!(
                "{}: ok (node {}, members and VIPs from Kubernetes, {:?})",
                args.config.display(),
                config.node,
                config.timing()
            ),
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fairway-speaker: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (options, memberships) = match options {
            Some(o) => (o, None),
            None => match from_kubernetes(&config, &args.config, incarnation).await {
                Ok((o, m)) => (o, Some(m)),
                Err((code, e)) => {
                    eprintln!("fairway-speaker: {e}");
                    return code;
                }
            },
        };
        let mut speaker = match Speaker::bind(options).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fairway-speaker: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Kept alive while the speaker runs: dropping it would stop the watches.
        let _watcher = match memberships {
            Some((watcher, rx)) => {
                speaker.follow(rx);
                Some(watcher)
            }
            None => {
                speaker.follow(reload_on_sighup(args.config.clone(), config.clone()));
                None
            }
        };
        if let Some(addr) = config.admin {
            let token = match bins::dashboard::load_token(
                "speaker.admin_token_file",
                config.admin_token_file.as_deref(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("fairway-speaker: {}: {e}", args.config.display());
                    return ExitCode::from(2);
                }
            };
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("fairway-speaker: admin listener {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            tokio::spawn(serve_admin(listener, token, speaker.status()));
        }
        let health = config.health_tcp.map(|addr| {
            let (tx, rx) = watch::channel(true);
            tokio::spawn(check_health(addr, tx));
            rx
        });
        tracing::info!(node = %config.node, interface = %config.interface, "speaker running");
        match speaker.run(shutdown_signal(), health).await {
            Ok(()) => {
                tracing::info!("speaker stopped; VIPs released");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fairway-speaker: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Kubernetes mode: starts the watches, waits until this node is a member (its speaker pod is
/// seen with an address), and returns the options for that view plus a feed of later ones.
async fn from_kubernetes(
    config: &bins::config::speaker::SpeakerConfig,
    path: &std::path::Path,
    incarnation: u64,
) -> Result<
    (
        SpeakerOptions,
        (
            k8s_glue::speakers::SpeakerWatcher,
            watch::Receiver<Arc<Membership>>,
        ),
    ),
    (ExitCode, String),
> {
    let (Some(k), Some(settings)) = (&config.kubernetes, config.kubernetes_settings()) else {
        return Err((ExitCode::from(2), "no [speaker.kubernetes]".into()));
    };
    let client = k.client().await.map_err(|e| {
        (
            ExitCode::FAILURE,
            format!("{}: speaker.kubernetes: {e}", path.display()),
        )
    })?;
    let watcher = k8s_glue::speakers::SpeakerWatcher::start(client, settings);
    let mut views = watcher.subscribe();
    let first = loop {
        if let Some(v) = views.borrow_and_update().clone()
            && v.is_member(&config.node)
        {
            break v;
        }
        tokio::select! {
            changed = views.changed() => if changed.is_err() {
                return Err((ExitCode::FAILURE, "the Kubernetes watch ended".into()));
            },
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
                tracing::info!(node = %config.node, "waiting for this node's speaker pod to be listed with an address");
            }
        }
    };
    tracing::info!(
        nodes = first.cluster.nodes.len(),
        vips = first.cluster.vips.len(),
        "membership from Kubernetes"
    );
    let options = config
        .to_options_with(
            path,
            incarnation,
            first.cluster.clone(),
            first.peers.clone(),
        )
        .map_err(|e| (ExitCode::from(2), e.to_string()))?;
    let membership = |v: &k8s_glue::speakers::SpeakerView| {
        Arc::new(Membership {
            cluster: v.cluster.clone(),
            peers: v.peers.clone(),
        })
    };
    let (tx, rx) = watch::channel(membership(&first));
    tokio::spawn(async move {
        while views.changed().await.is_ok() {
            let Some(v) = views.borrow_and_update().clone() else {
                continue;
            };
            if tx.send(membership(&v)).is_err() {
                break;
            }
        }
    });
    Ok((options, (watcher, rx)))
}

/// File mode: on SIGHUP, re-read `[speaker]` and apply its members, VIPs and election settings
/// live (as `keepalived` reloads on SIGHUP). A file that does not parse, or that changes
/// something only a restart can (see `SpeakerConfig::check_live_reload`), is rejected whole
/// with the reason, and the running configuration stays.
fn reload_on_sighup(
    path: PathBuf,
    running: bins::config::speaker::SpeakerConfig,
) -> watch::Receiver<Arc<Membership>> {
    let membership = |c: &bins::config::speaker::SpeakerConfig| {
        Arc::new(Membership {
            cluster: c.cluster(),
            peers: c
                .nodes
                .iter()
                .map(|(n, a)| (vip_failover::NodeId::new(n), *a))
                .collect(),
        })
    };
    let (tx, rx) = watch::channel(membership(&running));
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot install a SIGHUP handler: configuration reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            let new = match bins::config::speaker::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "reload rejected; the running configuration stays");
                    continue;
                }
            };
            if let Err(e) = running.check_live_reload(&new) {
                tracing::error!(file = %path.display(), error = %e, "reload rejected; the running configuration stays");
                continue;
            }
            tracing::info!(
                file = %path.display(),
                nodes = new.nodes.len(),
                vips = new.vips.len(),
                "configuration reloaded"
            );
            if tx.send(membership(&new)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Polls a TCP connect every 500 ms; three failures in a row make the node unhealthy, one
/// success makes it healthy again.
async fn check_health(addr: std::net::SocketAddr, tx: watch::Sender<bool>) {
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        let ok = tokio::time::timeout(
            std::time::Duration::from_millis(400),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        failures = if ok { 0 } else { failures + 1 };
        let healthy = failures < 3;
        if *tx.borrow() != healthy {
            tracing::warn!(%addr, healthy, "local health changed");
            if tx.send(healthy).is_err() {
                return;
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The admin listener: the dashboard and `/api/v1` (VIPs, per-node state, failovers), plus
/// `/status` and `/metrics`; read-only and behind the bearer token like the other binaries'.
async fn serve_admin(
    listener: tokio::net::TcpListener,
    token: Option<Arc<str>>,
    status: watch::Receiver<Arc<SpeakerStatus>>,
) {
    bins::dashboard::speaker::serve(listener, token, status, respond).await;
}

fn respond(path: &str, status: &SpeakerStatus) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match path {
        "/status" => match serde_json::to_vec_pretty(status) {
            Ok(b) => (StatusCode::OK, "application/json", b),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string().into_bytes(),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics(status).into_bytes(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

type Labels = Vec<(String, String)>;

/// Renders the status as Prometheus/OpenMetrics text (a fresh registry per scrape: the label
/// sets follow the configuration and the admin endpoint is not a hot path).
fn metrics(s: &SpeakerStatus) -> String {
    let mut reg = Registry::with_prefix("fairway_speaker");
    let owner = Family::<Labels, Gauge>::default();
    let local = Family::<Labels, Gauge>::default();
    for v in &s.machine.vips {
        let vip = v.addr.to_string();
        if let Some(o) = &v.owner {
            owner
                .get_or_create(&vec![
                    ("vip".into(), vip.clone()),
                    ("node".into(), o.to_string()),
                ])
                .set(1);
        }
        local
            .get_or_create(&vec![("vip".into(), vip)])
            .set(i64::from(v.local));
    }
    reg.register(
        "vip_owner",
        "Owner of each VIP as seen by this node (1 = owner)",
        owner,
    );
    reg.register("vip_local", "Whether this node announces the VIP", local);
    let transitions = Counter::<u64>::default();
    transitions.inc_by(s.machine.stats.transitions);
    reg.register(
        "transitions",
        "Local announce/withdraw transitions",
        transitions,
    );
    let quorum = Gauge::<i64>::default();
    quorum.set(i64::from(s.machine.quorum));
    reg.register(
        "quorum",
        "Quorum held (always 1 outside quorum mode)",
        quorum,
    );
    let alive = Family::<Labels, Gauge>::default();
    let rtt = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let received = Family::<Labels, Counter<u64>>::default();
    let lost = Family::<Labels, Counter<u64>>::default();
    for p in &s.machine.peers {
        let l = vec![("peer".to_string(), p.node.to_string())];
        alive.get_or_create(&l).set(i64::from(p.alive));
        if let Some(us) = p.rtt_us {
            rtt.get_or_create(&l).set(us as f64 / 1e6);
        }
        received.get_or_create(&l).inc_by(p.received);
        lost.get_or_create(&l).inc_by(p.lost);
    }
    reg.register("peer_alive", "Peer considered alive", alive);
    reg.register(
        "heartbeat_rtt_seconds",
        "Latest heartbeat round-trip time",
        rtt,
    );
    reg.register(
        "heartbeats_received",
        "Heartbeats received per peer",
        received,
    );
    reg.register(
        "heartbeats_lost",
        "Heartbeats lost per peer (sequence gaps)",
        lost,
    );
    let dropped = Family::<Labels, Counter<u64>>::default();
    for (reason, n) in [
        ("unauthenticated", s.io.unauthenticated),
        ("malformed", s.io.malformed),
        ("config_mismatch", s.machine.stats.mismatched),
        ("invalid", s.machine.stats.invalid),
        ("stale", s.machine.stats.stale),
    ] {
        dropped
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc_by(n);
    }
    reg.register(
        "datagrams_dropped",
        "Heartbeat datagrams dropped, by reason",
        dropped,
    );
    let io = Family::<Labels, Counter<u64>>::default();
    for (kind, n) in [
        ("announcement", s.io.announcements),
        ("arp_reply", s.io.arp_replies),
        ("na_reply", s.io.na_replies),
        ("conflict", s.io.conflicts),
        ("os_error", s.io.os_errors),
        ("send_error", s.io.send_errors),
    ] {
        io.get_or_create(&vec![("kind".into(), kind.into())])
            .inc_by(n);
    }
    reg.register("io_events", "Announcer and socket events, by kind", io);
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}
