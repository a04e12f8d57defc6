//! Bad input gets a clear error and changes nothing: malformed admin requests, unknown
//! node ids, a second join of a name, removing the last voter, undecodable internal
//! payloads, bad configuration, and unusable data directories.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, CTL, Cluster};
use mfplane_proto::admin::{JoinRequest, NodeRequest, StatusRequest, admin_client::AdminClient};
use mfplane_proto::raft::{RaftPayload, raft_client::RaftClient};
use mfplane_proto::sessions::{ListRequest, LookupRequest, sessions_client::SessionsClient};
use tonic::Code;

/// A valid join of a new member `n9`, except that `field` is `value`.
fn join_with(field: &str, value: &str) -> JoinRequest {
    let mut r = JoinRequest {
        name: "n9".into(),
        raft_addr: "127.43.0.9:1".into(),
        data_ip: "10.0.0.9".into(),
        data_mac: "02:00:00:00:00:09".into(),
    };
    let slot = match field {
        "name" => &mut r.name,
        "raft_addr" => &mut r.raft_addr,
        "data_ip" => &mut r.data_ip,
        "data_mac" => &mut r.data_mac,
        other => panic!("JoinRequest has no field {other}"),
    };
    *slot = value.into();
    r
}

/// Runs `cmd`, which must fail, and returns what it said on standard error.
#[track_caller]
fn failure_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the binary runs");
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn expect(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} mentioning {needle:?}, got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(needle),
                "message {:?} should mention {needle:?}",
                s.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_conflicting_requests_are_refused_clearly() {
    let mut c = Cluster::new(43, 24300);
    // One voter only: learners are not auto-promoted in this test, so n1 is the last voter.
    c.start(
        0,
        &["--init".into(), "--external-ip".into(), "192.0.2.1".into()],
    );
    common::wait_until(
        Duration::from_secs(60),
        "the first member to own every bucket",
        || async {
            c.state(0)
                .await
                .is_some_and(|s| s.leader == s.node && s.buckets_owned == 256)
        },
    )
    .await;
    let ch = common::channel(&c.addrs(0).grpc).await.unwrap();
    let mut admin = AdminClient::new(ch.clone());
    let before = c.state(0).await.unwrap();

    // Each bad join is refused naming the field that is wrong.
    for (field, value) in [
        ("data_ip", "10.0.0.300"),
        ("data_mac", "02:00:00:09"),
        ("raft_addr", "no-port"),
        ("name", "bad name"),
    ] {
        let r = admin.join(join_with(field, value)).await;
        expect(r, Code::InvalidArgument, field);
    }
    expect(
        admin.join(join_with("name", "n1")).await,
        Code::AlreadyExists,
        "mfpctl remove 1",
    );
    // Every change to one member refuses an unknown id and the invalid id 0.
    for call in ["promote", "drain", "remove", "transfer"] {
        for (node_id, code, needle) in [
            (99, Code::NotFound, "node 99"),
            (0, Code::InvalidArgument, "node_id"),
        ] {
            let request = NodeRequest { node_id };
            let r = match call {
                "promote" => admin.promote(request).await,
                "drain" => admin.drain(request).await,
                "remove" => admin.remove(request).await,
                _ => admin.transfer_leader(request).await,
            };
            expect(r, code, needle);
        }
    }
    expect(
        admin.remove(NodeRequest { node_id: 1 }).await,
        Code::FailedPrecondition,
        "last voter",
    );
    expect(
        admin.drain(NodeRequest { node_id: 1 }).await,
        Code::FailedPrecondition,
        "still owns",
    );
    expect(
        admin
            .initialize(mfplane_proto::admin::InitializeRequest {})
            .await,
        Code::FailedPrecondition,
        "already belongs",
    );

    let mut raft = RaftClient::new(ch.clone());
    expect(
        raft.append_entries(RaftPayload {
            payload: vec![0xff; 7],
        })
        .await,
        Code::InvalidArgument,
        "undecodable",
    );
    expect(
        raft.forward(RaftPayload { payload: vec![] }).await,
        Code::InvalidArgument,
        "undecodable",
    );

    let mut sessions = SessionsClient::new(ch.clone());
    for (limit, page_token, owner, code, needle) in [
        (20_000, "", 0, Code::InvalidArgument, "10000"),
        (10, "garbage", 0, Code::InvalidArgument, "page_token"),
        (10, "", 77, Code::NotFound, "node 77"),
    ] {
        let request = ListRequest {
            limit,
            page_token: page_token.into(),
            owner,
        };
        expect(sessions.list(request).await, code, needle);
    }
    expect(
        sessions
            .lookup(LookupRequest {
                proto: "sctp".into(),
                by: None,
            })
            .await,
        Code::InvalidArgument,
        "sctp",
    );

    // None of that changed the cluster.
    let after = c.state(0).await.unwrap();
    assert_eq!(after.sessions, before.sessions);
    assert_eq!(
        after.buckets_owned, before.buckets_owned,
        "n1 still owns every bucket"
    );
    let st = admin.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(
        st.members.len(),
        1,
        "no member was registered by a bad join: {st:?}"
    );
    assert!(
        !st.members[0].draining,
        "the refused drain left no draining flag behind"
    );

    // A member whose join is refused stops with the reason.
    let err = failure_of(
        Command::new(BIN)
            .args(["--name", "n1", "--data-dir"])
            .arg(c.dir.path().join("dup"))
            .args([
                "--listen",
                "127.43.0.5:24300",
                "--data-ip",
                "10.0.0.5",
                "--data-mac",
                "02:00:00:00:00:05",
                "--join",
                &c.addrs(0).grpc,
            ]),
    );
    assert!(err.contains("already registered as node 1"), "{err}");
}

