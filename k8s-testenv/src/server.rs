//! Starting, using and stopping one etcd + kube-apiserver pair.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Error, KubeBinaries, certs};

/// How long etcd and then the apiserver may take to become ready on a busy CI box.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running control plane: etcd + kube-apiserver with token auth and RBAC, reachable at
/// `https://127.0.0.1:<port>`. Dropping it kills both processes and removes the data directory.
pub struct ApiServer {
    url: String,
    token: String,
    kubeconfig: serde_json::Value,
    kubeconfig_path: PathBuf,
    children: Mutex<Vec<Child>>,
    /// Dropping this lets the keeper thread (the children's parent, see the crate docs) exit.
    _keeper: mpsc::Sender<()>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish()
    }
}

struct Started {
    url: String,
    token: String,
    kubeconfig: serde_json::Value,
    kubeconfig_path: PathBuf,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl ApiServer {
    /// The control plane shared by every test of this test binary, started on first use.
    ///
    /// # Panics
    /// When it cannot be started (e.g. the binaries are missing): the message names the fix.
    pub fn shared() -> &'static ApiServer {
        static SHARED: OnceLock<Result<ApiServer, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            KubeBinaries::locate()
                .and_then(|bins| ApiServer::start(&bins))
                .map_err(|e| e.to_string())
        });
        match started {
            Ok(server) => server,
            Err(e) => panic!("k8s-testenv: cannot start the test kube-apiserver: {e}"),
        }
    }

    /// Starts a new control plane from `bins` and waits for `/readyz`. Blocking; may be called
    /// from inside a tokio runtime (the work happens on a dedicated thread).
    pub fn start(bins: &KubeBinaries) -> Result<ApiServer, Error> {
        let (result_tx, result_rx) = mpsc::channel();
        let (keep_tx, keep_rx) = mpsc::channel::<()>();
        let bins = bins.clone();
        std::thread::Builder::new()
            .name("k8s-testenv-keeper".into())
            .spawn(move || {
                let _ = result_tx.send(start_on_this_thread(&bins));
                // Park until the ApiServer is dropped (sender gone): the children's parent-death
                // signal is tied to this thread.
                let _ = keep_rx.recv();
            })
            .map_err(|e| Error::io("spawning the k8s-testenv keeper thread", e))?;
        let started = result_rx
            .recv()
            .map_err(|_| Error::Kube("k8s-testenv keeper thread died while starting".into()))??;
        Ok(ApiServer {
            url: started.url,
            token: started.token,
            kubeconfig: started.kubeconfig,
            kubeconfig_path: started.kubeconfig_path,
            children: Mutex::new(started.children),
            _keeper: keep_tx,
            dir: started.dir,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token of the test user (group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig file for this server (for binaries under test: `KUBECONFIG=<path>`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The kubeconfig as a [`Kubeconfig`] value.
    pub fn kubeconfig(&self) -> Result<Kubeconfig, Error> {
        serde_json::from_value(self.kubeconfig.clone())
            .map_err(|e| Error::Kube(format!("kubeconfig: {e}")))
    }

    /// A client configuration as the cluster admin.
    pub async fn config(&self) -> Result<Config, Error> {
        Config::from_custom_kubeconfig(self.kubeconfig()?, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Kube(format!("kubeconfig: {e}")))
    }

    /// A new admin client. Build one per test: a client belongs to the runtime that first used it.
    pub async fn client(&self) -> Result<Client, Error> {
        Client::try_from(self.config().await?).map_err(|e| Error::Kube(e.to_string()))
    }

    /// A client that impersonates `user` with `groups` (e.g. a ServiceAccount:
    /// `system:serviceaccount:<ns>:<name>` in `system:serviceaccounts`), so RBAC applies for real.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(
            groups
                .iter()
                .map(|g| g.to_string())
                .chain(["system:authenticated".into()])
                .collect(),
        );
        Client::try_from(config).map_err(|e| Error::Kube(e.to_string()))
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns its name. Tests
    /// sharing one server stay apart this way (there is no namespace controller to clean up).
    pub async fn fresh_namespace(&self, client: &Client, prefix: &str) -> Result<String, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| Error::Kube(format!("creating namespace {name}: {e}")))?;
        Ok(name)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|e| e.into_inner());
        // Apiserver first, then etcd.
        for child in children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding a free loopback port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("reading a bound port", e))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Spawns `bin args` so that it receives SIGKILL when this thread exits.
fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Child, Error> {
    let out =
        fs::File::create(log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io("duplicating a log file handle", e))?;
    Command::new("setpriv")
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| {
            Error::io(
                format!("starting {} (via setpriv, from util-linux)", bin.display()),
                e,
            )
        })
}

