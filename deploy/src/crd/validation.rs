//! Checks a stored object against the `x-kubernetes-validations` rules of its own CRD,
//! client-side. The API server runs the same rules at admission; the operator runs them
//! again before acting, because an object may have been stored before a rule existed
//! (an older CRD) and acting on a bad spec would misconfigure a live cluster.

use std::fmt;
use std::sync::OnceLock;

use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde::Serialize;
use serde_json::Value;

use super::{Nat, Node};

/// One violated rule: the field and what is wrong with it, in the API server's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `spec.bucketBits`.
    pub field: String,
    /// What is wrong and how to fix it; it names the field too, so it reads well alone.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks a Nat against the CRD's rules. `old` enables the transition rules
/// (`bucketBits` and `externalIPs` may not change).
///
/// # Errors
/// Every violated rule, in schema order.
pub fn validate_nat(nat: &Nat, old: Option<&Nat>) -> Result<(), Vec<FieldError>> {
    static RULES: OnceLock<Result<CompiledSchema, String>> = OnceLock::new();
    validate_against(RULES.get_or_init(|| compile(&Nat::crd())), nat, old)
}

/// Checks a Node against the CRD's rules.
///
/// # Errors
/// Every violated rule, in schema order.
pub fn validate_node(node: &Node) -> Result<(), Vec<FieldError>> {
    static RULES: OnceLock<Result<CompiledSchema, String>> = OnceLock::new();
    validate_against(RULES.get_or_init(|| compile(&Node::crd())), node, None)
}

/// Compiles a CRD's rules once per process: compiling is most of the cost of a check.
fn compile(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<CompiledSchema, String> {
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| "the CRD has no schema".to_owned())?;
    let schema = serde_json::to_value(schema).map_err(|e| e.to_string())?;
    Ok(compile_schema(&schema))
}

