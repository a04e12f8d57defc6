//! The custom resources: `nats.mfplane.io` and `nodes.mfplane.io`, and the client-side
//! check of a stored object against the CRD's own validation rules.

mod nat;
mod node;
mod validation;

pub use nat::{
    CommitMode, DEFAULT_BUCKET_BITS, DEFAULT_IMAGE, DataNetwork, LbMode, LbSpec, MAX_REPLICAS,
    MemberRole, MemberStatus, MembershipPolicy, Nat, NatSpec, NatStatus, Timeouts, WorkerSpec,
};
pub use node::{
    DataInterface, Function, InterfaceSide, Node, NodeRole, NodeSpec, NodeStatus, XdpMode,
};
pub use validation::{FieldError, validate_nat, validate_node};
