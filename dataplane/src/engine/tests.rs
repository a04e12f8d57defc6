//! Unit tests of the engine's management API; packet behaviour is tested in
//! `dataplane/tests/`.

use std::net::Ipv4Addr;

use mfplane_core::{BucketId, Endpoint, Proto, SessionKey, SessionRecord};

use super::*;

fn engine() -> Engine {
    Engine::new(EngineConfig::new(vec![Ipv4Addr::new(198, 51, 100, 1)])).unwrap()
}

fn rec(port: u16, ext_port: u16) -> SessionRecord {
    SessionRecord {
        key: SessionKey {
            proto: Proto::Udp,
            inside: Endpoint::new(0x0a00_0001, port),
        },
        external: Endpoint::new(0xc633_6401, ext_port),
        bucket: BucketId(ext_port & 0xff),
        created_ms: 5,
    }
}

#[test]
fn import_is_idempotent_and_rejects_conflicts() {
    let mut e = engine();
    let r = rec(5000, 0x1234);
    e.import(r, Timestamp(10)).unwrap();
    e.import(r, Timestamp(11)).unwrap();
    assert_eq!(e.session_count(), 1);
    let mut other = r;
    other.external.port = 0x1334;
    other.bucket = BucketId(0x34);
    assert!(matches!(
        e.import(other, Timestamp(12)),
        Err(Error::KeyConflict { .. })
    ));
    let mut taken = rec(5001, 0x1234);
    taken.bucket = BucketId(0x34);
    assert!(matches!(
        e.import(taken, Timestamp(12)),
        Err(Error::ExternalTaken { .. })
    ));
    let mut bad_bucket = rec(5002, 0x1235);
    bad_bucket.bucket = BucketId(1);
    assert!(matches!(
        e.import(bad_bucket, Timestamp(12)),
        Err(Error::PortNotInBucket { .. })
    ));
    let mut low = rec(5003, 0x0035);
    low.bucket = BucketId(0x35);
    assert!(matches!(
        e.import(low, Timestamp(12)),
        Err(Error::PortNotInBucket { .. })
    ));
    let mut foreign = rec(5004, 0x1236);
    foreign.external.ip = 0x0101_0101;
    assert!(matches!(
        e.import(foreign, Timestamp(12)),
        Err(Error::UnknownExternalIp { .. })
    ));
    assert_eq!(e.session_count(), 1);
}

#[test]
fn owning_a_bucket_later_marks_imported_ports_used() {
    let mut e = engine();
    let ip = Ipv4Addr::new(198, 51, 100, 1);
    e.import(rec(5000, 0x1234), Timestamp(0)).unwrap();
    e.set_owned_buckets([BucketId(0x34)]);
    assert_eq!(e.free_ports(BucketId(0x34), ip), Some(251));
    assert_eq!(
        e.remove(&rec(5000, 0x1234).key).map(|r| r.external.port),
        Some(0x1234)
    );
    assert_eq!(e.free_ports(BucketId(0x34), ip), Some(252));
    e.set_owned_buckets([]);
    assert_eq!(e.free_ports(BucketId(0x34), ip), None);
}

#[test]
fn export_returns_every_session() {
    let mut e = engine();
    e.import(rec(1, 0x1201), Timestamp(0)).unwrap();
    e.import(rec(2, 0x1302), Timestamp(0)).unwrap();
    let mut ex = e.export();
    ex.sort();
    assert_eq!(ex, vec![rec(1, 0x1201), rec(2, 0x1302)]);
}
