//! `[kubernetes]`: the proxy's Kubernetes provider. When present, `fairway-proxy` also routes
//! from Ingresses of our IngressClass (next to the file's `[routers]`) and serves the
//! certificates of the TLS Secrets they name.
//!
//! ```toml
//! [kubernetes]
//! kubeconfig = "/etc/fairway/kubeconfig"   # absent: in-cluster service account
//! controller = "fairway.dev/ingress-controller"
//! namespaces = ["web", "shop"]              # absent/empty: every namespace (cluster-wide RBAC)
//! default_class = false                     # also take class-less Ingresses
//! status_ips = ["198.51.100.10"]            # written to Ingress status.loadBalancer
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
    /// Addresses written to our Ingresses' `status.loadBalancer.ingress` (empty: none).
    #[serde(default)]
    pub status_ips: Vec<IpAddr>,
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
