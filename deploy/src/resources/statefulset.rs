//! The workers' StatefulSet: stable names (member names), a volume per member for its
//! Raft log, the data-path privileges, the Multus attachment and the readiness gate.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, HostPathVolumeSource, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodReadinessGate, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::Result;
use crate::crd::Nat;
use crate::names::{
    CONFIG_DIR, Component, DATA_DIR, DATA_VOLUME, GRPC_PORT, HTTP_PORT, MULTUS_NETWORKS,
    NODE_CONFIG_KEY, NatNames, READINESS_GATE, WORKER_NODE_LABEL,
};

/// Capabilities of a worker: load XDP programs and maps (BPF, NET_ADMIN), open AF_XDP
/// and packet sockets (NET_RAW), and lock the AF_XDP UMEM in memory (IPC_LOCK). Every
/// other capability is dropped; the pod is not privileged.
pub fn worker_capabilities() -> Vec<String> {
    ["BPF", "NET_ADMIN", "NET_RAW", "IPC_LOCK"]
        .map(str::to_owned)
        .to_vec()
}

/// How many ordinals the workers' `--join` lists. The lowest ordinals live longest
/// (scale-in removes the highest first), and a fixed list keeps the pod template (and
/// so the pods) unchanged when the Nat is scaled.
const JOIN_SEEDS: u32 = 3;

/// The StatefulSet with `replicas` pods. The orchestration decides `replicas`: it is
/// the desired size when growing, and is lowered only after the highest member has
/// left the cluster.
///
/// # Errors
/// [`crate::Error::MissingField`] for a Nat without a uid.
pub fn statefulset(nat: &Nat, replicas: i32) -> Result<StatefulSet> {
    let names = NatNames::of(nat);
    let worker = &nat.spec.worker;
    let selector = names.selector(Component::Worker);

    let mut annotations = BTreeMap::new();
    if !nat.spec.network.attachments.is_empty() {
        annotations.insert(
            MULTUS_NETWORKS.to_owned(),
            nat.spec.network.attachments.join(","),
        );
    }

    let mut resources = worker.resources.clone().unwrap_or_default();
    if let Some(device) = &nat.spec.network.resource_name {
        add_device(&mut resources, device);
    }

    let join = (0..JOIN_SEEDS)
        .map(|i| names.grpc_address(i))
        .collect::<Vec<_>>()
        .join(",");
    let args = vec![
        "--name=$(POD_NAME)".to_owned(),
        format!("--data-dir={DATA_DIR}"),
        format!("--listen=0.0.0.0:{GRPC_PORT}"),
        format!(
            "--advertise=$(POD_NAME).{}.$(POD_NAMESPACE).svc:{GRPC_PORT}",
            names.service()
        ),
        format!("--http-listen=0.0.0.0:{HTTP_PORT}"),
        format!("--config={CONFIG_DIR}/{NODE_CONFIG_KEY}"),
        format!("--join={join}"),
    ];

    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };

    let container = Container {
        name: "node".to_owned(),
        image: Some(worker.image.clone()),
        command: Some(vec!["mfplane-node".to_owned()]),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![
            container_port("grpc", GRPC_PORT),
            container_port("http", HTTP_PORT),
        ]),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(worker_capabilities()),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_DIR, false),
            mount("config", CONFIG_DIR, true),
            mount("bpffs", "/sys/fs/bpf", false),
        ]),
        ..Container::default()
    };

    let node_selector = if worker.node_selector.is_empty() {
        BTreeMap::from([(WORKER_NODE_LABEL.to_owned(), "true".to_owned())])
    } else {
        worker.node_selector.clone()
    };

    let pod = PodSpec {
        containers: vec![container],
        readiness_gates: Some(vec![PodReadinessGate {
            condition_type: READINESS_GATE.to_owned(),
        }]),
        // Workers never talk to the Kubernetes API.
        automount_service_account_token: Some(false),
        node_selector: Some(node_selector),
        // Members of one Raft group should not share a machine: losing it would cost
        // more than one vote.
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some(selector.clone()),
                                match_expressions: None,
                            }),
                            topology_key: "kubernetes.io/hostname".to_owned(),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        termination_grace_period_seconds: Some(30),
        volumes: Some(vec![
            Volume {
                name: "config".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names.configmap(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "bpffs".to_owned(),
                host_path: Some(HostPathVolumeSource {
                    path: "/sys/fs/bpf".to_owned(),
                    type_: Some("Directory".to_owned()),
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };

    let mut storage_request = BTreeMap::new();
    storage_request.insert("storage".to_owned(), Quantity(worker.storage.clone()));
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(storage_request),
                limits: None,
            }),
            storage_class_name: worker.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };

    Ok(StatefulSet {
        metadata: child_meta(nat, names.statefulset(), Some(Component::Worker))?,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.service()),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            // One pod at a time, each waiting for the previous to be Ready, i.e. a
            // voter: the StatefulSet itself never adds two members at once.
            pod_management_policy: Some("OrderedReady".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            // A removed member's volume holds a retired identity: delete it on scale-in
            // so a later scale-out starts the ordinal fresh. Keep volumes if the
            // StatefulSet itself is deleted by mistake (the Nat's finalizer deletes them
            // when the Nat goes).
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Delete".to_owned()),
                    when_deleted: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Some(Component::Worker))),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

fn add_device(resources: &mut ResourceRequirements, device: &str) {
    for list in [&mut resources.requests, &mut resources.limits] {
        list.get_or_insert_with(BTreeMap::new)
            .insert(device.to_owned(), Quantity("1".to_owned()));
    }
}

pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    }
}