#[test]
fn bad_configuration_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d").display().to_string();
    let base = [
        "--name",
        "x",
        "--data-dir",
        &d,
        "--listen",
        "127.43.1.1:24390",
        "--data-ip",
        "10.0.0.1",
    ];
    // The error of the base flags plus `extra`.
    let run = |extra: &[&str]| failure_of(Command::new(BIN).args(base).args(extra));
    let err = run(&[]);
    assert!(err.contains("--data-mac"), "{err}");
    let err = run(&["--data-mac", "zz:00:00:00:00:00"]);
    assert!(
        err.contains("--data-mac") && err.contains("aa:bb:cc:dd:ee:ff"),
        "{err}"
    );
    let err = run(&["--data-mac", "02:00:00:00:00:01", "--init"]);
    assert!(err.contains("--external-ip"), "{err}");
    let err = run(&["--data-mac", "02:00:00:00:00:01", "--bucket-bits", "20"]);
    assert!(err.contains("--bucket-bits"), "{err}");
}

#[test]
fn unusable_data_directories_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A directory holding something that is not an mfplane store.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"precious").unwrap();
    // A file where a directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    for path in [&foreign, &file] {
        let err = failure_of(
            Command::new(BIN)
                .args(["--name", "x", "--data-dir"])
                .arg(path)
                .args([
                    "--listen",
                    "127.43.2.1:24391",
                    "--data-ip",
                    "10.0.0.1",
                    "--data-mac",
                    "02:00:00:00:00:01",
                    "--init",
                    "--external-ip",
                    "192.0.2.1",
                ]),
        );
        assert!(
            err.contains(&path.display().to_string()),
            "the error names the path: {err}"
        );
    }
    assert_eq!(
        std::fs::read(foreign.join("notes.txt")).unwrap(),
        b"precious"
    );
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        1,
        "nothing was written into the foreign directory"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
}

#[test]
fn mfpctl_says_when_no_member_answers() {
    let err = failure_of(Command::new(CTL).args([
        "--server",
        "127.43.3.1:1,127.43.3.2:1",
        "--timeout",
        "1s",
        "status",
    ]));
    assert!(
        err.contains("no member answered") && err.contains("127.43.3.2:1"),
        "{err}"
    );
}
