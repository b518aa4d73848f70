//! Speakers on Kubernetes: which nodes may hold which VIP, as `vip-failover` inputs (pure).
//!
//! The cluster's node list is every node running a speaker pod (stable while pods come and go
//! ready, so the machine is not reconfigured on every readiness flap). Eligibility goes into each
//! VIP's candidates: a node is a candidate when it is `Ready` and its speaker pod is ready; for
//! `externalTrafficPolicy: Local` Services additionally only nodes with a ready (or, while
//! terminating, serving) endpoint of the Service — none means nobody announces it, so traffic is
//! not black-holed on a node that would drop it.
//!
//! [`view`] turns the watched objects into what a speaker applies (cluster + heartbeat
//! addresses); [`SpeakerWatcher`] keeps it current from the API server.

mod watcher;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use vip_failover::{ClusterConfig, NodeId, Timing, VipSpec};

use crate::routes::SERVICE_NAME_LABEL;

pub use watcher::SpeakerWatcher;

/// What a Kubernetes-mode speaker watches and how it builds its cluster. The timing, quorum and
/// preemption settings must be the same on every node (heartbeats carry the cluster's
/// fingerprint, so differing nodes ignore each other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerSettings {
    /// Namespace of the speaker pods (`None`: every namespace).
    pub pod_namespace: Option<String>,
    /// Label selector of the speaker pods (e.g. `app.kubernetes.io/name=fairway-speaker`).
    pub pod_selector: String,
    /// UDP port of every speaker's heartbeat socket (at its pod IP, else its node's InternalIP).
    pub heartbeat_port: u16,
    /// Our `spec.loadBalancerClass` (the controller's `LbConfig::class`).
    pub lb_class: String,
    /// Also take class-less LoadBalancer Services (the controller's `LbConfig::default_class`).
    pub default_class: bool,
    /// Failure-detection timing.
    pub timing: Timing,
    /// Quorum mode.
    pub quorum: bool,
    /// Delayed preemption (`None`: sticky ownership).
    pub preempt_delay: Option<Duration>,
}

impl Default for SpeakerSettings {
    /// The deploy/ manifests' values: pods labelled `app.kubernetes.io/name=fairway-speaker` in
    /// `fairway`, heartbeats on 7946, class `fairway.dev/lb`, default timing.
    fn default() -> Self {
        SpeakerSettings {
            pod_namespace: Some("fairway".into()),
            pod_selector: "app.kubernetes.io/name=fairway-speaker".into(),
            heartbeat_port: 7946,
            lb_class: crate::lb::alloc::DEFAULT_LB_CLASS.into(),
            default_class: false,
            timing: Timing::default(),
            quorum: false,
            preempt_delay: None,
        }
    }
}

/// What a speaker applies: the cluster (identical on every node given the same objects) and
/// every member's heartbeat address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerView {
    /// Members, VIPs with their candidates, timing.
    pub cluster: ClusterConfig,
    /// Heartbeat address of every member.
    pub peers: BTreeMap<NodeId, SocketAddr>,
}

impl SpeakerView {
    /// Whether `node` is a member (has a speaker pod with an address).
    pub fn is_member(&self, node: &str) -> bool {
        self.cluster.nodes.iter().any(|n| n.as_str() == node)
    }
}

/// Whether `svc` is a LoadBalancer Service of ours (the same rule as the controller's
/// `LbConfig::is_ours`): `type: LoadBalancer` and our class, or no class when we are default.
pub fn is_our_load_balancer(settings: &SpeakerSettings, svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(class) => class == settings.lb_class,
        None => settings.default_class,
    }
}

