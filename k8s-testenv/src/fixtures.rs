//! Objects the tests put into the API server, as the components that normally write them would
//! (there is no kubelet or controller-manager here).

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeCondition, NodeStatus, Service,
    ServicePort, ServiceSpec, ServiceStatus,
};
use kube::api::{Api, ObjectMeta, PostParams};

/// Metadata with just a name.
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
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
