//! The checked-in `deploy/` YAML: generated from the Rust types (drift fails), parsed
//! strictly into its k8s-openapi types (an unknown or misspelled field fails), and
//! cross-checked: selectors select their pods, bindings name real roles and accounts,
//! the RBAC allows everything the operator does, kustomize lists every file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use mfplane_operator::crd::{Nat, Node, validate_nat, validate_node};
use mfplane_operator::manifests::{self, INSTALL, SAMPLES};
use mfplane_operator::names::{OPERATOR_NAME, OPERATOR_NAMESPACE};
use mfplane_operator::rbac::{API_USES, Scope, allows};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = deploy_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of a file, as JSON values.
fn documents(rel: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(rel))
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{rel}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Parses `doc` into `T` and fails if anything in it is not part of `T`: k8s-openapi
/// ignores unknown fields, so the typed value is serialized again and must equal the
/// document.
fn strict<T: DeserializeOwned + serde::Serialize>(rel: &str, doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{rel}: not a valid {}: {e}", std::any::type_name::<T>()));
    let again = serde_json::to_value(&typed).expect("serialize");
    if &again != doc {
        panic!(
            "{rel}: fields that {} does not have (misspelled or misplaced?):\n{}",
            std::any::type_name::<T>(),
            diff(doc, &again, "")
        );
    }
    typed
}

fn diff(a: &Value, b: &Value, at: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .map(|(k, v)| match y.get(k) {
                None => format!("  {at}.{k} is unknown\n"),
                Some(w) => diff(v, w, &format!("{at}.{k}")),
            })
            .collect(),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .enumerate()
            .map(|(i, (v, w))| diff(v, w, &format!("{at}[{i}]")))
            .collect(),
        _ if a == b => String::new(),
        _ => format!("  {at}: {a} became {b}\n"),
    }
}

#[test]
fn checked_in_files_match_the_generator() {
    let mut stale = Vec::new();
    for file in manifests::all().unwrap() {
        let path = deploy_dir().join(file.path);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(file.text.as_str()) {
            stale.push(file.path);
        }
    }
    assert!(
        stale.is_empty(),
        "deploy/ is out of date ({stale:?}): run `cargo run -p mfplane-operator --bin crdgen -- --write deploy` and commit the result"
    );
    assert_eq!(
        read("crds/nats.mfplane.io.yaml")
            .split_once('\n')
            .map(|x| x.1),
        manifests::crds_yaml()
            .unwrap()
            .split("---\n")
            .next()
            .and_then(|d| d.split_once('\n'))
            .map(|x| x.1)
    );
}

#[test]
fn every_document_parses_strictly_into_its_type() {
    let mut kinds = BTreeSet::new();
    for rel in INSTALL
        .iter()
        .map(|p| (*p).to_owned())
        .chain(SAMPLES.iter().map(|p| format!("samples/{p}")))
    {
        for doc in documents(&rel) {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{rel}: a document without kind"))
                .to_owned();
            match kind.as_str() {
                "CustomResourceDefinition" => drop(strict::<CustomResourceDefinition>(&rel, &doc)),
                "Namespace" => drop(strict::<Namespace>(&rel, &doc)),
                "ServiceAccount" => drop(strict::<ServiceAccount>(&rel, &doc)),
                "ClusterRole" => drop(strict::<ClusterRole>(&rel, &doc)),
                "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(&rel, &doc)),
                "Role" => drop(strict::<Role>(&rel, &doc)),
                "RoleBinding" => drop(strict::<RoleBinding>(&rel, &doc)),
                "Deployment" => drop(strict::<Deployment>(&rel, &doc)),
                "Nat" => validate_nat(&strict::<Nat>(&rel, &doc), None)
                    .unwrap_or_else(|e| panic!("{rel}: {e:?}")),
                "Node" => validate_node(&strict::<Node>(&rel, &doc))
                    .unwrap_or_else(|e| panic!("{rel}: {e:?}")),
                other => panic!("{rel}: unexpected kind {other}"),
            }
            kinds.insert(kind);
        }
    }
    for k in [
        "CustomResourceDefinition",
        "Deployment",
        "ClusterRole",
        "Nat",
        "Node",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/");
    }
}

fn one<T: DeserializeOwned + serde::Serialize>(rel: &str, kind: &str) -> T {
    let docs: Vec<Value> = documents(rel)
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(docs.len(), 1, "{rel}: expected one {kind}");
    strict(rel, &docs[0])
}

