//! fairway-proxy alone (no controller) against a real Pebble: the `[acme]` section makes the
//! proxy embed the issuer. Pebble validates against the proxy's own entrypoints (HTTP-01 on the
//! plain one, TLS-ALPN-01 on the TLS one), the certificate lands in the proxy's store and is
//! served to a client that trusts only Pebble's root.

mod controller_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use controller_common::pebble::{Pebble, PebbleOptions, free_port, install_crypto};
use controller_common::{KillOnDrop, valid_cert_in_store, verified_handshake};

fn spawn_proxy(config: &Path, log: &Path) -> KillOnDrop {
    let log = std::fs::File::create(log).unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
            .arg("--config")
            .arg(config)
            .env("FAIRWAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start fairway-proxy"),
    )
}

/// Start Pebble and fairway-proxy with `[acme]` (resolver challenge `challenge`), wait for a
/// verified handshake for both names, and check the store and the leader lock.
async fn proxy_issues_and_serves(challenge: &str) {
    install_crypto();
    let (web, websecure) = (free_port(false), free_port(false));
    // Pebble validates HTTP-01 on the proxy's plain entrypoint and TLS-ALPN-01 on its TLS one.
    let pebble = Pebble::start(PebbleOptions::new(web, websecure)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fairway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[entrypoints.web]
address = "127.0.0.1:{web}"

[entrypoints.websecure]
address = "127.0.0.1:{websecure}"
tls = {{ alpn = ["http/1.1"] }}

[routers.app]
rule = "Host(`app.fairway.test`) || Host(`www.app.fairway.test`)"
service = "app"
tls = {{ cert_resolver = "pebble" }}

[services.app]
respond = {{ status = 200, body = "hello\n" }}

[tls]
store = "acme.json"

[acme]
leader_retry_ms = 100

[acme.resolvers.pebble]
directory = "{dir_url}"
email = "ops@fairway.test"
ca_bundle = "{ca}"
challenge = "{challenge}"
"#,
            dir_url = pebble.directory_url,
            ca = pebble.listener_ca_path.display(),
        ),
    )
    .unwrap();

    let log = dir.path().join("proxy.log");
    let _proxy = spawn_proxy(&config, &log);
    let root = pebble.root_pem().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let last = match verified_handshake(websecure, "www.app.fairway.test", &root).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if std::time::Instant::now() > deadline {
            panic!(
                "no verified handshake within 45 s (last error: {last})\nproxy log:\n{}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                pebble.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    verified_handshake(websecure, "app.fairway.test", &root)
        .await
        .unwrap();
    assert!(valid_cert_in_store(
        &dir.path().join("acme.json"),
        "pebble",
        "app.fairway.test",
        &root
    ));
    // The issuer ran under the same file lock fairway-controller takes.
    assert!(dir.path().join("acme.json.leader").exists());
    assert_eq!(pebble.orders_created(), 1, "{}", pebble.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_alone_issues_via_http01_and_serves_verified_certificate() {
    proxy_issues_and_serves("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_alone_issues_via_tls_alpn01_and_serves_verified_certificate() {
    proxy_issues_and_serves("tls-alpn-01").await;
}
