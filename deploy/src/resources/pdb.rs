//! The workers' PodDisruptionBudget: voluntary disruptions (node drains, evictions) may
//! never take the cluster below a Raft quorum.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::Result;
use crate::crd::Nat;
use crate::names::{Component, NatNames, quorum};

/// The budget for a cluster of `voters` voters (what the cluster reports, or the
/// desired size when larger). `minAvailable` is an integer quorum rather than a
/// `maxUnavailable`, which would be re-based on the StatefulSet's size while it changes.
///
/// # Errors
/// [`crate::Error::MissingField`] for a Nat without a uid.
pub fn pdb(nat: &Nat, voters: i32) -> Result<PodDisruptionBudget> {
    let names = NatNames::of(nat);
    Ok(PodDisruptionBudget {
        metadata: child_meta(nat, names.pdb(), Some(Component::Worker))?,
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(quorum(voters.max(nat.spec.replicas)))),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector(Component::Worker)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_nat::nat;

    fn min_available(replicas: i32, voters: i32) -> i32 {
        let p = pdb(&nat(serde_json::json!({ "replicas": replicas })), voters).unwrap();
        match p.spec.unwrap().min_available {
            Some(IntOrString::Int(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn min_available_is_the_quorum_of_the_larger_of_desired_and_actual() {
        assert_eq!(min_available(3, 3), 2);
        assert_eq!(min_available(5, 5), 3);
        assert_eq!(min_available(5, 3), 3, "scaling out: the target's quorum");
        assert_eq!(
            min_available(3, 5),
            3,
            "scaling in: the current quorum until members leave"
        );
        assert_eq!(min_available(1, 0), 1);
    }
}
