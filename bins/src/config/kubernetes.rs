//! `[kubernetes]`: Kubernetes mode.
//!
//! - `fairway-proxy` also routes from Ingresses of our IngressClass (next to the file's
//!   `[routers]`) and serves the certificates of the TLS Secrets they name.
//! - `fairway-controller` elects its leader with a Lease (`[kubernetes.lease]`), keeps the ACME
//!   account and certificates in Secrets of the Lease's namespace, issues the TLS hosts of
//!   Ingresses annotated `fairway.dev/acme-resolver`, and allocates LoadBalancer addresses from
//!   `[[kubernetes.load_balancer.pools]]`. The proxy ignores those two tables.
//!
//! ```toml
//! [kubernetes]
//! kubeconfig = "/etc/fairway/kubeconfig"   # absent: in-cluster service account
//! controller = "fairway.dev/ingress-controller"
//! namespaces = ["web", "shop"]              # absent/empty: every namespace (cluster-wide RBAC)
//! default_class = false                     # also take class-less Ingresses
//! status_ips = ["198.51.100.10"]            # written to Ingress status.loadBalancer
//!
//! [kubernetes.lease]                        # fairway-controller
//! namespace = "fairway"        # Lease + certificate Secrets; default: $POD_NAMESPACE, then the pod's
//!                              # service-account namespace file
//! name = "fairway-controller"
//! identity = "controller-0"    # default: $POD_NAME, then the host name
//! duration_secs = 15           # client-go's defaults
//! renew_deadline_ms = 10000
//! retry_period_ms = 2000
//! accounts_secret = "fairway-acme-accounts"
//!
//! [kubernetes.load_balancer]                # fairway-controller; no pools: no allocation
//! class = "fairway.dev/lb"                  # spec.loadBalancerClass we implement
//! default_class = false                     # also take class-less LoadBalancer Services
//! [[kubernetes.load_balancer.pools]]
//! name = "public"
//! addresses = ["198.51.100.0/28", "198.51.100.40-198.51.100.49"]
//! auto_assign = true
//! ```

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The `[kubernetes]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    /// A kubeconfig file (its current context); absent: the in-cluster service account.
    /// A relative path is taken from the working directory.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Our IngressClass controller name: Ingresses of classes with this `spec.controller` are ours.
    #[serde(default = "default_controller")]
    pub controller: String,
    /// Watch these namespaces only (empty: all namespaces).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Take Ingresses without a class even if none of our IngressClasses is marked default.
    #[serde(default)]
    pub default_class: bool,
    /// Addresses written to our Ingresses' `status.loadBalancer.ingress` by every proxy
    /// (empty: none). Prefer `publish_service`.
    #[serde(default)]
    pub status_ips: Vec<IpAddr>,
    /// `"namespace/name"` of the proxies' LoadBalancer Service (ingress-nginx's
    /// `--publish-service`): the controller's leader writes that Service's
    /// `status.loadBalancer` addresses into our Ingresses' status. Controller only; do not set
    /// `status_ips` too, or the proxies and the controller would overwrite each other.
    #[serde(default)]
    pub publish_service: Option<String>,
    /// `[kubernetes.lease]`: the controller's leader election and Secret namespace.
    #[serde(default)]
    pub lease: LeaseSection,
    /// `[kubernetes.load_balancer]`: the controller's LoadBalancer address allocation.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSection>,
}

/// `[kubernetes.lease]` (controller only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSection {
    /// Namespace of the Lease and of the Secrets (certificates, ACME account). Absent:
    /// `$POD_NAMESPACE`, then the in-cluster service-account namespace file.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the Lease.
    #[serde(default = "default_lease_name")]
    pub name: String,
    /// `holderIdentity`; unique per replica. Absent: `$POD_NAME`, then the host name.
    #[serde(default)]
    pub identity: Option<String>,
    /// How long followers wait for a renewal before taking over (whole seconds: the Lease
    /// stores `leaseDurationSeconds`).
    #[serde(default = "default_duration_secs")]
    pub duration_secs: u64,
    /// How long the leader keeps leading without a successful renewal.
    #[serde(default = "default_renew_deadline_ms")]
    pub renew_deadline_ms: u64,
    /// How often every replica tries to acquire or renew.
    #[serde(default = "default_retry_period_ms")]
    pub retry_period_ms: u64,
    /// The Opaque Secret holding the ACME accounts.
    #[serde(default = "default_accounts_secret")]
    pub accounts_secret: String,
}

impl Default for LeaseSection {
    fn default() -> Self {
        LeaseSection {
            namespace: None,
            name: default_lease_name(),
            identity: None,
            duration_secs: default_duration_secs(),
            renew_deadline_ms: default_renew_deadline_ms(),
            retry_period_ms: default_retry_period_ms(),
            accounts_secret: default_accounts_secret(),
        }
    }
}

fn default_lease_name() -> String {
    "fairway-controller".into()
}
fn default_duration_secs() -> u64 {
    15
}
fn default_renew_deadline_ms() -> u64 {
    10_000
}
fn default_retry_period_ms() -> u64 {
    2_000
}
fn default_accounts_secret() -> String {
    k8s_glue::SecretStoreConfig::new("").accounts_secret
}

/// `[kubernetes.load_balancer]` (controller only): MetalLB-like address pools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSection {
    /// The `spec.loadBalancerClass` we implement.
    #[serde(default = "default_lb_class")]
    pub class: String,
    /// Also take LoadBalancer Services without a class (we are the cluster's default).
    #[serde(default)]
    pub default_class: bool,
    /// `[[kubernetes.load_balancer.pools]]`, tried in order.
    #[serde(default)]
    pub pools: Vec<PoolSection>,
}

fn default_lb_class() -> String {
    k8s_glue::lb::DEFAULT_LB_CLASS.into()
}

/// One `[[kubernetes.load_balancer.pools]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Name (the `metallb.io/address-pool` annotation selects it).
    pub name: String,
    /// CIDRs (`198.51.100.0/28`), inclusive ranges (`198.51.100.40-198.51.100.49`) or single
    /// addresses.
    pub addresses: Vec<String>,
    /// Whether Services that ask for nothing in particular get addresses from it.
    #[serde(default = "default_true")]
    pub auto_assign: bool,
}

