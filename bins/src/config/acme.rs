//! `[acme]` section: ACME resolvers, wanted certificates and the controller's listeners.
//!
//! Self-contained: [`load`] reads the shared TOML file and looks only at `[acme]`, the routers'
//! `rule` + `tls.cert_resolver` (wanted certificates are derived from `Host(...)` matchers the way
//! Traefik's `tls.certResolver` does: first host = main, the others = SANs) and `[tls].store` (the
//! default store path). Every other section is ignored. Relative paths are resolved against the
//! file's directory; errors name the file and the field path.
//!
//! ```toml
//! [acme]
//! store = "acme.json"                   # default: [tls].store
//! lock_file = "acme.json.leader"        # leader-election lock; default: <store>.leader (not <store>.lock: acme-store locks that)
//! challenge_address = "127.0.0.1:8089"  # HTTP-01 tokens, bound by the leader only; proxies forward to it
//! tls_challenge_address = "127.0.0.1:8444" # optional acme-tls/1 responder
//! admin_address = "127.0.0.1:9901"      # /metrics, /healthz
//! # admin_token_file = "admin.token"  # bearer token; required when admin_address is off loopback
//! max_in_flight = 4
//! budget = { orders = 10, window_secs = 10 }
//! backoff = { initial_secs = 60, cap_secs = 21600 }
//! renew_at = 0.6667                     # fraction of the certificate's lifetime
//!
//! [acme.resolvers.le]
//! directory = "https://acme-v02.api.letsencrypt.org/directory"
//! email = "ops@example.com"
//! ca_bundle = "pebble-root.pem"         # trust only these roots for the directory (test CAs)
//! challenge = "http-01"                 # or "tls-alpn-01"
//! key_type = "EC256"                    # EC256 | RSA2048 | RSA4096
//! eab = { kid = "kid-1", hmac = "base64url MAC key" }
//!
//! [[acme.certificates]]
//! resolver = "le"
//! main = "example.com"
//! sans = ["www.example.com"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use acme_issuer::{
    AcmeHttp, CertKeyType, ChallengeKind, Eab, IssuerOptions, ResolverSettings, WantedCert,
};
use serde::Deserialize;

/// An unusable `[acme]` configuration.
#[derive(Debug, thiserror::Error)]
#[error("{}: {field}: {reason}", path.display())]
pub struct AcmeConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// Dotted field path, e.g. `acme.resolvers.le.directory`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// `[acme]` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The `acme.json` store (default: `[tls].store`).
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// Lock file for leader election (default: `<store>.leader`; `<store>.lock` is the store's own write lock).
    #[serde(default)]
    pub lock_file: Option<PathBuf>,
    /// How often a standby retries the leader lock, in milliseconds (default 1000).
    #[serde(default)]
    pub leader_retry_ms: Option<u64>,
    /// HTTP-01 challenge listener.
    #[serde(default)]
    pub challenge_address: Option<SocketAddr>,
    /// TLS-ALPN-01 (`acme-tls/1`) responder.
    #[serde(default)]
    pub tls_challenge_address: Option<SocketAddr>,
    /// Admin listener (`/metrics`, `/healthz`).
    #[serde(default)]
    pub admin_address: Option<SocketAddr>,
    /// File holding the bearer token every admin request but `/healthz`, `/readyz` and the
    /// static page must send (as the proxy's `[admin] token_file`). Required when
    /// `admin_address` is not on loopback; relative to the config file. Read at start.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Orders in flight at once (default 4).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// New-order budget per resolver.
    #[serde(default)]
    pub budget: Option<BudgetSection>,
    /// Per-certificate failure backoff (default 1 minute doubling to 6 hours).
    #[serde(default)]
    pub backoff: Option<BackoffSection>,
    /// Renew at this fraction of the lifetime (default 2/3).
    #[serde(default)]
    pub renew_at: Option<f64>,
    /// Bound of one ACME HTTP call in seconds (default 30).
    #[serde(default)]
    pub call_timeout_secs: Option<u64>,
    /// `[acme.resolvers.<name>]`.
    #[serde(default)]
    pub resolvers: BTreeMap<String, ResolverSection>,
    /// `[[acme.certificates]]`.
    #[serde(default)]
    pub certificates: Vec<CertificateSection>,
}

