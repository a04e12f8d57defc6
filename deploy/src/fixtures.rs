//! Test fixtures: a scripted mock API server (`tower-test`) in the style of
//! controller-rs' `ApiServerVerifier`, and builders of test objects.
//!
//! A scenario is an ordered list of expected requests, each with its reply. The
//! verifier asserts every request's method and path (and, where a test says so, its
//! body), records them all, and checks each one against the generated RBAC rules, so a
//! reconcile that needs a permission the manifests do not grant fails here.

use std::collections::BTreeSet;
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
    /// Echo the request body with 201 Created: the write created the object (a
    /// server-side apply of an object that did not exist, which RBAC authorizes as
    /// `create`).
    Created,
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
    /// Whether `path` is a collection the request names an object of (the object's
    /// name is made up by the client, as an event's is).
    pub within: bool,
    /// The reply.
    pub reply: Reply,
    /// Extra assertions on the request body.
    pub check: Option<BodyCheck>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let within = if self.within { "/*" } else { "" };
        write!(f, "{} {}{within}", self.method, self.path)
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
            within: false,
            reply,
            check: None,
        }
    }

    /// A request for some object in the collection at `path`.
    pub fn within(method: Method, path: impl Into<String>, reply: Reply) -> Self {
        Exchange {
            within: true,
            ..Exchange::new(method, path, reply)
        }
    }

    pub fn check(mut self, f: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }

    /// The same request, answered as the write that created its object.
    pub fn creating(mut self) -> Self {
        self.reply = Reply::Created;
        self
    }
}

/// A request the verifier saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// Whether it was a server-side apply.
    pub apply: bool,
    pub body: Value,
}

impl Seen {
    /// The request line and headers; the body is read separately.
    fn head(request: &Request<Body>) -> Seen {
        Seen {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or_default().to_owned(),
            apply: is_apply(request),
            body: Value::Null,
        }
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("reply")))
        .expect("response")
}

impl Exchange {
    fn matches(&self, method: &Method, path: &str) -> bool {
        *method == self.method
            && if self.within {
                path.strip_prefix(self.path.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'))
            } else {
                path == self.path
            }
    }
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
                let Seen {
                    method,
                    path,
                    query,
                    apply,
                    ..
                } = Seen::head(&request);
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
                assert!(
                    exchange.matches(&method, &path),
                    "request #{i}: expected {exchange:?}, got {method} {path}?{query} with {body}"
                );
                let created = matches!(exchange.reply, Reply::Created);
                assert_rbac_allows(&method, &path, &query, apply && created);
                if let Some(check) = exchange.check {
                    check(&body);
                }
                let (code, reply) = match exchange.reply {
                    Reply::Echo => (StatusCode::OK, body.clone()),
                    Reply::Created => (StatusCode::CREATED, body.clone()),
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
                send.send_response(json_response(code, &reply));
                seen.push(Seen {
                    method,
                    path,
                    query,
                    apply,
                    body,
                });
            }
            seen
        })
    }
}

impl ApiServerVerifier {
    /// Answers like an API server without objects until the client has been quiet for
    /// `quiet` (or `limit` has passed): every list is empty, every watch stays open and
    /// sends nothing. Returns what it saw. For what the controllers list and watch,
    /// which they ask for concurrently, in no fixed order.
    pub fn serve_empty(
        self,
        quiet: std::time::Duration,
        limit: std::time::Duration,
    ) -> tokio::task::JoinHandle<Vec<Seen>> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + limit;
            let mut seen = Vec::new();
            let mut open_watches = Vec::new();
            while tokio::time::Instant::now() < deadline {
                let Ok(Some((request, send))) =
                    tokio::time::timeout(quiet, handle.next_request()).await
                else {
                    break;
                };
                let head = Seen::head(&request);
                assert_rbac_allows(&head.method, &head.path, &head.query, false);
                let watch = request_attributes(head.method.as_str(), &head.path, &head.query)
                    .is_some_and(|a| a.verb == "watch");
                if watch {
                    open_watches.push(send);
                } else {
                    send.send_response(json_response(StatusCode::OK, &list("List", vec![])));
                }
                seen.push(head);
            }
            seen
        })
    }
}

/// An RBAC permission as `(group, resource, verb)`.
pub type Permission = (String, String, String);

thread_local! {
    /// Every permission the requests served on this thread needed. The tests run on
    /// the current-thread runtime, so a test that runs scenarios sees exactly theirs.
    static EXERCISED: std::cell::RefCell<BTreeSet<Permission>> =
        const { std::cell::RefCell::new(BTreeSet::new()) };
}

/// The permissions the requests served on this thread so far needed.
pub fn exercised() -> BTreeSet<Permission> {
    EXERCISED.with(|e| e.borrow().clone())
}

/// Whether the request is a server-side apply, which the API server authorizes as
/// `patch` and, for an object that does not exist yet, `create`.
fn is_apply(request: &Request<Body>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/apply-patch+yaml")
}

/// Fails unless the generated RBAC allows the request, and records what it needed.
/// `creates`: a server-side apply that created its object, which needs `create` too.
fn assert_rbac_allows(method: &Method, path: &str, query: &str, creates: bool) {
    let a = request_attributes(method.as_str(), path, query)
        .unwrap_or_else(|| panic!("not a resource request: {path}"));
    let scope =
        if a.namespace.as_deref() == Some(OPERATOR_NAMESPACE) && a.group == "coordination.k8s.io" {
            Scope::OperatorNamespace
        } else {
            Scope::Cluster
        };
    let mut verbs = vec![a.verb.as_str()];
    if creates {
        verbs.push("create");
    }
    for verb in verbs {
        assert!(
            allows(
                &rules(scope),
                &a.group,
                &a.resource,
                verb,
                a.name.as_deref()
            ),
            "the generated RBAC does not allow {verb} for {a:?} ({method} {path}); add it to rbac::API_USES"
        );
        EXERCISED.with(|e| {
            e.borrow_mut()
                .insert((a.group.clone(), a.resource.clone(), verb.to_owned()))
        });
    }
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

/// `pod` with the Multus network-status annotation that reports `ip` and `mac` on the
/// data interface of a Nat without attachments.
pub fn with_data_address(mut pod: Value, ip: &str, mac: &str) -> Value {
    let status = json!([{"name": "default", "interface": crate::config_file::DEFAULT_DATA_INTERFACE,
                         "ips": [ip], "mac": mac, "default": true}]);
    pod["metadata"]["annotations"] =
        json!({ crate::names::MULTUS_NETWORK_STATUS: status.to_string() });
    pod
}

/// A 404 for a missing object.
pub fn not_found() -> Reply {
    Reply::Error(StatusCode::NOT_FOUND, "NotFound")
}

/// The Nat as JSON, for replies.
pub fn to_json<K: serde::Serialize + Resource>(k: &K) -> Value {
    serde_json::to_value(k).expect("serialize")
}
