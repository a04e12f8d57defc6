//! Conversions between protobuf messages and domain types, and from [`Error`] to a
//! gRPC status. Parsing of anything that comes from a client happens here, once, with
//! messages that say what is wrong and how to fix it.

use std::net::Ipv4Addr;

use mfplane_core::{Endpoint, Proto, SessionKey, SessionRecord};
pub use mfplane_proto::admin::Role;
use mfplane_raft_store::{MacAddr, MemberInfo, NodeId, Rejection};
use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::error::Error;

/// The gRPC status for an error, with the leader's address in
/// [`mfplane_proto::LEADER_METADATA_KEY`] when the caller should ask the leader.
pub fn status(e: Error) -> Status {
    let message = e.to_string();
    match e {
        Error::Config { .. } | Error::InvalidRequest(_) | Error::Codec(_) => {
            Status::invalid_argument(message)
        }
        Error::UnknownNode(_) | Error::Rejected(Rejection::UnknownNode(_)) => {
            Status::not_found(message)
        }
        Error::Rejected(Rejection::NameTaken(id)) => Status::already_exists(format!(
            "{message}: a member of that name is already in the cluster; a member that lost its data directory must first be removed (`mfpctl remove {id}`), or join under a new name"
        )),
        Error::Rejected(_) | Error::FailedPrecondition(_) => Status::failed_precondition(message),
        Error::Peer { peer, message } if message.starts_with("leader=") => {
            let mut s = Status::unavailable(format!(
                "this member is not the leader; the leader is at {peer}"
            ));
            if let Ok(v) = MetadataValue::try_from(peer.as_str()) {
                s.metadata_mut()
                    .insert(mfplane_proto::LEADER_METADATA_KEY, v);
            }
            s
        }
        // Not a member yet / still starting: the caller should retry (or ask another).
        Error::NoLeader
        | Error::NoLease
        | Error::ShuttingDown
        | Error::NotMember
        | Error::Starting(_)
        | Error::Peer { .. } => Status::unavailable(message),
        Error::DataDir { .. }
        | Error::Raft(_)
        | Error::Io(_)
        | Error::Lab(_)
        | Error::PacketIo(_) => Status::internal(message),
    }
}

/// Parses a member's self-description from a join request.
///
/// # Errors
/// [`Error::InvalidRequest`] naming the field that is wrong.
pub fn member_info(
    name: &str,
    raft_addr: &str,
    data_ip: &str,
    data_mac: &str,
) -> Result<MemberInfo, Error> {
    let bad = |m: String| Error::InvalidRequest(m);
    if name.is_empty()
        || name.len() > 253
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad(format!(
            "name {name:?} is not valid: use 1-253 of [A-Za-z0-9._-]"
        )));
    }
    match raft_addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {}
        _ => {
            return Err(bad(format!(
                "raft_addr {raft_addr:?} is not host:port (e.g. 10.0.0.5:7001)"
            )));
        }
    }
    let data_ip: Ipv4Addr = data_ip.parse().map_err(|_| {
        bad(format!(
            "data_ip {data_ip:?} is not an IPv4 address (e.g. 10.0.0.5)"
        ))
    })?;
    let data_mac: MacAddr = data_mac
        .parse()
        .map_err(|e: mfplane_raft_store::InvalidMacAddr| bad(format!("data_mac: {e}")))?;
    Ok(MemberInfo {
        name: name.to_string(),
        raft_addr: raft_addr.to_string(),
        data_ip,
        data_mac,
    })
}

/// A node id from a request: 0 is "unset" in proto3 and never a member.
///
/// # Errors
/// [`Error::InvalidRequest`] for 0.
pub fn node_id(raw: u64) -> Result<NodeId, Error> {
    if raw == 0 {
        return Err(Error::InvalidRequest(
            "node_id is missing (0): give the member's id, see `mfpctl status`".into(),
        ));
    }
    Ok(NodeId(raw))
}

