//! Issuance against a real Pebble: HTTP-01, TLS-ALPN-01 and renewal at 2/3 of the lifetime.
//! Every test starts its own Pebble and bounds itself; a wedged Pebble fails with its log.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_issuer::issuer::outcome;
use acme_issuer::order::OrderTiming;
use acme_issuer::{
    AcmeJsonStore, AlwaysLeader, CertKeyType, ChallengeKind, ChallengeSolver, Http01Solver, Issuer,
    IssuerOptions, IssuerParts, IssuerStatus, ResolverSettings, TlsAlpn01Solver, WantedCert,
};
use acme_store::challenge::Http01Registry;
use acme_store::{CertEntry, CertStore, FileStore, FileStoreOptions};
use support::pebble::{Pebble, PebbleOptions, free_port, install_crypto, verify_chain};
use tokio::net::TcpListener;
use tokio::sync::watch;

fn options() -> IssuerOptions {
    IssuerOptions {
        max_sleep: Duration::from_millis(500),
        order_timeout: Duration::from_secs(30),
        timing: OrderTiming {
            poll_initial: Duration::from_millis(50),
            poll_backoff: 1.5,
            poll_timeout: Duration::from_secs(20),
        },
        ..IssuerOptions::default()
    }
}

fn resolver(pebble: &Pebble, challenge: ChallengeKind) -> ResolverSettings {
    ResolverSettings {
        name: "pebble".into(),
        directory_url: pebble.directory_url.clone(),
        email: Some("ops@fairway.test".into()),
        http: pebble.http(),
        eab: None,
        challenge,
        key_type: CertKeyType::EcdsaP256,
    }
}

fn file_store(dir: &std::path::Path) -> Arc<FileStore> {
    let options = FileStoreOptions {
        watch: false,
        ..FileStoreOptions::default()
    };
    Arc::new(FileStore::open(dir.join("acme.json"), options).unwrap())
}

fn wanted(domains: &[&str], key_type: Option<CertKeyType>) -> WantedCert {
    WantedCert {
        resolver: "pebble".into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        key_type,
    }
}

/// Wait until `done(status)`, failing with the issuer's status and Pebble's log otherwise.
async fn wait_status(
    rx: &mut watch::Receiver<IssuerStatus>,
    pebble: &Pebble,
    within: Duration,
    what: &str,
    done: impl Fn(&IssuerStatus) -> bool,
) {
    if tokio::time::timeout(within, rx.wait_for(|s| done(s)))
        .await
        .is_err()
    {
        let status = rx.borrow().clone();
        panic!(
            "{what} did not happen within {within:?} (Pebble stopped answering?)\nstatus: {status:?}\n{}",
            pebble.logs()
        );
    }
}

fn issued(s: &IssuerStatus) -> u64 {
    s.orders.get(outcome::ISSUED).copied().unwrap_or(0)
        + s.orders.get(outcome::RESUMED).copied().unwrap_or(0)
}

