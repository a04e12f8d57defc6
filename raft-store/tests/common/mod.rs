//! Builders shared by the integration tests.
#![allow(dead_code)] // reason: each test binary uses a different subset of the helpers.

use std::net::Ipv4Addr;

use mfplane_core::{BucketBits, BucketId, Endpoint, FlowHashKey, Proto, SessionKey, SessionRecord};
use mfplane_raft_store::{
    ClusterConfig, ClusterState, Command, Epoch, MacAddr, MemberInfo, NodeId, Response,
};

pub const EXT_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const EXT_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

pub fn config(bits: u8) -> ClusterConfig {
    ClusterConfig {
        bucket_bits: BucketBits::new(bits).unwrap(),
        external_ips: vec![EXT_A, EXT_B],
        flow_hash_key: FlowHashKey::new(1, 2),
    }
}

pub fn member(name: &str) -> MemberInfo {
    MemberInfo {
        name: name.to_string(),
        raft_addr: format!("{name}.example:7000"),
        data_ip: Ipv4Addr::new(10, 0, 0, 1),
        data_mac: MacAddr([2, 0, 0, 0, 0, 1]),
    }
}

pub fn key(proto: Proto, ip: u32, port: u16) -> SessionKey {
    SessionKey {
        proto,
        inside: Endpoint::new(ip, port),
    }
}

/// A session whose bucket follows from its external port under `bits`.
pub fn session(
    bits: u8,
    inside_ip: u32,
    inside_port: u16,
    ext: Ipv4Addr,
    ext_port: u16,
) -> SessionRecord {
    let mask = BucketBits::new(bits).unwrap().mask();
    SessionRecord {
        key: key(Proto::Udp, inside_ip, inside_port),
        external: Endpoint::new(u32::from(ext), ext_port),
        bucket: BucketId((u32::from(ext_port) & mask) as u16),
        created_ms: 1_700_000_000_000,
    }
}

/// The commands that bring a cluster to: configured with `bits`, nodes 1 and 2
/// registered, even buckets on node 1 and odd buckets on node 2 (epoch 1).
pub fn setup_commands(bits: u8) -> Vec<Command> {
    let count = 1u16 << bits;
    vec![
        Command::Bootstrap {
            config: config(bits),
        },
        Command::RegisterNode { info: member("n1") },
        Command::RegisterNode { info: member("n2") },
        Command::AssignBuckets {
            base_epoch: Epoch(0),
            moves: (0..count)
                .map(|b| (BucketId(b), Some(NodeId(1 + u64::from(b % 2)))))
                .collect(),
        },
    ]
}

pub fn setup(bits: u8) -> ClusterState {
    let mut st = ClusterState::default();
    for cmd in setup_commands(bits) {
        let r = st.apply(cmd, None);
        assert!(!matches!(r, Response::Rejected(_)), "{r:?}");
    }
    st
}

/// The owner of a port's bucket in the `setup` layout.
pub fn owner_of_port(port: u16) -> NodeId {
    NodeId(1 + u64::from(port % 2))
}
