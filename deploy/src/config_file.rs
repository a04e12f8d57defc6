//! The configuration files the operator writes into each Nat's ConfigMap: `node.toml`
//! for the workers (flat keys, the same names as `mfplane-node`'s flags) and one
//! `lb-<machine>.toml` per load-balancer machine. Files, not flags, so that the
//! StatefulSet template (and with it every worker pod) stays unchanged when the Nat's
//! settings change; `mfplane-node` reads its file when it starts, so a changed value
//! reaches a worker at its next restart.
//!
//! `deploy/README.md` lists every key; the node and LB daemons own their meaning.
//! `tests/worker_contract.rs` keeps the rendered worker files as fixtures that
//! `mfplane-node`'s own parser checks (`node/tests/config_operator_files.rs`).

use serde::Serialize;

use crate::crd::{InterfaceSide, Nat, Node};
use crate::names::NatNames;
use crate::{Error, Result};

/// Interface the workers use for the data path when the Nat names no Multus
/// attachment: the pod's default interface.
pub const DEFAULT_DATA_INTERFACE: &str = "eth0";

/// `node.toml`: cluster-wide settings of every worker. Per-pod identity (name,
/// addresses, data directory) comes from flags in the StatefulSet template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeConfigFile {
    /// Bucket bits of the cluster (used when the cluster is initialized).
    pub bucket_bits: i32,
    /// External addresses of the cluster (used when the cluster is initialized).
    pub external_ips: Vec<String>,
    /// Inside networks whose traffic is translated.
    pub inside_sources: Vec<String>,
    /// `optimistic` or `strict`.
    pub commit_mode: &'static str,
    /// UDP idle timeout, humantime.
    pub udp_timeout: String,
    /// Established TCP idle timeout, humantime.
    pub tcp_established_timeout: String,
    /// Transitory TCP idle timeout, humantime.
    pub tcp_transitory_timeout: String,
    /// ICMP idle timeout, humantime.
    pub icmp_timeout: String,
    /// Interface whose IPv4 address and MAC are the member's data address: `net1` for
    /// the first Multus attachment, [`DEFAULT_DATA_INTERFACE`] without Multus.
    pub data_interface: &'static str,
    /// MAC of the router translated packets go to; absent: the data interface's
    /// default gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop_mac: Option<String>,
}

impl NodeConfigFile {
    /// The workers' settings for `nat`.
    pub fn for_nat(nat: &Nat) -> Self {
        let s = &nat.spec;
        NodeConfigFile {
            bucket_bits: s.bucket_bits,
            external_ips: s.external_ips.clone(),
            inside_sources: s.inside_sources.clone(),
            commit_mode: s.commit_mode.as_str(),
            udp_timeout: format!("{}s", s.timeouts.udp_seconds),
            tcp_established_timeout: format!("{}s", s.timeouts.tcp_established_seconds),
            tcp_transitory_timeout: format!("{}s", s.timeouts.tcp_transitory_seconds),
            icmp_timeout: format!("{}s", s.timeouts.icmp_seconds),
            data_interface: data_interface(nat),
            next_hop_mac: s.network.next_hop_mac.clone(),
        }
    }

    /// The file's text, with a header saying where it comes from.
    ///
    /// # Errors
    /// [`Error::Encode`] if TOML serialization fails (a bug).
    pub fn render(&self, names: &NatNames) -> Result<String> {
        render(self, names, "node.toml")
    }
}

/// Name of the data-plane interface inside a worker pod. Multus names attached
/// interfaces `net1`, `net2`, ... in annotation order.
pub fn data_interface(nat: &Nat) -> &'static str {
    if nat.spec.network.attachments.is_empty() {
        DEFAULT_DATA_INTERFACE
    } else {
        "net1"
    }
}

/// `lb-<machine>.toml`: what one load balancer steers and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LbConfigFile {
    /// `l2` or `ipip`.
    pub mode: &'static str,
    /// `native`, `generic` or `offload`.
    pub xdp_mode: &'static str,
    /// Bucket bits of the cluster.
    pub bucket_bits: i32,
    /// Traffic to these addresses is inbound and steered by destination port.
    pub external_ips: Vec<String>,
    /// Traffic from these networks is outbound and steered by flow hash.
    pub inside_sources: Vec<String>,
    /// Worker gRPC addresses to watch the bucket table from, tried in turn.
    pub cluster: Vec<String>,
    /// The interface towards the workers (the machine's `spec.fabric`); without it the
    /// LB uses its only interface, or its only one with side `both`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fabric: Option<String>,
    /// Host interfaces to attach to.
    pub interfaces: Vec<LbInterface>,
}

/// One LB interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LbInterface {
    /// Kernel name.
    pub name: String,
    /// `inside`, `outside` or `both`.
    pub side: &'static str,
}