/// `budget = { orders, window_secs }`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// New orders per window.
    pub orders: usize,
    /// Window length in seconds.
    pub window_secs: u64,
}

/// `backoff = { initial_secs, cap_secs }`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackoffSection {
    /// Delay after the first failure, in seconds.
    pub initial_secs: u64,
    /// Largest delay, in seconds.
    pub cap_secs: u64,
}

/// `[acme.resolvers.<name>]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResolverSection {
    /// ACME directory URL.
    pub directory: String,
    /// Account contact e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// PEM bundle of roots trusted for the directory instead of the platform's (test CAs).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// `http-01` (default) or `tls-alpn-01`.
    #[serde(default)]
    pub challenge: Option<String>,
    /// Default key type of this resolver's certificates.
    #[serde(default)]
    pub key_type: Option<String>,
    /// External Account Binding.
    #[serde(default)]
    pub eab: Option<EabSection>,
}

/// `eab = { kid, hmac }`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EabSection {
    /// Key identifier.
    pub kid: String,
    /// base64url MAC key.
    pub hmac: String,
}

impl std::fmt::Debug for EabSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EabSection")
            .field("kid", &self.kid)
            .field("hmac", &"<redacted>")
            .finish()
    }
}

/// `[[acme.certificates]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// Resolver name.
    pub resolver: String,
    /// Main domain.
    pub main: String,
    /// Other names.
    #[serde(default)]
    pub sans: Vec<String>,
    /// Key type (default: the resolver's).
    #[serde(default)]
    pub key_type: Option<String>,
}