/// A node's `InternalIP` (the first one), for speakers whose pod has no IP yet.
pub fn node_internal_ip(node: &Node) -> Option<IpAddr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// The heartbeat address of each node running a speaker pod: the pod's IP (the speaker runs
/// with hostNetwork, so that is the node's address), else the node's InternalIP; a ready pod
/// wins over a not-ready one (a DaemonSet rollout briefly runs two). Nodes with neither are
/// left out (nobody could reach them).
pub fn heartbeat_addresses(
    nodes: &[Node],
    speaker_pods: &[Pod],
    port: u16,
) -> BTreeMap<String, SocketAddr> {
    let mut out: BTreeMap<String, (bool, SocketAddr)> = BTreeMap::new();
    for pod in speaker_pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .or_else(|| {
                nodes
                    .iter()
                    .find(|n| n.name_any() == node)
                    .and_then(node_internal_ip)
            });
        let Some(ip) = ip else { continue };
        let ready = pod_ready(pod);
        let entry = (ready, SocketAddr::new(ip, port));
        match out.get(node) {
            Some((true, _)) if !ready => {}
            _ => {
                out.insert(node.to_string(), entry);
            }
        }
    }
    out.into_iter().map(|(n, (_, a))| (n, a)).collect()
}

/// The view for the current objects: members are the nodes with a reachable speaker pod,
/// VIPs the `status.loadBalancer.ingress` IPs of our LoadBalancer Services (written by the
/// controller's `LbController`), candidates per [`cluster_config`].
pub fn view(
    settings: &SpeakerSettings,
    nodes: &[Node],
    speaker_pods: &[Pod],
    services: &[Service],
    slices: &[EndpointSlice],
) -> SpeakerView {
    let addresses = heartbeat_addresses(nodes, speaker_pods, settings.heartbeat_port);
    let reachable: Vec<Pod> = speaker_pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| addresses.contains_key(n))
        })
        .cloned()
        .collect();
    let ours: Vec<Service> = services
        .iter()
        .filter(|s| is_our_load_balancer(settings, s))
        .cloned()
        .collect();
    let allocations: BTreeMap<String, Vec<IpAddr>> = ours
        .iter()
        .map(|s| {
            (
                format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
                crate::lb::alloc::status_ips(s),
            )
        })
        .filter(|(_, ips)| !ips.is_empty())
        .collect();
    let mut cluster = cluster_config(
        nodes,
        &reachable,
        &ours,
        slices,
        &allocations,
        settings.timing,
    );
    cluster.quorum = settings.quorum;
    cluster.preempt_delay = settings.preempt_delay;
    // Services come in API order; sort the VIPs so every node builds the same list.
    cluster.vips.sort_by_key(|v| v.addr);
    SpeakerView {
        cluster,
        peers: addresses
            .into_iter()
            .map(|(n, a)| (NodeId::new(n), a))
            .collect(),
    }
}

/// Whether `node` reports condition `Ready=True`.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether `pod` reports condition `Ready=True` and is not being deleted.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Nodes with a ready (`ready` unset counts as ready; a terminating endpoint counts while
/// `serving`) endpoint in `slices` (those of one Service).
pub fn nodes_with_ready_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for slice in slices {
        for ep in &slice.endpoints {
            let c = ep.conditions.clone().unwrap_or_default();
            let usable = match c.ready {
                Some(true) | None => true,
                Some(false) => c.terminating == Some(true) && c.serving == Some(true),
            };
            if usable && let Some(node) = &ep.node_name {
                out.insert(node.clone());
            }
        }
    }
    out
}

/// This node's health for the machine's `Event::Health`: its Node is Ready and its speaker pod
/// is ready.
pub fn local_health(node_name: &str, nodes: &[Node], speaker_pods: &[Pod]) -> bool {
    nodes
        .iter()
        .any(|n| n.name_any() == node_name && node_ready(n))
        && speaker_pods.iter().any(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name) && pod_ready(p)
        })
}

