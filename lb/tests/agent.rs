//! The agent against a fake Steering service (tonic on 127.0.0.1): full and
//! incremental updates reach the BPF maps, a lost member fails over with resume from
//! the held epoch, a bad update is rejected and followed by a full resync, and the
//! table in use is kept while no member answers. The end-to-end test runs the whole
//! agent (attach, metrics, detach) inside a private network namespace.
//!
//! Need root and the embedded object, or `MFPLANE_SKIP_BPF=1` to skip.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, free_port, get_request, lb_from_config_file, parse_response};
use futures::Stream;
use mfplane_core::FlowHashKey;
use mfplane_core::lb_maps::SteerMode;
use mfplane_lb::Datapath;
use mfplane_lb::table::Epoch;
use mfplane_lb::testkit::{datapath_or_skip, fixture_owner, fixture_settings};
use mfplane_lb::watch::{WatchOptions, Watcher};
use mfplane_proto::steering::steering_server::{Steering, SteeringServer};
use mfplane_proto::steering::{
    BucketOwner, FlowHashKey as PbKey, Owner, SteeringUpdate, WatchRequest,
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

/// One step of a scripted Watch stream.
#[derive(Clone)]
enum Step {
    Send(SteeringUpdate),
    Wait(Arc<Notify>),
    Fail,
}

/// A Steering member that plays one script per Watch call and records each request.
#[derive(Clone, Default)]
struct FakeMember {
    sessions: Arc<Mutex<VecDeque<Vec<Step>>>>,
    requests: Arc<Mutex<Vec<u64>>>,
}

impl FakeMember {
    fn with(sessions: Vec<Vec<Step>>) -> Self {
        FakeMember {
            sessions: Arc::new(Mutex::new(sessions.into())),
            requests: Arc::default(),
        }
    }

    fn requests(&self) -> Vec<u64> {
        self.requests.lock().unwrap().clone()
    }

    /// Serves on 127.0.0.1 (of the caller's network namespace); returns the address.
    async fn serve(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SteeringServer::new(self))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<SteeringUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl Steering for FakeMember {
    type WatchStream = UpdateStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<UpdateStream>, Status> {
        self.requests.lock().unwrap().push(req.get_ref().from_epoch);
        let Some(script) = self.sessions.lock().unwrap().pop_front() else {
            return Err(Status::unavailable("fake member has nothing more to say"));
        };
        let s = async_stream_of(script);
        Ok(Response::new(Box::pin(s)))
    }
}

fn async_stream_of(script: Vec<Step>) -> impl Stream<Item = Result<SteeringUpdate, Status>> + Send {
    futures::stream::unfold((script.into_iter(), false), |(mut it, done)| async move {
        if done {
            return None;
        }
        loop {
            match it.next() {
                Some(Step::Send(u)) => return Some((Ok(u), (it, false))),
                Some(Step::Wait(n)) => n.notified().await,
                Some(Step::Fail) => {
                    return Some((Err(Status::unavailable("member going down")), (it, true)));
                }
                // Keep the stream open, as a live member does between changes.
                None => std::future::pending::<()>().await,
            }
        }
    })
}

fn pb_owner(n: u8) -> Owner {
    let o = fixture_owner(n);
    Owner {
        node_id: u64::from(n),
        data_ip: o.ip.to_string(),
        data_mac: o.mac.to_string(),
    }
}

/// The cluster's flow-hash key in these tests (not the default one, so a test can
/// tell that the LB steers by the key the cluster sent).
const CLUSTER_KEY: FlowHashKey = FlowHashKey::new(0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321);

fn full(epoch: u64, owner_of: impl Fn(u32) -> u64) -> SteeringUpdate {
    SteeringUpdate {
        epoch,
        bucket_bits: 8,
        full: true,
        buckets: (0..256)
            .map(|b| BucketOwner {
                bucket: b,
                node_id: owner_of(b),
            })
            .collect(),
        owners: (1..=3).map(pb_owner).collect(),
        external_ips: vec!["198.51.100.1".into(), "198.51.100.2".into()],
        flow_hash_key: Some(PbKey {
            k0: CLUSTER_KEY.k0,
            k1: CLUSTER_KEY.k1,
        }),
    }
}

fn moves(epoch: u64, moves: &[(u32, u64)]) -> SteeringUpdate {
    SteeringUpdate {
        epoch,
        bucket_bits: 8,
        full: false,
        buckets: moves
            .iter()
            .map(|&(bucket, node_id)| BucketOwner { bucket, node_id })
            .collect(),
        owners: (1..=3).map(pb_owner).collect(),
        external_ips: vec![],
        flow_hash_key: None,
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn owner_ip(dp: &Arc<Mutex<Datapath>>, bucket: u32) -> Option<Ipv4Addr> {
    let mut dp = dp.lock().unwrap();
    let g = dp.active_generation();
    dp.owner_in_map(g, bucket)
        .unwrap()
        .map(|o| Ipv4Addr::from(o.ipv4))
}

fn active_epoch(dp: &Arc<Mutex<Datapath>>) -> u64 {
    let mut dp = dp.lock().unwrap();
    let g = dp.active_generation();
    dp.generation_config(g).unwrap().epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_failover_resumes_and_resyncs() {
    let Some(mut dp) = datapath_or_skip("follows_failover_resumes_and_resyncs") else {
        return;
    };
    dp.set_settings(&fixture_settings(SteerMode::L2, true))
        .unwrap();
    let dp = Arc::new(Mutex::new(dp));

    let kill_a = Arc::new(Notify::new());
    let go_b = Arc::new(Notify::new());
    let member_a = FakeMember::with(vec![vec![
        Step::Send(full(1, |b| 1 + u64::from(b % 3))),
        Step::Send(moves(2, &[(0, 2), (1, 0)])),
        Step::Wait(kill_a.clone()),
        Step::Fail,
    ]]);
    let bad = SteeringUpdate {
        buckets: vec![BucketOwner {
            bucket: 999,
            node_id: 1,
        }],
        ..moves(4, &[])
    };
    let member_b = FakeMember::with(vec![
        vec![
            Step::Wait(go_b.clone()),
            Step::Send(moves(3, &[(0, 3)])),
            Step::Send(bad),
        ],
        vec![Step::Send(full(5, |_| 2))],
    ]);
    let a = member_a.clone().serve().await;
    let b = member_b.clone().serve().await;
    let opts = WatchOptions {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        keepalive: Duration::from_secs(1),
    };
    let mut watcher = Watcher::new(vec![format!("http://{a}"), format!("http://{b}")], opts);
    let epochs = watcher.epochs();
    let mut sink = Arc::clone(&dp);
    let task = tokio::spawn(async move { watcher.run(&mut sink).await });

    // Full table, then one incremental update.
    wait_for("epoch 2", || *epochs.borrow() == Epoch(2)).await;
    assert_eq!(active_epoch(&dp), 2);
    {
        let mut d = dp.lock().unwrap();
        let g = d.active_generation();
        assert_eq!(
            d.generation_config(g).unwrap().hash_key,
            CLUSTER_KEY,
            "the program hashes with the key the cluster sent"
        );
    }
    assert_eq!(
        owner_ip(&dp, 0),
        Some(fixture_owner(2).ip),
        "bucket 0 moved to node 2"
    );
    assert_eq!(owner_ip(&dp, 1), None, "bucket 1 lost its owner");
    assert_eq!(owner_ip(&dp, 2), Some(fixture_owner(3).ip));
    assert_eq!(owner_ip(&dp, 255), Some(fixture_owner(1).ip));
    assert_eq!(dp.lock().unwrap().external_ips().unwrap().len(), 2);

    // Member A dies: the watcher moves to B and resumes from epoch 2; meanwhile the
    // installed table stays.
    kill_a.notify_one();
    wait_for("a request to member B", || !member_b.requests().is_empty()).await;
    assert_eq!(member_b.requests(), vec![2], "resume from the held epoch");
    assert_eq!(active_epoch(&dp), 2, "last table kept while reconnecting");
    assert_eq!(owner_ip(&dp, 0), Some(fixture_owner(2).ip));

    // B sends epoch 3, then a malformed update: rejected, table kept, full resync.
    go_b.notify_one();
    wait_for("epoch 5", || *epochs.borrow() == Epoch(5)).await;
    let reqs_b = member_b.requests();
    assert_eq!(
        reqs_b.last(),
        Some(&0),
        "resync asks for a full table: {reqs_b:?}"
    );
    assert!(
        member_a.requests().len() >= 2,
        "failed over through A again"
    );
    assert_eq!(active_epoch(&dp), 5);
    for bucket in [0, 1, 77, 255] {
        assert_eq!(owner_ip(&dp, bucket), Some(fixture_owner(2).ip));
    }
    task.abort();
}

/// The namespace both agent tests run in: a veth pair `mfplb0`/`mfplb1` with
/// 192.0.2.254/24 on `mfplb1`.
fn in_private_netns(body: impl FnOnce() + Send + 'static) {
    mfplane_lb::testkit::in_private_netns(
        &[
            &[
                "link", "add", "mfplb0", "type", "veth", "peer", "name", "mfplb1",
            ],
            &["addr", "add", "192.0.2.254/24", "dev", "mfplb1"],
            &["link", "set", "mfplb0", "up"],
            &["link", "set", "mfplb1", "up"],
        ],
        body,
    );
}

fn xdp_attached(iface: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["link", "show", iface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Polls `/metrics` until it shows `needle`.
async fn wait_for_metrics(port: u16, needle: &str) -> String {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "metrics never showed {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(text) = scrape(port).await
            && text.contains(needle)
        {
            return text;
        }
    }
}

/// Runs `body` on a current-thread runtime inside the agent tests' namespace, when
/// the datapath can be loaded (see `datapath_or_skip`).
fn in_netns_runtime<F: Future<Output = ()>>(test: &str, body: impl FnOnce() -> F + Send + 'static) {
    let Some(dp) = datapath_or_skip(test) else {
        return;
    };
    drop(dp);
    in_private_netns(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(body());
    });
}

#[test]
fn agent_end_to_end_in_a_private_namespace() {
    in_netns_runtime("agent_end_to_end_in_a_private_namespace", || async {
        end_to_end().await;
        assert!(!xdp_attached("mfplb0"), "XDP still attached after shutdown");
    });
}

/// The binary with the flags the lab uses: fails over past a dead member, serves
/// metrics, and on SIGTERM detaches and exits 0.
#[test]
fn binary_detaches_on_sigterm() {
    in_netns_runtime("binary_detaches_on_sigterm", || async {
        let member = FakeMember::with(vec![vec![Step::Send(full(4, |_| 1))]]);
        let addr = member.clone().serve().await;
        let metrics_port = free_port();
        // Spawned from this thread, so the child lives in the private namespace.
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mfplane-lb"))
            .args(["--attach", "mfplb0", "--fabric", "mfplb1"])
            .args([
                "--inside-prefix",
                "10.0.0.0/8",
                "--inside-prefix",
                "172.16.0.0/12",
            ])
            .args(["--mode", "l2", "--xdp-mode", "auto"])
            .args(["--cluster", &format!("127.0.0.1:1,{addr}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        wait_for_metrics(metrics_port, "mfplane_lb_epoch 4").await;
        assert!(xdp_attached("mfplb0"), "XDP not attached");
        child.sigterm();
        let status = wait_exit(&mut child).await;
        assert!(status.success(), "exit status {status}");
        assert!(!xdp_attached("mfplb0"), "XDP still attached after SIGTERM");
    });
}

/// The binary as the operator's DaemonSet runs it: `--config` (not there yet) and
/// `--http-listen`. `/readyz` is 503 while it waits for the file, 503 while attached
/// without a table, 200 once the cluster's table is installed; a file whose
/// `bucket_bits` contradicts the cluster keeps it unready with the reason.
#[test]
fn binary_from_a_config_file_becomes_ready() {
    in_netns_runtime("binary_from_a_config_file_becomes_ready", || async {
        let hold = Arc::new(Notify::new());
        let member = FakeMember::with(vec![
            vec![Step::Wait(Arc::clone(&hold)), Step::Send(full(5, |_| 2))],
            vec![Step::Send(full(6, |_| 2))],
        ]);
        let addr = member.clone().serve().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb-m1.toml");
        let port = free_port();
        let child = lb_from_config_file(&path, port, "warn").spawn().unwrap();
        let mut child = KillOnDrop(child);
        let body = wait_for_http(port, "/readyz", 503, "waiting for the configuration file").await;
        assert!(body.contains("lb-m1.toml"), "{body}");
        // What the operator writes (deploy/src/config_file.rs), for this namespace.
        std::fs::write(
            &path,
            format!(
                r#"# Written by mfplane-operator for Nat default/demo; edit the Nat, not this file.
mode = "l2"
xdp_mode = "native"
bucket_bits = 8
external_ips = ["198.51.100.1", "198.51.100.2"]
inside_sources = ["10.0.0.0/8"]
cluster = ["127.0.0.1:1", "{addr}"]

[[interfaces]]
name = "mfplb0"
side = "inside"

[[interfaces]]
name = "mfplb1"
side = "both"
"#
            ),
        )
        .unwrap();
        let body = wait_for_http(port, "/readyz", 503, "no steering table installed yet").await;
        assert!(body.contains("mfplb0 (inside), mfplb1 (both)"), "{body}");
        assert!(
            xdp_attached("mfplb0") && xdp_attached("mfplb1"),
            "XDP not attached"
        );
        hold.notify_one();
        let body = wait_for_http(port, "/readyz", 200, "steering by epoch").await;
        assert!(body.starts_with("ready: steering by epoch"), "{body}");
        wait_for_http(port, "/metrics", 200, "mfplane_lb_epoch").await;
        assert_eq!(
            http_get(port, "/healthz").await.unwrap(),
            (200, "ok\n".into())
        );
        child.sigterm();
        let status = wait_exit(&mut child).await;
        assert!(status.success(), "exit status {status}");
        assert!(!xdp_attached("mfplb0"), "XDP still attached after SIGTERM");

        // The same file, but with the bucket bits of another cluster.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("bucket_bits = 8", "bucket_bits = 10")).unwrap();
        let member = FakeMember::with(vec![vec![Step::Send(full(5, |_| 2))]; 50]);
        let addr2 = member.clone().serve().await;
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&addr.to_string(), &addr2.to_string())).unwrap();
        let child = lb_from_config_file(&path, port, "off").spawn().unwrap();
        let _child = KillOnDrop(child);
        let body = wait_for_http(port, "/readyz", 503, "refused").await;
        assert!(
            body.contains("bucket_bits 8") && body.contains("bucket_bits 10"),
            "{body}"
        );
    });
}

/// The child's exit status once it has exited, within 10 s of the SIGTERM.
async fn wait_exit(child: &mut KillOnDrop) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.exited() {
            return st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `GET path` until it answers `status` with `needle` in the body.
async fn wait_for_http(port: u16, path: &str, status: u16, needle: &str) -> String {
    let start = Instant::now();
    let mut last = None;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{path} never answered {status} with {needle:?}; last: {last:?}"
        );
        if let Ok((code, body)) = http_get(port, path).await {
            if code == status && body.contains(needle) {
                return body;
            }
            last = Some((code, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn end_to_end() {
    let member = FakeMember::with(vec![vec![Step::Send(full(9, |b| 1 + u64::from(b % 3)))]]);
    let addr = member.clone().serve().await;
    let metrics_port = free_port();
    let cluster = addr.to_string();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let args = <mfplane_lb::Args as clap::Parser>::parse_from([
        "mfplane-lb",
        "--attach",
        "mfplb0",
        "--fabric",
        "mfplb1",
        "--inside-prefix",
        "10.0.0.0/8",
        "--cluster",
        &cluster,
        "--mode",
        "ipip",
        "--metrics-listen",
        &metrics,
    ]);
    let cfg = args.resolve().unwrap();
    assert_eq!(
        cfg.settings.fabric_ip,
        u32::from(Ipv4Addr::new(192, 0, 2, 254))
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(mfplane_lb::agent::launch(args, async move {
        let _ = stop_rx.await;
    }));
    let body = wait_for_metrics(metrics_port, "mfplane_lb_epoch 9").await;
    let body = if body.contains("mfplane_lb_packets_total") {
        body
    } else {
        wait_for_metrics(metrics_port, "mfplane_lb_packets_total").await
    };
    assert!(
        body.contains("mfplane_lb_drops_total{reason=\"no_owner\"}"),
        "{body}"
    );
    assert!(body.contains("mfplane_lb_cluster_connected 1"), "{body}");
    assert!(xdp_attached("mfplb0"), "XDP not attached");
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
    assert_eq!(member.requests(), vec![0]);
}

/// GET /metrics with a minimal HTTP/1.0 client.
async fn scrape(port: u16) -> std::io::Result<String> {
    Ok(http_get(port, "/metrics").await?.1)
}

/// `(status, body)` of `GET path` on 127.0.0.1:`port`.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(get_request(path).as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(parse_response(&buf))
}
