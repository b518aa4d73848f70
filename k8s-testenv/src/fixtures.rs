//! Objects the tests put into the API server, as the components that normally write them would
//! (there is no kubelet or controller-manager here).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeCondition,
    NodeStatus, Pod, PodCondition, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
use kube::api::{Api, ObjectMeta, PostParams};

/// Metadata with just a name.
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Creates the cluster-scoped IngressClass `name` for `controller` (tests give each namespace
/// its own class, so concurrent tests do not pick up each other's Ingresses).
pub async fn create_ingress_class(client: &kube::Client, name: &str, controller: &str) {
    let class = IngressClass {
        metadata: meta(name),
        spec: Some(IngressClassSpec {
            controller: Some(controller.into()),
            ..Default::default()
        }),
    };
    Api::<IngressClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap_or_else(|e| panic!("create IngressClass {name}: {e}"));
}

/// Sets an existing Node's `Ready` condition (and its `InternalIP`, if given) as the kubelet
/// would, through `/status`.
pub async fn set_node_ready(api: &Api<Node>, name: &str, internal_ip: Option<&str>, ready: bool) {
    let mut node = api.get(name).await.unwrap();
    node.status = Some(NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        addresses: internal_ip.map(|ip| {
            vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]
        }),
        ..Default::default()
    });
    api.replace_status(name, &PostParams::default(), &node)
        .await
        .unwrap();
}

/// Creates a LoadBalancer Service of `class` (`externalTrafficPolicy: Local` when `local`) with
/// `ip` in its status, as the controller leaves it after allocating.
pub async fn lb_service(api: &Api<Service>, name: &str, class: &str, local: bool, ip: &str) {
    let svc = Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: Some(class.into()),
            external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut svc = api.create(&PostParams::default(), &svc).await.unwrap();
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some(ip.into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    api.replace_status(name, &PostParams::default(), &svc)
        .await
        .unwrap();
}

/// The label `deploy/60-speaker.yaml` puts on speaker pods (the speakers' default selector).
pub const SPEAKER_LABEL: (&str, &str) = ("app.kubernetes.io/name", "fairway-speaker");

/// Sets an existing Pod's phase `Running`, `podIP` and `Ready` condition as the kubelet would.
pub async fn set_pod_ready(api: &Api<Pod>, name: &str, ip: Option<&str>, ready: bool) {
    let mut pod = api.get(name).await.unwrap();
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: ip.map(str::to_string),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    api.replace_status(name, &PostParams::default(), &pod)
        .await
        .unwrap();
}

/// A ready Node `node` (with `node_ip` as its InternalIP, if given) running a ready
/// hostNetwork speaker pod `pod` (labelled [`SPEAKER_LABEL`], address `pod_ip`).
pub async fn speaker_node(
    nodes: &Api<Node>,
    pods: &Api<Pod>,
    node: &str,
    node_ip: Option<&str>,
    pod: &str,
    pod_ip: Option<&str>,
) {
    let pp = PostParams::default();
    nodes
        .create(
            &pp,
            &Node {
                metadata: meta(node),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    set_node_ready(nodes, node, node_ip, true).await;
    let speaker = Pod {
        metadata: ObjectMeta {
            name: Some(pod.into()),
            labels: Some(BTreeMap::from([(
                SPEAKER_LABEL.0.into(),
                SPEAKER_LABEL.1.into(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            host_network: Some(true),
            containers: vec![Container {
                name: "speaker".into(),
                image: Some("fairway/fairway:test".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pods.create(&pp, &speaker).await.unwrap();
    set_pod_ready(pods, pod, pod_ip, true).await;
}

/// A ClusterIP Service `name` with one port named `http` (80), as an Ingress backend names it.
pub fn http_service(name: &str) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An IPv4 EndpointSlice `name` of Service `service` (the `kubernetes.io/service-name` label)
/// with port `http` = `port` and one endpoint per `(address, ready)`.
pub fn endpoint_slice(
    name: &str,
    service: &str,
    addrs: &[(&str, bool)],
    port: u16,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                service.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: addrs
            .iter()
            .map(|(a, ready)| Endpoint {
                addresses: vec![a.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port.into()),
            ..Default::default()
        }]),
    }
}
