//! `nodes.mfplane.io` (short name `mfnode`): a machine that runs load-balancer or worker
//! functions, and its data interfaces. Cluster-scoped like the machine it describes; its
//! name is the Kubernetes node's name.
//!
//! The kind is `Node`, so `kubectl get nodes` keeps showing core nodes (core groups win
//! for bare names); use `kubectl get mfnode` or `nodes.mfplane.io`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A machine's mfplane function and data interfaces.
// The printer columns repeat `type_ = "string"`, which clippy takes for a duplicated
// attribute; they are separate arguments of one derive attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mfplane.io",
    version = "v1alpha1",
    kind = "Node",
    plural = "nodes",
    shortname = "mfnode",
    category = "mfplane",
    doc = "A machine that runs mfplane load-balancer or worker functions, named after its Kubernetes node, and its data interfaces.",
    status = "NodeStatus",
    derive = "PartialEq",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "XDP", type_ = "string", json_path = ".spec.xdpMode"),
    printcolumn(name = "Functions", type_ = "string", json_path = ".status.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// What the machine runs.
    pub role: NodeRole,
    /// Data interfaces. For `lb` machines these are the host interfaces the XDP program
    /// attaches to (the Nat's `spec.lb.interfaces` apply when empty); for `worker`
    /// machines they document what the Multus attachments map to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(
        validation = Rule::new("self.all(i, i.name.matches('^[a-zA-Z0-9_.-]{1,15}$'))").message(Message::Expression(
            "'spec.interfaces: ' + self.filter(i, !i.name.matches('^[a-zA-Z0-9_.-]{1,15}$')).map(i, i.name).join(', ') + ' is not a Linux interface name (1-15 of a-z A-Z 0-9 _ . -)'".into()
        )),
        validation = Rule::new("self.all(i, self.exists_one(j, j.name == i.name))").message(
            "spec.interfaces: lists the same interface name more than once"
        )
    )]
    pub interfaces: Vec<DataInterface>,
    /// `lb` machines: the interface towards the workers, where steered packets leave.
    /// Needed when the LB has several interfaces and not exactly one with side `both`
    /// (the LB picks that one, or the only interface, by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9_.-]{1,15}$')").message(
        "spec.fabric: not a Linux interface name (1-15 of a-z A-Z 0-9 _ . -)"
    ))]
    pub fabric: Option<String>,
    /// How XDP programs attach on this machine.
    #[serde(default)]
    pub xdp_mode: XdpMode,
}

/// What a machine runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// The stateless XDP load balancer (one pod per Nat, from its DaemonSet).
    Lb,
    /// NAT workers (StatefulSet pods).
    Worker,
}

impl NodeRole {
    /// The Kubernetes node label that marks a machine of this role; the DaemonSet and
    /// the StatefulSet select on it.
    pub fn node_label(self) -> &'static str {
        match self {
            NodeRole::Lb => crate::names::LB_NODE_LABEL,
            NodeRole::Worker => crate::names::WORKER_NODE_LABEL,
        }
    }
}

/// A data interface of the machine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataInterface {
    /// Kernel interface name, e.g. `ens1f0`.
    #[schemars(length(min = 1, max = 15))]
    pub name: String,
    /// Which traffic it carries.
    #[serde(default)]
    pub side: InterfaceSide,
}

/// Which traffic an interface carries.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceSide {
    /// Inside hosts (outbound traffic arrives here).
    Inside,
    /// The internet (return traffic arrives here).
    Outside,
    /// Both (one-armed).
    #[default]
    Both,
}

impl InterfaceSide {
    /// The spelling used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            InterfaceSide::Inside => "inside",
            InterfaceSide::Outside => "outside",
            InterfaceSide::Both => "both",
        }
    }
}

/// How XDP attaches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver (fastest; needs driver support).
    #[default]
    Native,
    /// In the generic network stack (works everywhere, slower).
    Generic,
    /// On the NIC (needs offload-capable hardware).
    Offload,
}

impl XdpMode {
    /// The spelling used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Offload => "offload",
        }
    }
}

/// What runs on the machine, as the operator last saw it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// mfplane pods scheduled on the machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<Function>,
    /// One line for `kubectl get mfnode`, e.g. `lb demo (ready)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `Labeled`: whether the Kubernetes node carries the role label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One mfplane pod on the machine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// `lb` or `worker`.
    pub kind: NodeRole,
    /// The Nat it serves, `namespace/name`.
    pub nat: String,
    /// The pod.
    pub pod: String,
    /// Whether the pod is Ready.
    pub ready: bool,
}