fn default_true() -> bool {
    true
}

/// The message of a `k8s_glue` configuration error, without its own field prefix (the caller
/// names the field as written in the file).
fn config_message(e: k8s_glue::Error) -> String {
    match e {
        k8s_glue::Error::Config { message, .. } => message,
        other => other.to_string(),
    }
}

/// `[kubernetes]` alone, read from a whole configuration file (other sections are ignored).
/// `Ok(None)` when absent; errors name `path` and the field.
pub fn section_of(path: &std::path::Path, text: &str) -> Result<Option<KubernetesSection>, String> {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        kubernetes: Option<KubernetesSection>,
    }
    toml::from_str::<View>(text)
        .map(|v| v.kubernetes)
        .map_err(|e| {
            let line = e
                .span()
                .map(|span| format!(" (line {})", text[..span.start].matches('\n').count() + 1))
                .unwrap_or_default();
            format!(
                "{}: kubernetes{line}: {}",
                path.display(),
                e.message().replace('\n', " ")
            )
        })
}

/// What the controller's environment supplies when the file does not (binaries read it; the
/// resolution itself is pure and tested).
#[derive(Debug, Clone, Default)]
pub struct PodEnv {
    /// `$POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// The service-account namespace file's content, if readable.
    pub namespace_file: Option<String>,
    /// `$POD_NAME`.
    pub pod_name: Option<String>,
    /// The host name.
    pub hostname: Option<String>,
}

/// The in-cluster service-account namespace file.
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl PodEnv {
    /// Reads `$POD_NAMESPACE`, `$POD_NAME`, [`NAMESPACE_FILE`] and the host name.
    pub fn read() -> Self {
        let nonempty = |s: String| {
            let t = s.trim().to_owned();
            (!t.is_empty()).then_some(t)
        };
        PodEnv {
            pod_namespace: std::env::var("POD_NAMESPACE").ok().and_then(nonempty),
            namespace_file: std::fs::read_to_string(NAMESPACE_FILE)
                .ok()
                .and_then(nonempty),
            pod_name: std::env::var("POD_NAME").ok().and_then(nonempty),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .ok()
                .and_then(nonempty)
                .or_else(|| std::env::var("HOSTNAME").ok().and_then(nonempty)),
        }
    }
}

