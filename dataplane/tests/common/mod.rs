//! Packet builders and an independent checksum reference for the engine tests.
//!
//! The reference checksum is written here from RFC 1071 on purpose, without the
//! crate's `csum` module, so a bug there cannot hide in the tests.
#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::net::Ipv4Addr;

use mfplane_dataplane::engine::{Engine, EngineConfig, Timestamp};

pub const EXT: u32 = 0xc633_6401; // 198.51.100.1
pub const EXT2: u32 = 0xc633_6402; // 198.51.100.2
pub const HOST_A: u32 = 0x0a00_0001; // 10.0.0.1
pub const HOST_B: u32 = 0x0a00_0002; // 10.0.0.2
pub const REMOTE: u32 = 0xcb00_7107; // 203.0.113.7
pub const REMOTE2: u32 = 0xcb00_7108; // 203.0.113.8

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const SYNACK: u8 = 0x12;
pub const FINACK: u8 = 0x11;
pub const RST: u8 = 0x04;

/// RFC 1071 one's-complement sum, written independently of `mfplane_core::csum`.
pub fn ref_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut i = 0;
    while i + 1 < data.len() {
        acc += (u64::from(data[i]) << 8) | u64::from(data[i + 1]);
        i += 2;
    }
    if i < data.len() {
        acc += u64::from(data[i]) << 8;
    }
    acc
}

pub fn ref_fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to store over `data` (checksum field zeroed) plus an initial sum.
pub fn ref_checksum(data: &[u8], initial: u64) -> u16 {
    !ref_fold(ref_sum(data, initial))
}

fn pseudo(src: u32, dst: u32, proto: u8, len: usize) -> u64 {
    ref_sum(&src.to_be_bytes(), 0) + ref_sum(&dst.to_be_bytes(), 0) + u64::from(proto) + len as u64
}

/// A builder of one IPv4 packet in an Ethernet frame.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub icmp_type: u8,
    pub payload: Vec<u8>,
    pub ident: u16,
    pub vlan: Option<u16>,
    pub options: Vec<u8>,
    pub udp_zero_checksum: bool,
    pub frag: (bool, u16),
}

impl Pkt {
    pub fn new(proto: u8, src: u32, sport: u16, dst: u32, dport: u16) -> Self {
        Pkt {
            src,
            dst,
            proto,
            sport,
            dport,
            flags: ACK,
            icmp_type: 8,
            payload: b"mfplane!".to_vec(),
            ident: 0x4242,
            vlan: None,
            options: Vec::new(),
            udp_zero_checksum: false,
            frag: (false, 0),
        }
    }
    pub fn udp(src: u32, sport: u16, dst: u32, dport: u16) -> Self {
        Pkt::new(UDP, src, sport, dst, dport)
    }
    pub fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8) -> Self {
        Pkt {
            flags,
            ..Pkt::new(TCP, src, sport, dst, dport)
        }
    }
    /// ICMP echo: `id` is used as both "ports".
    pub fn echo(src: u32, dst: u32, id: u16, request: bool) -> Self {
        Pkt {
            icmp_type: if request { 8 } else { 0 },
            ..Pkt::new(ICMP, src, id, dst, id)
        }
    }

    /// The L4 bytes with a correct checksum.
    pub fn l4(&self) -> Vec<u8> {
        match self.proto {
            TCP => {
                let mut b = Vec::new();
                b.extend_from_slice(&self.sport.to_be_bytes());
                b.extend_from_slice(&self.dport.to_be_bytes());
                b.extend_from_slice(&1000u32.to_be_bytes());
                b.extend_from_slice(&2000u32.to_be_bytes());
                b.extend_from_slice(&[0x50, self.flags, 0xff, 0xff, 0, 0, 0, 0]);
                b.extend_from_slice(&self.payload);
                let c = ref_checksum(&b, pseudo(self.src, self.dst, TCP, b.len()));
                b[16..18].copy_from_slice(&c.to_be_bytes());
                b
            }
            UDP => {
                let mut b = Vec::new();
                b.extend_from_slice(&self.sport.to_be_bytes());
                b.extend_from_slice(&self.dport.to_be_bytes());
                b.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&self.payload);
                if !self.udp_zero_checksum {
                    let mut c = ref_checksum(&b, pseudo(self.src, self.dst, UDP, b.len()));
                    if c == 0 {
                        c = 0xffff;
                    }
                    b[6..8].copy_from_slice(&c.to_be_bytes());
                }
                b
            }
            _ => {
                let mut b = vec![self.icmp_type, 0, 0, 0];
                b.extend_from_slice(&self.sport.to_be_bytes());
                b.extend_from_slice(&7u16.to_be_bytes());
                b.extend_from_slice(&self.payload);
                let c = ref_checksum(&b, 0);
                b[2..4].copy_from_slice(&c.to_be_bytes());
                b
            }
        }
    }

    /// The IPv4 packet around `l4` bytes.
    pub fn ip_with(&self, l4: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options.len();
        let mut b = vec![0x40 | (hl / 4) as u8, 0];
        b.extend_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
        b.extend_from_slice(&self.ident.to_be_bytes());
        let (mf, off) = self.frag;
        let fw = (off / 8) | if mf { 0x2000 } else { 0 };
        b.extend_from_slice(&fw.to_be_bytes());
        b.extend_from_slice(&[64, self.proto, 0, 0]);
        b.extend_from_slice(&self.src.to_be_bytes());
        b.extend_from_slice(&self.dst.to_be_bytes());
        b.extend_from_slice(&self.options);
        let c = ref_checksum(&b, 0);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(l4);
        b
    }

    pub fn ip(&self) -> Vec<u8> {
        self.ip_with(&self.l4())
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        eth(self.vlan, &self.ip())
    }
}

