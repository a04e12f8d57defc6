//! What the operator hands a load-balancer pod, kept as fixtures the LB checks.
//!
//! The operator writes `lb-<machine>.toml` into the ConfigMap and the `mfplane-lb`
//! arguments into the DaemonSet; the agent must accept both. The operator cannot depend
//! on the agent (it would pull aya and the eBPF build into the operator), so the
//! contract is a set of checked-in files per case under `tests/fixtures/lb/`: this test
//! fails when the operator's rendering drifts from them, and
//! `lb/tests/operator_files.rs` runs the agent's own parser and resolution on them.
//! Refresh after a deliberate change with
//! `MFPLANE_BLESS=1 cargo test -p mfplane-operator --test lb_contract`.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use mfplane_operator::crd::{Nat, NatSpec, Node, NodeSpec};
use mfplane_operator::manifests::{sample_nat, sample_nodes};
use mfplane_operator::names::NatNames;
use mfplane_operator::resources::{configmap, lb_daemonset};

fn fixture_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lb")
        .join(case)
}

/// The sample (a two-armed L2 machine with `spec.fabric`) and an IP-in-IP Nat whose
/// machine lists no interfaces of its own (the Nat's `spec.lb.interfaces` apply).
fn cases() -> Vec<(&'static str, Nat, Node)> {
    let lb_machine = sample_nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some("lb-1"))
        .expect("the sample has machine lb-1");
    let spec: NatSpec = serde_json::from_value(serde_json::json!({
        "replicas": 5,
        "externalIPs": ["198.51.100.7", "198.51.100.8"],
        "insideSources": ["10.0.0.0/8", "100.64.0.0/10"],
        "bucketBits": 10,
        "lb": { "mode": "IpInIp", "interfaces": ["eth1"] },
    }))
    .unwrap();
    let mut ipip = Nat::new("edge", spec);
    ipip.metadata.namespace = Some("nat-system".to_owned());
    let bare: NodeSpec =
        serde_json::from_value(serde_json::json!({"role": "lb", "xdpMode": "generic"})).unwrap();
    let mut cases = vec![
        ("sample", sample_nat().unwrap(), lb_machine),
        ("ipip-nat-interfaces", ipip, Node::new("edge-lb-2", bare)),
    ];
    for (_, nat, _) in &mut cases {
        nat.metadata.uid = Some("6b0a3f9e-0000-4000-8000-000000000002".to_owned());
    }
    cases
}

/// The files of one case: `lb-<machine>.toml` (as named in the ConfigMap) and `args`
/// (the LB container's arguments, one per line, `$(NODE_NAME)` unexpanded).
fn render(nat: &Nat, machine: &Node) -> [(String, String); 2] {
    let name = machine.metadata.name.clone().expect("machines have names");
    let key = NatNames::lb_config_key(&name);
    let cm = configmap(nat, std::slice::from_ref(machine)).unwrap();
    let toml = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .cloned()
        .expect("the ConfigMap has the machine's LB file");
    let ds = lb_daemonset(nat).unwrap();
    let container = ds
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().find(|c| c.name == "lb"))
        .expect("the LB container");
    assert_eq!(
        container.command.as_deref(),
        Some(&["mfplane-lb".to_owned()][..])
    );
    let mut args = container.args.unwrap_or_default().join("\n");
    args.push('\n');
    [(key, toml), ("args".to_owned(), args)]
}

#[test]
fn lb_files_match_the_fixtures_the_lb_checks() {
    let bless = std::env::var_os("MFPLANE_BLESS").is_some();
    let mut stale = Vec::new();
    for (case, nat, machine) in cases() {
        let dir = fixture_dir(case);
        for (file, text) in render(&nat, &machine) {
            let path = dir.join(&file);
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
        "the operator now renders LB files that differ from tests/fixtures/lb ({stale:?}): \
         check that mfplane-lb still accepts them (cargo test -p mfplane-lb --test operator_files), \
         then run `MFPLANE_BLESS=1 cargo test -p mfplane-operator --test lb_contract` and commit the result"
    );
}