/// The OpenAPI type of the field at a `.a.b.c` path, if the schema has it.
fn schema_type<'a>(root: &'a Value, path: &str) -> Option<&'a str> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(root, |node, field| node.get("properties")?.get(field))?
        .get("type")?
        .as_str()
}

/// The version's schema, after checking that every printer column reads a field the
/// schema has, with the column's type.
fn checked_schema(v: &CustomResourceDefinitionVersion) -> Value {
    let root = serde_json::to_value(
        v.schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a schema"),
    )
    .expect("the schema as JSON");
    for c in v.additional_printer_columns.iter().flatten() {
        if !c.json_path.starts_with(".metadata.") {
            assert_eq!(
                schema_type(&root, &c.json_path),
                Some(c.type_.as_str()),
                "printer column {} reads {}",
                c.name,
                c.json_path
            );
        }
    }
    root
}

#[test]
fn the_crds_have_what_kubectl_scale_and_kubectl_get_need() {
    let nat: CustomResourceDefinition =
        one("crds/nats.mfplane.io.yaml", "CustomResourceDefinition");
    assert_eq!(nat.metadata.name.as_deref(), Some("nats.mfplane.io"));
    assert_eq!(nat.spec.scope, "Namespaced");
    let v = &nat.spec.versions[0];
    let sub = v.subresources.as_ref().expect("subresources");
    let scale = sub.scale.as_ref().expect("the /scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.labelSelector")
    );
    assert!(sub.status.is_some(), "the status subresource");
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for c in ["Replicas", "Ready", "Leader", "Epoch", "Age"] {
        assert!(
            columns.contains(&c),
            "printer column {c} missing: {columns:?}"
        );
    }
    let schema = serde_json::to_string(&v.schema).unwrap();
    assert!(
        schema.contains("x-kubernetes-validations") && schema.contains("spec.bucketBits"),
        "validation rules"
    );
    // Every path kubectl reads must exist in the schema with the type it expects: a
    // renamed field would otherwise leave a blank column or a broken `kubectl scale`.
    let root = checked_schema(v);
    for (path, type_) in [
        (scale.spec_replicas_path.as_str(), "integer"),
        (scale.status_replicas_path.as_str(), "integer"),
        (".status.labelSelector", "string"),
    ] {
        assert_eq!(schema_type(&root, path), Some(type_), "{path}");
    }

    let node: CustomResourceDefinition =
        one("crds/nodes.mfplane.io.yaml", "CustomResourceDefinition");
    assert_eq!(node.metadata.name.as_deref(), Some("nodes.mfplane.io"));
    assert_eq!(node.spec.scope, "Cluster");
    assert_eq!(node.spec.names.kind, "Node");
    assert_eq!(node.spec.names.short_names, Some(vec!["mfnode".to_owned()]));
    let v = &node.spec.versions[0];
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "the status subresource"
    );
    let root = checked_schema(v);
    for field in ["role", "interfaces", "xdpMode"] {
        assert!(
            schema_type(&root, &format!(".spec.{field}")).is_some(),
            "spec.{field}"
        );
    }
    assert_eq!(schema_type(&root, ".status.functions"), Some("array"));
}

