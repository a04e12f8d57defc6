//! `mfpctl`: the operator's command-line client of the Admin and Sessions APIs.
//!
//! It tries the members given with `--server` in turn, so any live member will do;
//! changes are forwarded to the leader by the member that receives them. Output is a
//! table for people or JSON (`-o json`) for scripts.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::Table;
use mfplane_proto::admin::{ClusterStatus, NodeRequest, StatusRequest, admin_client::AdminClient};
use mfplane_proto::sessions::{ListRequest, sessions_client::SessionsClient};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Command line of `mfpctl`.
#[derive(Debug, Parser)]
#[command(
    name = "mfpctl",
    version,
    about = "Inspect and change an mfplane cluster",
    propagate_version = true
)]
pub struct Cli {
    /// Members to ask (host:port of their gRPC port), tried in turn; comma-separated.
    #[arg(
        long,
        short = 's',
        env = "MFPCTL_SERVER",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001",
        global = true
    )]
    pub server: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// Timeout of each call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Members, roles, leader, term, epoch, buckets and sessions per member.
    Status,
    /// The bucket -> owner table.
    Buckets,
    /// Committed sessions in key order.
    Sessions {
        /// Only sessions in buckets this member owns.
        #[arg(long)]
        node: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Move every bucket away from a member and give it no new ones.
    Drain { node: u64 },
    /// Remove a member for good (drains it first; its id is retired).
    Remove { node: u64 },
    /// Make a learner a voter.
    Promote { node: u64 },
    /// Hand leadership to a voter.
    TransferLeader { node: u64 },
    /// The netns lab: a real cluster in network namespaces (needs root).
    #[command(subcommand)]
    Lab(crate::lab::cli::LabCommand),
}

/// Runs `cli` and returns what to print.
///
/// # Errors
/// [`Error::Peer`] when no member answers, or the refusal of the member that did.
pub async fn run(cli: &Cli) -> Result<String> {
    if let Cmd::Lab(cmd) = &cli.cmd {
        // The lab prints its own progress and report as it goes.
        return match crate::lab::cli::run(cmd).await? {
            true => Ok(String::new()),
            false => Err(Error::FailedPrecondition(
                "the drill failed: see the report above".into(),
            )),
        };
    }
    let channel = connect(&cli.server, cli.timeout).await?;
    let mut admin = AdminClient::new(channel.clone());
    let call = |s: tonic::Status| Error::Peer {
        peer: "cluster".into(),
        message: format!("{}: {}", code_name(s.code()), s.message()),
    };
    match &cli.cmd {
        Cmd::Status => {
            let st = admin
                .status(StatusRequest {})
                .await
                .map_err(call)?
                .into_inner();
            Ok(render_status(&st, cli.output))
        }
        Cmd::Buckets => {
            let st = admin
                .status(StatusRequest {})
                .await
                .map_err(call)?
                .into_inner();
            buckets(channel, &st, cli.output).await
        }
        Cmd::Sessions { node, limit } => sessions(channel, *node, *limit, cli.output).await,
        Cmd::Drain { node } => change(
            cli.output,
            admin
                .drain(NodeRequest { node_id: *node })
                .await
                .map_err(call)?
                .into_inner(),
        ),
        Cmd::Promote { node } => change(
            cli.output,
            admin
                .promote(NodeRequest { node_id: *node })
                .await
                .map_err(call)?
                .into_inner(),
        ),
        Cmd::Lab(_) => Ok(String::new()),
        Cmd::TransferLeader { node } => change(
            cli.output,
            admin
                .transfer_leader(NodeRequest { node_id: *node })
                .await
                .map_err(call)?
                .into_inner(),
        ),
        Cmd::Remove { node } => {
            // The leader cannot remove itself: hand leadership over first.
            let st = admin
                .status(StatusRequest {})
                .await
                .map_err(call)?
                .into_inner();
            if st.leader_id == *node {
                let successor = st.members.iter().find(|m| {
                    m.node_id != *node && m.role == mfplane_proto::admin::Role::Voter as i32
                });
                let Some(successor) = successor else {
                    return Err(Error::FailedPrecondition(format!(
                        "node {node} is the last voter: add and promote another member first"
                    )));
                };
                admin
                    .transfer_leader(NodeRequest {
                        node_id: successor.node_id,
                    })
                    .await
                    .map_err(call)?;
                let others: Vec<String> = st
                    .members
                    .iter()
                    .filter(|m| m.node_id != *node)
                    .map(|m| m.raft_addr.clone())
                    .collect();
                admin = AdminClient::new(connect(&others, cli.timeout).await?);
            }
            change(
                cli.output,
                admin
                    .remove(NodeRequest { node_id: *node })
                    .await
                    .map_err(call)?
                    .into_inner(),
            )
        }
    }
}

