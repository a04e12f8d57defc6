//! Names, labels, ports and keys shared by the desired objects, the orchestration and
//! the manifests, so that a selector and the labels it selects can never disagree.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::Nat;

/// API group of the custom resources.
pub const GROUP: &str = "mfplane.io";
/// Field manager of every server-side apply; `kubectl get -o yaml --show-managed-fields`
/// shows which fields the operator owns.
pub const FIELD_MANAGER: &str = "mfplane-operator";
/// Field manager of the role labels on core nodes. Separate from [`FIELD_MANAGER`] so
/// that applying an empty label set removes exactly the labels the operator added.
pub const NODE_LABEL_MANAGER: &str = "mfplane-operator-node-labels";
/// Finalizer on a Nat: its volumes are deleted before the Nat goes away.
pub const NAT_FINALIZER: &str = "nats.mfplane.io/cleanup";
/// Finalizer on a Node: the role label is taken off the Kubernetes node first.
pub const NODE_FINALIZER: &str = "nodes.mfplane.io/labels";
/// Pod readiness gate: True once the pod is a voting, caught-up member. Until then the
/// pod is not Ready, so rollouts and the PodDisruptionBudget wait for Raft membership.
pub const READINESS_GATE: &str = "mfplane.io/raft-voter";
/// Pod annotation Multus reads to attach the data network.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// Pod annotation Multus writes with each interface's addresses and MAC.
pub const MULTUS_NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Label on core nodes whose `nodes.mfplane.io` role is `lb`.
pub const LB_NODE_LABEL: &str = "mfplane.io/lb";
/// Label on core nodes whose `nodes.mfplane.io` role is `worker`.
pub const WORKER_NODE_LABEL: &str = "mfplane.io/worker";
/// Label naming the Nat a pod belongs to.
pub const NAT_LABEL: &str = "mfplane.io/nat";
/// Standard component label: `worker` or `lb`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Standard label on every object the operator makes; its watches of the children
/// select on it ([`MANAGED_SELECTOR`]).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label selector of every object the operator makes.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=mfplane-operator";
/// Standard label on every mfplane object; the Node controller watches pods by it.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Label selector of every mfplane pod, workers and LBs.
pub const PART_OF_SELECTOR: &str = "app.kubernetes.io/part-of=mfplane";
/// Port of the worker's gRPC server (Raft, Admin, Steering, Sessions).
pub const GRPC_PORT: i32 = 7700;
/// Port of the worker's and LB's HTTP server (/healthz, /readyz, /metrics).
pub const HTTP_PORT: i32 = 9090;
/// Where the ConfigMap is mounted in every pod.
pub const CONFIG_DIR: &str = "/etc/mfplane";
/// ConfigMap key (and file name) of the workers' configuration.
pub const NODE_CONFIG_KEY: &str = "node.toml";
/// Where a worker keeps its Raft log and state (its PersistentVolume).
pub const DATA_DIR: &str = "/var/lib/mfplane";
/// Name of the worker's volume claim template.
pub const DATA_VOLUME: &str = "data";
/// Namespace the manifests install the operator into.
pub const OPERATOR_NAMESPACE: &str = "mfplane-system";
/// Name of the operator's Deployment, ServiceAccount, ClusterRole and Lease.
pub const OPERATOR_NAME: &str = "mfplane-operator";

/// Label selector of the worker pods of every Nat; the Nat controller watches them.
pub fn worker_pods_selector() -> String {
    format!(
        "{COMPONENT_LABEL}={},{MANAGED_SELECTOR}",
        Component::Worker.as_str()
    )
}

/// Worker or LB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// StatefulSet pods: Raft members with the NAT data path.
    Worker,
    /// DaemonSet pods: the XDP load balancers.
    Lb,
}

impl Component {
    /// Value of [`COMPONENT_LABEL`].
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Worker => "worker",
            Component::Lb => "lb",
        }
    }
}

/// Every object name derived from one Nat. Worker pods are `<nat>-<ordinal>`, which is
/// also their member name in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNames {
    /// The Nat's name.
    pub nat: String,
    /// The Nat's namespace.
    pub namespace: String,
}