/// Fails early when `child` already exited.
fn check_alive(child: &mut Child, what: &'static str, log: &Path) -> Result<(), Error> {
    if let Ok(Some(status)) = child.try_wait() {
        return Err(Error::NotReady {
            what,
            reason: format!("exited with {status}"),
            log_tail: log_tail(log),
        });
    }
    Ok(())
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

const DIR_PREFIX: &str = "fairway-k8s-testenv-";
const OWNER_FILE: &str = "owner.pid";

/// Removes the directories of control planes whose test process is gone. A shared server lives
/// in a `static`, which is never dropped, so its directory (etcd preallocates ~120 MB of WAL)
/// outlives the test binary; the next run cleans it up.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let alive = match fs::read_to_string(path.join(OWNER_FILE)) {
            Ok(pid) => Path::new("/proc").join(pid.trim()).exists(),
            // Being created right now, or unreadable: leave it unless it is old.
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < Duration::from_secs(600)),
        };
        if !alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn start_on_this_thread(bins: &KubeBinaries) -> Result<Started, Error> {
    sweep_stale_dirs();
    let dir = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .map_err(|e| Error::io("creating the control plane directory", e))?;
    let d = dir.path();
    write_file(&d.join(OWNER_FILE), &std::process::id().to_string(), 0o644)?;
    let mut children = Vec::new();

    // etcd
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd_log = d.join("etcd.log");
    let etcd_args: Vec<String> = vec![
        "--name=default".into(),
        format!("--data-dir={}", d.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=default={peer_url}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ];
    children.push(spawn(&bins.etcd, &etcd_args, &etcd_log)?);
    let deadline = Instant::now() + START_TIMEOUT;
    while !etcd_healthy(client_port) {
        check_alive(&mut children[0], "etcd", &etcd_log)?;
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                what: "etcd",
                reason: "timeout".into(),
                log_tail: log_tail(&etcd_log),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // kube-apiserver
    let pki = certs::generate()?;
    let token = format!("fairway-testenv-{:016x}", {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        h.finish()
    });
    write_file(&d.join("ca.crt"), &pki.ca_pem, 0o644)?;
    write_file(&d.join("apiserver.crt"), &pki.serving_cert_pem, 0o644)?;
    write_file(&d.join("apiserver.key"), &pki.serving_key_pem, 0o600)?;
    write_file(&d.join("sa.key"), &pki.service_account_key_pem, 0o600)?;
    write_file(&d.join("sa.pub"), &pki.service_account_pub_pem, 0o644)?;
    write_file(
        &d.join("tokens.csv"),
        &format!("{token},fairway-admin,fairway-admin-uid,\"system:masters\"\n"),
        0o600,
    )?;
    let port = free_port()?;
    let url = format!("https://127.0.0.1:{port}");
    let p = |name: &str| d.join(name).display().to_string();
    let apiserver_args: Vec<String> = vec![
        format!("--etcd-servers={client_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", p("certs")),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--token-auth-file={}", p("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        "--disable-admission-plugins=ServiceAccount".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        format!("--service-account-issuer={url}/"),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--endpoint-reconciler-type=none".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        "--v=0".into(),
    ];
    let apiserver_log = d.join("kube-apiserver.log");
    children.push(spawn(&bins.apiserver, &apiserver_args, &apiserver_log)?);

    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": url,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem),
        }}],
        "users": [{"name": "fairway-admin", "user": {"token": token}}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "fairway-admin"}}],
        "current-context": "testenv",
    });
    let kubeconfig_path = d.join("kubeconfig");
    write_file(
        &kubeconfig_path,
        &serde_json::to_string_pretty(&kubeconfig).unwrap_or_default(),
        0o600,
    )?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("building a runtime for the readiness probe", e))?;
    let probe = runtime.block_on(async {
        let kc: Kubeconfig =
            serde_json::from_value(kubeconfig.clone()).map_err(|e| Error::Kube(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Kube(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| Error::Kube(e.to_string()))?;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline + START_TIMEOUT {
            check_alive(&mut children[1], "kube-apiserver", &apiserver_log)?;
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::Kube(e.to_string()))?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::NotReady {
            what: "kube-apiserver",
            reason: format!("/readyz: {last}"),
            log_tail: log_tail(&apiserver_log),
        })
    });
    if let Err(e) = probe {
        for child in children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(e);
    }
    Ok(Started {
        url,
        token,
        kubeconfig,
        kubeconfig_path,
        children,
        dir,
    })
}
