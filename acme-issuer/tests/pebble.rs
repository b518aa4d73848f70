//! Issuance against a real Pebble: HTTP-01, TLS-ALPN-01 and renewal at 2/3 of the lifetime.
//! Every test starts its own Pebble and bounds itself; a wedged Pebble fails with its log.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_issuer::issuer::outcome;
use acme_issuer::order::OrderTiming;
use acme_issuer::{
    AcmeJsonStore, AlwaysLeader, CertKeyType, ChallengeKind, ChallengeSolver, Http01Solver, Issuer,
    IssuerOptions, IssuerParts, IssuerStatus, LeaderElector, Leadership, ResolverSettings,
    TlsAlpn01Solver, WantedCert,
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

/// Our HTTP-01 endpoint on a free port (serving `registry`'s tokens) and a Pebble validating
/// against it, with `configure` applied to Pebble's options.
async fn http01_pebble(configure: impl FnOnce(&mut PebbleOptions)) -> (Http01Registry, Pebble) {
    let registry = Http01Registry::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    tokio::spawn(acme_issuer::http01::serve(listener, registry.clone()));
    let mut opts = PebbleOptions::new(http_port, free_port(false));
    configure(&mut opts);
    (registry, Pebble::start(opts).await)
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
    let (registry, pebble) = http01_pebble(|_| {}).await;

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
    let (registry, pebble) = http01_pebble(|o| o.validity_secs = Some(24)).await;
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

/// An elector the test drives by hand.
struct ManualElector(watch::Sender<Leadership>);

impl LeaderElector for ManualElector {
    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.0.subscribe()
    }
}

/// Delegates to HTTP-01, but the first `present` deposes the leader (as if the lease was lost
/// right then), so the order must stop before its next ACME call.
struct DeposeOnFirstPresent {
    inner: Http01Solver,
    elector: watch::Sender<Leadership>,
    fired: std::sync::atomic::AtomicBool,
}

impl ChallengeSolver for DeposeOnFirstPresent {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    fn present<'a>(
        &'a self,
        c: &'a acme_issuer::ChallengeData,
    ) -> acme_issuer::challenge::BoxFuture<'a, Result<(), String>> {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.elector.send_replace(Leadership {
                is_leader: false,
                epoch: 1,
            });
        }
        self.inner.present(c)
    }

    fn cleanup<'a>(
        &'a self,
        c: &'a acme_issuer::ChallengeData,
    ) -> acme_issuer::challenge::BoxFuture<'a, ()> {
        self.inner.cleanup(c)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_leadership_stops_the_order_and_the_next_term_resumes_it() {
    install_crypto();
    let (registry, pebble) = http01_pebble(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let files = file_store(dir.path());
    let elector = watch::Sender::new(Leadership {
        is_leader: true,
        epoch: 1,
    });
    let issuer = Issuer::spawn(IssuerParts {
        resolvers: vec![resolver(&pebble, ChallengeKind::Http01)],
        wanted: vec![wanted(&["resume.fairway.test"], None)],
        options: options(),
        store: Arc::new(AcmeJsonStore::new(files.clone())),
        elector: Arc::new(ManualElector(elector.clone())),
        solvers: vec![Arc::new(DeposeOnFirstPresent {
            inner: Http01Solver::new(registry.clone()),
            elector: elector.clone(),
            fired: false.into(),
        }) as Arc<dyn ChallengeSolver>],
    })
    .unwrap();
    let mut status = issuer.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(20),
        "interruption",
        |s| s.orders.get(outcome::INTERRUPTED).copied().unwrap_or(0) >= 1,
    )
    .await;
    // The order and its key were persisted before the challenge was presented.
    let text = std::fs::read_to_string(dir.path().join("acme.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pending = &json["pebble"]["FairwayPending"][0];
    assert_eq!(pending["domains"][0], "resume.fairway.test", "{text}");
    assert!(
        pending["orderUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(registry.is_empty(), "the deposed leader withdrew its token");
    assert_eq!(pebble.orders_created(), 1);

    elector.send_replace(Leadership {
        is_leader: true,
        epoch: 2,
    });
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(30),
        "resumed issuance",
        |s| s.orders.get(outcome::RESUMED).copied().unwrap_or(0) >= 1,
    )
    .await;
    assert_eq!(pebble.orders_created(), 1, "resumed, not re-ordered");
    verify_chain(
        entry(files.as_ref(), "resume.fairway.test").chain(),
        &pebble.root_pem().await,
        "resume.fairway.test",
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("acme.json")).unwrap();
    assert!(!text.contains("FairwayPending"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_rsa_account_is_replaced_and_nothing_else_changes_with_eab() {
    install_crypto();
    const KID: &str = "kid-fairway";
    const MAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let (registry, pebble) = http01_pebble(|o| o.eab = Some((KID.into(), MAC.into()))).await;

    // A Traefik file: an RSA account for this CA's host under "pebble", and another resolver
    // (from the shared fixture) that must come out byte-for-byte the same.
    use base64::Engine as _;
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let host = pebble.directory_url.trim_end_matches("/dir");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/acme-json/certs-dumper-v2-acme.json"
        ))
        .unwrap_or_else(|_| FALLBACK_FIXTURE.to_owned()),
    )
    .unwrap();
    let other = fixture["default"].clone();
    let original = serde_json::json!({
        "pebble": {
            "Account": {
                "Email": "ops@fairway.test",
                "Registration": { "body": { "status": "valid" }, "uri": format!("{host}/my-account/1") },
                "PrivateKey": base64::engine::general_purpose::STANDARD.encode(rsa.serialize_der()),
                "KeyType": "4096"
            },
            "Certificates": null
        },
        "traefik": other,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    std::fs::write(&path, serde_json::to_string_pretty(&original).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let files = file_store(dir.path());

    // Without EAB the CA refuses the account: the error names the step and the problem.
    let no_eab = Issuer::spawn(IssuerParts {
        resolvers: vec![resolver(&pebble, ChallengeKind::Http01)],
        wanted: vec![wanted(&["eab.fairway.test"], None)],
        options: options(),
        store: Arc::new(AcmeJsonStore::new(files.clone())),
        elector: Arc::new(AlwaysLeader::default()),
        solvers: vec![Arc::new(Http01Solver::new(registry.clone())) as Arc<dyn ChallengeSolver>],
    })
    .unwrap();
    let mut status = no_eab.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(20),
        "account refusal",
        |s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("externalAccountRequired"))
        },
    )
    .await;
    let err = status.borrow().last_error.clone().unwrap();
    assert!(
        err.contains("ACME account for account of resolver pebble"),
        "{err}"
    );
    drop(no_eab);

    let mut with_eab = resolver(&pebble, ChallengeKind::Http01);
    with_eab.eab = Some(acme_issuer::Eab::from_base64url(KID, MAC).unwrap());
    let issuer = Issuer::spawn(IssuerParts {
        resolvers: vec![with_eab],
        wanted: vec![wanted(&["eab.fairway.test"], None)],
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
        Duration::from_secs(30),
        "issuance with EAB",
        |s| issued(s) >= 1,
    )
    .await;
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        after["traefik"], original["traefik"],
        "other resolver untouched"
    );
    let account = &after["pebble"]["Account"];
    assert_eq!(account["KeyType"], "P256");
    assert_ne!(
        account["PrivateKey"],
        original["pebble"]["Account"]["PrivateKey"]
    );
    assert_ne!(
        account["Registration"]["uri"],
        original["pebble"]["Account"]["Registration"]["uri"]
    );
    verify_chain(
        entry(files.as_ref(), "eab.fairway.test").chain(),
        &pebble.root_pem().await,
        "eab.fairway.test",
    )
    .unwrap();
}

/// Used when the shared fixtures are not next to the checkout (a published crate).
const FALLBACK_FIXTURE: &str = r#"{"default":{"Account":{"Email":"test@email.com","Registration":{"body":{"status":"valid","contact":["mailto:test@email.com"]},"uri":"https://acme-v02.api.letsencrypt.org/acme/acct/12345678"},"PrivateKey":"Q2VydGlmaWNhdGUgS2V5","KeyType":"4096"},"Certificates":[{"domain":{"main":"my.domain.com"},"certificate":"Q2VydGlmaWNhdGU=","key":"Q2VydGlmaWNhdGUgS2V5","Store":"default"}]}}"#;

/// RFC 9773 against Pebble's ARI (a build that has `renewalInfo`): a certificate the CA revoked
/// gets an immediate suggested window, so a fresh issuer renews it long before 2/3 of its
/// lifetime, and the new order names the old certificate in `replaces` (Pebble marks the old
/// order as replaced only for such orders).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_window_from_the_ca_renews_a_revoked_certificate_with_replaces() {
    use acme_issuer::IssuerStore;
    use instant_acme::{Account, RevocationRequest};
    use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

    install_crypto();
    let (registry, pebble) = http01_pebble(|o| o.ari = true).await;
    let dir = tempfile::tempdir().unwrap();
    let files = file_store(dir.path());
    let store = Arc::new(AcmeJsonStore::new(files.clone()));
    let spawn = || {
        Issuer::spawn(IssuerParts {
            resolvers: vec![resolver(&pebble, ChallengeKind::Http01)],
            wanted: vec![wanted(&["ari.fairway.test"], None)],
            options: options(),
            store: store.clone(),
            elector: Arc::new(AlwaysLeader::default()),
            solvers: vec![Arc::new(Http01Solver::new(registry.clone())) as Arc<dyn ChallengeSolver>],
        })
        .unwrap()
    };

    // First certificate; Pebble's window for it is far in the future (5-year default lifetime).
    let issuer = spawn();
    let mut status = issuer.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(30),
        "first issuance",
        |s| issued(s) >= 1,
    )
    .await;
    drop(status);
    drop(issuer);
    let first = entry(files.as_ref(), "ari.fairway.test");

    // The CA revokes it (here: the account itself, as after a key compromise report).
    let account_record = store
        .load("pebble")
        .unwrap()
        .account
        .expect("account stored");
    let account = Account::builder_with_http(Box::new(pebble.http()))
        .from_parts(
            account_record.uri.unwrap(),
            PrivatePkcs8KeyDer::from(account_record.private_key_der.unwrap()),
            pebble.directory_url.clone(),
        )
        .await
        .unwrap();
    let leaf = CertificateDer::from(first.chain()[0].to_vec());
    account
        .revoke(&RevocationRequest {
            certificate: &leaf,
            reason: None,
        })
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}\n{}", pebble.logs()));
    assert_eq!(pebble.orders_replaced(), 0);

    // A restarted issuer asks for the window, is told "now", and replaces the certificate.
    let issuer = spawn();
    let mut status = issuer.status();
    wait_status(
        &mut status,
        &pebble,
        Duration::from_secs(30),
        "ARI-driven renewal",
        |s| issued(s) >= 1,
    )
    .await;
    let second = entry(files.as_ref(), "ari.fairway.test");
    assert_ne!(second.serial_hex(), first.serial_hex());
    let age = SystemTime::now()
        .duration_since(first.not_before())
        .unwrap_or_default();
    let life = first
        .not_after()
        .duration_since(first.not_before())
        .unwrap();
    assert!(
        age < life / 100,
        "renewed at {age:?} of a {life:?} lifetime: the CA's window, not the 2/3 policy"
    );
    verify_chain(second.chain(), &pebble.root_pem().await, "ari.fairway.test").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pebble.orders_replaced() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pebble.orders_replaced(),
        1,
        "the renewal order carried `replaces`\n{}",
        pebble.logs()
    );
}
