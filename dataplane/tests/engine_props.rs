//! Property tests of the whole packet path (the in-suite version of the cargo-fuzz
//! target in `dataplane/fuzz`): for any sequence of well-formed, mutated or random
//! frames the engine never panics; a translated frame keeps its length and, when
//! the input's checksums were valid, has valid IP and L4 checksums (verified by an
//! independent recompute); a dropped or passed frame is unchanged.

#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod common;

use common::*;
use mfplane_dataplane::engine::{Filtering, Verdict};
use proptest::prelude::*;

const ADDRS: [u32; 6] = [HOST_A, HOST_B, REMOTE, REMOTE2, EXT, EXT2];

#[derive(Debug, Clone)]
enum Input {
    Built(Pkt, Option<(usize, u8)>, Option<usize>),
    IcmpError {
        about: Pkt,
        from: u32,
        to: u32,
        quote: usize,
    },
    Raw(Vec<u8>),
}

fn pkt() -> impl Strategy<Value = Pkt> {
    (
        prop_oneof![Just(TCP), Just(UDP), Just(ICMP)],
        0..ADDRS.len(),
        0..ADDRS.len(),
        prop_oneof![Just(53u16), Just(80), Just(40000), 1024..65535u16],
        prop_oneof![Just(53u16), Just(80), Just(40000), 1024..65535u16],
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..48),
        proptest::option::of(any::<u16>()),
        prop_oneof![Just(Vec::new()), Just(vec![1u8, 1, 1, 0])],
        prop_oneof![4 => Just((false, 0u16)), 1 => Just((true, 0)), 1 => (0u16..64).prop_map(|o| (false, o * 8))],
        any::<bool>(),
    )
        .prop_map(|(proto, s, d, sp, dp, flags, payload, vlan, options, frag, req)| Pkt {
            flags,
            icmp_type: if req { 8 } else { 0 },
            payload,
            vlan,
            options,
            frag,
            ..Pkt::new(proto, ADDRS[s], sp, ADDRS[d], dp)
        })
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (pkt(), proptest::option::of((any::<usize>(), any::<u8>())), proptest::option::of(any::<usize>()))
            .prop_map(|(p, m, t)| Input::Built(p, m, t)),
        2 => (pkt(), 0..ADDRS.len(), 0..ADDRS.len(), 0usize..40).prop_map(|(about, f, t, quote)| Input::IcmpError {
            about, from: ADDRS[f], to: ADDRS[t], quote,
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..128).prop_map(Input::Raw),
    ]
}

fn frame_of(i: &Input) -> Vec<u8> {
    match i {
        Input::Built(p, mutation, truncate) => {
            let mut f = p.frame();
            if let Some((at, x)) = mutation {
                let n = f.len();
                f[at % n] ^= x;
            }
            if let Some(t) = truncate {
                f.truncate(t % (f.len() + 1));
            }
            f
        }
        Input::IcmpError {
            about,
            from,
            to,
            quote,
        } => icmp_error(*from, *to, 3, 3, &about.ip(), *quote),
        Input::Raw(b) => b.clone(),
    }
}