/// An Ethernet frame (optionally 802.1Q-tagged) around an IPv4 packet.
pub fn eth(vlan: Option<u16>, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    if let Some(tci) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip);
    f
}

/// An ICMP error of `icmp_type`/`code` from `src` to `dst` quoting `quoted` (an IPv4
/// packet), cut to its header plus `quote_l4` bytes.
pub fn icmp_error(
    src: u32,
    dst: u32,
    icmp_type: u8,
    code: u8,
    quoted: &[u8],
    quote_l4: usize,
) -> Vec<u8> {
    let qhl = usize::from(quoted[0] & 0x0f) * 4;
    let cut = &quoted[..(qhl + quote_l4).min(quoted.len())];
    let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(cut);
    let c = ref_checksum(&icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let p = Pkt::new(ICMP, src, 0, dst, 0);
    eth(None, &p.ip_with(&icmp))
}

/// Offset of the IPv4 header in a frame built by [`eth`].
pub fn l3_offset(frame: &[u8]) -> usize {
    if frame[12] == 0x81 && frame[13] == 0x00 {
        18
    } else {
        14
    }
}

/// Fields of a (translated) frame, read independently of the crate's wire module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

pub fn seen(frame: &[u8]) -> Seen {
    let ip = &frame[l3_offset(frame)..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let l4 = &ip[hl..];
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let (sport, dport) = if ip[9] == ICMP {
        (be16(&l4[4..6]), be16(&l4[4..6]))
    } else {
        (be16(&l4[0..2]), be16(&l4[2..4]))
    };
    Seen {
        src: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        sport,
        dport,
    }
}

/// Asserts every checksum of an IPv4 frame verifies by full recompute: the IP
/// header; TCP/UDP with the pseudo-header (UDP 0 = none); ICMP over the message;
/// for ICMP errors also the quoted IP header. Fragments: only the IP header (and
/// for a first fragment nothing else can be verified alone).
pub fn assert_checksums_valid(frame: &[u8]) {
    let ip = &frame[l3_offset(frame)..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(
        ref_fold(ref_sum(&ip[..hl], 0)),
        0xffff,
        "IPv4 header checksum"
    );
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return;
    }
    let l4 = &ip[hl..total];
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    match ip[9] {
        TCP => assert_eq!(
            ref_fold(ref_sum(l4, pseudo(src, dst, TCP, l4.len()))),
            0xffff,
            "TCP checksum"
        ),
        UDP if l4[6..8] != [0, 0] => assert_eq!(
            ref_fold(ref_sum(l4, pseudo(src, dst, UDP, l4.len()))),
            0xffff,
            "UDP checksum"
        ),
        ICMP => {
            assert_eq!(ref_fold(ref_sum(l4, 0)), 0xffff, "ICMP checksum");
            if matches!(l4[0], 3 | 4 | 5 | 11 | 12) {
                let q = &l4[8..];
                let qhl = usize::from(q[0] & 0x0f) * 4;
                assert_eq!(
                    ref_fold(ref_sum(&q[..qhl], 0)),
                    0xffff,
                    "quoted IPv4 checksum"
                );
            }
        }
        _ => {}
    }
}

/// An engine with two external IPs that owns every bucket.
pub fn engine_with(f: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut cfg = EngineConfig::new(vec![Ipv4Addr::from_bits(EXT), Ipv4Addr::from_bits(EXT2)]);
    f(&mut cfg);
    let buckets = cfg.bucket_bits.count();
    let mut e = Engine::new(cfg).unwrap();
    e.set_owned_buckets((0..buckets).map(|b| mfplane_core::BucketId(b as u16)));
    e
}

pub fn engine() -> Engine {
    engine_with(|_| {})
}

pub const T0: Timestamp = Timestamp(1_700_000_000_000);

pub fn at(secs: u64) -> Timestamp {
    Timestamp(T0.0 + secs * 1000)
}

/// Non-panicking form of [`assert_checksums_valid`] for arbitrary bytes: `None` if
/// the frame is not a parseable IPv4 frame, else whether every checksum verifies.
pub fn checksums_ok(frame: &[u8]) -> Option<bool> {
    if frame.len() < 14 {
        return None;
    }
    let l3 = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    let ip = frame.get(l3..)?;
    let first = *ip.first()?;
    let hl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || hl < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let hdr = ip.get(..hl)?;
    let pkt = ip.get(..total)?;
    let l4 = pkt.get(hl..)?;
    let mut ok = ref_fold(ref_sum(hdr, 0)) == 0xffff;
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return Some(ok);
    }
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    match ip[9] {
        TCP => ok &= ref_fold(ref_sum(l4, pseudo(src, dst, TCP, l4.len()))) == 0xffff,
        UDP if l4.get(6..8)? != [0, 0] => {
            let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            let d = l4.get(..ulen)?;
            ok &= ref_fold(ref_sum(d, pseudo(src, dst, UDP, ulen))) == 0xffff;
        }
        ICMP => {
            ok &= ref_fold(ref_sum(l4, 0)) == 0xffff;
            if matches!(l4.first()?, 3 | 4 | 5 | 11 | 12) {
                let q = l4.get(8..)?;
                let qhl = usize::from(q.first()? & 0x0f) * 4;
                if qhl >= 20 {
                    ok &= ref_fold(ref_sum(q.get(..qhl)?, 0)) == 0xffff;
                }
            }
        }
        _ => {}
    }
    Some(ok)
}
