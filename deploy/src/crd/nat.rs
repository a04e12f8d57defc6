//! `nats.mfplane.io`: one NAT cluster. The spec says how big the cluster should be and
//! what it translates; placement (which member owns which bucket) never appears here,
//! it lives in the cluster's replicated state (DESIGN §2.3).
//!
//! Validation is written as CEL rules on the schema, so the API server rejects a bad
//! spec at `kubectl apply` time with a message that names the field, and the operator
//! checks a stored object with the very same rules ([`crate::crd::validate_nat`])
//! before acting on it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default number of bucket bits: 256 buckets (DESIGN §2.1).
pub const DEFAULT_BUCKET_BITS: i32 = 8;
/// Most members one cluster may have. Raft replicates every session to every member,
/// so more members buy failure tolerance and CPU, not capacity; past a few dozen the
/// leader spends its time replicating.
pub const MAX_REPLICAS: i32 = 64;

/// Desired state of a NAT cluster.
// The printer columns repeat `type_ = ...`, which clippy takes for a duplicated
// attribute; they are separate arguments of one derive attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mfplane.io",
    version = "v1alpha1",
    kind = "Nat",
    plural = "nats",
    namespaced,
    status = "NatStatus",
    derive = "PartialEq",
    category = "mfplane",
    doc = "A NAT cluster: how many members it has and what it translates. Which member owns which flows lives in the cluster's replicated state, not here.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas", description = "Desired members"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Voting members that serve traffic"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader", description = "Pod of the Raft leader"),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.epoch", description = "Version of the bucket table"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase", description = "Ready, Scaling, Degraded or Pending"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40").message(Message::Expression(
        "'metadata.name: ' + self.metadata.name + ' is too long: use at most 40 characters (it prefixes the worker pods, the Service and the StatefulSet)'".into()
    ))
)]
#[serde(rename_all = "camelCase")]
pub struct NatSpec {
    /// Number of worker members (Raft voters). `kubectl scale nat/NAME --replicas=N`
    /// changes it; the operator then adds or removes one member at a time.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message(Message::Expression(
        "'spec.replicas: ' + string(self) + ' is out of range: use 1 to 64 members'".into()
    )))]
    pub replicas: i32,

    /// Public IPv4 addresses the cluster translates inside sources to. Fixed when the
    /// cluster is created: each bucket owns a slice of every address's port space.
    #[serde(rename = "externalIPs")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 15)))]
    #[x_kube(
        validation = Rule::new("self.all(a, isIP(a) && ip(a).family() == 4 && ip(a).isGlobalUnicast())").message(Message::Expression(
            "'spec.externalIPs: ' + self.filter(a, !(isIP(a) && ip(a).family() == 4 && ip(a).isGlobalUnicast())).join(', ') + ' is not a unicast IPv4 address (write e.g. 203.0.113.10)'".into()
        )),
        validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message(
            "spec.externalIPs: lists the same address more than once"
        ),
        validation = Rule::new("self == oldSelf").message(
            "spec.externalIPs cannot change after the cluster is created (each bucket owns a slice of every address's ports): create a new Nat instead"
        )
    )]
    pub external_ips: Vec<String>,

    /// Inside networks whose traffic is translated (IPv4 CIDRs). Everything else passes
    /// through the load balancers untouched.
    #[schemars(length(min = 1, max = 256), inner(length(max = 18)))]
    #[x_kube(
        validation = Rule::new("self.all(c, isCIDR(c) && cidr(c).ip().family() == 4)").message(Message::Expression(
            "'spec.insideSources: ' + self.filter(c, !(isCIDR(c) && cidr(c).ip().family() == 4)).join(', ') + ' is not an IPv4 CIDR (write e.g. 10.0.0.0/8)'".into()
        )),
        validation = Rule::new("self.all(c, !isCIDR(c) || cidr(c).ip().family() != 4 || cidr(c) == cidr(c).masked())").message(Message::Expression(
            "'spec.insideSources: ' + self.filter(c, isCIDR(c) && cidr(c).ip().family() == 4 && cidr(c) != cidr(c).masked()).join(', ') + ' has host bits set (write the network address, e.g. 10.0.0.0/8)'".into()
        ))
    )]
    pub inside_sources: Vec<String>,

    /// log2 of the number of flow buckets (4..=12, default 8 = 256 buckets). More
    /// buckets spread load more evenly; each bucket owns `65536 / 2^bits` ports of every
    /// external IP. Fixed when the cluster is created.
    #[serde(default = "default_bucket_bits")]
    #[x_kube(
        validation = Rule::new("self >= 4 && self <= 12").message(Message::Expression(
            "'spec.bucketBits: ' + string(self) + ' is out of range: use 4 to 12 (default 8 = 256 buckets)'".into()
        )),
        validation = Rule::new("self == oldSelf").message(
            "spec.bucketBits cannot change after the cluster is created (sessions are placed by bucket): create a new Nat instead"
        )
    )]
    pub bucket_bits: i32,

    /// Whether the first packet of a new flow waits for its session to commit.
    #[serde(default)]
    pub commit_mode: CommitMode,

    /// Idle timeouts of sessions.
    #[serde(default)]
    pub timeouts: Timeouts,

    /// The worker pods (Raft members with the NAT data path).
    #[serde(default)]
    pub worker: WorkerSpec,

    /// The load-balancer DaemonSet on the machines whose `nodes.mfplane.io` role is `lb`.
    #[serde(default)]
    pub lb: LbSpec,

    /// How the workers attach to the data network.
    #[serde(default)]
    pub network: DataNetwork,

    /// How the operator changes membership.
    #[serde(default)]
    pub membership: MembershipPolicy,
}

