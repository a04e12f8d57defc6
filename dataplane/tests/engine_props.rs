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