/// "tcp", "udp" or "icmp" (any case, or the protocol number).
///
/// # Errors
/// [`Error::InvalidRequest`] for anything else.
pub fn proto(s: &str) -> Result<Proto, Error> {
    let p = match s.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Proto::Tcp,
        "udp" | "17" => Proto::Udp,
        "icmp" | "1" => Proto::Icmp,
        _ => {
            return Err(Error::InvalidRequest(format!(
                "proto {s:?} is not one of tcp, udp, icmp"
            )));
        }
    };
    Ok(p)
}

/// The name `proto` uses for a protocol.
pub fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
    }
}

/// An endpoint from text.
///
/// # Errors
/// [`Error::InvalidRequest`] naming `what` when the address or port is malformed.
pub fn endpoint(what: &str, ip: &str, port: u32) -> Result<Endpoint, Error> {
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| Error::InvalidRequest(format!("{what}.ip {ip:?} is not an IPv4 address")))?;
    let port = u16::try_from(port)
        .map_err(|_| Error::InvalidRequest(format!("{what}.port {port} is above 65535")))?;
    Ok(Endpoint::new(u32::from(ip), port))
}

/// Text form of a host-order address.
pub fn ip_text(ip: u32) -> String {
    Ipv4Addr::from(ip).to_string()
}

/// The wire form of a committed session.
pub fn session(r: &SessionRecord, owner: Option<NodeId>) -> mfplane_proto::sessions::Session {
    mfplane_proto::sessions::Session {
        proto: proto_name(r.key.proto).to_string(),
        inside_ip: ip_text(r.key.inside.ip),
        inside_port: u32::from(r.key.inside.port),
        external_ip: ip_text(r.external.ip),
        external_port: u32::from(r.external.port),
        bucket: u32::from(r.bucket.0),
        owner: owner.map(|o| o.0).unwrap_or(0),
        created_ms: r.created_ms,
    }
}

/// Page tokens are the last key of the previous page, `proto/ip/port` in numbers; a
/// client treats them as opaque.
pub fn page_token(k: &SessionKey) -> String {
    format!("{}/{}/{}", k.proto.number(), k.inside.ip, k.inside.port)
}

/// Parses a page token.
///
/// # Errors
/// [`Error::InvalidRequest`] for a token this server did not produce.
pub fn parse_page_token(t: &str) -> Result<Option<SessionKey>, Error> {
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::InvalidRequest(format!(
            "page_token {t:?} is not one this server returned: start again with an empty token"
        ))
    };
    let mut parts = t.split('/');
    let proto = parts
        .next()
        .and_then(|p| p.parse::<u8>().ok())
        .and_then(Proto::from_number)
        .ok_or_else(bad)?;
    let ip = parts
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(bad)?;
    let port = parts
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Some(SessionKey {
        proto,
        inside: Endpoint::new(ip, port),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_member_fields_say_which() {
        let e = member_info("n1", "nohostport", "10.0.0.1", "02:00:00:00:00:01").unwrap_err();
        assert!(e.to_string().contains("raft_addr"), "{e}");
        let e = member_info("n1", "h:1", "10.0.0.256", "02:00:00:00:00:01").unwrap_err();
        assert!(e.to_string().contains("data_ip"), "{e}");
        let e = member_info("n1", "h:1", "10.0.0.1", "02:00").unwrap_err();
        assert!(e.to_string().contains("data_mac"), "{e}");
        let e = member_info("", "h:1", "10.0.0.1", "02:00:00:00:00:01").unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        assert!(member_info("n-1", "h:1", "10.0.0.1", "02:00:00:00:00:01").is_ok());
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let k = SessionKey {
            proto: Proto::Tcp,
            inside: Endpoint::new(0x0a00_0001, 4242),
        };
        assert_eq!(parse_page_token(&page_token(&k)).unwrap(), Some(k));
        assert!(parse_page_token("x/y").is_err());
        assert_eq!(parse_page_token("").unwrap(), None);
    }

    #[test]
    fn leader_hint_travels_in_metadata() {
        let s = status(Error::Peer {
            peer: "10.0.0.2:7001".into(),
            message: "leader=10.0.0.2:7001".into(),
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(
            s.metadata()
                .get(mfplane_proto::LEADER_METADATA_KEY)
                .unwrap(),
            "10.0.0.2:7001"
        );
    }
}