/// The parts of the whole file this module reads.
#[derive(Debug, Default, Deserialize)]
struct FileView {
    #[serde(default)]
    acme: Option<AcmeSection>,
    #[serde(default)]
    routers: BTreeMap<String, RouterView>,
    #[serde(default)]
    tls: Option<TlsView>,
    /// Only its presence matters here (`config::kubernetes` parses it).
    #[serde(default)]
    kubernetes: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RouterView {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    tls: Option<RouterTlsView>,
}

#[derive(Debug, Deserialize)]
struct RouterTlsView {
    #[serde(default)]
    cert_resolver: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TlsView {
    #[serde(default)]
    store: Option<PathBuf>,
}

/// The controller's resolved ACME configuration.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The configuration file it came from.
    pub path: PathBuf,
    /// The section as written (paths resolved).
    pub section: AcmeSection,
    /// The `acme.json` store (empty in Kubernetes mode without `[acme].store`/`[tls].store`).
    pub store: PathBuf,
    /// Lock file for leader election (unused in Kubernetes mode).
    pub lock_file: PathBuf,
    /// The file has a `[kubernetes]` section: `fairway-controller` keeps its state in Secrets
    /// and elects with a Lease, so no store file is required.
    pub kubernetes: bool,
    /// Wanted certificates: explicit ones, then those derived from routers.
    pub wanted: Vec<WantedCert>,
}

/// Read `[acme]` (and what it needs of `[routers]` and `[tls]`) from `path`.
pub fn load(path: &Path) -> Result<AcmeConfig, AcmeConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| AcmeConfigError {
        path: path.to_owned(),
        field: "(file)".into(),
        reason: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parse configuration `text` read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<AcmeConfig, AcmeConfigError> {
    let err = |field: &str, reason: String| AcmeConfigError {
        path: path.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let view: FileView = toml::from_str(text).map_err(|e| {
        let field = if e.message().contains("acme") || e.to_string().contains("[acme") {
            "acme"
        } else {
            "(toml)"
        };
        err(field, e.to_string().replace('\n', " "))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut section = view
        .acme
        .ok_or_else(|| err("acme", "missing [acme] section".into()))?;
    if let Some(addr) = section.admin_address {
        let has_token = section.admin_token_file.is_some();
        if let Some(reason) = ingress_proxy::dashboard::missing_token_reason(addr, has_token) {
            return Err(err("acme.admin_token_file", reason));
        }
    }
    section.admin_token_file = section.admin_token_file.as_ref().map(|p| base.join(p));
    let kubernetes = view.kubernetes.is_some();
    let store = match section
        .store
        .clone()
        .or_else(|| view.tls.and_then(|t| t.store))
    {
        Some(store) => base.join(store),
        None if kubernetes => PathBuf::new(),
        None => {
            return Err(err(
                "acme.store",
                "no store: set [acme].store or [tls].store".into(),
            ));
        }
    };
    if !store.as_os_str().is_empty() {
        section.store = Some(store.clone());
    }
    let lock_file = section
        .lock_file
        .as_ref()
        .map(|p| base.join(p))
        .unwrap_or_else(|| PathBuf::from(format!("{}.leader", store.display())));
    if !store.as_os_str().is_empty()
        && lock_file.as_os_str() == format!("{}.lock", store.display()).as_str()
    {
        return Err(err(
            "acme.lock_file",
            "collides with the store's own write lock (<store>.lock); pick another name".into(),
        ));
    }
    for (name, r) in &mut section.resolvers {
        let field = |f: &str| format!("acme.resolvers.{name}.{f}");
        if !(r.directory.starts_with("https://") || r.directory.starts_with("http://")) {
            return Err(err(
                &field("directory"),
                format!("not a URL: `{}`", r.directory),
            ));
        }
        if let Some(c) = &r.challenge {
            let kind: ChallengeKind = c.parse().map_err(|e| err(&field("challenge"), e))?;
            if kind == ChallengeKind::Dns01 {
                return Err(err(
                    &field("challenge"),
                    "dns-01 needs a DNS provider solver; the controller has none".into(),
                ));
            }
        }
        if let Some(k) = &r.key_type {
            k.parse::<CertKeyType>()
                .map_err(|e| err(&field("key_type"), e))?;
        }
        if let Some(eab) = &r.eab {
            Eab::from_base64url(&eab.kid, &eab.hmac).map_err(|e| err(&field("eab.hmac"), e))?;
        }
        if let Some(bundle) = &mut r.ca_bundle {
            *bundle = base.join(&*bundle);
        }
    }
    if let Some(f) = section.renew_at
        && !(0.05..=0.95).contains(&f)
    {
        return Err(err("acme.renew_at", format!("{f} is outside 0.05..=0.95")));
    }
    let mut wanted = Vec::new();
    for (i, c) in section.certificates.iter().enumerate() {
        let field = |f: &str| format!("acme.certificates[{i}].{f}");
        if !section.resolvers.contains_key(&c.resolver) {
            return Err(err(
                &field("resolver"),
                format!("unknown resolver `{}`", c.resolver),
            ));
        }
        let key_type = match &c.key_type {
            Some(k) => Some(k.parse().map_err(|e| err(&field("key_type"), e))?),
            None => None,
        };
        let mut domains = vec![c.main.to_ascii_lowercase()];
        domains.extend(c.sans.iter().map(|s| s.to_ascii_lowercase()));
        push_wanted(&mut wanted, c.resolver.clone(), domains, key_type);
    }
    for (name, router) in &view.routers {
        let Some(resolver) = router.tls.as_ref().and_then(|t| t.cert_resolver.clone()) else {
            continue;
        };
        let field = format!("routers.{name}.tls.cert_resolver");
        if !section.resolvers.contains_key(&resolver) {
            return Err(err(&field, format!("unknown resolver `{resolver}`")));
        }
        let rule = router.rule.as_deref().unwrap_or_default();
        let hosts = rule_hosts(rule).map_err(|e| err(&format!("routers.{name}.rule"), e))?;
        if hosts.is_empty() {
            tracing::warn!(router = %name, "router names a cert_resolver but its rule has no Host(...)");
            continue;
        }
        push_wanted(&mut wanted, resolver, hosts, None);
    }
    Ok(AcmeConfig {
        path: path.to_owned(),
        section,
        store,
        lock_file,
        kubernetes,
        wanted,
    })
}

fn push_wanted(
    wanted: &mut Vec<WantedCert>,
    resolver: String,
    domains: Vec<String>,
    key_type: Option<CertKeyType>,
) {
    if !acme_issuer::issuer::is_wanted(wanted, &resolver, &domains) {
        wanted.push(WantedCert {
            resolver,
            domains,
            key_type,
        });
    }
}

/// The literal hosts of a Traefik rule's `Host(...)` matchers, lowercased, in order, without
/// duplicates and without the catch-all `*`.
pub fn rule_hosts(rule: &str) -> Result<Vec<String>, String> {
    let parsed = ingress_router::rule::Rule::parse(rule).map_err(|e| e.to_string())?;
    let mut hosts: Vec<String> = Vec::new();
    parsed.for_each_matcher(&mut |m| {
        if let ingress_router::rule::Matcher::Host(h) = m {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            if h != "*" && !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    });
    Ok(hosts)
}

impl AcmeConfig {
    fn err(&self, field: String, reason: String) -> AcmeConfigError {
        AcmeConfigError {
            path: self.path.clone(),
            field,
            reason,
        }
    }

    /// Issuer tunables from the section.
    pub fn options(&self) -> IssuerOptions {
        let mut o = IssuerOptions::default();
        if let Some(n) = self.section.max_in_flight {
            o.max_in_flight = n.max(1);
        }
        if let Some(b) = self.section.budget {
            o.budget_limit = b.orders.max(1);
            o.budget_window = Duration::from_secs(b.window_secs);
        }
        if let Some(f) = self.section.renew_at {
            o.renewal.renew_at_fraction = f;
        }
        if let Some(b) = self.section.backoff {
            o.backoff.initial = Duration::from_secs(b.initial_secs.max(1));
            o.backoff.cap = Duration::from_secs(b.cap_secs.max(b.initial_secs).max(1));
        }
        o
    }

    /// Build the resolvers (reads CA bundles).
    pub fn resolvers(&self) -> Result<Vec<ResolverSettings>, AcmeConfigError> {
        let timeout = Duration::from_secs(self.section.call_timeout_secs.unwrap_or(30).max(1));
        let mut out = Vec::new();
        for (name, r) in &self.section.resolvers {
            let field = |f: &str| format!("acme.resolvers.{name}.{f}");
            let http = match &r.ca_bundle {
                Some(bundle) => {
                    let pem = std::fs::read(bundle).map_err(|e| {
                        self.err(field("ca_bundle"), format!("{}: {e}", bundle.display()))
                    })?;
                    AcmeHttp::with_ca_bundle(&pem, bundle, timeout)
                }
                None => AcmeHttp::with_platform_roots(timeout),
            }
            .map_err(|e| self.err(field("ca_bundle"), e.to_string()))?;
            let challenge = match &r.challenge {
                Some(c) => c.parse().map_err(|e| self.err(field("challenge"), e))?,
                None => ChallengeKind::Http01,
            };
            let key_type = match &r.key_type {
                Some(k) => k.parse().map_err(|e| self.err(field("key_type"), e))?,
                None => CertKeyType::EcdsaP256,
            };
            let eab = match &r.eab {
                Some(e) => Some(
                    Eab::from_base64url(&e.kid, &e.hmac)
                        .map_err(|reason| self.err(field("eab.hmac"), reason))?,
                ),
                None => None,
            };
            out.push(ResolverSettings {
                name: name.clone(),
                directory_url: r.directory.clone(),
                email: r.email.clone(),
                http,
                eab,
                challenge,
                key_type,
            });
        }
        Ok(out)
    }

    /// The leader-lock retry interval.
    pub fn leader_retry(&self) -> Duration {
        Duration::from_millis(self.section.leader_retry_ms.unwrap_or(1000).max(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[entrypoints.web]
address = "127.0.0.1:8080"

[routers.app]
rule = "Host(`App.example.test`) && PathPrefix(`/`) || Host(`www.example.test`)"
service = "app"
tls = { cert_resolver = "le" }

[routers.plain]
rule = "Host(`plain.example.test`)"
service = "app"

[services.app]
load_balancer = "round_robin"

[tls]
store = "data/acme.json"

[speaker]
whatever = 1

[acme]
challenge_address = "127.0.0.1:8089"
budget = { orders = 5, window_secs = 20 }

[acme.resolvers.le]
directory = "https://127.0.0.1:14000/dir"
email = "ops@example.test"
ca_bundle = "ca.pem"
key_type = "RSA2048"
eab = { kid = "k", hmac = "c2VjcmV0" }

[[acme.certificates]]
resolver = "le"
main = "explicit.example.test"
sans = ["alt.example.test"]
key_type = "EC256"

[[acme.certificates]]
resolver = "le"
main = "www.example.test"
sans = ["app.example.test"]
"#;

    #[test]
    fn reads_acme_and_derives_router_certificates() {
        let c = parse(Path::new("/etc/fairway/fairway.toml"), FILE).unwrap();
        assert_eq!(c.store, Path::new("/etc/fairway/data/acme.json"));
        assert_eq!(c.lock_file, Path::new("/etc/fairway/data/acme.json.leader"));
        assert_eq!(
            c.section.resolvers["le"].ca_bundle.as_deref(),
            Some(Path::new("/etc/fairway/ca.pem"))
        );
        let names: Vec<Vec<String>> = c.wanted.iter().map(|w| w.domains.clone()).collect();
        // The router's certificate has the same name set as the second explicit one: deduped.
        assert_eq!(
            names,
            vec![
                vec![
                    "explicit.example.test".to_owned(),
                    "alt.example.test".to_owned()
                ],
                vec!["www.example.test".to_owned(), "app.example.test".to_owned()],
            ]
        );
        assert_eq!(c.wanted[0].key_type, Some(CertKeyType::EcdsaP256));
        let o = c.options();
        assert_eq!(
            (o.budget_limit, o.budget_window),
            (5, Duration::from_secs(20))
        );
    }

    #[test]
    fn errors_name_file_and_field() {
        let bad = FILE.replace(
            "resolver = \"le\"\nmain = \"explicit",
            "resolver = \"nope\"\nmain = \"explicit",
        );
        let e = parse(Path::new("f.toml"), &bad).unwrap_err().to_string();
        assert!(
            e.starts_with("f.toml: acme.certificates[0].resolver: unknown resolver `nope`"),
            "{e}"
        );

        let bad = FILE.replace("key_type = \"RSA2048\"", "key_type = \"EC999\"");
        let e = parse(Path::new("f.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("acme.resolvers.le.key_type"), "{e}");

        let bad = FILE.replace(
            "tls = { cert_resolver = \"le\" }",
            "tls = { cert_resolver = \"zz\" }",
        );
        let e = parse(Path::new("f.toml"), &bad).unwrap_err().to_string();
        assert!(
            e.contains("routers.app.tls.cert_resolver: unknown resolver `zz`"),
            "{e}"
        );

        let bad = FILE.replace("challenge_address", "challenge_adress");
        let e = parse(Path::new("f.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("challenge_adress"), "{e}");

        let bad = FILE.replace("[acme]\n", "[acme]\nlock_file = \"data/acme.json.lock\"\n");
        let e = parse(Path::new("f.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("acme.lock_file: collides"), "{e}");

        let bad = FILE.replace("[acme]\n", "[acme]\nadmin_address = \"0.0.0.0:9901\"\n");
        let e = parse(Path::new("f.toml"), &bad).unwrap_err().to_string();
        assert!(
            e.starts_with("f.toml: acme.admin_token_file: the admin listener 0.0.0.0:9901"),
            "{e}"
        );
        let ok = bad.replace(
            "admin_address = \"0.0.0.0:9901\"\n",
            "admin_address = \"0.0.0.0:9901\"\nadmin_token_file = \"token\"\n",
        );
        let c = parse(Path::new("conf/f.toml"), &ok).unwrap();
        assert_eq!(
            c.section.admin_token_file.as_deref(),
            Some(Path::new("conf/token"))
        );

        let e = parse(Path::new("f.toml"), "[tls]\nstore = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "f.toml: acme: missing [acme] section");

        let e = parse(Path::new("f.toml"), "[acme]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: acme.store: no store"), "{e}");
    }

    #[test]
    fn kubernetes_mode_needs_no_store_file() {
        let c = parse(
            Path::new("f.toml"),
            "[kubernetes]\n[acme]\n[acme.resolvers.le]\ndirectory = \"https://ca.test/dir\"\n",
        )
        .unwrap();
        assert!(c.kubernetes);
        assert_eq!(c.store, Path::new(""));
        assert_eq!(c.section.store, None);
        assert!(!parse(Path::new("f.toml"), FILE).unwrap().kubernetes);
    }

    #[test]
    fn rule_hosts_skip_catch_all_and_duplicates() {
        assert_eq!(
            rule_hosts(
                "Host(`a.test`) || (Host(`B.test.`) && Path(`/`)) || Host(`a.test`) || Host(`*`)"
            )
            .unwrap(),
            vec!["a.test".to_owned(), "b.test".to_owned()]
        );
        assert!(rule_hosts("Host(`a.test`").is_err());
    }
}