/// The controller's resolved Kubernetes settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Lease name, namespace, identity and timings.
    pub lease: k8s_glue::LeaseConfig,
    /// Where certificates and accounts are stored (the Lease's namespace).
    pub secrets: k8s_glue::SecretStoreConfig,
    /// LoadBalancer allocation, when pools are configured.
    pub load_balancer: Option<k8s_glue::LbConfig>,
    /// Ingress status publication, when `publish_service` is set.
    pub ingress_status: Option<k8s_glue::controller::IngressStatusConfig>,
}

/// An unusable `[kubernetes]` controller setting; names the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    /// Dotted field path, e.g. `kubernetes.lease.namespace`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn default_controller() -> String {
    k8s_glue::routes::CONTROLLER_NAME.to_owned()
}

/// The API server cannot be reached with the configured credentials.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// The kubeconfig file is unreadable or invalid.
    #[error("kubernetes.kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No kubeconfig given and not running in a pod.
    #[error("kubernetes: no kubeconfig and no in-cluster service account: {0}")]
    InCluster(String),
    /// The client cannot be built (TLS settings, proxy URL…).
    #[error("kubernetes: cannot build the API client: {0}")]
    Client(String),
}

impl KubernetesSection {
    /// The controller's Lease, Secret store and LoadBalancer settings, filling what the file
    /// leaves out from `env`.
    pub fn controller_settings(&self, env: &PodEnv) -> Result<ControllerSettings, SettingsError> {
        let err = |field: &str, reason: String| SettingsError {
            field: format!("kubernetes.{field}"),
            reason,
        };
        let l = &self.lease;
        let namespace = l
            .namespace
            .clone()
            .or_else(|| env.pod_namespace.clone())
            .or_else(|| env.namespace_file.clone())
            .ok_or_else(|| {
                err(
                    "lease.namespace",
                    format!("not set, no $POD_NAMESPACE and no {NAMESPACE_FILE} (not in a pod?)"),
                )
            })?;
        let identity = l
            .identity
            .clone()
            .or_else(|| env.pod_name.clone())
            .or_else(|| env.hostname.clone())
            .ok_or_else(|| {
                err(
                    "lease.identity",
                    "not set, no $POD_NAME and no host name".into(),
                )
            })?;
        let mut lease = k8s_glue::LeaseConfig::new(namespace.clone(), l.name.clone(), identity);
        lease.lease_duration = std::time::Duration::from_secs(l.duration_secs);
        lease.renew_deadline = std::time::Duration::from_millis(l.renew_deadline_ms);
        lease.retry_period = std::time::Duration::from_millis(l.retry_period_ms);
        lease.validate().map_err(|e| {
            err(
                "lease",
                format!(
                    "{} (duration_secs, renew_deadline_ms, retry_period_ms)",
                    config_message(e)
                ),
            )
        })?;
        let mut secrets = k8s_glue::SecretStoreConfig::new(namespace);
        secrets.accounts_secret = l.accounts_secret.clone();
        let load_balancer = match &self.load_balancer {
            Some(lb) if !lb.pools.is_empty() => {
                let mut pools = Vec::new();
                for (i, p) in lb.pools.iter().enumerate() {
                    pools.push(
                        k8s_glue::Pool::from_addresses(&p.name, &p.addresses, p.auto_assign)
                            .map_err(|reason| {
                                err(&format!("load_balancer.pools[{i}].addresses"), reason)
                            })?,
                    );
                }
                let config = k8s_glue::LbConfig {
                    class: lb.class.clone(),
                    default_class: lb.default_class,
                    pools,
                };
                config
                    .validate()
                    .map_err(|e| err("load_balancer.pools", config_message(e)))?;
                Some(config)
            }
            _ => None,
        };
        let ingress_status = match &self.publish_service {
            None => None,
            Some(full) => {
                let (namespace, name) = full
                    .split_once('/')
                    .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
                    .ok_or_else(|| {
                        err(
                            "publish_service",
                            format!("`{full}`: expected \"namespace/name\" of a Service"),
                        )
                    })?;
                if !self.status_ips.is_empty() {
                    return Err(err(
                        "publish_service",
                        "set together with status_ips: the proxies would overwrite the published status".into(),
                    ));
                }
                Some(k8s_glue::controller::IngressStatusConfig {
                    controller: self.controller.clone(),
                    default_class: self.default_class,
                    publish_service: Some((namespace.to_owned(), name.to_owned())),
                    static_ips: Vec::new(),
                    debounce: std::time::Duration::from_millis(100),
                })
            }
        };
        Ok(ControllerSettings {
            lease,
            secrets,
            load_balancer,
            ingress_status,
        })
    }

