//! The load-balancer DaemonSet: one stateless XDP steering agent on every machine whose
//! `nodes.mfplane.io` role is `lb` (the Node controller labels those machines).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, HTTPGetAction, HostPathVolumeSource, PodSpec,
    PodTemplateSpec, Probe, SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use super::statefulset::{container_port, field_env, mount};
use crate::Result;
use crate::crd::Nat;
use crate::names::{CONFIG_DIR, Component, LB_NODE_LABEL, NatNames};

/// HTTP port of the LB agent (/healthz, /readyz, /metrics). The LB runs on the host
/// network, so it must not take the workers' port on a machine that runs both.
pub const LB_HTTP_PORT: i32 = 9190;

/// The LB DaemonSet of `nat`.
///
/// # Errors
/// [`crate::Error::MissingField`] for a Nat without a uid.
pub fn lb_daemonset(nat: &Nat) -> Result<DaemonSet> {
    let names = NatNames::of(nat);
    let lb = &nat.spec.lb;
    let selector = names.selector(Component::Lb);
    let mut node_selector = lb.node_selector.clone();
    node_selector.insert(LB_NODE_LABEL.to_owned(), "true".to_owned());

    let container = Container {
        name: "lb".to_owned(),
        image: Some(lb.image.clone()),
        command: Some(vec!["mfplane-lb".to_owned()]),
        args: Some(vec![
            format!("--config={CONFIG_DIR}/lb-$(NODE_NAME).toml"),
            format!("--http-listen=0.0.0.0:{LB_HTTP_PORT}"),
        ]),
        env: Some(vec![field_env("NODE_NAME", "spec.nodeName")]),
        ports: Some(vec![container_port("http", LB_HTTP_PORT)]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".to_owned()),
                port: IntOrString::String("http".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::String("http".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: lb.resources.clone(),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["BPF".to_owned(), "NET_ADMIN".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("bpffs", "/sys/fs/bpf", false),
        ]),
        ..Container::default()
    };

    Ok(DaemonSet {
        metadata: child_meta(nat, names.lb_daemonset(), Some(Component::Lb))?,
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: None,
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Some(Component::Lb))),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // The XDP program attaches to the machine's own interfaces.
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".to_owned()),
                    automount_service_account_token: Some(false),
                    node_selector: Some(node_selector),
                    termination_grace_period_seconds: Some(10),
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
                }),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    })
}

/// Labels a machine must carry to run the LB of `nat` (for tests and diagnostics).
pub fn lb_node_selector(nat: &Nat) -> BTreeMap<String, String> {
    let mut s = nat.spec.lb.node_selector.clone();
    s.insert(LB_NODE_LABEL.to_owned(), "true".to_owned());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_nat::nat;

    #[test]
    fn runs_on_lb_machines_on_the_host_network() {
        let n = nat(serde_json::json!({"lb": {"nodeSelector": {"zone": "a"}}}));
        let ds = lb_daemonset(&n).unwrap();
        let spec = ds.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.node_selector, Some(lb_node_selector(&n)));
        assert_eq!(
            pod.node_selector
                .as_ref()
                .unwrap()
                .get("mfplane.io/lb")
                .map(String::as_str),
            Some("true")
        );
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in spec.selector.match_labels.unwrap() {
            assert_eq!(labels.get(&k), Some(&v));
        }
        assert_eq!(ds.metadata.name.as_deref(), Some("demo-lb"));
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        assert_eq!(args[0], "--config=/etc/mfplane/lb-$(NODE_NAME).toml");
        let caps = c
            .security_context
            .as_ref()
            .and_then(|s| s.capabilities.as_ref())
            .unwrap();
        assert_eq!(
            (caps.add.clone().unwrap(), caps.drop.clone().unwrap()),
            (
                vec!["BPF".to_owned(), "NET_ADMIN".to_owned()],
                vec!["ALL".to_owned()]
            )
        );
        crate::resources::statefulset::tests::assert_bpffs(&pod, c);
    }

    #[test]
    fn the_lb_spec_sets_image_and_resources() {
        let n = nat(
            serde_json::json!({"lb": {"image": "registry.example/mfplane:1.2",
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}}),
        );
        let pod = lb_daemonset(&n)
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example/mfplane:1.2"));
        assert_eq!(c.resources, n.spec.lb.resources);
        assert!(c.resources.is_some());
    }
}