fn validate_against<T: Serialize>(
    compiled: &Result<CompiledSchema, String>,
    obj: &T,
    old: Option<&T>,
) -> Result<(), Vec<FieldError>> {
    let internal = |what: String| {
        vec![FieldError {
            field: String::new(),
            message: format!("internal error: cannot check the object against its CRD: {what}"),
        }]
    };
    let compiled = compiled.as_ref().map_err(|e| internal(e.clone()))?;
    let object = serde_json::to_value(obj).map_err(|e| internal(e.to_string()))?;
    let old: Option<Value> = match old {
        Some(o) => Some(serde_json::to_value(o).map_err(|e| internal(e.to_string()))?),
        None => None,
    };
    match Validator::new().validate_compiled(compiled, &object, old.as_ref()) {
        Ok(()) => Ok(()),
        Err(errors) => Err(errors
            .into_vec()
            .into_iter()
            .map(|e| FieldError {
                field: e.field_path.clone(),
                message: e.message.clone(),
            })
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NatSpec;

    fn nat(spec: serde_json::Value) -> Nat {
        let mut base = serde_json::json!({
            "replicas": 3,
            "externalIPs": ["203.0.113.10"],
            "insideSources": ["10.0.0.0/8"],
        });
        if let (Some(b), Some(s)) = (base.as_object_mut(), spec.as_object()) {
            for (k, v) in s {
                b.insert(k.clone(), v.clone());
            }
        }
        let spec: NatSpec = serde_json::from_value(base).unwrap();
        Nat::new("demo", spec)
    }

    fn errors(n: &Nat) -> Vec<FieldError> {
        validate_nat(n, None).expect_err("the spec should be rejected")
    }

    fn assert_rejected(spec: serde_json::Value, field: &str, words: &str) {
        let errs = errors(&nat(spec.clone()));
        assert!(
            errs.iter()
                .any(|e| e.message.contains(field) && e.message.contains(words)),
            "{spec}: expected an error naming {field} with {words:?}, got {errs:?}"
        );
    }

    #[test]
    fn a_good_spec_passes() {
        validate_nat(&nat(serde_json::json!({})), None).unwrap();
        validate_nat(
            &nat(serde_json::json!({
                "replicas": 64, "bucketBits": 12,
                "externalIPs": ["203.0.113.10", "198.51.100.7"],
                "insideSources": ["10.0.0.0/8", "192.168.1.0/24", "172.16.5.4/32"],
                "lb": {"interfaces": ["ens1f0", "eth0.100"]},
                "network": {"attachments": ["sriov-data", "infra/macvlan-data"]},
            })),
            None,
        )
        .unwrap();
    }

    #[test]
    fn replicas_below_one_is_rejected_naming_the_field() {
        assert_rejected(
            serde_json::json!({"replicas": 0}),
            "spec.replicas",
            "0 is out of range",
        );
        assert_rejected(
            serde_json::json!({"replicas": 65}),
            "spec.replicas",
            "65 is out of range",
        );
    }

    #[test]
    fn bucket_bits_out_of_range_is_rejected_naming_the_field() {
        assert_rejected(
            serde_json::json!({"bucketBits": 3}),
            "spec.bucketBits",
            "use 4 to 12",
        );
        assert_rejected(
            serde_json::json!({"bucketBits": 13}),
            "spec.bucketBits",
            "13 is out of range",
        );
    }

    #[test]
    fn bad_cidrs_are_rejected_naming_the_field_and_the_value() {
        assert_rejected(
            serde_json::json!({"insideSources": ["10.0.0.0/8", "10.0.0/8"]}),
            "spec.insideSources",
            "10.0.0/8 is not an IPv4 CIDR",
        );
        assert_rejected(
            serde_json::json!({"insideSources": ["fd00::/8"]}),
            "spec.insideSources",
            "fd00::/8",
        );
        assert_rejected(
            serde_json::json!({"insideSources": ["10.0.0.0/33"]}),
            "spec.insideSources",
            "10.0.0.0/33",
        );
        assert_rejected(
            serde_json::json!({"insideSources": ["10.1.2.3/8"]}),
            "spec.insideSources",
            "host bits set",
        );
    }

    #[test]
    fn bad_external_ips_are_rejected_naming_the_field() {
        assert_rejected(
            serde_json::json!({"externalIPs": ["203.0.113.300"]}),
            "spec.externalIPs",
            "203.0.113.300",
        );
        assert_rejected(
            serde_json::json!({"externalIPs": ["0.0.0.0"]}),
            "spec.externalIPs",
            "not a unicast IPv4",
        );
        assert_rejected(
            serde_json::json!({"externalIPs": ["2001:db8::1"]}),
            "spec.externalIPs",
            "2001:db8::1",
        );
        assert_rejected(
            serde_json::json!({"externalIPs": ["203.0.113.1", "203.0.113.1"]}),
            "spec.externalIPs",
            "more than once",
        );
    }

    #[test]
    fn timeouts_below_the_rfc_minimums_are_rejected() {
        assert_rejected(
            serde_json::json!({"timeouts": {"udpSeconds": 30}}),
            "spec.timeouts.udpSeconds",
            "RFC 4787",
        );
        assert_rejected(
            serde_json::json!({"timeouts": {"tcpEstablishedSeconds": 600}}),
            "spec.timeouts.tcpEstablishedSeconds",
            "RFC 5382",
        );
    }

    #[test]
    fn names_and_interfaces_are_checked() {
        assert_rejected(
            serde_json::json!({"lb": {"interfaces": ["this-name-is-way-too-long"]}}),
            "spec.lb.interfaces",
            "not a Linux interface name",
        );
        assert_rejected(
            serde_json::json!({"network": {"attachments": ["Bad_Name"]}}),
            "spec.network.attachments",
            "Bad_Name",
        );
        for bad in [
            "00:00:5e:00:01",
            "01:00:5e:00:00:01",
            "00-00-5e-00-01-01",
            "zz:00:5e:00:01:01",
        ] {
            assert_rejected(
                serde_json::json!({"network": {"nextHopMAC": bad}}),
                "spec.network.nextHopMAC",
                "is not a unicast MAC address",
            );
        }
        validate_nat(
            &nat(serde_json::json!({"network": {"nextHopMAC": "00:00:5E:00:01:01"}})),
            None,
        )
        .unwrap();
        let mut n = nat(serde_json::json!({}));
        n.metadata.name = Some("a".repeat(41));
        assert!(
            errors(&n)
                .iter()
                .any(|e| e.message.contains("metadata.name") && e.message.contains("too long"))
        );
    }

    #[test]
    fn fixed_settings_cannot_change() {
        let old = nat(serde_json::json!({}));
        let new = nat(serde_json::json!({"bucketBits": 10, "replicas": 5}));
        let errs = validate_nat(&new, Some(&old)).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("spec.bucketBits cannot change")),
            "{errs:?}"
        );
        let scaled = nat(serde_json::json!({"replicas": 5}));
        validate_nat(&scaled, Some(&old)).unwrap();
        let bigger = nat(serde_json::json!({"worker": {"storage": "5Gi"}}));
        let errs = validate_nat(&bigger, Some(&old)).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("spec.worker.storage cannot change")),
            "{errs:?}"
        );
    }

    #[test]
    fn node_interfaces_are_checked() {
        let node = |ifs: serde_json::Value| {
            let spec = serde_json::from_value(serde_json::json!({"role": "lb", "interfaces": ifs}))
                .unwrap();
            Node::new("m1", spec)
        };
        validate_node(&node(
            serde_json::json!([{"name": "ens1f0"}, {"name": "ens1f1", "side": "outside"}]),
        ))
        .unwrap();
        let errs = validate_node(&node(
            serde_json::json!([{"name": "ens1f0"}, {"name": "ens1f0"}]),
        ))
        .unwrap_err();
        assert!(
            errs.iter().any(|e| e.message.contains("more than once")),
            "{errs:?}"
        );
        let errs = validate_node(&node(serde_json::json!([{"name": "bad name"}]))).unwrap_err();
        assert!(
            errs.iter().any(|e| e.message.contains("bad name")),
            "{errs:?}"
        );
    }
}
