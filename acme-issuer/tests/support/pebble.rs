//! Test harness: a real Pebble (Debian's `/usr/bin/pebble`, or `$FAIRWAY_PEBBLE`) on free ports,
//! with `pebble-challtestsrv` as its DNS server (every name resolves to 127.0.0.1), a test CA and
//! listener certificate generated here, `PEBBLE_VA_NOSLEEP=1`, and `httpPort`/`tlsPort` pointing
//! at the caller's challenge listeners. Pebble really validates; `PEBBLE_VA_ALWAYS_VALID` is never
//! set. Both processes are killed on drop.
//!
//! Shared by `acme-issuer`'s and `bins`' tests (`#[path]`-included), so it only uses crates both
//! have: tokio, rcgen, rustls, instant-acme (through `acme_issuer::AcmeHttp`).
#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener as StdTcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use acme_issuer::AcmeHttp;
use instant_acme::{BodyWrapper, HttpClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::process::{Child, Command};

/// Install the process-wide rustls provider once (kube and instant-acme pull rustls 0.23 too).
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A free TCP port on 127.0.0.1 (also free for UDP when `udp` is set).
pub fn free_port(udp: bool) -> u16 {
    for _ in 0..50 {
        let tcp = StdTcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = tcp.local_addr().unwrap().port();
        if !udp || UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// Knobs of one Pebble instance.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Where Pebble sends HTTP-01 validations.
    pub http_port: u16,
    /// Where Pebble sends TLS-ALPN-01 validations.
    pub tls_port: u16,
    /// `certificateValidityPeriod` in seconds (`None`: Pebble's default of 5 years).
    pub validity_secs: Option<u64>,
    /// `PEBBLE_WFE_NONCEREJECT` (percent).
    pub nonce_reject: u8,
    /// `PEBBLE_AUTHZREUSE` (percent).
    pub authz_reuse: u8,
    /// Require External Account Binding with this (kid, base64url MAC key).
    pub eab: Option<(String, String)>,
    /// Run the ARI-capable Pebble built by `scripts/build-pebble.sh` instead of Debian's 2.4.0,
    /// which has no `renewalInfo`.
    pub ari: bool,
}

/// The Pebble release `scripts/build-pebble.sh` builds (first with RFC 9773 ARI and `replaces`).
pub const ARI_PEBBLE_VERSION: &str = "v2.10.3";

/// `(pebble, pebble-challtestsrv)` of the ARI-capable build, or a failure naming the script.
fn ari_binaries() -> (String, String) {
    let dir = std::env::var_os("FAIRWAY_PEBBLE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/fairway-pebble")
        })
        .join(ARI_PEBBLE_VERSION);
    let (pebble, dns) = (dir.join("pebble"), dir.join("pebble-challtestsrv"));
    assert!(
        pebble.exists() && dns.exists(),
        "{} not found: run scripts/build-pebble.sh (scripts/test.sh does) to build Pebble {ARI_PEBBLE_VERSION}",
        pebble.display()
    );
    (pebble.display().to_string(), dns.display().to_string())
}

impl PebbleOptions {
    pub fn new(http_port: u16, tls_port: u16) -> Self {
        Self {
            http_port,
            tls_port,
            validity_secs: None,
            nonce_reject: 5,
            authz_reuse: 0,
            eab: None,
            ari: false,
        }
    }
}

/// A running Pebble.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory_url: String,
    /// The management URL (`/roots/0`, `/intermediates/0`).
    pub management_url: String,
    /// PEM of the test CA that signed Pebble's listener certificate.
    pub listener_ca_pem: String,
    /// `listener_ca_pem` written to a file (for configs).
    pub listener_ca_path: PathBuf,
    /// The scratch directory (config, certificates, logs).
    pub dir: tempfile::TempDir,
    pebble: Child,
    dns: Child,
}

fn test_ca() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "fairway pebble test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

