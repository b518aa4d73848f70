//! LoadBalancer address allocation without a cluster: a few Services (as YAML) go through the
//! pure allocator in the order the controller would see them, printing each decision and the
//! status it would write.
//!
//! `cargo run -p k8s-glue --example allocate`

use k8s_glue::lb::{Allocator, DEFAULT_LB_CLASS, LbConfig, Pool, alloc};
use k8s_openapi::api::core::v1::Service;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, loadBalancerClass: fairway.dev/lb, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, annotations: {metallb.io/loadBalancerIPs: "203.0.113.10"}}
spec: {type: LoadBalancer, loadBalancerClass: fairway.dev/lb, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: copycat, namespace: shop, annotations: {metallb.io/loadBalancerIPs: "203.0.113.10"}}
spec: {type: LoadBalancer, loadBalancerClass: fairway.dev/lb, ports: [{port: 8443}]}
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: shop}
spec: {type: LoadBalancer, loadBalancerClass: example.com/other-lb, ports: [{port: 80}]}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = LbConfig {
        class: DEFAULT_LB_CLASS.into(),
        default_class: false,
        pools: vec![
            Pool {
                name: "public".into(),
                cidrs: vec!["198.51.100.0/28".parse()?],
                ranges: vec![],
                auto_assign: true,
            },
            Pool {
                name: "pinned".into(),
                cidrs: vec!["203.0.113.0/28".parse()?],
                ranges: vec![],
                auto_assign: false,
            },
        ],
    };
    config.validate()?;
    let mut allocator = Allocator::new(config.pools.clone());
    for doc in serde_yaml::Deserializer::from_str(SERVICES) {
        let svc: Service = serde::Deserialize::deserialize(doc)?;
        let key = format!(
            "{}/{}",
            svc.metadata.namespace.as_deref().unwrap_or("default"),
            svc.metadata.name.as_deref().unwrap_or("")
        );
        if !config.is_ours(&svc) {
            println!(
                "{key}: not ours (class {:?})",
                svc.spec
                    .as_ref()
                    .and_then(|s| s.load_balancer_class.as_deref())
            );
            continue;
        }
        let decision = alloc::request(&svc)
            .and_then(|req| allocator.assign(&key, &req, &alloc::status_ips(&svc)));
        match decision {
            Ok(ips) => println!(
                "{key}: {ips:?} -> status {}",
                serde_json::to_string(&alloc::lb_status(&ips))?
            ),
            Err(e) => println!("{key}: AllocationFailed: {e}"),
        }
    }
    Ok(())
}
