//! Every Kubernetes API call the operator makes, as data, and the RBAC rules derived
//! from it: least privilege by construction. The tests check the other direction too:
//! every request the reconcilers send in the mock API-server scenarios must be allowed
//! by the generated ClusterRole or Role ([`allows`]).

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::names::OPERATOR_NAME;

/// Where a permission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (Nats live anywhere; Nodes are cluster-scoped): the ClusterRole.
    Cluster,
    /// The operator's own namespace only: the Role (the leader Lease).
    OperatorNamespace,
}

/// One resource the operator uses and how.
#[derive(Debug, Clone, Copy)]
pub struct ApiUse {
    /// API group ("" for core).
    pub group: &'static str,
    /// Resource, with `/subresource` when it is one.
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Only these object names (empty: any).
    pub names: &'static [&'static str],
    /// Where.
    pub scope: Scope,
    /// Why, for the reviewer of the ClusterRole.
    pub why: &'static str,
}

/// Children are written by server-side apply (a `patch` that may create) and watched.
const CHILD: &[&str] = &["list", "watch", "create", "patch"];

/// The operator's complete use of the Kubernetes API. Server-side apply is a `patch`
/// that creates a missing object, so children need `create` as well.
pub const API_USES: &[ApiUse] = &[
    ApiUse {
        group: "mfplane.io",
        resource: "nats",
        verbs: &["list", "watch", "patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "watch Nats; add and remove the finalizer",
    },
    ApiUse {
        group: "mfplane.io",
        resource: "nats/status",
        verbs: &["patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "report status",
    },
    ApiUse {
        group: "mfplane.io",
        resource: "nodes",
        verbs: &["list", "watch", "patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "watch machines; finalizer",
    },
    ApiUse {
        group: "mfplane.io",
        resource: "nodes/status",
        verbs: &["patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "report what runs on a machine",
    },
    ApiUse {
        group: "",
        resource: "nodes",
        verbs: &["get", "patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "set the mfplane.io/lb and mfplane.io/worker labels",
    },
    ApiUse {
        group: "",
        resource: "pods",
        verbs: &["list", "watch"],
        names: &[],
        scope: Scope::Cluster,
        why: "observe workers (phase, Multus addresses, gates)",
    },
    ApiUse {
        group: "",
        resource: "pods/status",
        verbs: &["patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "set the mfplane.io/raft-voter readiness gate",
    },
    ApiUse {
        group: "",
        resource: "services",
        verbs: CHILD,
        names: &[],
        scope: Scope::Cluster,
        why: "the workers' headless Service",
    },
    ApiUse {
        group: "",
        resource: "configmaps",
        verbs: CHILD,
        names: &[],
        scope: Scope::Cluster,
        why: "node.toml and lb-*.toml",
    },
    ApiUse {
        group: "apps",
        resource: "statefulsets",
        verbs: &["get", "list", "watch", "create", "patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "the workers (read for their current size)",
    },
    ApiUse {
        group: "apps",
        resource: "daemonsets",
        verbs: CHILD,
        names: &[],
        scope: Scope::Cluster,
        why: "the load balancers",
    },
    ApiUse {
        group: "policy",
        resource: "poddisruptionbudgets",
        verbs: CHILD,
        names: &[],
        scope: Scope::Cluster,
        why: "keep a Raft quorum through drains",
    },
    ApiUse {
        group: "",
        resource: "persistentvolumeclaims",
        verbs: &["deletecollection"],
        names: &[],
        scope: Scope::Cluster,
        why: "delete members' volumes when their Nat is deleted",
    },
    ApiUse {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        names: &[],
        scope: Scope::Cluster,
        why: "report membership changes",
    },
    ApiUse {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["create"],
        names: &[],
        scope: Scope::OperatorNamespace,
        why: "create the leader lease (create cannot be limited by name)",
    },
    ApiUse {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "update"],
        names: &[OPERATOR_NAME],
        scope: Scope::OperatorNamespace,
        why: "hold the leader lease",
    },
];

/// The rules for one scope, one rule per [`ApiUse`].
pub fn rules(scope: Scope) -> Vec<PolicyRule> {
    API_USES
        .iter()
        .filter(|u| u.scope == scope)
        .map(|u| PolicyRule {
            api_groups: Some(vec![u.group.to_owned()]),
            resources: Some(vec![u.resource.to_owned()]),
            verbs: u.verbs.iter().map(|v| (*v).to_owned()).collect(),
            resource_names: (!u.names.is_empty())
                .then(|| u.names.iter().map(|n| (*n).to_owned()).collect()),
            non_resource_urls: None,
        })
        .collect()
}

/// Whether `rules` allow `verb` on `group`/`resource` (named `name`, if known).
pub fn allows(
    rules: &[PolicyRule],
    group: &str,
    resource: &str,
    verb: &str,
    name: Option<&str>,
) -> bool {
    let has = |list: &Option<Vec<String>>, x: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|i| i == x || i == "*"))
    };
    rules.iter().any(|r| {
        has(&r.api_groups, group)
            && has(&r.resources, resource)
            && r.verbs.iter().any(|v| v == verb || v == "*")
            && match (&r.resource_names, name) {
                (None, _) => true,
                (Some(names), Some(n)) => names.is_empty() || names.iter().any(|x| x == n),
                (Some(names), None) => names.is_empty(),
            }
    })
}

/// An HTTP request to the API server, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    /// API group.
    pub group: String,
    /// Resource, with `/subresource`.
    pub resource: String,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Object name, for requests on one object.
    pub name: Option<String>,
    /// RBAC verb.
    pub verb: String,
}

/// Maps a request (method, path and query) to RBAC attributes, the way the API
/// server's request-info resolver does for resource requests.
pub fn request_attributes(method: &str, path: &str, query: &str) -> Option<RequestAttributes> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [r] => ((*r).to_owned(), None, None),
        [r, n] => ((*r).to_owned(), Some((*n).to_owned()), None),
        [r, n, s] => ((*r).to_owned(), Some((*n).to_owned()), Some(*s)),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource,
    };
    Some(RequestAttributes {
        group,
        resource,
        namespace,
        name,
        verb: verb.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_map_to_rbac_attributes() {
        let a = request_attributes(
            "PATCH",
            "/apis/mfplane.io/v1alpha1/namespaces/edge/nats/demo/status",
            "",
        )
        .unwrap();
        assert_eq!(
            (a.group.as_str(), a.resource.as_str(), a.verb.as_str()),
            ("mfplane.io", "nats/status", "patch")
        );
        assert_eq!(a.namespace.as_deref(), Some("edge"));
        let a =
            request_attributes("GET", "/api/v1/namespaces/edge/pods", "labelSelector=x").unwrap();
        assert_eq!((a.resource.as_str(), a.verb.as_str()), ("pods", "list"));
        let a = request_attributes("GET", "/api/v1/pods", "watch=true&labelSelector=x").unwrap();
        assert_eq!(a.verb, "watch");
        let a = request_attributes(
            "DELETE",
            "/api/v1/namespaces/edge/persistentvolumeclaims",
            "",
        )
        .unwrap();
        assert_eq!(a.verb, "deletecollection");
        let a = request_attributes("GET", "/api/v1/nodes/m1", "").unwrap();
        assert_eq!(
            (a.resource.as_str(), a.name.as_deref(), a.namespace),
            ("nodes", Some("m1"), None)
        );
    }

    #[test]
    fn rules_allow_what_is_listed_and_nothing_else() {
        let cluster = rules(Scope::Cluster);
        assert!(allows(
            &cluster,
            "apps",
            "statefulsets",
            "patch",
            Some("demo")
        ));
        assert!(!allows(
            &cluster,
            "apps",
            "statefulsets",
            "delete",
            Some("demo")
        ));
        assert!(!allows(&cluster, "", "secrets", "get", None));
        let ns = rules(Scope::OperatorNamespace);
        assert!(allows(
            &ns,
            "coordination.k8s.io",
            "leases",
            "update",
            Some(OPERATOR_NAME)
        ));
        assert!(!allows(
            &ns,
            "coordination.k8s.io",
            "leases",
            "update",
            Some("someone-elses")
        ));
        assert!(allows(&ns, "coordination.k8s.io", "leases", "create", None));
    }

    #[test]
    fn every_granted_permission_is_used_by_a_scenario() {
        // The scenarios run on this thread and record what each request needed; any
        // grant none of them needs is more than the operator uses.
        for scenario in crate::controller::scenarios::ALL
            .iter()
            .chain(crate::leader_election::tests::against_the_api::ALL)
        {
            scenario();
        }
        let used = crate::fixtures::exercised();
        let unused: Vec<String> = API_USES
            .iter()
            .flat_map(|u| {
                u.verbs
                    .iter()
                    .map(move |v| (u.group.to_owned(), u.resource.to_owned(), (*v).to_owned()))
            })
            .filter(|p| !used.contains(p))
            .map(|(g, r, v)| format!("{v} {g}/{r}"))
            .collect();
        assert!(
            unused.is_empty(),
            "granted but used by no scenario (drop it from API_USES, or add the scenario that needs it): {unused:?}"
        );
    }
}
