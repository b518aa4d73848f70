//! Speakers on Kubernetes: which nodes may hold which VIP, as `vip-failover` inputs (pure).
//!
//! The cluster's node list is every node running a speaker pod (stable while pods come and go
//! ready, so the machine is not reconfigured on every readiness flap). Eligibility goes into each
//! VIP's candidates: a node is a candidate when it is `Ready` and its speaker pod is ready; for
//! `externalTrafficPolicy: Local` Services additionally only nodes with a ready (or, while
//! terminating, serving) endpoint of the Service — none means nobody announces it, so traffic is
//! not black-holed on a node that would drop it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use vip_failover::{ClusterConfig, NodeId, Timing, VipSpec};

use crate::routes::SERVICE_NAME_LABEL;

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
}
