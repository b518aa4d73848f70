//! Which Ingresses are ours: IngressClass selection (pure).

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Our IngressClass controller name (`spec.controller`).
pub const CONTROLLER_NAME: &str = "fairway.dev/ingress-controller";
/// The deprecated class annotation, still honoured.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The IngressClasses that belong to our controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OurClasses {
    /// Names of IngressClasses whose `spec.controller` is ours.
    pub names: BTreeSet<String>,
    /// Whether one of them is marked default: then class-less Ingresses are ours too.
    pub default: bool,
}

impl OurClasses {
    /// Computes our classes from all IngressClasses, for controller name `controller`.
    pub fn from_classes<'a>(
        classes: impl IntoIterator<Item = &'a IngressClass>,
        controller: &str,
    ) -> Self {
        let mut ours = OurClasses::default();
        for class in classes {
            let mine =
                class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller);
            if !mine {
                continue;
            }
            if let Some(name) = &class.metadata.name {
                ours.names.insert(name.clone());
            }
            let default = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            ours.default |= default;
        }
        ours
    }

    /// Whether `ingress` is served by us: its `spec.ingressClassName` (else the deprecated
    /// annotation) names one of our classes, or it has no class and one of ours is the default.
    pub fn is_ours(&self, ingress: &Ingress) -> bool {
        let class = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| {
                ingress
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(CLASS_ANNOTATION)
                    .map(String::as_str)
            });
        match class {
            Some(c) => self.names.contains(c),
            None => self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{IngressClassSpec, IngressSpec};
    use kube::api::ObjectMeta;

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        IngressClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: default
                    .then(|| [(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            spec: Some(IngressClassSpec {
                controller: Some(controller.into()),
                ..Default::default()
            }),
        }
    }

    fn ing(class: Option<&str>, annotation: Option<&str>) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                annotations: annotation
                    .map(|a| [(CLASS_ANNOTATION.to_string(), a.to_string())].into()),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: class.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn selects_by_class_annotation_and_default() {
        let classes = [
            class("fairway", CONTROLLER_NAME, false),
            class("nginx", "k8s.io/ingress-nginx", true),
        ];
        let ours = OurClasses::from_classes(&classes, CONTROLLER_NAME);
        assert!(ours.is_ours(&ing(Some("fairway"), None)));
        assert!(ours.is_ours(&ing(None, Some("fairway"))));
        assert!(!ours.is_ours(&ing(Some("nginx"), None)));
        assert!(
            !ours.is_ours(&ing(None, None)),
            "class-less goes to the default, which is not ours"
        );
        assert!(!ours.is_ours(&ing(Some("unknown"), None)));

        let classes = [class("fairway", CONTROLLER_NAME, true)];
        let ours = OurClasses::from_classes(&classes, CONTROLLER_NAME);
        assert!(ours.is_ours(&ing(None, None)));
        assert!(!ours.is_ours(&ing(Some("nginx"), None)));
    }
}