fn default_bucket_bits() -> i32 {
    DEFAULT_BUCKET_BITS
}

/// When a new flow's first packet is forwarded (DESIGN §2.3).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommitMode {
    /// Forward at once; the session commits within a batch interval.
    #[default]
    Optimistic,
    /// Hold the first packet until the session has committed.
    Strict,
}

impl CommitMode {
    /// The spelling used on the wire and in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            CommitMode::Optimistic => "optimistic",
            CommitMode::Strict => "strict",
        }
    }
}

/// Session idle timeouts, in seconds. The lower bounds are the RFCs' minimums, so a
/// cluster configured here is always behaviourally compliant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// UDP mapping timeout (RFC 4787 REQ-5: at least 120 s).
    #[serde(default = "default_udp")]
    #[x_kube(validation = Rule::new("self >= 120 && self <= 86400").message(Message::Expression(
        "'spec.timeouts.udpSeconds: ' + string(self) + ' is out of range: use 120 (RFC 4787 minimum) to 86400'".into()
    )))]
    pub udp_seconds: i32,
    /// Established TCP timeout (RFC 5382 REQ-5: at least 2 h 4 min = 7440 s).
    #[serde(default = "default_tcp_established")]
    #[x_kube(validation = Rule::new("self >= 7440 && self <= 604800").message(Message::Expression(
        "'spec.timeouts.tcpEstablishedSeconds: ' + string(self) + ' is out of range: use 7440 (RFC 5382 minimum) to 604800'".into()
    )))]
    pub tcp_established_seconds: i32,
    /// Transitory TCP timeout (handshake, closing; RFC 5382 REQ-5: at least 240 s).
    #[serde(default = "default_tcp_transitory")]
    #[x_kube(validation = Rule::new("self >= 240 && self <= 86400").message(Message::Expression(
        "'spec.timeouts.tcpTransitorySeconds: ' + string(self) + ' is out of range: use 240 (RFC 5382 minimum) to 86400'".into()
    )))]
    pub tcp_transitory_seconds: i32,
    /// ICMP query timeout (RFC 5508 REQ-1: at least 60 s).
    #[serde(default = "default_icmp")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 86400").message(Message::Expression(
        "'spec.timeouts.icmpSeconds: ' + string(self) + ' is out of range: use 60 (RFC 5508 minimum) to 86400'".into()
    )))]
    pub icmp_seconds: i32,
}

fn default_udp() -> i32 {
    300
}
fn default_tcp_established() -> i32 {
    7440
}
fn default_tcp_transitory() -> i32 {
    240
}
fn default_icmp() -> i32 {
    60
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            udp_seconds: default_udp(),
            tcp_established_seconds: default_tcp_established(),
            tcp_transitory_seconds: default_tcp_transitory(),
            icmp_seconds: default_icmp(),
        }
    }
}

/// Default image of the worker and LB pods; pin a digest in production.
pub const DEFAULT_IMAGE: &str = "ghcr.io/mfplane/mfplane:0.1.0";

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

fn default_storage() -> String {
    "1Gi".to_owned()
}

/// The worker pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image holding `mfplane-node`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// CPU and memory; integer CPUs with equal requests and limits give Guaranteed QoS
    /// and pinned cores for the data path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Machines the workers may run on. Empty means the machines whose
    /// `nodes.mfplane.io` role is `worker` (label `mfplane.io/worker=true`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Size of each member's volume for its Raft log and snapshots.
    #[serde(default = "default_storage")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.worker.storage cannot change after creation (a StatefulSet's volume claims are fixed): create a new Nat, or resize the PersistentVolumeClaims directly"
    ))]
    pub storage: String,
    /// StorageClass of that volume (the cluster default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.worker.storageClassName cannot change after creation (a StatefulSet's volume claims are fixed): create a new Nat instead"
    ))]
    pub storage_class_name: Option<String>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            image: default_image(),
            resources: None,
            node_selector: BTreeMap::new(),
            storage: default_storage(),
            storage_class_name: None,
        }
    }
}

/// How a load balancer reaches a bucket's owner.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LbMode {
    /// Rewrite the destination MAC and transmit on the same segment (one-armed).
    #[default]
    L2,
    /// Encapsulate in IP-in-IP, for routed fabrics.
    IpInIp,
}

