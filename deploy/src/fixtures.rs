//! Test fixtures: a scripted mock API server (`tower-test`) in the style of
//! controller-rs' `ApiServerVerifier`, and builders of test objects.
//!
//! A scenario is an ordered list of expected requests, each with its reply. The
//! verifier asserts every request's method and path (and, where a test says so, its
//! body), records them all, and checks each one against the generated RBAC rules, so a
//! reconcile that needs a permission the manifests do not grant fails here.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::admin::fake::FakeAdmin;
use crate::controller::Context;
use crate::names::OPERATOR_NAMESPACE;
use crate::rbac::{Scope, allows, request_attributes, rules};

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
/// Assertions on a request body.
pub type BodyCheck = Box<dyn FnOnce(&Value) + Send>;

/// How the mock answers one request.
#[derive(Debug)]
pub enum Reply {
    /// Echo the request body (what server-side apply returns, near enough).
    Echo,
    /// This status code and JSON body.
    Json(StatusCode, Value),
    /// This object with the request body's `status` put in (a status patch's answer).
    WithStatus(Value),
    /// A Kubernetes `Status` error with this code and reason.
    Error(StatusCode, &'static str),
}

/// One expected request.
pub struct Exchange {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The reply.
    pub reply: Reply,
    /// Extra assertions on the request body.
    pub check: Option<BodyCheck>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl std::fmt::Debug for ApiServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiServerVerifier")
    }
}

impl Exchange {
    pub fn new(method: Method, path: impl Into<String>, reply: Reply) -> Self {
        Exchange {
            method,
            path: path.into(),
            reply,
            check: None,
        }
    }

    pub fn check(mut self, f: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

/// A request the verifier saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// The mock API server's handle.
pub struct ApiServerVerifier(ApiServerHandle);

impl ApiServerVerifier {
    /// Serves `script` in order; the task returns everything it saw. It panics (failing
    /// the test through the join handle) on an unexpected request.
    pub fn run(self, script: Vec<Exchange>) -> tokio::task::JoinHandle<Vec<Seen>> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for (i, exchange) in script.into_iter().enumerate() {
                let (request, send) = handle
                    .next_request()
                    .await
                    .expect("the operator stopped calling the API server");
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let query = request.uri().query().unwrap_or_default().to_owned();
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .expect("request body");
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("JSON body")
                };
                assert_eq!(
                    (&method, path.as_str()),
                    (&exchange.method, exchange.path.as_str()),
                    "request #{i}: expected {} {}, got {method} {path}?{query} with {body}",
                    exchange.method,
                    exchange.path
                );
                assert_rbac_allows(&method, &path, &query);
                if let Some(check) = exchange.check {
                    check(&body);
                }
                let (code, reply) = match exchange.reply {
                    Reply::Echo => (StatusCode::OK, body.clone()),
                    Reply::Json(code, v) => (code, v),
                    Reply::WithStatus(mut v) => {
                        v["status"] = body["status"].clone();
                        (StatusCode::OK, v)
                    }
                    Reply::Error(code, reason) => (
                        code,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": format!("mock: {reason}"), "reason": reason, "code": code.as_u16()}),
                    ),
                };
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
                    .expect("response");
                send.send_response(response);
                seen.push(Seen {
                    method,
                    path,
                    query,
                    body,
                });
            }
            seen
        })
    }
}

/// Fails unless the generated RBAC allows the request.
fn assert_rbac_allows(method: &Method, path: &str, query: &str) {
    let a = request_attributes(method.as_str(), path, query)
        .unwrap_or_else(|| panic!("not a resource request: {path}"));
    let scope =
        if a.namespace.as_deref() == Some(OPERATOR_NAMESPACE) && a.group == "coordination.k8s.io" {
            Scope::OperatorNamespace
        } else {
            Scope::Cluster
        };
    assert!(
        allows(
            &rules(scope),
            &a.group,
            &a.resource,
            &a.verb,
            a.name.as_deref()
        ),
        "the generated RBAC does not allow {a:?} ({method} {path}); add it to rbac::API_USES"
    );
}

impl Context {
    /// A context over a mock API server and `admin`.
    pub fn test(admin: FakeAdmin) -> (Arc<Context>, ApiServerVerifier) {
        let (client, verifier) = mock_client();
        (
            Arc::new(Context::new(client, Arc::new(admin), Some("test".into()))),
            verifier,
        )
    }
}

/// A client over a mock API server.
pub fn mock_client() -> (Client, ApiServerVerifier) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), ApiServerVerifier(handle))
}

/// JSON of a list of `items`.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A Running worker pod `demo-<ordinal>` in `edge`, Ready iff `gate_true`.
pub fn worker_pod(ordinal: u32, gate: Option<(&str, &str)>) -> Value {
    let mut conditions = vec![
        json!({"type": "Ready", "status": if gate.is_some_and(|g| g.0 == "True") { "True" } else { "False" }}),
    ];
    if let Some((status, reason)) = gate {
        conditions.push(
            json!({"type": crate::names::READINESS_GATE, "status": status, "reason": reason,
                               "lastTransitionTime": "2020-01-01T00:00:00Z"}),
        );
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("demo-{ordinal}"), "namespace": "edge",
                     "labels": {"mfplane.io/nat": "demo", "app.kubernetes.io/component": "worker"}},
        "spec": {"containers": [{"name": "node"}], "nodeName": "worker-1"},
        "status": {"phase": "Running", "conditions": conditions},
    })
}

/// A 404 for a missing object.
pub fn not_found() -> Reply {
    Reply::Error(StatusCode::NOT_FOUND, "NotFound")
}

/// The Nat as JSON, for replies.
pub fn to_json<K: serde::Serialize + Resource>(k: &K) -> Value {
    serde_json::to_value(k).expect("serialize")
}