/// Connects to the first member that answers.
async fn connect(servers: &[String], timeout: Duration) -> Result<Channel> {
    let mut errors = Vec::new();
    for s in servers {
        let uri = if s.contains("://") {
            s.clone()
        } else {
            format!("http://{s}")
        };
        let endpoint = match Endpoint::from_shared(uri) {
            Ok(e) => e
                .connect_timeout(timeout.min(Duration::from_secs(3)))
                .timeout(timeout),
            Err(e) => {
                errors.push(format!("{s}: not host:port ({e})"));
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(ch) => return Ok(ch),
            Err(e) => errors.push(format!("{s}: {e}")),
        }
    }
    Err(Error::Peer {
        peer: servers.join(","),
        message: format!(
            "no member answered ({}); check that mfplane-node runs and that --server names its gRPC address",
            errors.join("; ")
        ),
    })
}

fn code_name(c: tonic::Code) -> &'static str {
    match c {
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DeadlineExceeded => "timed out",
        _ => "error",
    }
}

#[derive(Serialize)]
struct MemberView {
    node_id: u64,
    name: String,
    role: &'static str,
    leader: bool,
    draining: bool,
    reachable: bool,
    buckets: u32,
    sessions: u64,
    matched_index: u64,
    raft_addr: String,
    data_ip: String,
    data_mac: String,
}

#[derive(Serialize)]
struct StatusView {
    answered_by: u64,
    leader: u64,
    term: u64,
    epoch: u64,
    last_log_index: u64,
    committed_index: u64,
    applied_index: u64,
    bucket_bits: u32,
    sessions: u64,
    external_ips: Vec<String>,
    pristine: bool,
    members: Vec<MemberView>,
}

fn role_name(r: i32) -> &'static str {
    match mfplane_proto::admin::Role::try_from(r) {
        Ok(mfplane_proto::admin::Role::Voter) => "voter",
        Ok(mfplane_proto::admin::Role::Learner) => "learner",
        _ => "-",
    }
}

