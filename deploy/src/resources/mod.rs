//! The objects a Nat is reconciled into, built as pure functions of the Nat (and of what
//! the orchestration decided), so every field is unit-tested without an API server and
//! server-side apply sends exactly these objects.

mod configmap;
mod daemonset;
mod pdb;
mod service;
mod statefulset;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

pub use configmap::configmap;
pub use daemonset::{LB_HTTP_PORT, lb_daemonset, lb_node_selector};
pub use pdb::pdb;
pub use service::service;
pub use statefulset::{statefulset, worker_capabilities};

use crate::crd::Nat;
use crate::names::{Component, NatNames};
use crate::{Error, Result};

/// The owner reference that makes `nat` the controller of a child: the garbage
/// collector deletes the child with the Nat, and `Controller::owns` maps child events
/// back to the Nat.
///
/// # Errors
/// [`Error::MissingField`] for a Nat that was never stored (no uid).
pub fn owner_reference(nat: &Nat) -> Result<OwnerReference> {
    nat.controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))
}

/// Metadata of a child object: name, namespace, labels and the owner reference.
fn child_meta(nat: &Nat, name: String, component: Option<Component>) -> Result<ObjectMeta> {
    let names = NatNames::of(nat);
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels(component)),
        owner_references: Some(vec![owner_reference(nat)?]),
        ..ObjectMeta::default()
    })
}

#[cfg(test)]
pub(crate) mod test_nat {
    use super::*;
    use crate::crd::NatSpec;

    /// A stored-looking Nat `edge/demo` with `extra` merged into a minimal spec.
    pub fn nat(extra: serde_json::Value) -> Nat {
        let mut spec = serde_json::json!({
            "replicas": 3, "externalIPs": ["203.0.113.10"], "insideSources": ["10.0.0.0/8"],
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let spec: NatSpec = serde_json::from_value(spec).unwrap();
        let mut n = Nat::new("demo", spec);
        n.metadata.namespace = Some("edge".into());
        n.metadata.uid = Some("0b6e1c1e-0000-4000-8000-000000000001".into());
        n.metadata.generation = Some(1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::test_nat::nat;
    use super::*;

    #[test]
    fn children_are_owned_by_the_nat_as_controller() {
        let n = nat(serde_json::json!({}));
        let o = owner_reference(&n).unwrap();
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.controller),
            ("Nat", "demo", Some(true))
        );
        assert_eq!(o.api_version, "mfplane.io/v1alpha1");
        let mut unsaved = n.clone();
        unsaved.metadata.uid = None;
        assert!(matches!(
            owner_reference(&unsaved),
            Err(Error::MissingField("metadata.uid"))
        ));
    }

    /// Whether an equality-based selector (`k=v,k=v`) selects `labels`.
    fn selects(selector: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        selector.split(',').all(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
        })
    }

    #[test]
    fn every_child_is_owned_labelled_for_the_watches_and_in_the_nats_namespace() {
        use crate::names::{
            COMPONENT_LABEL, MANAGED_SELECTOR, PART_OF_SELECTOR, worker_pods_selector,
        };
        let n = nat(serde_json::json!({}));
        let uid = n.metadata.uid.clone();
        let sts = statefulset(&n, 3).unwrap();
        let ds = lb_daemonset(&n).unwrap();
        let children = [
            service(&n).unwrap().metadata,
            sts.metadata.clone(),
            ds.metadata.clone(),
            pdb(&n, 3).unwrap().metadata,
            configmap(&n, &[]).unwrap().metadata,
        ];
        for meta in &children {
            let name = meta.name.as_deref().unwrap_or_default();
            let owners = meta.owner_references.as_deref().unwrap_or_default();
            assert_eq!(owners.len(), 1, "{name}: one owner");
            assert_eq!(
                (
                    owners[0].kind.as_str(),
                    Some(&owners[0].uid),
                    owners[0].controller
                ),
                ("Nat", uid.as_ref(), Some(true)),
                "{name}"
            );
            assert_eq!(meta.namespace.as_deref(), Some("edge"), "{name}");
            // `Controller::owns` only sees children its label selector selects.
            assert!(
                selects(MANAGED_SELECTOR, meta.labels.as_ref().unwrap()),
                "{name}: {:?}",
                meta.labels
            );
        }
        // The pods: workers are watched by component and manager, and every mfplane
        // pod by part-of (the Node controller reports what runs on each machine).
        let template = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
            t.metadata.as_ref().unwrap().labels.clone().unwrap()
        };
        let worker = template(&sts.spec.unwrap().template);
        let lb = template(&ds.spec.unwrap().template);
        assert!(selects(&worker_pods_selector(), &worker));
        assert!(selects(PART_OF_SELECTOR, &worker) && selects(PART_OF_SELECTOR, &lb));
        assert_eq!(lb.get(COMPONENT_LABEL).map(String::as_str), Some("lb"));
    }
}