/// The `vip-failover` cluster configuration for the current state. `allocations` are the
/// LoadBalancer addresses per `namespace/name` (from [`crate::LbController::allocations`]).
pub fn cluster_config(
    nodes: &[Node],
    speaker_pods: &[Pod],
    services: &[Service],
    slices: &[EndpointSlice],
    allocations: &BTreeMap<String, Vec<IpAddr>>,
    timing: Timing,
) -> ClusterConfig {
    let with_speaker: BTreeSet<String> = speaker_pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    let ready_nodes: BTreeSet<String> = nodes
        .iter()
        .filter(|n| node_ready(n))
        .map(|n| n.name_any())
        .collect();
    let eligible: BTreeSet<String> = speaker_pods
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .filter(|n| ready_nodes.contains(n))
        .collect();
    let mut vips = Vec::new();
    let mut seen = BTreeSet::new();
    for svc in services {
        let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
        let Some(ips) = allocations.get(&key) else {
            continue;
        };
        let local = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        let candidates: BTreeSet<String> = if local {
            let own = slices.iter().filter(|s| {
                s.namespace() == svc.namespace()
                    && s.labels().get(SERVICE_NAME_LABEL) == Some(&svc.name_any())
            });
            nodes_with_ready_endpoints(own)
                .intersection(&eligible)
                .cloned()
                .collect()
        } else {
            eligible.clone()
        };
        for ip in ips {
            // One VIP per address: a shared address would need one candidate set.
            if !seen.insert(*ip) {
                continue;
            }
            vips.push(VipSpec {
                addr: *ip,
                candidates: Some(
                    candidates
                        .iter()
                        .filter(|n| with_speaker.contains(*n))
                        .map(NodeId::new)
                        .collect(),
                ),
                priorities: BTreeMap::new(),
            });
        }
    }
    ClusterConfig {
        nodes: with_speaker.iter().map(NodeId::new).collect(),
        vips,
        timing,
        quorum: false,
        preempt_delay: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeCondition, NodeStatus, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use kube::api::ObjectMeta;

    fn node(name: &str, ready: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn speaker(node: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("speaker-{node}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn lb(name: &str, policy: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                external_traffic_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice_for(svc: &str, eps: &[(&str, Option<bool>)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{svc}-1")),
                namespace: Some("ns".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps
                .iter()
                .map(|(n, ready)| Endpoint {
                    addresses: vec!["10.0.0.1".into()],
                    node_name: Some(n.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: None,
        }
    }

    #[test]
    fn eligibility_follows_node_and_pod_readiness_and_local_endpoints() {
        let nodes = [
            node("n1", true),
            node("n2", true),
            node("n3", false),
            node("n4", true),
        ];
        let pods = [
            speaker("n1", true),
            speaker("n2", false),
            speaker("n3", true),
            speaker("n4", true),
        ];
        let services = [
            lb("cluster", "Cluster"),
            lb("local", "Local"),
            lb("lonely", "Local"),
        ];
        let slices = [
            slice_for("local", &[("n1", Some(true)), ("n4", Some(false))]),
            slice_for("lonely", &[("n2", None)]),
        ];
        let allocations = BTreeMap::from([
            (
                "ns/cluster".to_string(),
                vec!["198.51.100.1".parse().unwrap()],
            ),
            (
                "ns/local".to_string(),
                vec!["198.51.100.2".parse().unwrap()],
            ),
            (
                "ns/lonely".to_string(),
                vec!["198.51.100.3".parse().unwrap()],
            ),
        ]);
        let cfg = cluster_config(
            &nodes,
            &pods,
            &services,
            &slices,
            &allocations,
            Timing::default(),
        );
        let names = |v: &VipSpec| {
            v.candidates
                .clone()
                .unwrap()
                .iter()
                .map(|n| n.as_str().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(cfg.nodes.len(), 4, "every node with a speaker is a member");
        assert_eq!(
            names(&cfg.vips[0]),
            ["n1", "n4"],
            "Cluster: ready node + ready speaker"
        );
        assert_eq!(
            names(&cfg.vips[1]),
            ["n1"],
            "Local: only nodes with a ready endpoint"
        );
        assert!(
            names(&cfg.vips[2]).is_empty(),
            "Local without eligible endpoints: nobody announces"
        );
        vip_failover::Cluster::new(&cfg).expect("the machine accepts it");

        assert!(local_health("n1", &nodes, &pods));
        assert!(!local_health("n2", &nodes, &pods), "speaker pod not ready");
        assert!(!local_health("n3", &nodes, &pods), "node not ready");
    }

    fn with_ip(mut pod: Pod, ip: Option<&str>) -> Pod {
        pod.status.as_mut().unwrap().pod_ip = ip.map(str::to_string);
        pod
    }

    fn with_internal_ip(mut node: Node, ip: &str) -> Node {
        node.status.as_mut().unwrap().addresses =
            Some(vec![k8s_openapi::api::core::v1::NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]);
        node
    }

    fn with_status_ip(mut svc: Service, class: Option<&str>, ip: Option<&str>) -> Service {
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some("LoadBalancer".into());
        spec.load_balancer_class = class.map(str::to_string);
        svc.status = ip.map(|ip| k8s_openapi::api::core::v1::ServiceStatus {
            load_balancer: Some(crate::lb::alloc::lb_status(&[ip.parse().unwrap()])),
            ..Default::default()
        });
        svc
    }

    #[test]
    fn heartbeat_addresses_prefer_ready_pods_then_node_addresses() {
        let nodes = [
            with_internal_ip(node("n1", true), "198.51.100.21"),
            with_internal_ip(node("n2", true), "198.51.100.22"),
            node("n3", true),
        ];
        let mut old = with_ip(speaker("n1", false), Some("198.51.100.99"));
        old.metadata.name = Some("speaker-old".into());
        let pods = [
            with_ip(speaker("n1", true), Some("198.51.100.11")),
            old,
            with_ip(speaker("n2", true), None),
            with_ip(speaker("n3", true), None),
        ];
        let got = heartbeat_addresses(&nodes, &pods, 7946);
        let want: BTreeMap<String, SocketAddr> = [
            ("n1".to_string(), "198.51.100.11:7946".parse().unwrap()),
            ("n2".to_string(), "198.51.100.22:7946".parse().unwrap()),
        ]
        .into();
        assert_eq!(
            got, want,
            "ready pod's IP; else the InternalIP; n3 unreachable"
        );
        // In either order of the two pods on n1.
        let reversed: Vec<Pod> = pods.iter().rev().cloned().collect();
        assert_eq!(heartbeat_addresses(&nodes, &reversed, 7946), want);
    }

    #[test]
    fn view_takes_our_classes_status_addresses_sorted_and_reachable_members() {
        let nodes = [node("n1", true), node("n2", true), node("n3", true)];
        let pods = [
            with_ip(speaker("n1", true), Some("198.51.100.11")),
            with_ip(speaker("n2", true), Some("198.51.100.12")),
            with_ip(speaker("n3", true), None),
        ];
        let services = [
            with_status_ip(
                lb("b", "Cluster"),
                Some(crate::lb::alloc::DEFAULT_LB_CLASS),
                Some("198.51.100.60"),
            ),
            with_status_ip(
                lb("a", "Cluster"),
                Some(crate::lb::alloc::DEFAULT_LB_CLASS),
                Some("198.51.100.59"),
            ),
            with_status_ip(
                lb("other", "Cluster"),
                Some("example.com/lb"),
                Some("198.51.100.61"),
            ),
            with_status_ip(lb("classless", "Cluster"), None, Some("198.51.100.62")),
            with_status_ip(
                lb("pending", "Cluster"),
                Some(crate::lb::alloc::DEFAULT_LB_CLASS),
                None,
            ),
            lb("plain", "Cluster"),
        ];
        let settings = SpeakerSettings {
            quorum: true,
            preempt_delay: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let v = view(&settings, &nodes, &pods, &services, &[]);
        let vips: Vec<String> = v.cluster.vips.iter().map(|x| x.addr.to_string()).collect();
        assert_eq!(
            vips,
            ["198.51.100.59", "198.51.100.60"],
            "ours, with status, sorted"
        );
        assert!(v.is_member("n1") && v.is_member("n2") && !v.is_member("n3"));
        assert_eq!(v.peers.len(), 2);
        assert!(v.cluster.quorum);
        assert_eq!(v.cluster.preempt_delay, Some(Duration::from_secs(5)));
        vip_failover::Cluster::new(&v.cluster).expect("valid");
        // As the default class, class-less Services count too.
        let default = SpeakerSettings {
            default_class: true,
            ..settings
        };
        let v = view(&default, &nodes, &pods, &services, &[]);
        assert_eq!(v.cluster.vips.len(), 3);
    }
}
