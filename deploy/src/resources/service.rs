//! The headless Service that gives every worker a stable DNS name
//! (`<pod>.<nat>.<namespace>.svc`), which is also its advertised Raft address.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::Result;
use crate::crd::Nat;
use crate::names::{Component, GRPC_PORT, HTTP_PORT, NatNames};

/// The workers' headless Service. It publishes not-ready addresses because a member
/// must be reachable by its peers *before* it is Ready: readiness waits for it to
/// become a voter, and it cannot catch up without being dialled.
///
/// # Errors
/// [`crate::Error::MissingField`] for a Nat without a uid.
pub fn service(nat: &Nat) -> Result<Service> {
    let names = NatNames::of(nat);
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Ok(Service {
        metadata: child_meta(nat, names.service(), Some(Component::Worker))?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector(Component::Worker)),
            ports: Some(vec![port("grpc", GRPC_PORT), port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_nat::nat;

    #[test]
    fn headless_publishing_unready_members() {
        let s = service(&nat(serde_json::json!({}))).unwrap();
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            spec.selector,
            Some(NatNames::of(&nat(serde_json::json!({}))).selector(Component::Worker))
        );
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![("grpc".to_owned(), 7700), ("http".to_owned(), 9090)]
        );
        assert_eq!(s.metadata.name.as_deref(), Some("demo"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("edge"));
    }
}