impl LbConfigFile {
    /// The configuration of the LB of `nat` on `machine`.
    pub fn for_machine(nat: &Nat, machine: &Node) -> Self {
        let names = NatNames::of(nat);
        let interfaces = if machine.spec.interfaces.is_empty() {
            nat.spec
                .lb
                .interfaces
                .iter()
                .map(|name| LbInterface {
                    name: name.clone(),
                    side: InterfaceSide::Both.as_str(),
                })
                .collect()
        } else {
            machine
                .spec
                .interfaces
                .iter()
                .map(|i| LbInterface {
                    name: i.name.clone(),
                    side: i.side.as_str(),
                })
                .collect()
        };
        let members = u32::try_from(nat.spec.replicas.max(1)).unwrap_or(1);
        LbConfigFile {
            mode: nat.spec.lb.mode.as_str(),
            xdp_mode: machine.spec.xdp_mode.as_str(),
            bucket_bits: nat.spec.bucket_bits,
            external_ips: nat.spec.external_ips.clone(),
            inside_sources: nat.spec.inside_sources.clone(),
            cluster: (0..members).map(|i| names.grpc_address(i)).collect(),
            fabric: machine.spec.fabric.clone(),
            interfaces,
        }
    }

    /// The file's text, with a header saying where it comes from.
    ///
    /// # Errors
    /// [`Error::Encode`] if TOML serialization fails (a bug).
    pub fn render(&self, names: &NatNames) -> Result<String> {
        render(self, names, "lb.toml")
    }
}

fn render<T: Serialize>(file: &T, names: &NatNames, what: &'static str) -> Result<String> {
    let body = toml::to_string(file).map_err(|e| Error::Encode {
        what,
        message: e.to_string(),
    })?;
    Ok(format!(
        "# Written by {} for Nat {}; edit the Nat, not this file.\n{body}",
        crate::names::OPERATOR_NAME,
        names.key()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NatSpec;

    fn nat(extra: serde_json::Value) -> Nat {
        let mut spec = serde_json::json!({
            "replicas": 3, "externalIPs": ["203.0.113.10"], "insideSources": ["10.0.0.0/8"],
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let spec: NatSpec = serde_json::from_value(spec).unwrap();
        let mut n = Nat::new("demo", spec);
        n.metadata.namespace = Some("edge".into());
        n
    }

    #[test]
    fn node_toml_has_flat_keys_with_humantime_durations() {
        let n = nat(
            serde_json::json!({"network": {"attachments": ["sriov-data"]}, "commitMode": "strict"}),
        );
        let text = NodeConfigFile::for_nat(&n)
            .render(&NatNames::of(&n))
            .unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["bucket_bits"].as_integer(), Some(8));
        assert_eq!(parsed["external_ips"].as_array().map(Vec::len), Some(1));
        assert_eq!(parsed["commit_mode"].as_str(), Some("strict"));
        assert_eq!(parsed["udp_timeout"].as_str(), Some("300s"));
        assert_eq!(parsed["data_interface"].as_str(), Some("net1"));
        assert!(text.starts_with("# Written by mfplane-operator for Nat edge/demo"));
        let plain = nat(serde_json::json!({}));
        assert_eq!(NodeConfigFile::for_nat(&plain).data_interface, "eth0");
    }

    #[test]
    fn lb_toml_prefers_the_machines_interfaces() {
        let n = nat(serde_json::json!({"lb": {"interfaces": ["eth1"], "mode": "IpInIp"}}));
        let machine: Node = Node::new(
            "m1",
            serde_json::from_value(serde_json::json!({"role": "lb", "xdpMode": "generic",
                "interfaces": [{"name": "ens1f0", "side": "inside"}, {"name": "ens1f1", "side": "outside"}]}))
            .unwrap(),
        );
        let f = LbConfigFile::for_machine(&n, &machine);
        assert_eq!(f.mode, "ipip");
        assert_eq!(f.xdp_mode, "generic");
        assert_eq!(f.interfaces.len(), 2);
        assert_eq!(f.interfaces[1].side, "outside");
        assert_eq!(
            f.cluster,
            vec![
                "demo-0.demo.edge.svc:7700",
                "demo-1.demo.edge.svc:7700",
                "demo-2.demo.edge.svc:7700"
            ]
        );
        let bare: Node = Node::new(
            "m2",
            serde_json::from_value(serde_json::json!({"role": "lb"})).unwrap(),
        );
        let f = LbConfigFile::for_machine(&n, &bare);
        assert_eq!(
            f.interfaces,
            vec![LbInterface {
                name: "eth1".into(),
                side: "both"
            }]
        );
        let text = f.render(&NatNames::of(&n)).unwrap();
        let _: toml::Table = toml::from_str(&text).unwrap();
    }
}