fn render_status(st: &ClusterStatus, output: Output) -> String {
    let view = StatusView {
        answered_by: st.node_id,
        leader: st.leader_id,
        term: st.term,
        epoch: st.epoch,
        last_log_index: st.last_log_index,
        committed_index: st.committed_index,
        applied_index: st.applied_index,
        bucket_bits: st.bucket_bits,
        sessions: st.sessions,
        external_ips: st.external_ips.clone(),
        pristine: st.pristine,
        members: st
            .members
            .iter()
            .map(|m| MemberView {
                node_id: m.node_id,
                name: m.name.clone(),
                role: role_name(m.role),
                leader: m.is_leader,
                draining: m.draining,
                reachable: m.reachable,
                buckets: m.buckets,
                sessions: m.sessions,
                matched_index: m.matched_index,
                raft_addr: m.raft_addr.clone(),
                data_ip: m.data_ip.clone(),
                data_mac: m.data_mac.clone(),
            })
            .collect(),
    };
    if output == Output::Json {
        return serde_json::to_string_pretty(&view).unwrap_or_default();
    }
    if st.pristine {
        return "node answered but is pristine: it has not joined or initialized a cluster\n"
            .to_string();
    }
    let leader = if st.leader_id == 0 {
        "none (election in progress?)".to_string()
    } else {
        st.leader_id.to_string()
    };
    let mut out = format!(
        "cluster: leader {leader}, term {}, epoch {}, {} buckets, {} sessions, log {}/{}/{} (last/committed/applied at node {})\nexternal IPs: {}\n",
        st.term,
        st.epoch,
        1u64 << st.bucket_bits,
        st.sessions,
        st.last_log_index,
        st.committed_index,
        st.applied_index,
        st.node_id,
        st.external_ips.join(", ")
    );
    let mut t = Table::new();
    t.set_header(vec![
        "ID",
        "NAME",
        "ROLE",
        "LEADER",
        "STATE",
        "BUCKETS",
        "SESSIONS",
        "RAFT ADDR",
        "DATA IP",
        "DATA MAC",
    ]);
    for m in &view.members {
        // Reachability is the leader's view (its lease records); other members cannot
        // tell, so it is shown only when the leader answered.
        let leader_answered = st.node_id == st.leader_id;
        let state = match (m.draining, leader_answered && !m.reachable) {
            (true, _) => "draining",
            (false, true) => "unreachable",
            (false, false) => "active",
        };
        t.add_row(vec![
            m.node_id.to_string(),
            m.name.clone(),
            m.role.to_string(),
            if m.leader { "*".into() } else { String::new() },
            state.to_string(),
            m.buckets.to_string(),
            m.sessions.to_string(),
            m.raft_addr.clone(),
            m.data_ip.clone(),
            m.data_mac.clone(),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out
}

async fn buckets(channel: Channel, st: &ClusterStatus, output: Output) -> Result<String> {
    use mfplane_proto::steering::{WatchRequest, steering_client::SteeringClient};
    let mut client = SteeringClient::new(channel);
    let call = |s: tonic::Status| Error::Peer {
        peer: "cluster".into(),
        message: s.message().to_string(),
    };
    let mut stream = client
        .watch(WatchRequest { from_epoch: 0 })
        .await
        .map_err(call)?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(call)?
        .ok_or_else(|| Error::Peer {
            peer: "cluster".into(),
            message: "empty steering stream".into(),
        })?;
    let owners: Vec<(u32, u64)> = first
        .buckets
        .iter()
        .map(|b| (b.bucket, b.node_id))
        .collect();
    if output == Output::Json {
        #[derive(Serialize)]
        struct View {
            epoch: u64,
            owners: Vec<(u32, u64)>,
        }
        return Ok(serde_json::to_string_pretty(&View {
            epoch: first.epoch,
            owners,
        })
        .unwrap_or_default());
    }
    let mut out = format!("epoch {}, {} buckets\n", first.epoch, owners.len());
    let mut t = Table::new();
    t.set_header(vec!["NODE", "NAME", "COUNT", "BUCKETS"]);
    let mut by_node: std::collections::BTreeMap<u64, Vec<u32>> = std::collections::BTreeMap::new();
    for (b, n) in owners {
        by_node.entry(n).or_default().push(b);
    }
    for (n, list) in by_node {
        let name = st
            .members
            .iter()
            .find(|m| m.node_id == n)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| {
                if n == 0 {
                    "(unowned)".into()
                } else {
                    "?".into()
                }
            });
        t.add_row(vec![
            n.to_string(),
            name,
            list.len().to_string(),
            ranges(&list),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    Ok(out)
}

/// "0-3,7,9-10" for a sorted list.
fn ranges(list: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < list.len() {
        let start = list[i];
        let mut end = start;
        while i + 1 < list.len() && list[i + 1] == end + 1 {
            i += 1;
            end = list[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

async fn sessions(
    channel: Channel,
    node: Option<u64>,
    limit: u32,
    output: Output,
) -> Result<String> {
    let mut client = SessionsClient::new(channel);
    let call = |s: tonic::Status| Error::Peer {
        peer: "cluster".into(),
        message: format!("{}: {}", code_name(s.code()), s.message()),
    };
    let mut all = Vec::new();
    let mut token = String::new();
    let mut total = 0;
    while (all.len() as u32) < limit {
        let want = (limit - all.len() as u32).min(crate::grpc::sessions_service::MAX_LIMIT);
        let page = client
            .list(ListRequest {
                limit: want,
                page_token: token,
                owner: node.unwrap_or(0),
            })
            .await
            .map_err(call)?
            .into_inner();
        total = page.total;
        all.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    if output == Output::Json {
        #[derive(Serialize)]
        struct View {
            total: u64,
            sessions: Vec<serde_json::Value>,
        }
        let sessions = all
            .iter()
            .map(|s| {
                serde_json::json!({"proto": s.proto, "inside": format!("{}:{}", s.inside_ip, s.inside_port),
                    "external": format!("{}:{}", s.external_ip, s.external_port), "bucket": s.bucket, "owner": s.owner, "created_ms": s.created_ms})
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&View { total, sessions }).unwrap_or_default());
    }
    let mut t = Table::new();
    t.set_header(vec!["PROTO", "INSIDE", "EXTERNAL", "BUCKET", "OWNER"]);
    for s in &all {
        t.add_row(vec![
            s.proto.clone(),
            format!("{}:{}", s.inside_ip, s.inside_port),
            format!("{}:{}", s.external_ip, s.external_port),
            s.bucket.to_string(),
            s.owner.to_string(),
        ]);
    }
    Ok(format!("{t}\nshowing {} of {total} sessions\n", all.len()))
}

fn change(output: Output, r: mfplane_proto::admin::ChangeResponse) -> Result<String> {
    if output == Output::Json {
        return Ok(serde_json::json!({"epoch": r.epoch, "message": r.message}).to_string());
    }
    Ok(format!("{} (epoch {})\n", r.message, r.epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn bucket_ranges_are_compact() {
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(ranges(&[]), "");
    }
}
