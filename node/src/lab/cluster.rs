//! A running lab: the network, the worker daemons, the load balancer, and gRPC
//! clients that reach the cluster from outside its namespaces.
//!
//! The lab process itself stays in the host's namespace; its gRPC connections are
//! opened by a thread inside the router namespace (which routes to the fabric), so the
//! lab needs no interface in the host namespace at all.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use mfplane_proto::admin::admin_client::AdminClient;
use mfplane_proto::admin::{ClusterStatus, NodeRequest, Role, StatusRequest};
use mfplane_proto::sessions::sessions_client::SessionsClient;
use tonic::transport::{Channel, Endpoint};

use super::netns::Netns;
use super::procs::Supervisor;
use super::topology::{self, Topology, WorkerHost};
use super::{LabError, Result};

/// The gRPC port of every worker (on its fabric address).
pub const GRPC_PORT: u16 = 7000;
/// The HTTP port (health, metrics) of every worker and of the LB agent.
pub const HTTP_PORT: u16 = 9100;

/// How to build a lab.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// Prefix of every namespace the lab creates; lets parallel labs coexist and lets
    /// `down` find exactly what this lab made.
    pub prefix: String,
    /// Workers to start with.
    pub workers: u8,
    /// Where logs and data directories go.
    pub state_dir: PathBuf,
    /// The `mfplane-node` binary.
    pub node_bin: PathBuf,
    /// The `mfplane-lb` binary.
    pub lb_bin: PathBuf,
    /// Bucket lease of the workers: bounds how long a crashed owner's buckets stay
    /// unsteered, so it is the main term of the failover stall.
    pub lease: Duration,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
}

impl LabSpec {
    /// Defaults for `prefix`: binaries next to the running executable, state under
    /// `/tmp/<prefix>lab`.
    pub fn new(prefix: &str, workers: u8) -> Self {
        LabSpec {
            prefix: prefix.to_string(),
            workers,
            state_dir: std::env::temp_dir().join(format!("{prefix}lab")),
            node_bin: sibling_binary("mfplane-node"),
            lb_bin: sibling_binary("mfplane-lb"),
            lease: Duration::from_millis(400),
            heartbeat: Duration::from_millis(50),
        }
    }
}

/// Finds a binary of the workspace: `$MFPLANE_<NAME>_BIN` if set, else next to the
/// running executable (or one level up, for test executables in `target/*/deps`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let var = format!(
        "MFPLANE_{}_BIN",
        name.trim_start_matches("mfplane-").to_uppercase()
    );
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let here = dir.join(name);
    if here.exists() {
        return here;
    }
    dir.parent().map(|p| p.join(name)).unwrap_or(here)
}

/// A lab that is up. Dropping it (or [`Lab::down`]) kills its processes and removes
/// its namespaces, so a failing test or a panic leaves nothing behind.
#[derive(Debug)]
pub struct Lab {
    pub spec: LabSpec,
    pub topo: Topology,
    pub procs: Supervisor,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.kill_all();
        if let Err(e) = topology::teardown(&self.spec.prefix) {
            tracing::warn!(error = %e, prefix = %self.spec.prefix, "removing the lab's namespaces failed");
        }
    }
}