pub(super) fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::resources::test_nat::nat;

    /// The container mounts the host's bpffs writable at `/sys/fs/bpf`, so pinned maps
    /// outlive a container restart.
    pub(in crate::resources) fn assert_bpffs(pod: &PodSpec, c: &Container) {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/sys/fs/bpf")
            .expect("a bpffs mount");
        assert_ne!(m.read_only, Some(true));
        let v = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .expect("the mounted volume");
        assert_eq!(
            v.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/sys/fs/bpf")
        );
    }

    fn pod_spec(s: &StatefulSet) -> &PodSpec {
        s.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn workers_carry_the_gate_capabilities_bpffs_and_stable_identity() {
        let s = statefulset(&nat(serde_json::json!({})), 4).unwrap();
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.service_name.as_deref(), Some("demo"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        let pod = pod_spec(&s);
        assert_eq!(
            pod.readiness_gates.as_ref().unwrap()[0].condition_type,
            "mfplane.io/raft-voter"
        );
        let c = &pod.containers[0];
        let caps = c
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap();
        let added = caps.add.as_ref().unwrap();
        for cap in ["BPF", "NET_ADMIN", "NET_RAW"] {
            assert!(added.iter().any(|c| c == cap), "{cap} in {added:?}");
        }
        assert_eq!(caps.drop.as_ref().unwrap(), &vec!["ALL".to_owned()]);
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(false));
        assert_bpffs(pod, c);
        let args = c.args.as_ref().unwrap();
        assert!(args.contains(&"--name=$(POD_NAME)".to_owned()));
        assert!(
            args.contains(&"--advertise=$(POD_NAME).demo.$(POD_NAMESPACE).svc:7700".to_owned())
        );
        assert!(args.contains(&"--join=demo-0.demo.edge.svc:7700,demo-1.demo.edge.svc:7700,demo-2.demo.edge.svc:7700".to_owned()));
        assert!(args.contains(&"--config=/etc/mfplane/node.toml".to_owned()));
        assert_eq!(
            pod.node_selector
                .as_ref()
                .unwrap()
                .get("mfplane.io/worker")
                .map(String::as_str),
            Some("true")
        );
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(
                labels.get(k),
                Some(v),
                "the selector must select the template"
            );
        }
        assert!(
            spec.template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .is_none(),
            "no Multus without attachments"
        );
    }

    #[test]
    fn multus_attachments_and_devices_reach_the_pod() {
        let s = statefulset(
            &nat(serde_json::json!({"network": {"attachments": ["sriov-a", "infra/sriov-b"], "resourceName": "intel.com/sriov"},
                 "worker": {"nodeSelector": {"pool": "nat"}, "image": "registry.example/mfplane:1.2",
                            "resources": {"limits": {"cpu": "4"}}}})),
            3,
        )
        .unwrap();
        let spec = s.spec.as_ref().unwrap();
        let ann = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(
            ann.get(MULTUS_NETWORKS).map(String::as_str),
            Some("sriov-a,infra/sriov-b")
        );
        let res = pod_spec(&s).containers[0].resources.as_ref().unwrap();
        assert_eq!(
            res.limits.as_ref().unwrap().get("intel.com/sriov"),
            Some(&Quantity("1".into()))
        );
        assert_eq!(
            res.limits.as_ref().unwrap().get("cpu"),
            Some(&Quantity("4".into())),
            "the device is added to the spec's resources"
        );
        assert_eq!(
            pod_spec(&s).containers[0].image.as_deref(),
            Some("registry.example/mfplane:1.2")
        );
        assert_eq!(
            pod_spec(&s)
                .node_selector
                .as_ref()
                .unwrap()
                .get("pool")
                .map(String::as_str),
            Some("nat")
        );
    }

    #[test]
    fn the_template_does_not_depend_on_the_replica_count() {
        let n = nat(serde_json::json!({}));
        let a = statefulset(&n, 3).unwrap().spec.unwrap().template;
        let b = statefulset(&n, 7).unwrap().spec.unwrap().template;
        assert_eq!(a, b, "scaling must not roll the pods");
    }
}
