//! What the cluster knows about a member: its addresses (openraft's `Node` type) and its
//! replicated lifecycle record.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ids::MacAddr;

/// A member's addresses. This is openraft's `Node` type, so the Raft membership itself
/// carries everything needed to reach a member (no separate address book) and the LB can
/// steer to `data_mac`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Unique, human-chosen name (e.g. the pod name); re-registering under the same name
    /// returns the existing id, so a restarted member finds itself again.
    pub name: String,
    /// `host:port` of the member's Raft/admin gRPC endpoint.
    pub raft_addr: String,
    /// Data-plane IPv4 address (tunnel endpoint / next hop for steered packets).
    pub data_ip: Ipv4Addr,
    /// Data-plane MAC address the LB rewrites to.
    pub data_mac: MacAddr,
}

impl Default for MemberInfo {
    /// An unnamed member with unspecified addresses; only useful as a placeholder
    /// (openraft's storage test-suite builds members with `Default`).
    fn default() -> Self {
        MemberInfo {
            name: String::new(),
            raft_addr: String::new(),
            data_ip: Ipv4Addr::UNSPECIFIED,
            data_mac: MacAddr::default(),
        }
    }
}

impl fmt::Display for MemberInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (raft {}, data {} {})",
            self.name, self.raft_addr, self.data_ip, self.data_mac
        )
    }
}

/// A registered member as the state machine tracks it. Records are kept after retirement
/// so that an id is never handed out twice and tools can still name old ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeRecord {
    pub info: MemberInfo,
    /// Set by `SetDraining`: the controller moves the node's buckets away and gives it
    /// none. Draining is a controller policy; the state machine only records it.
    pub draining: bool,
    /// Set by `RetireNode`: the node may never own buckets again and its name is free.
    pub retired: bool,
}
