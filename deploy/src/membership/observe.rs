//! What the planner needs to know about one worker pod, read from the Pod object.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::names::{MULTUS_NETWORK_STATUS, NatNames, READINESS_GATE};

/// The pod's readiness-gate condition as last written by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateCondition {
    /// True once the member is a caught-up voter.
    pub ready: bool,
    /// The phase the operator recorded (`Voter`, `Joining`, `CatchingUp`, `Leaving`).
    pub reason: String,
    /// When that phase began.
    pub since: Timestamp,
}

/// One worker pod, as far as membership is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Pod (and member) name.
    pub name: String,
    /// Running and not being deleted.
    pub running: bool,
    /// The pod's Ready condition (containers ready and every gate True).
    pub ready: bool,
    /// The readiness-gate condition, if the operator ever wrote it.
    pub gate: Option<GateCondition>,
    /// IPv4 address and MAC of the data interface, from Multus' network-status
    /// annotation; without it only the pod itself can join (it knows its interface).
    pub data_address: Option<(String, String)>,
}

#[derive(Deserialize)]
struct NetworkStatus {
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
}

/// Reads a worker pod of `names`; `None` for a pod that is not one of its workers.
/// `data_interface` is the interface name inside the pod (`net1`, or `eth0`).
pub fn observe_pod(names: &NatNames, pod: &Pod, data_interface: &str) -> Option<PodObservation> {
    let name = pod.metadata.name.clone()?;
    let ordinal = names.ordinal_of(&name)?;
    let status = pod.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let running = pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let gate = conditions
        .iter()
        .find(|c| c.type_ == READINESS_GATE)
        .map(|c| GateCondition {
            ready: c.status == "True",
            reason: c.reason.clone().unwrap_or_default(),
            since: c
                .last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        });
    let data_address = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MULTUS_NETWORK_STATUS))
        .and_then(|json| serde_json::from_str::<Vec<NetworkStatus>>(json).ok())
        .and_then(|list| {
            let entry = list
                .into_iter()
                .find(|n| n.interface.as_deref() == Some(data_interface))?;
            let ip = entry
                .ips
                .into_iter()
                .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())?;
            Some((ip, entry.mac?))
        });
    Some(PodObservation {
        ordinal,
        name,
        running,
        ready,
        gate,
        data_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_phase_gate_and_multus_address() {
        let names = NatNames {
            nat: "demo".into(),
            namespace: "edge".into(),
        };
        let p = pod(serde_json::json!({
            "metadata": {"name": "demo-2", "annotations": {MULTUS_NETWORK_STATUS: r#"[
                {"name": "cbr0", "interface": "eth0", "ips": ["10.244.1.5"], "mac": "0a:58:0a:f4:01:05", "default": true},
                {"name": "edge/sriov-data", "interface": "net1", "ips": ["fd00::5", "192.0.2.15"], "mac": "02:00:00:00:00:15"}
            ]"#}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": READINESS_GATE, "status": "False", "reason": "CatchingUp", "lastTransitionTime": "2026-11-22T10:00:00Z"}
            ]}
        }));
        let o = observe_pod(&names, &p, "net1").unwrap();
        assert_eq!(o.ordinal, 2);
        assert!(o.running && !o.ready);
        let gate = o.gate.unwrap();
        assert_eq!((gate.ready, gate.reason.as_str()), (false, "CatchingUp"));
        assert_eq!(gate.since.to_string(), "2026-11-22T10:00:00Z");
        assert_eq!(
            o.data_address,
            Some(("192.0.2.15".into(), "02:00:00:00:00:15".into()))
        );
        let o = observe_pod(&names, &p, "eth0").unwrap();
        assert_eq!(
            o.data_address,
            Some(("10.244.1.5".into(), "0a:58:0a:f4:01:05".into()))
        );
        assert!(
            observe_pod(
                &names,
                &pod(serde_json::json!({"metadata": {"name": "demo-lb-x"}})),
                "net1"
            )
            .is_none()
        );
        let broken = pod(
            serde_json::json!({"metadata": {"name": "demo-0", "annotations": {MULTUS_NETWORK_STATUS: "not json"}}}),
        );
        assert_eq!(
            observe_pod(&names, &broken, "net1").unwrap().data_address,
            None
        );
    }
}