    /// What each Ingress watcher needs (the namespaces are [`KubernetesSection::namespaces`]).
    pub fn watch_config(&self) -> k8s_glue::WatchConfig {
        k8s_glue::WatchConfig {
            controller: self.controller.clone(),
            status_ips: self.status_ips.clone(),
            default_class: self.default_class,
            ..Default::default()
        }
    }

    /// An API client from the kubeconfig, or the in-cluster environment (binaries only: it
    /// reads `KUBERNETES_SERVICE_HOST` and the service-account files).
    pub async fn client(&self) -> Result<kube::Client, KubernetesError> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let bad = |message: String| KubernetesError::Kubeconfig {
                    path: path.clone(),
                    message,
                };
                let kc =
                    kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| bad(e.to_string()))?
            }
            None => {
                kube::Config::incluster().map_err(|e| KubernetesError::InCluster(e.to_string()))?
            }
        };
        kube::Client::try_from(config).map_err(|e| KubernetesError::Client(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_fields() {
        let s: KubernetesSection = toml::from_str("namespaces = [\"web\"]").unwrap();
        assert_eq!(s.controller, k8s_glue::routes::CONTROLLER_NAME);
        assert_eq!(s.kubeconfig, None);
        let w = s.watch_config();
        assert_eq!(s.namespaces, ["web"]);
        assert_eq!(w.namespace, None);
        assert!(!w.default_class);
        let s: KubernetesSection = toml::from_str(
            "kubeconfig = \"k.yaml\"\ndefault_class = true\nstatus_ips = [\"198.51.100.10\"]",
        )
        .unwrap();
        assert!(s.watch_config().default_class);
        assert_eq!(s.status_ips, ["198.51.100.10".parse::<IpAddr>().unwrap()]);
        assert!(toml::from_str::<KubernetesSection>("namespace = \"web\"").is_err());
    }

    #[test]
    fn controller_settings_from_file_then_environment() {
        let s: KubernetesSection = toml::from_str(
            r#"
[lease]
duration_secs = 3
renew_deadline_ms = 2000
retry_period_ms = 500
[load_balancer]
[[load_balancer.pools]]
name = "public"
addresses = ["198.51.100.0/28", "198.51.100.40-198.51.100.49"]
"#,
        )
        .unwrap();
        let env = PodEnv {
            namespace_file: Some("fairway".into()),
            hostname: Some("node-1".into()),
            ..Default::default()
        };
        let c = s.controller_settings(&env).unwrap();
        assert_eq!(
            (c.lease.namespace.as_str(), c.lease.name.as_str()),
            ("fairway", "fairway-controller")
        );
        assert_eq!(c.lease.identity, "node-1");
        assert_eq!(c.lease.retry_period, std::time::Duration::from_millis(500));
        assert_eq!(c.secrets.namespace, "fairway");
        let lb = c.load_balancer.unwrap();
        assert_eq!(lb.class, k8s_glue::lb::DEFAULT_LB_CLASS);
        assert!(lb.pools[0].auto_assign);
        assert_eq!(lb.pools[0].ranges.len(), 1);

        // $POD_NAMESPACE / $POD_NAME win over the file and the host name; the file wins over all.
        let env = PodEnv {
            pod_namespace: Some("ops".into()),
            pod_name: Some("controller-7".into()),
            ..env
        };
        let c = s.controller_settings(&env).unwrap();
        assert_eq!(
            (c.lease.namespace.as_str(), c.lease.identity.as_str()),
            ("ops", "controller-7")
        );
        let s: KubernetesSection =
            toml::from_str("[lease]\nnamespace = \"x\"\nidentity = \"me\"").unwrap();
        let c = s.controller_settings(&env).unwrap();
        assert_eq!(
            (c.lease.namespace.as_str(), c.lease.identity.as_str()),
            ("x", "me")
        );
        assert!(c.load_balancer.is_none(), "no pools: no allocation");
        assert!(
            c.ingress_status.is_none(),
            "no publish_service: no status writes"
        );
        let s: KubernetesSection = toml::from_str(
            "publish_service = \"fairway/fairway-proxy\"\n[lease]\nnamespace = \"x\"",
        )
        .unwrap();
        let status = s.controller_settings(&env).unwrap().ingress_status.unwrap();
        assert_eq!(
            status.publish_service,
            Some(("fairway".to_owned(), "fairway-proxy".to_owned()))
        );
    }

    #[test]
    fn publish_service_errors_name_the_field() {
        let env = PodEnv {
            hostname: Some("h".into()),
            ..Default::default()
        };
        for bad in [
            "publish_service = \"fairway-proxy\"",
            "publish_service = \"a/b/c\"",
            "publish_service = \"/b\"",
            "publish_service = \"a/b\"\nstatus_ips = [\"198.51.100.1\"]",
        ] {
            let s: KubernetesSection =
                toml::from_str(&format!("{bad}\n[lease]\nnamespace = \"x\"")).unwrap();
            let e = s.controller_settings(&env).unwrap_err().to_string();
            assert!(e.starts_with("kubernetes.publish_service"), "{bad}: {e}");
        }
    }

    #[test]
    fn controller_setting_errors_name_the_field() {
        let none = PodEnv {
            hostname: Some("h".into()),
            ..Default::default()
        };
        let s: KubernetesSection = toml::from_str("").unwrap();
        let e = s.controller_settings(&none).unwrap_err().to_string();
        assert!(e.starts_with("kubernetes.lease.namespace"), "{e}");
        let s: KubernetesSection =
            toml::from_str("[lease]\nnamespace = \"x\"\nrenew_deadline_ms = 20000").unwrap();
        let e = s.controller_settings(&none).unwrap_err().to_string();
        assert!(e.starts_with("kubernetes.lease"), "{e}");
        let s: KubernetesSection = toml::from_str(
            "[lease]\nnamespace = \"x\"\n[[load_balancer.pools]]\nname = \"p\"\naddresses = [\"198.51.100.9-198.51.100.1\"]",
        )
        .unwrap();
        let e = s.controller_settings(&none).unwrap_err().to_string();
        assert!(
            e.starts_with("kubernetes.load_balancer.pools[0].addresses"),
            "{e}"
        );
        assert!(toml::from_str::<KubernetesSection>("[lease]\nnamespaces = \"x\"").is_err());
    }

    #[test]
    fn the_section_is_read_from_a_whole_file() {
        let p = std::path::Path::new("f.toml");
        assert_eq!(section_of(p, "[acme]\nx = 1\n").unwrap(), None);
        let s = section_of(p, "[acme]\n[kubernetes.lease]\nname = \"l\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(s.lease.name, "l");
        let e = section_of(p, "[kubernetes.lease]\nnmae = \"l\"\n").unwrap_err();
        assert!(
            e.starts_with("f.toml: kubernetes (line 2): ") && e.contains("nmae"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let s: KubernetesSection = toml::from_str("kubeconfig = \"/nonexistent/kc\"").unwrap();
        let Err(e) = s.client().await else {
            panic!("a client from a missing kubeconfig")
        };
        let e = e.to_string();
        assert!(e.contains("/nonexistent/kc"), "{e}");
    }
}
