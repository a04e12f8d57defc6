//! What the operator hands a worker pod, kept as fixtures the worker checks.
//!
//! The operator writes `node.toml` into the ConfigMap and the `mfplane-node` flags into
//! the StatefulSet; the daemon must accept both. The operator cannot depend on the
//! daemon (it would pull Raft and the data path into the operator), so the contract is
//! a pair of checked-in files per case under `tests/fixtures/worker/`: this test fails
//! when the operator's rendering drifts from them, and `node/tests/config_operator_files.rs`
//! runs the daemon's own parser on them. Refresh after a deliberate change with
//! `MFPLANE_BLESS=1 cargo test -p mfplane-operator --test worker_contract`.

use std::path::PathBuf;

use mfplane_operator::crd::{Nat, NatSpec};
use mfplane_operator::manifests::sample_nat;
use mfplane_operator::names::NODE_CONFIG_KEY;
use mfplane_operator::resources::{configmap, statefulset};

fn fixture_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/worker")
        .join(case)
}

/// The sample Nat (Multus attachment, optimistic, default timeouts, the gateway as next
/// hop) and a Nat on the pod network with strict commits, every timeout changed and a
/// fixed next hop.
fn cases() -> Vec<(&'static str, Nat)> {
    let spec: NatSpec = serde_json::from_value(serde_json::json!({
        "replicas": 5,
        "externalIPs": ["198.51.100.7"],
        "insideSources": ["10.0.0.0/8", "100.64.0.0/10"],
        "bucketBits": 10,
        "commitMode": "strict",
        "network": { "nextHopMAC": "00:00:5e:00:01:01" },
        "timeouts": {
            "udpSeconds": 600,
            "tcpEstablishedSeconds": 86400,
            "tcpTransitorySeconds": 300,
            "icmpSeconds": 120,
        },
    }))
    .expect("a valid NatSpec");
    let mut plain = Nat::new("edge", spec);
    plain.metadata.namespace = Some("nat-system".to_owned());
    let mut cases = vec![
        ("sample", sample_nat().expect("the sample Nat")),
        ("strict-pod-network", plain),
    ];
    for (_, nat) in &mut cases {
        nat.metadata.uid = Some("6b0a3f9e-0000-4000-8000-000000000001".to_owned());
    }
    cases
}

/// The files of one case: `node.toml` and `args` (the worker container's arguments,
/// one per line).
fn render(nat: &Nat) -> [(&'static str, String); 2] {
    let cm = configmap(nat, &[]).expect("the ConfigMap renders");
    let toml = cm
        .data
        .as_ref()
        .and_then(|d| d.get(NODE_CONFIG_KEY))
        .cloned()
        .expect("the ConfigMap has node.toml");
    let sts = statefulset(nat, 1).expect("the StatefulSet renders");
    let container = sts
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().find(|c| c.name == "node"))
        .expect("the worker container");
    assert_eq!(
        container.command.as_deref(),
        Some(&["mfplane-node".to_owned()][..])
    );
    let mut args = container.args.unwrap_or_default().join("\n");
    args.push('\n');
    [("node.toml", toml), ("args", args)]
}

#[test]
fn worker_files_match_the_fixtures_the_node_checks() {
    let bless = std::env::var_os("MFPLANE_BLESS").is_some();
    let mut stale = Vec::new();
    for (case, nat) in cases() {
        let dir = fixture_dir(case);
        for (file, text) in render(&nat) {
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(format!("{case}/{file}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the operator now renders worker files that differ from tests/fixtures/worker ({stale:?}): \
         check that mfplane-node still accepts them, then run \
         `MFPLANE_BLESS=1 cargo test -p mfplane-operator --test worker_contract` and commit the result"
    );
}

#[test]
fn node_toml_uses_every_key_the_node_reads() {
    for (case, nat) in cases() {
        let [(_, text), _] = render(&nat);
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "bucket_bits",
            "commit_mode",
            "data_interface",
            "external_ips",
            "icmp_timeout",
            "inside_sources",
            "tcp_established_timeout",
            "tcp_transitory_timeout",
            "udp_timeout",
        ];
        if nat.spec.network.next_hop_mac.is_some() {
            expected.insert(2, "next_hop_mac");
            expected.sort_unstable();
        }
        assert_eq!(keys, expected, "{case}");
    }
}
