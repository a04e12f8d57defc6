//! The Nat's ConfigMap: `node.toml` for the workers and one `lb-<machine>.toml` per
//! load-balancer machine (the LB pod picks its own by node name).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::child_meta;
use crate::Result;
use crate::config_file::{LbConfigFile, NodeConfigFile};
use crate::crd::{Nat, Node, NodeRole};
use crate::names::{NODE_CONFIG_KEY, NatNames};

/// The ConfigMap for `nat`, with an LB file for each machine in `machines` whose role
/// is `lb`.
///
/// # Errors
/// [`crate::Error::MissingField`] for a Nat without a uid; [`crate::Error::Encode`] if
/// a file cannot be rendered.
pub fn configmap(nat: &Nat, machines: &[Node]) -> Result<ConfigMap> {
    let names = NatNames::of(nat);
    let mut data = BTreeMap::new();
    data.insert(
        NODE_CONFIG_KEY.to_owned(),
        NodeConfigFile::for_nat(nat).render(&names)?,
    );
    for machine in machines.iter().filter(|m| m.spec.role == NodeRole::Lb) {
        let Some(name) = machine.metadata.name.as_deref() else {
            continue;
        };
        data.insert(
            NatNames::lb_config_key(name),
            LbConfigFile::for_machine(nat, machine).render(&names)?,
        );
    }
    Ok(ConfigMap {
        metadata: child_meta(nat, names.configmap(), None)?,
        data: Some(data),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_nat::nat;

    #[test]
    fn one_file_for_the_workers_and_one_per_lb_machine() {
        let machine = |name: &str, role: &str| {
            Node::new(
                name,
                serde_json::from_value(serde_json::json!({ "role": role })).unwrap(),
            )
        };
        let cm = configmap(
            &nat(serde_json::json!({})),
            &[machine("lb-a", "lb"), machine("w-a", "worker")],
        )
        .unwrap();
        let keys: Vec<_> = cm.data.unwrap().into_keys().collect();
        assert_eq!(
            keys,
            vec!["lb-lb-a.toml".to_owned(), "node.toml".to_owned()]
        );
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-config"));
    }
}