fn check(e: &mut mfplane_dataplane::engine::Engine, inputs: &[Input]) -> Result<(), TestCaseError> {
    for (n, i) in inputs.iter().enumerate() {
        let input = frame_of(i);
        let mut f = input.clone();
        let v = e.process(&mut f, at(n as u64));
        prop_assert_eq!(f.len(), input.len());
        match v {
            Verdict::Translated(_) => {
                if checksums_ok(&input) == Some(true) {
                    prop_assert_eq!(
                        checksums_ok(&f),
                        Some(true),
                        "bad checksums after {:?}: {:02x?}",
                        v,
                        f
                    );
                }
            }
            Verdict::Pass | Verdict::Drop(_) => prop_assert_eq!(&f, &input),
        }
    }
    let c = e.counters();
    prop_assert_eq!(
        c.outbound + c.inbound + c.hairpin + c.passed + c.dropped_total(),
        c.rx_packets
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn engine_never_panics_and_emits_valid_checksums(inputs in proptest::collection::vec(input(), 1..40)) {
        let mut e = engine();
        check(&mut e, &inputs)?;
    }

    #[test]
    fn apdf_engine_never_panics_and_emits_valid_checksums(inputs in proptest::collection::vec(input(), 1..40)) {
        let mut e = engine_with(|c| c.filtering = Filtering::AddressAndPortDependent);
        check(&mut e, &inputs)?;
    }
}

/// Management operations interleaved with traffic.
#[derive(Debug, Clone)]
enum Op {
    Packet(Input),
    /// Expire everything idle for this many seconds.
    Expire(u64),
    /// Remove the n-th exported session (as replication would).
    Remove(usize),
    /// Own exactly the buckets whose number has this bit pattern in common with the mask.
    Own(u8),
    /// Export every session and import it into the same engine (idempotent).
    Reimport,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => input().prop_map(Op::Packet),
        1 => (0u64..1000).prop_map(Op::Expire),
        1 => any::<usize>().prop_map(Op::Remove),
        1 => any::<u8>().prop_map(Op::Own),
        1 => Just(Op::Reimport),
    ]
}

/// The allocator and the table agree: external endpoints are unique, every session's
/// port lies in its bucket, and for every owned bucket, external IP and protocol the
/// free ports plus the sessions using them add up to the bucket's size exactly.
fn check_invariants(
    e: &mfplane_dataplane::engine::Engine,
    owned: &[bool],
) -> Result<(), TestCaseError> {
    use std::collections::{HashMap, HashSet};

    use mfplane_core::{BucketBits, BucketId, BucketPorts, Proto, inbound_bucket};
    let bits = BucketBits::DEFAULT;
    let sessions = e.export();
    let mut ext = HashSet::new();
    let mut used: HashMap<(u16, u32, Proto), u32> = HashMap::new();
    for s in &sessions {
        prop_assert!(
            ext.insert((s.key.proto, s.external)),
            "external endpoint used twice: {:?}",
            s
        );
        prop_assert_eq!(inbound_bucket(bits, s.external.port), s.bucket);
        *used
            .entry((s.bucket.0, s.external.ip, s.key.proto))
            .or_insert(0) += 1;
    }
    for (b, own) in owned.iter().enumerate() {
        let bucket = BucketId(b as u16);
        for ip in [EXT, EXT2] {
            for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
                let free = e.free_ports(bucket, std::net::Ipv4Addr::from_bits(ip), proto);
                if *own {
                    let total = BucketPorts::new(bits, bucket).unwrap().count();
                    let in_use = used.get(&(bucket.0, ip, proto)).copied().unwrap_or(0);
                    prop_assert_eq!(
                        free.map(|f| f + in_use),
                        Some(total),
                        "bucket {} ip {:x} {:?}: free + used != size",
                        b,
                        ip,
                        proto
                    );
                } else {
                    prop_assert_eq!(free, None);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn allocator_and_table_stay_consistent(ops in proptest::collection::vec(op(), 1..60)) {
        let mut e = engine();
        let mut owned = vec![true; 256];
        let mut now = 0u64;
        for op in ops {
            now += 1;
            match op {
                Op::Packet(i) => {
                    let mut f = frame_of(&i);
                    e.process(&mut f, at(now));
                }
                Op::Expire(s) => {
                    now += s;
                    e.expire(at(now));
                }
                Op::Remove(n) => {
                    let all = e.export();
                    if !all.is_empty() {
                        let key = all[n % all.len()].key;
                        prop_assert!(e.remove(&key).is_some());
                        prop_assert!(e.session(&key).is_none());
                    }
                }
                Op::Own(mask) => {
                    owned = (0..256).map(|b| b as u8 & mask != 0 || mask == 0).collect();
                    e.set_owned_buckets(
                        owned.iter().enumerate().filter(|(_, o)| **o).map(|(b, _)| mfplane_core::BucketId(b as u16)),
                    );
                }
                Op::Reimport => {
                    for r in e.export() {
                        prop_assert!(e.import(r, at(now)).is_ok());
                    }
                }
            }
            check_invariants(&e, &owned)?;
        }
    }
}
