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
    // Each of these is refused, naming why, and changes nothing.
    let refused = |e: &mut Engine, rec| e.import(rec, Timestamp(12)).unwrap_err();
    let in_bucket = |mut rec: SessionRecord, bucket| {
        rec.bucket = BucketId(bucket);
        rec
    };
    let mut other = in_bucket(r, 0x34);
    other.external.port = 0x1334;
    assert!(matches!(refused(&mut e, other), Error::KeyConflict { .. }));
    let taken = in_bucket(rec(5001, 0x1234), 0x34);
    assert!(matches!(
        refused(&mut e, taken),
        Error::ExternalTaken { .. }
    ));
    let bad_bucket = in_bucket(rec(5002, 0x1235), 1);
    assert!(matches!(
        refused(&mut e, bad_bucket),
        Error::PortNotInBucket { .. }
    ));
    let low = in_bucket(rec(5003, 0x0035), 0x35);
    assert!(matches!(
        refused(&mut e, low),
        Error::PortNotInBucket { .. }
    ));
    let mut foreign = rec(5004, 0x1236);
    foreign.external.ip = 0x0101_0101;
    assert!(matches!(
        refused(&mut e, foreign),
        Error::UnknownExternalIp { .. }
    ));
    assert_eq!(e.session_count(), 1);
}

#[test]
fn owning_a_bucket_later_marks_imported_ports_used() {
    let mut e = engine();
    let ip = Ipv4Addr::new(198, 51, 100, 1);
    e.import(rec(5000, 0x1234), Timestamp(0)).unwrap();
    e.set_owned_buckets([BucketId(0x34)]);
    assert_eq!(e.free_ports(BucketId(0x34), ip, Proto::Udp), Some(251));
    assert_eq!(
        e.free_ports(BucketId(0x34), ip, Proto::Tcp),
        Some(252),
        "own port space"
    );
    assert_eq!(
        e.remove(&rec(5000, 0x1234).key).map(|r| r.external.port),
        Some(0x1234)
    );
    assert_eq!(e.free_ports(BucketId(0x34), ip, Proto::Udp), Some(252));
    e.set_owned_buckets([]);
    assert_eq!(e.free_ports(BucketId(0x34), ip, Proto::Udp), None);
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

#[test]
fn removing_an_undrained_session_drops_it_from_the_batch() {
    let mut e = engine();
    e.set_owned_buckets((0..256).map(BucketId));
    let key = SessionKey {
        proto: Proto::Udp,
        inside: Endpoint::new(0x0a00_0001, 40000),
    };
    // Create it through the packet path.
    let mut f = vec![0u8; 14 + 20 + 8];
    f[12] = 0x08;
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&0x0a00_0001u32.to_be_bytes());
    ip[16..20].copy_from_slice(&0xcb00_7107u32.to_be_bytes());
    let c = mfplane_core::csum::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&53u16.to_be_bytes());
    ip[24..26].copy_from_slice(&8u16.to_be_bytes());
    assert!(matches!(
        e.process(&mut f, Timestamp(1)),
        Verdict::Translated(_)
    ));
    assert!(e.remove(&key).is_some());
    assert_eq!(e.drain_created().count(), 0);
}

#[test]
fn a_stepped_sweep_finds_what_a_full_sweep_finds() {
    let mut e = engine();
    e.set_owned_buckets((0..256).map(BucketId));
    for i in 0..50u16 {
        e.import(rec(1000 + i, 0x1200 + i), Timestamp(0)).unwrap();
    }
    let later = Timestamp(10_000_000);
    let mut full = Vec::new();
    e.expired(later, &mut full);
    let (mut stepped, mut cursor, mut steps) = (Vec::new(), Some(0), 0);
    while let Some(c) = cursor {
        cursor = e.expired_step(later, c, 7, &mut stepped);
        steps += 1;
    }
    assert_eq!(full.len(), 50);
    assert_eq!(stepped, full);
    assert_eq!(steps, 8);
}