#[test]
fn the_operator_deployment_rbac_and_namespace_fit_together() {
    let ns: Namespace = one("operator/namespace.yaml", "Namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some(OPERATOR_NAMESPACE));
    let d: Deployment = one("operator/deployment.yaml", "Deployment");
    assert_eq!(d.metadata.namespace.as_deref(), Some(OPERATOR_NAMESPACE));
    let spec = d.spec.as_ref().unwrap();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (k, v) in spec.selector.match_labels.iter().flatten() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the Deployment's selector must select its pods"
        );
    }
    assert!(
        spec.replicas.unwrap_or(1) >= 2,
        "two replicas: leader election lets a standby take over"
    );
    let pod = spec.template.spec.as_ref().unwrap();
    let sa: ServiceAccount = one("operator/rbac.yaml", "ServiceAccount");
    assert_eq!(
        pod.service_account_name, sa.metadata.name,
        "the pods run as the RBAC'd ServiceAccount"
    );
    assert_eq!(sa.metadata.namespace.as_deref(), Some(OPERATOR_NAMESPACE));
    let c = &pod.containers[0];
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("http port");
    assert_eq!(port.container_port, manifests::OPERATOR_HTTP_PORT);
    for probe in [&c.liveness_probe, &c.readiness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("HTTP probe");
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
    }

    let cr: ClusterRole = one("operator/rbac.yaml", "ClusterRole");
    let crb: ClusterRoleBinding = one("operator/rbac.yaml", "ClusterRoleBinding");
    let role: Role = one("operator/rbac.yaml", "Role");
    let rb: RoleBinding = one("operator/rbac.yaml", "RoleBinding");
    assert_eq!(
        (crb.role_ref.kind.as_str(), Some(crb.role_ref.name.as_str())),
        ("ClusterRole", cr.metadata.name.as_deref())
    );
    assert_eq!(
        (rb.role_ref.kind.as_str(), Some(rb.role_ref.name.as_str())),
        ("Role", role.metadata.name.as_deref())
    );
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some(OPERATOR_NAMESPACE),
        "the lease Role lives with the operator"
    );
    for subjects in [&crb.subjects, &rb.subjects] {
        let s = &subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                s.kind.as_str(),
                Some(s.name.as_str()),
                s.namespace.as_deref()
            ),
            (
                "ServiceAccount",
                sa.metadata.name.as_deref(),
                Some(OPERATOR_NAMESPACE)
            )
        );
    }

    // Every call the operator makes is allowed by the checked-in roles.
    let cluster_rules = cr.rules.clone().unwrap_or_default();
    let ns_rules = role.rules.clone().unwrap_or_default();
    for u in API_USES {
        let rules = match u.scope {
            Scope::Cluster => &cluster_rules,
            Scope::OperatorNamespace => &ns_rules,
        };
        for verb in u.verbs {
            let name = u.names.first().copied();
            assert!(
                allows(rules, u.group, u.resource, verb, name),
                "the checked-in RBAC does not allow {verb} {}/{}",
                u.group,
                u.resource
            );
        }
    }
    // What the controllers watch (kube::runtime lists, then watches).
    for (group, resource) in mfplane_operator::controller::WATCHED {
        for verb in ["list", "watch"] {
            assert!(
                allows(&cluster_rules, group, resource, verb, None),
                "cannot {verb} {group}/{resource}"
            );
        }
    }
    // And nothing broad: no wildcard, no secrets.
    for r in cluster_rules.iter().chain(&ns_rules) {
        assert!(!r.verbs.iter().any(|v| v == "*"), "wildcard verb in {r:?}");
        assert!(
            !r.resources
                .iter()
                .flatten()
                .any(|x| x == "*" || x == "secrets"),
            "broad resource in {r:?}"
        );
    }
    assert_eq!(
        role.rules
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.resource_names.is_some())
            .flat_map(|r| r.resource_names.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![OPERATOR_NAME.to_owned()]
    );
}

fn yaml_files(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir)
        .expect("deploy/ is readable")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "src" && n != "tests" && n != "target")
            {
                yaml_files(&path, base, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.insert(
                path.strip_prefix(base)
                    .expect("under deploy/")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn kustomize_lists_every_manifest() {
    let mut files = BTreeSet::new();
    yaml_files(&deploy_dir(), &deploy_dir(), &mut files);
    let mut listed = BTreeSet::new();
    for (dir, kustomization) in [
        ("", "kustomization.yaml"),
        ("samples/", "samples/kustomization.yaml"),
    ] {
        let k = &documents(kustomization)[0];
        assert_eq!(k["kind"], "Kustomization");
        for r in k["resources"].as_array().unwrap() {
            let path = format!("{dir}{}", r.as_str().unwrap());
            assert!(
                deploy_dir().join(&path).is_file(),
                "{kustomization} lists {path}, which does not exist"
            );
            listed.insert(path);
        }
        listed.insert(kustomization.to_owned());
    }
    let unlisted: Vec<_> = files.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "YAML files no kustomization lists: {unlisted:?}"
    );
}

#[test]
#[should_panic(expected = "misspelled or misplaced")]
fn the_strict_parse_catches_a_misspelled_field() {
    let mut doc = documents("operator/deployment.yaml").remove(0);
    doc["spec"]["replica"] = serde_json::json!(3);
    let _: Deployment = strict("operator/deployment.yaml", &doc);
}