fn entry(store: &dyn CertStore, main: &str) -> Arc<CertEntry> {
    let snap = store.snapshot();
    let found = snap
        .entries()
        .iter()
        .filter(|e| e.main() == main)
        .max_by_key(|e| e.not_after())
        .cloned();
    found.unwrap_or_else(|| panic!("{main} not in store; problems: {:?}", snap.problems()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_ecdsa_and_rsa_verified_against_pebble_root() {
    install_crypto();
    let registry = Http01Registry::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    tokio::spawn(acme_issuer::http01::serve(listener, registry.clone()));
    let pebble = Pebble::start(PebbleOptions::new(http_port, free_port(false))).await;

    let dir = tempfile::tempdir().unwrap();
    let files = file_store(dir.path());
    let issuer = Issuer::spawn(IssuerParts {
        resolvers: vec![resolver(&pebble, ChallengeKind::Http01)],
        wanted: vec![
            wanted(&["a.fairway.test", "www.a.fairway.test"], None),
            wanted(&["rsa.fairway.test"], Some(CertKeyType::Rsa2048)),
        ],
        options: options(),
        store: Arc::new(AcmeJsonStore::new(files.clone())),
        elector: Arc::new(AlwaysLeader::default()),
        solvers: vec![Arc::new(Http01Solver::new(registry.clone())) as Arc<dyn ChallengeSolver>],
    })
    .unwrap();
    let mut status = issuer.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(45),
        "two issuances",
        |s| issued(s) >= 2,
    )
    .await;

    let root = pebble.root_pem().await;
    let a = entry(files.as_ref(), "a.fairway.test");
    verify_chain(a.chain(), &root, "www.a.fairway.test").expect("chain verifies for the SAN");
    assert!(verify_chain(a.chain(), &pebble.listener_ca_pem, "a.fairway.test").is_err());
    assert!(
        matches!(a.key_type(), acme_store::KeyType::EcdsaP256),
        "{:?}",
        a.key_type()
    );
    let rsa = entry(files.as_ref(), "rsa.fairway.test");
    verify_chain(rsa.chain(), &root, "rsa.fairway.test").unwrap();
    assert!(
        format!("{:?}", rsa.key_type()).contains("2048"),
        "{:?}",
        rsa.key_type()
    );

    // The account was persisted in Traefik's layout with KeyType P256, and nothing is pending.
    let text = std::fs::read_to_string(dir.path().join("acme.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["pebble"]["Account"]["KeyType"], "P256");
    assert!(
        json["pebble"]["Account"]["Registration"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(json["pebble"].get("FairwayPending").is_none(), "{text}");
    assert!(registry.is_empty(), "challenge tokens withdrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_through_tls_acceptor_challenges() {
    install_crypto();
    let ctx = tls_acceptor::TlsContext::new(tls_acceptor::TlsSettings::default()).unwrap();
    let acceptor = ctx.acceptor(&[tls_acceptor::ALPN_HTTP11]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
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
    let pebble = Pebble::start(PebbleOptions::new(free_port(false), tls_port)).await;
    let dir = tempfile::tempdir().unwrap();
    let files = file_store(dir.path());
    let issuer = Issuer::spawn(IssuerParts {
        resolvers: vec![resolver(&pebble, ChallengeKind::TlsAlpn01)],
        wanted: vec![wanted(&["alpn.fairway.test"], None)],
        options: options(),
        store: Arc::new(AcmeJsonStore::new(files.clone())),
        elector: Arc::new(AlwaysLeader::default()),
        solvers: vec![
            Arc::new(TlsAlpn01Solver::new(ctx.challenges().clone())) as Arc<dyn ChallengeSolver>
        ],
    })
    .unwrap();
    let mut status = issuer.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(45),
        "TLS-ALPN-01 issuance",
        |s| issued(s) >= 1,
    )
    .await;
    let root = pebble.root_pem().await;
    verify_chain(
        entry(files.as_ref(), "alpn.fairway.test").chain(),
        &root,
        "alpn.fairway.test",
    )
    .unwrap();
    assert!(
        !ctx.challenges().contains("alpn.fairway.test"),
        "challenge removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificate_renews_itself_at_two_thirds() {
    install_crypto();
    let registry = Http01Registry::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    tokio::spawn(acme_issuer::http01::serve(listener, registry.clone()));
    let mut opts = PebbleOptions::new(http_port, free_port(false));
    opts.validity_secs = Some(24);
    let pebble = Pebble::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let files = file_store(dir.path());
    let issuer = Issuer::spawn(IssuerParts {
        resolvers: vec![resolver(&pebble, ChallengeKind::Http01)],
        wanted: vec![wanted(&["renew.fairway.test"], None)],
        options: options(),
        store: Arc::new(AcmeJsonStore::new(files.clone())),
        elector: Arc::new(AlwaysLeader::default()),
        solvers: vec![Arc::new(Http01Solver::new(registry)) as Arc<dyn ChallengeSolver>],
    })
    .unwrap();
    let mut status = issuer.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(30),
        "first issuance",
        |s| issued(s) >= 1,
    )
    .await;
    let first = entry(files.as_ref(), "renew.fairway.test");
    let life = first
        .not_after()
        .duration_since(first.not_before())
        .unwrap();
    assert!(
        life <= Duration::from_secs(30),
        "Pebble honoured certificateValidityPeriod: {life:?}"
    );

    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(40),
        "automatic renewal",
        |s| issued(s) >= 2,
    )
    .await;
    let renewed_at = SystemTime::now();
    let second = entry(files.as_ref(), "renew.fairway.test");
    assert_ne!(second.serial_hex(), first.serial_hex());
    // Renewed around 2/3 of the lifetime (jitter moves it up to 5 % earlier), before expiry.
    let earliest = first.not_before() + life.mul_f64(2.0 / 3.0 - 0.05) - Duration::from_secs(1);
    assert!(renewed_at >= earliest, "renewed too early");
    assert!(renewed_at < first.not_after(), "renewed only after expiry");
    verify_chain(
        second.chain(),
        &pebble.root_pem().await,
        "renew.fairway.test",
    )
    .unwrap();
}