impl LbMode {
    /// The spelling used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            LbMode::L2 => "l2",
            LbMode::IpInIp => "ipip",
        }
    }
}

/// The load-balancer tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LbSpec {
    /// Container image holding `mfplane-lb`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Steering mode.
    #[serde(default)]
    pub mode: LbMode,
    /// Interfaces the LB attaches to on machines whose `nodes.mfplane.io` object lists
    /// none of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 15)))]
    #[x_kube(validation = Rule::new("self.all(i, i.matches('^[a-zA-Z0-9_.-]{1,15}$'))").message(Message::Expression(
        "'spec.lb.interfaces: ' + self.filter(i, !i.matches('^[a-zA-Z0-9_.-]{1,15}$')).join(', ') + ' is not a Linux interface name (1-15 of a-z A-Z 0-9 _ . -)'".into()
    )))]
    pub interfaces: Vec<String>,
    /// CPU and memory of each LB pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Further restricts the LB machines (they must also have role `lb`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

impl Default for LbSpec {
    fn default() -> Self {
        LbSpec {
            image: default_image(),
            mode: LbMode::default(),
            interfaces: Vec::new(),
            resources: None,
            node_selector: BTreeMap::new(),
        }
    }
}

/// The data network of the workers: Multus NetworkAttachmentDefinitions (SR-IOV,
/// macvlan, ...). Without any, the pod's default interface carries the data path.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataNetwork {
    /// NetworkAttachmentDefinition names (`name` or `namespace/name`), attached in this
    /// order; the first one is the data-plane interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(n, n.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message(Message::Expression(
        "'spec.network.attachments: ' + self.filter(n, !n.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$')).join(', ') + ' is not a NetworkAttachmentDefinition name (name or namespace/name, lower-case DNS labels)'".into()
    )))]
    pub attachments: Vec<String>,
    /// Extended resource the attachment needs (e.g. `intel.com/sriov_netdevice`), one
    /// per worker pod, for SR-IOV device plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// MAC of the router that translated packets are sent to. Default: the data
    /// interface's default gateway, which each worker looks up when it starts (so the
    /// attachment's IPAM must give the interface a default route). Set it for a router
    /// with a fixed MAC (a VRRP virtual MAC, say) or an attachment without a default
    /// route.
    #[serde(
        default,
        rename = "nextHopMAC",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 17))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$')").message(Message::Expression(
        "'spec.network.nextHopMAC: ' + self + ' is not a unicast MAC address (write e.g. 00:00:5e:00:01:01)'".into()
    )))]
    pub next_hop_mac: Option<String>,
}

/// How the operator changes membership.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MembershipPolicy {
    /// How long a new member may take to join and catch up with the leader's log before
    /// the Nat reports Degraded. The operator keeps waiting either way.
    #[serde(default = "default_catch_up_timeout")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 86400").message(Message::Expression(
        "'spec.membership.catchUpTimeoutSeconds: ' + string(self) + ' is out of range: use 10 to 86400'".into()
    )))]
    pub catch_up_timeout_seconds: i32,
    /// A learner counts as caught up when it is at most this many log entries behind
    /// the leader.
    #[serde(default = "default_max_lag")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000000").message(Message::Expression(
        "'spec.membership.maxCatchUpLag: ' + string(self) + ' is out of range: use 0 to 1000000 log entries'".into()
    )))]
    pub max_catch_up_lag: i64,
}

fn default_catch_up_timeout() -> i32 {
    300
}
fn default_max_lag() -> i64 {
    1000
}

impl Default for MembershipPolicy {
    fn default() -> Self {
        MembershipPolicy {
            catch_up_timeout_seconds: default_catch_up_timeout(),
            max_catch_up_lag: default_max_lag(),
        }
    }
}

/// Observed state of a NAT cluster, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NatStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Members of the cluster that belong to this Nat (voters and learners); the
    /// `/scale` subresource reports it as the current size.
    #[serde(default)]
    pub replicas: i32,
    /// Voters whose pods are Ready (readiness gate `mfplane.io/raft-voter` set).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the worker pods, serialized, for `/scale` and autoscalers.
    #[serde(default)]
    pub label_selector: String,
    /// One word for `kubectl get`: Ready, Scaling or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Pod of the Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Version of the bucket table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Committed sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<i64>,
    /// Every member of the cluster as the leader sees it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Ready, Scaling and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Role of a member in Raft.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MemberRole {
    /// Votes and may own buckets.
    Voter,
    /// Receives the log but does not vote yet.
    Learner,
}

/// One member as the leader sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member name (the pod name).
    pub name: String,
    /// Raft node id (never reused).
    pub node_id: i64,
    /// Voter or learner.
    pub role: MemberRole,
    /// Whether buckets are being moved away from it.
    #[serde(default)]
    pub draining: bool,
    /// Buckets it owns.
    #[serde(default)]
    pub buckets: i32,
    /// Committed sessions in its buckets.
    #[serde(default)]
    pub sessions: i64,
    /// Whether the leader heard from it within the lease.
    #[serde(default)]
    pub reachable: bool,
}
