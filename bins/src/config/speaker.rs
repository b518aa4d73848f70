//! `[speaker]` section: VIP failover for `fairway-speaker`.
//!
//! ```toml
//! [speaker]
//! node = "n1"                      # this node; must be a key of `nodes`
//! interface = "eth0"               # or "auto": the NIC holding `listen`'s address
//! key_file = "/etc/fairway/speaker.key"   # shared HMAC key, mode 0600, >= 16 bytes
//! mode = "kernel"                  # kernel (add the VIP to the interface) | arp-only
//! profile = "default"              # default (100 ms × 3) | safe (250 ms × 5) | fast (50 ms × 3)
//! # interval_ms = 100              # optional overrides of the profile
//! # multiplier = 3
//! quorum = false                   # announce only while a majority is visible
//! # preempt_delay_ms = 5000        # hand VIPs back to better-ranked nodes (off by default)
//! # refresh_secs = 30              # periodic gratuitous ARP / NA
//! # listen = "0.0.0.0:7946"        # default: this node's address in `nodes`
//! admin = "127.0.0.1:9901"         # optional: /metrics and /status
//! # admin_token_file = "/etc/fairway/admin.token" # bearer token; required when admin is off loopback
//! # health_tcp = "127.0.0.1:443"   # optional: hold VIPs only while this accepts connections
//!
//! [speaker.nodes]                  # every node and its heartbeat address
//! n1 = "198.51.100.11:7946"
//! n2 = "198.51.100.12:7946"
//!
//! [[speaker.vips]]
//! address = "198.51.100.50"
//! # prefix = 32                    # kernel mode: prefix length on the interface
//! # candidates = ["n1", "n2"]      # default: every node
//! # priorities = { n1 = 150 }      # default 100; higher wins, ties by sha256(node#vip)
//! ```
//!
//! On Kubernetes, `[speaker.kubernetes]` replaces `nodes` and `vips` (which must then be
//! absent): the members are the nodes running a speaker pod (heartbeats to the pod's IP, else
//! the node's InternalIP, at `heartbeat_port`), the VIPs are the `status.loadBalancer` addresses
//! the controller gave our LoadBalancer Services, and the candidates follow node and speaker-pod
//! readiness and `externalTrafficPolicy: Local` endpoints; every change is applied live.
//! `node` defaults to `$NODE_NAME` (the DaemonSet sets it from `spec.nodeName`) and `listen` to
//! `0.0.0.0:<heartbeat_port>`. Timing, quorum and preemption must match on every node.
//! `interface = "auto"` suits a DaemonSet over machines whose NICs have different names: each
//! speaker takes the NIC of its default route (IPv4, else IPv6), or with a specific `listen`
//! address, the NIC that holds it.
//!
//! ```toml
//! [speaker]
//! interface = "auto"
//! key_file = "/etc/fairway/speaker/key"
//! mode = "arp-only"                # kube-proxy accepts the traffic
//! [speaker.kubernetes]
//! # kubeconfig = "/etc/fairway/kubeconfig"   # absent: in-cluster service account
//! pod_namespace = "fairway"        # "" = every namespace
//! pod_selector = "app.kubernetes.io/name=fairway-speaker"
//! heartbeat_port = 7946
//! load_balancer_class = "fairway.dev/lb"
//! default_class = false            # also class-less LoadBalancer Services
//! ```
//!
//! Only the `[speaker]` table is read; other sections of the shared file are ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vip_failover::linux::{AddressMode, SpeakerOptions};
use vip_failover::wire::SharedKey;
use vip_failover::{ClusterConfig, NodeId, Timing, VipSpec};

/// A problem with the `[speaker]` section, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or the section does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (includes the field).
        message: String,
    },
    /// The file has no `[speaker]` table.
    #[error("{path}: no [speaker] section")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A field has an invalid value.
    #[error("{path}: speaker.{field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Field path inside `[speaker]`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The key file is unusable (the key itself is never shown).
    #[error("{path}: speaker.key_file: {source}")]
    Key {
        /// The configuration file.
        path: PathBuf,
        /// The key error (names the key file).
        source: vip_failover::Error,
    },
}

