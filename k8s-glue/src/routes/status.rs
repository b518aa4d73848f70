//! Ingress `status.loadBalancer` write-back (our class only; the caller checks the class).

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus,
};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

/// The status an Ingress of ours should show for `ips`.
pub(crate) fn desired(ips: &[IpAddr]) -> IngressLoadBalancerStatus {
    IngressLoadBalancerStatus {
        ingress: Some(
            ips.iter()
                .map(|ip| IngressLoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// Writes `status.loadBalancer` through `/status` when it differs from `ips`.
pub(crate) async fn sync(client: &Client, ingress: &Ingress, ips: &[IpAddr]) {
    let want = desired(ips);
    let have = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.clone())
        .unwrap_or_default();
    if have == want {
        return;
    }
    let api: Api<Ingress> =
        Api::namespaced(client.clone(), &ingress.namespace().unwrap_or_default());
    let body = serde_json::json!({"status": {"loadBalancer": want}});
    if let Err(e) = api
        .patch_status(
            &ingress.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        tracing::warn!(ingress = %format!("{}/{}", ingress.namespace().unwrap_or_default(), ingress.name_any()), error = %e, "writing Ingress status failed");
    }
}