fn binary(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

impl Pebble {
    /// Start Pebble and its DNS server; returns once the directory answers.
    pub async fn start(opts: PebbleOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, leaf_pem, leaf_key) = test_ca();
        let ca_path = dir.path().join("test-ca.pem");
        std::fs::write(&ca_path, &ca_pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &leaf_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaf_key).unwrap();

        let (acme_port, mgmt_port) = (free_port(false), free_port(false));
        let (dns_port, dns_mgmt_port) = (free_port(true), free_port(false));
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": opts.http_port,
            "tlsPort": opts.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some((kid, key)) = &opts.eab {
            pebble["externalAccountBindingRequired"] = true.into();
            pebble["externalAccountMACKeys"] = serde_json::json!({ kid.as_str(): key.as_str() });
        }
        if let Some(v) = opts.validity_secs {
            pebble["certificateValidityPeriod"] = v.into();
        }
        let config = dir.path().join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let (pebble_bin, challtestsrv) = if opts.ari {
            ari_binaries()
        } else {
            (
                binary("FAIRWAY_PEBBLE", "/usr/bin/pebble"),
                binary(
                    "FAIRWAY_PEBBLE_CHALLTESTSRV",
                    "/usr/bin/pebble-challtestsrv",
                ),
            )
        };
        // challtestsrv >= 1.4 (Pebble >= 2.5) renamed -dns01 to -dnsserver and added DoH.
        let help = std::process::Command::new(&challtestsrv)
            .arg("-h")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        let dns_addr = format!("127.0.0.1:{dns_port}");
        let dns_flags: Vec<&str> = if help.contains("-dnsserver") {
            vec!["-dnsserver", &dns_addr, "-doh", ""]
        } else {
            vec!["-dns01", &dns_addr]
        };
        let dns = Command::new(&challtestsrv)
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(&dns_flags)
            .args(["-management", &format!("127.0.0.1:{dns_mgmt_port}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::from(log("challtestsrv.log")))
            .stderr(Stdio::from(log("challtestsrv.err")))
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble-challtestsrv (Debian package `pebble`)");
        let pebble = Command::new(&pebble_bin)
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", opts.nonce_reject.to_string())
            .env("PEBBLE_AUTHZREUSE", opts.authz_reuse.to_string())
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(Stdio::from(log("pebble.log")))
            .stderr(Stdio::from(log("pebble.err")))
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble (Debian package `pebble`)");
        let me = Self {
            directory_url: format!("https://127.0.0.1:{acme_port}/dir"),
            management_url: format!("https://127.0.0.1:{mgmt_port}"),
            listener_ca_pem: ca_pem,
            listener_ca_path: ca_path,
            dir,
            pebble,
            dns,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if me.get(&me.directory_url).await.is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", dns_port)).is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Pebble did not start within 15 s; log:\n{}",
                me.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    /// A client for Pebble's listeners (trusting only the test CA), with a 10 s call bound.
    pub fn http(&self) -> AcmeHttp {
        AcmeHttp::with_ca_bundle(
            self.listener_ca_pem.as_bytes(),
            Path::new("pebble test CA"),
            Duration::from_secs(10),
        )
        .unwrap()
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let req = http::Request::get(url)
            .header("user-agent", "fairway-tests")
            .body(BodyWrapper::default())
            .unwrap();
        let mut rsp = self.http().request(req).await.map_err(|e| e.to_string())?;
        if !rsp.parts.status.is_success() {
            return Err(format!("{url}: HTTP {}", rsp.parts.status));
        }
        let body = rsp.body.into_bytes().await.map_err(|e| e.to_string())?;
        Ok(body.to_vec())
    }

    /// The PEM root that signs issued chains (`/roots/0`; regenerated per Pebble start).
    pub async fn root_pem(&self) -> String {
        let url = format!("{}/roots/0", self.management_url);
        let bytes = self
            .get(&url)
            .await
            .unwrap_or_else(|e| panic!("Pebble stopped answering: {e}\n{}", self.logs()));
        String::from_utf8(bytes).unwrap()
    }

    /// Pebble's logs, for failure messages.
    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- pebble stdout (tail) ---\n{}\n--- pebble stderr ---\n{}",
            tail(read("pebble.log")),
            tail(read("pebble.err"))
        )
    }

    /// How many orders Pebble marked as replaced by an ARI `replaces` order (from its log).
    pub fn orders_replaced(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .matches("has been marked as replaced")
            .count()
    }

    /// How many orders Pebble created (from its log).
    pub fn orders_created(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .matches("Added order")
            .count()
    }

    /// Whether the Pebble process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.pebble.try_wait(), Ok(None)) && matches!(self.dns.try_wait(), Ok(None))
    }
}

/// Verify a DER chain (leaf first) for `name` against a single trusted root PEM, as a TLS client
/// trusting only that root would.
pub fn verify_chain(
    chain: &[rustls_pki_types::CertificateDer<'static>],
    root_pem: &str,
    name: &str,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let (leaf, rest) = chain.split_first().ok_or("empty chain")?;
    verifier
        .verify_server_cert(
            leaf,
            rest,
            &ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}