/// Timing profile names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// 100 ms × 3.
    #[default]
    Default,
    /// 250 ms × 5, for noisy VMs.
    Safe,
    /// 50 ms × 3, for quiet dedicated hosts (sub-0.2 s hard failover).
    Fast,
}

/// One VIP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// The address.
    pub address: IpAddr,
    /// Prefix length when added to the interface (default /32 or /128).
    pub prefix: Option<u8>,
    /// Nodes allowed to hold it (default: all).
    pub candidates: Option<Vec<String>>,
    /// Per-node priorities (default 100).
    #[serde(default)]
    pub priorities: BTreeMap<String, u8>,
}

fn default_mode() -> AddressMode {
    AddressMode::Kernel
}

fn default_pod_namespace() -> String {
    "fairway".into()
}

fn default_pod_selector() -> String {
    "app.kubernetes.io/name=fairway-speaker".into()
}

fn default_heartbeat_port() -> u16 {
    7946
}

fn default_lb_class() -> String {
    k8s_glue::lb::DEFAULT_LB_CLASS.into()
}

/// `[speaker.kubernetes]`: members and VIPs from the API server instead of the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeakerKubernetes {
    /// A kubeconfig file (its current context); absent: the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the speaker pods (empty: every namespace).
    #[serde(default = "default_pod_namespace")]
    pub pod_namespace: String,
    /// Label selector of the speaker pods.
    #[serde(default = "default_pod_selector")]
    pub pod_selector: String,
    /// UDP heartbeat port of every speaker.
    #[serde(default = "default_heartbeat_port")]
    pub heartbeat_port: u16,
    /// Our `spec.loadBalancerClass` (as the controller's `[kubernetes.load_balancer] class`).
    #[serde(default = "default_lb_class")]
    pub load_balancer_class: String,
    /// Also class-less LoadBalancer Services (as the controller's `default_class`).
    #[serde(default)]
    pub default_class: bool,
}

impl SpeakerKubernetes {
    /// An API client from the kubeconfig, or the in-cluster environment (binaries only).
    pub async fn client(&self) -> Result<kube::Client, String> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => kube::Config::incluster().map_err(|e| format!("in-cluster config: {e}"))?,
        };
        kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
    }
}

/// The `[speaker]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeakerConfig {
    /// This node's name (with `[speaker.kubernetes]`: default `$NODE_NAME`, filled in by the
    /// binary).
    #[serde(default)]
    pub node: String,
    /// Interface the VIPs live on; `"auto"`: the one holding the `listen` address, or with an
    /// unspecified `listen` (Kubernetes), the default route's.
    pub interface: String,
    /// Shared HMAC key file.
    pub key_file: PathBuf,
    /// Every node's heartbeat address (including this node's); not with `kubernetes`.
    #[serde(default)]
    pub nodes: BTreeMap<String, SocketAddr>,
    /// The VIPs; not with `kubernetes`.
    #[serde(default)]
    pub vips: Vec<VipConfig>,
    /// Members and VIPs from Kubernetes.
    pub kubernetes: Option<SpeakerKubernetes>,
    /// Address mode.
    #[serde(default = "default_mode")]
    pub mode: AddressMode,
    /// Timing profile.
    #[serde(default)]
    pub profile: Profile,
    /// Override of the profile's heartbeat interval.
    pub interval_ms: Option<u64>,
    /// Override of the profile's multiplier.
    pub multiplier: Option<u32>,
    /// Quorum mode.
    #[serde(default)]
    pub quorum: bool,
    /// Delayed preemption (off when absent).
    pub preempt_delay_ms: Option<u64>,
    /// Periodic re-announcement.
    pub refresh_secs: Option<u64>,
    /// Local heartbeat bind address (default: this node's entry in `nodes`).
    pub listen: Option<SocketAddr>,
    /// Admin listener for `/metrics` and `/status`.
    pub admin: Option<SocketAddr>,
    /// File holding the bearer token every admin request but `/healthz`, `/readyz` and the
    /// static page must send (as the proxy's `[admin] token_file`). Required when `admin` is
    /// not on loopback. Read at start.
    pub admin_token_file: Option<PathBuf>,
    /// Local readiness check: while a TCP connect to this address (e.g. the proxy's listener on
    /// this node) fails three times in a row, the node gives up its VIPs and is skipped.
    pub health_tcp: Option<SocketAddr>,
}