impl NatNames {
    /// Names for `nat`; a Nat without a namespace (impossible for a stored object) uses
    /// `default`.
    pub fn of(nat: &Nat) -> Self {
        NatNames {
            nat: nat.name_any(),
            namespace: nat.namespace().unwrap_or_else(|| "default".to_owned()),
        }
    }

    /// `namespace/name`, the Nat's key in logs, metrics and Node statuses.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.nat)
    }

    /// The StatefulSet of workers.
    pub fn statefulset(&self) -> String {
        self.nat.clone()
    }

    /// The headless Service that gives each worker a stable DNS name.
    pub fn service(&self) -> String {
        self.nat.clone()
    }

    /// The ConfigMap holding the workers' and LBs' configuration files.
    pub fn configmap(&self) -> String {
        format!("{}-config", self.nat)
    }

    /// The PodDisruptionBudget of the workers.
    pub fn pdb(&self) -> String {
        self.nat.clone()
    }

    /// The LB DaemonSet.
    pub fn lb_daemonset(&self) -> String {
        format!("{}-lb", self.nat)
    }

    /// Pod (and member) name of a worker ordinal.
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.nat)
    }

    /// The ordinal of a worker pod or member name, if it is one of this Nat's.
    pub fn ordinal_of(&self, name: &str) -> Option<u32> {
        let rest = name.strip_prefix(&self.nat)?.strip_prefix('-')?;
        if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
            return None;
        }
        rest.parse().ok()
    }

    /// gRPC address of a worker ordinal, through the headless Service.
    pub fn grpc_address(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc:{GRPC_PORT}",
            self.pod(ordinal),
            self.service(),
            self.namespace
        )
    }

    /// Labels on every object of this Nat.
    pub fn labels(&self, component: Option<Component>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "mfplane".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.nat.clone()),
            (MANAGED_BY_LABEL.to_owned(), OPERATOR_NAME.to_owned()),
            (PART_OF_LABEL.to_owned(), "mfplane".to_owned()),
            (NAT_LABEL.to_owned(), self.nat.clone()),
        ]);
        if let Some(c) = component {
            l.insert(COMPONENT_LABEL.to_owned(), c.as_str().to_owned());
        }
        l
    }

    /// The immutable selector of a component's pods (a subset of [`Self::labels`]).
    pub fn selector(&self, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAT_LABEL.to_owned(), self.nat.clone()),
            (COMPONENT_LABEL.to_owned(), component.as_str().to_owned()),
        ])
    }

    /// [`Self::selector`] serialized, for `status.labelSelector` and list calls.
    pub fn selector_string(&self, component: Component) -> String {
        self.selector(component)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// ConfigMap key (and file name) of one LB machine's configuration.
    pub fn lb_config_key(machine: &str) -> String {
        format!("lb-{machine}.toml")
    }
}

/// Raft quorum of `voters` members: the fewest that must stay up.
pub fn quorum(voters: i32) -> i32 {
    voters.max(1) / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> NatNames {
        NatNames {
            nat: "demo".into(),
            namespace: "edge".into(),
        }
    }

    #[test]
    fn ordinals_round_trip_and_strangers_are_not_ours() {
        let n = names();
        for i in [0, 1, 9, 10, 63] {
            assert_eq!(n.ordinal_of(&n.pod(i)), Some(i));
        }
        for other in [
            "demo",
            "demo-",
            "demo-01",
            "demo-x",
            "demo-lb-0",
            "demox-1",
            "other-1",
        ] {
            assert_eq!(n.ordinal_of(other), None, "{other}");
        }
    }

    #[test]
    fn selector_is_a_subset_of_the_labels() {
        let n = names();
        for c in [Component::Worker, Component::Lb] {
            let labels = n.labels(Some(c));
            for (k, v) in n.selector(c) {
                assert_eq!(labels.get(&k), Some(&v));
            }
        }
        assert_eq!(
            n.selector_string(Component::Worker),
            "app.kubernetes.io/component=worker,mfplane.io/nat=demo"
        );
        assert_eq!(n.grpc_address(2), "demo-2.demo.edge.svc:7700");
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
    }
}