impl Lab {
    /// Builds the network and starts every worker and the load balancer. On failure
    /// everything created so far is removed again.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        for bin in [&spec.node_bin, &spec.lb_bin] {
            if !bin.exists() {
                return Err(LabError::Command {
                    command: "lab up".into(),
                    detail: format!(
                        "{} not found: build the workspace first (`cargo build --workspace`) or set MFPLANE_NODE_BIN / MFPLANE_LB_BIN",
                        bin.display()
                    ),
                });
            }
        }
        // A previous run of the same prefix may have been killed before it cleaned up.
        topology::teardown(&spec.prefix)?;
        let _ = std::fs::remove_dir_all(&spec.state_dir);
        let built = (|| {
            let topo = Topology::build(&spec.prefix, spec.workers)?;
            let procs = Supervisor::new(&spec.state_dir)?;
            let mut lab = Lab {
                spec: spec.clone(),
                topo,
                procs,
            };
            let workers = lab.topo.workers.clone();
            for w in &workers {
                lab.start_worker(w)?;
            }
            lab.start_lb()?;
            Ok(lab)
        })();
        if built.is_err() {
            let _ = topology::teardown(&spec.prefix);
        }
        built
    }

    /// Stops every process and removes every namespace of the lab. Dropping the lab
    /// does the same (for error paths and panics); this reports how it went.
    pub fn down(mut self) -> Result<usize> {
        self.procs.kill_all();
        topology::teardown(&self.spec.prefix)
    }

    /// The gRPC address of worker `index`.
    pub fn grpc_addr(index: u8) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(topology::worker_ip(index), GRPC_PORT))
    }

    fn process_name(index: u8) -> String {
        format!("w{index}")
    }

    /// Starts the daemon of worker `w`: the first worker of a fresh lab bootstraps the
    /// cluster, every other one joins through the members already running.
    pub fn start_worker(&mut self, w: &WorkerHost) -> Result<()> {
        let data_dir = self.spec.state_dir.join(format!("w{}-data", w.index));
        let mut args = vec![
            format!("--name=w{}", w.index),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen={}", Lab::grpc_addr(w.index)),
            format!("--http-listen={}:{HTTP_PORT}", w.ip),
            format!("--data-ip={}", w.ip),
            format!("--data-mac={}", w.mac),
            format!("--data-iface={}", topology::HOST_DEV),
            format!("--next-hop-mac={}", self.topo.router_fabric_mac),
            format!(
                "--inside-prefix={}/{}",
                topology::INSIDE_PREFIX.0,
                topology::INSIDE_PREFIX.1
            ),
            format!("--lease={}ms", self.spec.lease.as_millis()),
            format!("--lease-margin={}ms", (self.spec.lease / 4).as_millis()),
            format!("--heartbeat={}ms", self.spec.heartbeat.as_millis()),
            "--auto-promote".to_string(),
        ];
        let first = self.topo.workers.first().map(|f| f.index) == Some(w.index);
        if first && !data_dir.exists() {
            args.push("--init".into());
            args.push("--bucket-bits=8".into());
            let ips: Vec<String> = topology::EXTERNAL_IPS
                .iter()
                .map(Ipv4Addr::to_string)
                .collect();
            args.push(format!("--external-ip={}", ips.join(",")));
        } else {
            let others: Vec<String> = self
                .topo
                .workers
                .iter()
                .filter(|o| o.index != w.index)
                .map(|o| Lab::grpc_addr(o.index).to_string())
                .collect();
            args.push(format!("--join={}", others.join(",")));
        }
        self.procs.spawn(
            &Lab::process_name(w.index),
            &w.ns,
            &self.spec.node_bin,
            &args,
        )?;
        Ok(())
    }

    /// Starts the XDP load-balancer agent in the router namespace.
    pub fn start_lb(&mut self) -> Result<()> {
        let cluster: Vec<String> = self
            .topo
            .workers
            .iter()
            .map(|w| Lab::grpc_addr(w.index).to_string())
            .collect();
        let (net, len) = topology::INSIDE_PREFIX;
        let args = vec![
            format!(
                "--attach={},{}",
                topology::LB_INSIDE_DEV,
                topology::LB_OUTSIDE_DEV
            ),
            format!("--fabric={}", topology::LB_FABRIC_DEV),
            format!("--inside-prefix={net}/{len}"),
            "--mode=l2".to_string(),
            format!("--cluster={}", cluster.join(",")),
            format!("--metrics-listen=127.0.0.1:{HTTP_PORT}"),
        ];
        let router = self.topo.router.clone();
        self.procs.spawn("lb", &router, &self.spec.lb_bin, &args)?;
        Ok(())
    }

    /// Crashes worker `index`: SIGKILL of its daemon and its link down, as a host
    /// failure looks to the rest of the cluster.
    pub fn crash_worker(&mut self, index: u8) -> Result<()> {
        self.procs.kill9(&Lab::process_name(index));
        self.topo.cut_worker(index)
    }

    /// Adds a worker namespace and starts its daemon (scale-out).
    pub fn add_worker(&mut self) -> Result<WorkerHost> {
        let w = self.topo.add_worker()?;
        self.start_worker(&w)?;
        Ok(w)
    }

    /// A gRPC channel to worker `index`, dialed from inside the router namespace.
    pub fn channel(&self, index: u8) -> Result<Channel> {
        channel_via(&self.topo.router, Lab::grpc_addr(index))
    }

    /// The cluster's status from the first worker that answers.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let mut last = None;
        for w in self.running_workers() {
            let ch = self.channel(w)?;
            match with_timeout(AdminClient::new(ch).status(StatusRequest {})).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LabError::Command {
            command: "status".into(),
            detail: "no worker is running".into(),
        }))
    }

    fn procs_running(&self, index: u8) -> bool {
        self.procs.names().any(|n| n == Lab::process_name(index))
    }

    /// The workers whose daemons run (not crashed, not removed), in index order: the
    /// ones worth asking.
    pub fn running_workers(&self) -> Vec<u8> {
        self.topo
            .workers
            .iter()
            .map(|w| w.index)
            .filter(|&i| self.procs_running(i))
            .collect()
    }

    /// Waits until the cluster has a leader, `voters` voters, and every bucket owned.
    pub async fn wait_converged(&self, voters: usize, within: Duration) -> Result<ClusterStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(s) = self.status().await {
                let v = s
                    .members
                    .iter()
                    .filter(|m| m.role == Role::Voter as i32)
                    .count();
                let owned: u32 = s.members.iter().map(|m| m.buckets).sum();
                let all = 1u32 << s.bucket_bits;
                if s.leader_id != 0 && v == voters && s.bucket_bits > 0 && owned == all {
                    return Ok(s);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("{voters} voters with every bucket owned"),
                    after: within,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Drains and removes the member named `w<index>` through the Admin API, then stops
    /// its daemon and removes its namespace (scale-in, as the operator does it).
    pub async fn remove_worker(&mut self, index: u8) -> Result<()> {
        let status = self.status().await?;
        let Some(member) = status
            .members
            .iter()
            .find(|m| m.name == format!("w{index}"))
        else {
            return Err(LabError::Command {
                command: format!("remove w{index}"),
                detail: "no such member".into(),
            });
        };
        let id = member.node_id;
        let leader = status.leader_id;
        let via = status
            .members
            .iter()
            .find(|m| m.node_id == leader)
            .and_then(|m| m.name.trim_start_matches('w').parse::<u8>().ok())
            .unwrap_or(1);
        let mut admin = AdminClient::new(self.channel(via)?);
        with_timeout(admin.drain(NodeRequest { node_id: id })).await?;
        with_timeout(admin.remove(NodeRequest { node_id: id })).await?;
        self.procs.terminate(&Lab::process_name(index));
        if let Some(pos) = self.topo.workers.iter().position(|w| w.index == index) {
            let w = self.topo.workers.remove(pos);
            w.ns.delete()?;
        }
        Ok(())
    }

    /// A Sessions client on worker `index`.
    pub fn sessions(&self, index: u8) -> Result<SessionsClient<Channel>> {
        Ok(SessionsClient::new(self.channel(index)?))
    }
}

/// Runs one RPC with the lab's deadline and turns its status into a [`LabError`].
pub async fn with_timeout<T>(
    call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(LabError::Command {
            command: "gRPC call".into(),
            detail: format!("{}: {}", status.code(), status.message()),
        }),
        Err(_) => Err(LabError::Timeout {
            what: "a gRPC answer".into(),
            after: Duration::from_secs(5),
        }),
    }
}

/// A lazily connected gRPC channel to `addr` whose TCP connections are opened inside
/// `ns`.
pub fn channel_via(ns: &Netns, addr: SocketAddr) -> Result<Channel> {
    let ns = ns.clone();
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| LabError::Command {
            command: format!("endpoint {addr}"),
            detail: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let ns = ns.clone();
        async move {
            let std_stream = tokio::task::spawn_blocking(move || {
                ns.enter(|| {
                    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                    s.set_nonblocking(true)?;
                    s.set_nodelay(true)?;
                    Ok(s)
                })
            })
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
            let stream = tokio::net::TcpStream::from_std(std_stream)?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}