#[derive(Deserialize)]
struct File {
    speaker: Option<SpeakerConfig>,
}

/// Reads the `[speaker]` section of `path` and validates it.
pub fn load(path: &Path) -> Result<SpeakerConfig, SpeakerConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpeakerConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml(&text, path)
}

/// Parses the `[speaker]` section from TOML text (`path` is only used in errors).
pub fn from_toml(text: &str, path: &Path) -> Result<SpeakerConfig, SpeakerConfigError> {
    let file: File = toml::from_str(text).map_err(|e| SpeakerConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    let config = file.speaker.ok_or_else(|| SpeakerConfigError::Missing {
        path: path.to_owned(),
    })?;
    config.validate(path)?;
    Ok(config)
}

impl SpeakerConfig {
    /// Checks cross-field rules; errors name the field path.
    pub fn validate(&self, path: &Path) -> Result<(), SpeakerConfigError> {
        let invalid = |field: String, message: String| SpeakerConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        if let Some(addr) = self.admin {
            let has_token = self.admin_token_file.is_some();
            if let Some(reason) = ingress_proxy::dashboard::missing_token_reason(addr, has_token) {
                return Err(invalid("admin_token_file".into(), reason));
            }
        }
        if let Some(k) = &self.kubernetes {
            if !self.nodes.is_empty() || !self.vips.is_empty() {
                return Err(invalid(
                    "kubernetes".into(),
                    "members and VIPs come from Kubernetes: remove speaker.nodes and speaker.vips"
                        .into(),
                ));
            }
            if k.heartbeat_port == 0 {
                return Err(invalid(
                    "kubernetes.heartbeat_port".into(),
                    "must be positive".into(),
                ));
            }
            if k.pod_selector.trim().is_empty() {
                return Err(invalid(
                    "kubernetes.pod_selector".into(),
                    "must select the speaker pods".into(),
                ));
            }
            return self.validate_timing(path);
        }
        if !self.nodes.contains_key(&self.node) {
            return Err(invalid(
                "node".into(),
                format!("`{}` is not a key of speaker.nodes", self.node),
            ));
        }
        if self.vips.is_empty() {
            return Err(invalid(
                "vips".into(),
                "at least one VIP is required".into(),
            ));
        }
        self.validate_timing(path)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, vip) in self.vips.iter().enumerate() {
            if !seen.insert(vip.address) {
                return Err(invalid(
                    format!("vips[{i}].address"),
                    format!("{} listed twice", vip.address),
                ));
            }
            let max = if vip.address.is_ipv4() { 32 } else { 128 };
            if vip.prefix.is_some_and(|p| p == 0 || p > max) {
                return Err(invalid(
                    format!("vips[{i}].prefix"),
                    format!("must be 1..={max}"),
                ));
            }
            for n in vip.candidates.iter().flatten() {
                if !self.nodes.contains_key(n) {
                    return Err(invalid(
                        format!("vips[{i}].candidates"),
                        format!("unknown node `{n}`"),
                    ));
                }
            }
            for n in vip.priorities.keys() {
                if !self.nodes.contains_key(n) {
                    return Err(invalid(
                        format!("vips[{i}].priorities"),
                        format!("unknown node `{n}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_timing(&self, path: &Path) -> Result<(), SpeakerConfigError> {
        let invalid = |field: &str| SpeakerConfigError::Invalid {
            path: path.to_owned(),
            field: field.into(),
            message: "must be positive".into(),
        };
        if self.interval_ms == Some(0) {
            return Err(invalid("interval_ms"));
        }
        if self.multiplier == Some(0) {
            return Err(invalid("multiplier"));
        }
        if self.refresh_secs == Some(0) {
            return Err(invalid("refresh_secs"));
        }
        Ok(())
    }

    /// With `[speaker.kubernetes]`: what the watcher needs (the timing, quorum and preemption
    /// of this file go into every cluster it builds).
    pub fn kubernetes_settings(&self) -> Option<k8s_glue::speakers::SpeakerSettings> {
        let k = self.kubernetes.as_ref()?;
        Some(k8s_glue::speakers::SpeakerSettings {
            pod_namespace: (!k.pod_namespace.is_empty()).then(|| k.pod_namespace.clone()),
            pod_selector: k.pod_selector.clone(),
            heartbeat_port: k.heartbeat_port,
            lb_class: k.load_balancer_class.clone(),
            default_class: k.default_class,
            timing: self.timing(),
            quorum: self.quorum,
            preempt_delay: self.preempt_delay_ms.map(Duration::from_millis),
        })
    }

    /// The effective failure-detection timing.
    pub fn timing(&self) -> Timing {
        let mut t = match self.profile {
            Profile::Default => Timing::DEFAULT,
            Profile::Safe => Timing::SAFE,
            Profile::Fast => Timing::FAST,
        };
        if let Some(ms) = self.interval_ms {
            t.interval = Duration::from_millis(ms);
            t.skew_step = t.interval / 4;
        }
        if let Some(m) = self.multiplier {
            t.multiplier = m;
        }
        t
    }

    /// The cluster configuration shared by every node.
    pub fn cluster(&self) -> ClusterConfig {
        ClusterConfig {
            nodes: self.nodes.keys().map(NodeId::new).collect(),
            vips: self
                .vips
                .iter()
                .map(|v| VipSpec {
                    addr: v.address,
                    candidates: v
                        .candidates
                        .as_ref()
                        .map(|c| c.iter().map(NodeId::new).collect()),
                    priorities: v
                        .priorities
                        .iter()
                        .map(|(n, p)| (NodeId::new(n), *p))
                        .collect(),
                })
                .collect(),
            timing: self.timing(),
            quorum: self.quorum,
            preempt_delay: self.preempt_delay_ms.map(Duration::from_millis),
        }
    }

    /// Reads the key file and builds the driver options.
    pub fn to_options(
        &self,
        path: &Path,
        incarnation: u64,
    ) -> Result<SpeakerOptions, SpeakerConfigError> {
        let nodes = self
            .nodes
            .iter()
            .map(|(n, a)| (NodeId::new(n), *a))
            .collect();
        self.to_options_with(path, incarnation, self.cluster(), nodes)
    }

    /// The driver options for `cluster` with heartbeat addresses `nodes` (this node's entry, if
    /// any, is the default `listen` address; with `kubernetes`, `0.0.0.0:<heartbeat_port>`).
    pub fn to_options_with(
        &self,
        path: &Path,
        incarnation: u64,
        cluster: ClusterConfig,
        nodes: BTreeMap<NodeId, SocketAddr>,
    ) -> Result<SpeakerOptions, SpeakerConfigError> {
        let key =
            SharedKey::from_file(&self.key_file).map_err(|source| SpeakerConfigError::Key {
                path: path.to_owned(),
                source,
            })?;
        let me = NodeId::new(&self.node);
        let listen = match (&self.kubernetes, self.listen) {
            (_, Some(l)) => l,
            (Some(k), None) => SocketAddr::from(([0, 0, 0, 0], k.heartbeat_port)),
            (None, None) => nodes
                .get(&me)
                .copied()
                .ok_or_else(|| SpeakerConfigError::Invalid {
                    path: path.to_owned(),
                    field: "node".into(),
                    message: format!("`{}` has no heartbeat address", self.node),
                })?,
        };
        let peers = nodes.into_iter().filter(|(n, _)| *n != me).collect();
        let mut opts = SpeakerOptions::new(
            cluster,
            me,
            self.interface.clone(),
            listen,
            peers,
            key,
            incarnation,
        );
        opts.address_mode = self.mode;
        opts.prefixes = self
            .vips
            .iter()
            .filter_map(|v| Some((v.address, v.prefix?)))
            .collect();
        if let Some(s) = self.refresh_secs {
            opts.refresh = Duration::from_secs(s);
        }
        Ok(opts)
    }
}

impl SpeakerConfig {
    /// Whether `new` (the file re-read on SIGHUP) can be applied to a speaker running with
    /// `self` without a restart: only members (`nodes`), VIPs (candidates, priorities) and the
    /// election settings (timing, quorum, preemption) travel in a live
    /// [`vip_failover::linux::Membership`]; sockets, key, interface, address mode, listeners and
    /// VIP prefix lengths are fixed at start. `Err` names the first field that would need one.
    pub fn check_live_reload(&self, new: &SpeakerConfig) -> Result<(), String> {
        let fixed: [(&str, bool); 9] = [
            ("speaker.node", self.node == new.node),
            ("speaker.interface", self.interface == new.interface),
            ("speaker.key_file", self.key_file == new.key_file),
            ("speaker.mode", self.mode == new.mode),
            (
                "speaker.refresh_secs",
                self.refresh_secs == new.refresh_secs,
            ),
            (
                "speaker.listen",
                self.listen == new.listen && self.nodes.get(&self.node) == new.nodes.get(&new.node),
            ),
            (
                "speaker.admin",
                self.admin == new.admin && self.admin_token_file == new.admin_token_file,
            ),
            ("speaker.health_tcp", self.health_tcp == new.health_tcp),
            ("speaker.kubernetes", self.kubernetes == new.kubernetes),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
            return Err(format!(
                "{field} changed: restart fairway-speaker to apply it"
            ));
        }
        // The running driver knows the prefix of the VIPs it started with and /32 or /128 for
        // the rest, so a prefix must not differ from what it would use.
        let prefix_of = |c: &SpeakerConfig, addr: IpAddr| {
            c.vips
                .iter()
                .find(|v| v.address == addr)
                .and_then(|v| v.prefix)
        };
        for (i, v) in new.vips.iter().enumerate() {
            if v.prefix != prefix_of(self, v.address) {
                return Err(format!(
                    "speaker.vips[{i}].prefix: differs from the running one: restart fairway-speaker to apply it"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[entrypoints.web]
address = "127.0.0.1:8080"

[speaker]
node = "n1"
interface = "eth0"
key_file = "/nonexistent"
profile = "safe"
quorum = true
admin = "127.0.0.1:9901"

[speaker.nodes]
n1 = "198.51.100.11:7946"
n2 = "198.51.100.12:7946"
n3 = "198.51.100.13:7946"

[[speaker.vips]]
address = "198.51.100.50"
prefix = 24
priorities = { n1 = 150 }

[[speaker.vips]]
address = "2001:db8::50"
candidates = ["n2", "n3"]
"#;

    #[test]
    fn parses_the_section_and_ignores_others() {
        let c = from_toml(EXAMPLE, Path::new("f.toml")).unwrap();
        assert_eq!(c.timing(), Timing::SAFE);
        assert_eq!(c.mode, AddressMode::Kernel);
        let cluster = c.cluster();
        assert_eq!(cluster.nodes.len(), 3);
        assert!(cluster.quorum);
        assert_eq!(cluster.vips[1].candidates.as_ref().unwrap().len(), 2);
        assert!(vip_failover::Cluster::new(&cluster).is_ok());
    }

    #[test]
    fn live_reload_takes_members_vips_and_election_settings_only() {
        let running = from_toml(EXAMPLE, Path::new("f.toml")).unwrap();
        let reload = |text: String| {
            running.check_live_reload(&from_toml(&text, Path::new("f.toml")).unwrap())
        };
        // Members, VIPs, priorities and timing: live.
        let more = EXAMPLE.replace(
            "n3 = \"198.51.100.13:7946\"",
            "n3 = \"198.51.100.13:7946\"\nn4 = \"198.51.100.14:7946\"",
        ) + "\n[[speaker.vips]]\naddress = \"198.51.100.51\"\n";
        assert_eq!(reload(more), Ok(()));
        assert_eq!(reload(EXAMPLE.replace("n1 = 150", "n1 = 90")), Ok(()));
        assert_eq!(
            reload(EXAMPLE.replace("profile = \"safe\"", "profile = \"fast\"")),
            Ok(())
        );
        // Fixed at start: named.
        let e =
            reload(EXAMPLE.replace("interface = \"eth0\"", "interface = \"eth1\"")).unwrap_err();
        assert!(e.starts_with("speaker.interface changed"), "{e}");
        let e =
            reload(EXAMPLE.replace("n1 = \"198.51.100.11:7946\"", "n1 = \"198.51.100.11:7947\""))
                .unwrap_err();
        assert!(e.starts_with("speaker.listen changed"), "{e}");
        let e = reload(EXAMPLE.replace("prefix = 24", "prefix = 25")).unwrap_err();
        assert!(e.starts_with("speaker.vips[0].prefix"), "{e}");
        let e = reload(
            EXAMPLE.to_string() + "\n[[speaker.vips]]\naddress = \"198.51.100.52\"\nprefix = 24\n",
        )
        .unwrap_err();
        assert!(e.starts_with("speaker.vips[2].prefix"), "{e}");
    }

    #[test]
    fn errors_name_file_and_field() {
        let bad = EXAMPLE.replace("candidates = [\"n2\", \"n3\"]", "candidates = [\"n9\"]");
        let e = from_toml(&bad, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "f.toml: speaker.vips[1].candidates: unknown node `n9`");
        let bad = EXAMPLE.replace("node = \"n1\"", "node = \"x\"");
        let e = from_toml(&bad, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: speaker.node:"), "{e}");
        let bad = EXAMPLE.replace("profile = \"safe\"", "profile = \"turbo\"");
        let e = from_toml(&bad, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.toml") && e.contains("profile"), "{e}");
        let e = from_toml("[proxy]\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "f.toml: no [speaker] section");
        let bad = EXAMPLE.replace("admin = \"127.0.0.1:9901\"", "admin = \"0.0.0.0:9901\"");
        let e = from_toml(&bad, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f.toml: speaker.admin_token_file: the admin listener 0.0.0.0:9901"),
            "{e}"
        );
        let ok = bad.replace(
            "admin = \"0.0.0.0:9901\"",
            "admin = \"0.0.0.0:9901\"\nadmin_token_file = \"/run/secrets/admin-token\"",
        );
        assert!(from_toml(&ok, Path::new("f.toml")).is_ok());
    }

    const KUBERNETES: &str = r#"
[speaker]
interface = "eth0"
key_file = "/nonexistent"
mode = "arp-only"
quorum = true
[speaker.kubernetes]
pod_namespace = ""
heartbeat_port = 7000
"#;

    #[test]
    fn kubernetes_mode_takes_members_and_vips_from_the_cluster() {
        let c = from_toml(KUBERNETES, Path::new("f.toml")).unwrap();
        assert!(c.node.is_empty() && c.nodes.is_empty() && c.vips.is_empty());
        let s = c.kubernetes_settings().unwrap();
        assert_eq!(s.pod_namespace, None, "empty: every namespace");
        assert_eq!(s.pod_selector, "app.kubernetes.io/name=fairway-speaker");
        assert_eq!(s.heartbeat_port, 7000);
        assert_eq!(s.lb_class, k8s_glue::lb::DEFAULT_LB_CLASS);
        assert!(s.quorum && s.timing == Timing::DEFAULT);
        assert!(
            from_toml(EXAMPLE, Path::new("f.toml"))
                .unwrap()
                .kubernetes_settings()
                .is_none()
        );

        let both = format!("{KUBERNETES}[speaker.nodes]\nn1 = \"198.51.100.11:7946\"\n");
        let e = from_toml(&both, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f.toml: speaker.kubernetes: members and VIPs"),
            "{e}"
        );
        let e = from_toml(&KUBERNETES.replace("7000", "0"), Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "f.toml: speaker.kubernetes.heartbeat_port: must be positive"
        );
        // Without `kubernetes`, nodes and VIPs are still required.
        let bare = KUBERNETES.split("[speaker.kubernetes]").next().unwrap();
        let e = from_toml(bare, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: speaker.node:"), "{e}");
    }

    #[test]
    fn interval_override_keeps_skew_proportional() {
        let text = EXAMPLE.replace("profile = \"safe\"", "interval_ms = 40\nmultiplier = 4");
        let t = from_toml(&text, Path::new("f.toml")).unwrap().timing();
        assert_eq!(t.interval, Duration::from_millis(40));
        assert_eq!(t.multiplier, 4);
        assert_eq!(t.skew_step, Duration::from_millis(10));
    }

    #[test]
    fn key_file_errors_do_not_leak_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "short-secret").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = EXAMPLE.replace("/nonexistent", key.to_str().unwrap());
        let c = from_toml(&text, Path::new("f.toml")).unwrap();
        let e = c
            .to_options(Path::new("f.toml"), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shorter than 16 bytes") && !e.contains("short-secret"),
            "{e}"
        );
    }
}
