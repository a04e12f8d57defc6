//! BPF maps of the load balancer (`lb/ebpf`) and its agent (`mfplane-lb`): the one
//! definition of their names, key/value types and counters.
//!
//! # Two table generations
//! The steering table (bucket -> [`crate::maps::Owner`], the external-IP set, plus the bucket bits
//! and hash key of [`DataplaneConfig`]) exists twice, as generation 0 and 1, side by
//! side in the same maps. The program reads [`MAP_LB_ACTIVE`] (one [`Generation`] word)
//! once per packet and uses only that generation. The agent writes the inactive
//! generation completely, then flips the one word: a packet sees either the whole old
//! table or the whole new one, never a half-written mix.
//!
//! # Per-packet cost
//! Every per-packet structure is an array map, which the kernel inlines into a bounds
//! check and an address computation (no helper call, no hashing): the owner's MAC and
//! IP sit in the bucket entry itself (one lookup steers), the external IPs are an
//! exact set of fixed-size groups ([`ExternalGroup`], one lookup and eight compares
//! instead of a hash-map walk), and the counters are one per-CPU struct looked up once
//! per packet.
//!
//! # Maps
//! - [`MAP_LB_SETTINGS`]: `Array<LbSettings>`, one entry: mode, fabric interface, the
//!   outside-only interfaces and the inside prefixes. Written once at startup.
//! - [`MAP_LB_ACTIVE`]: `Array<Generation>`, one entry: the generation in use.
//! - [`MAP_LB_GEN_CFG`]: `Array<LbGenConfig>`, two entries (one per generation).
//! - [`MAP_LB_BUCKETS`]: `Array<Owner>`, `2 * MAX_BUCKETS` entries, index
//!   [`bucket_index`]; an all-zero entry ([`crate::maps::Owner::NONE`]) is a bucket
//!   without owner.
//! - [`MAP_LB_EXT_SET`]: `Array<ExternalGroup>`, `2 * EXT_GROUPS` entries, index
//!   [`ext_index`]: the cluster's external IPs. Inbound traffic is traffic to one of
//!   these.
//! - [`MAP_LB_FRAGS`]: `LruHashMap<FragKey, u32>`: first fragment -> its bucket.
//! - [`MAP_LB_FABRIC`]: `DevMap`, one entry (index 0): the fabric interface for
//!   `XDP_REDIRECT`.
//! - [`MAP_LB_COUNTERS`]: `PerCpuArray<LbCounters>`, one entry.

use crate::maps::{DataplaneConfig, MAX_BUCKETS};

/// Name of the settings array map.
pub const MAP_LB_SETTINGS: &str = "LB_SETTINGS";
/// Name of the active-generation array map (the flip word).
pub const MAP_LB_ACTIVE: &str = "LB_ACTIVE";
/// Name of the per-generation [`LbGenConfig`] array map.
pub const MAP_LB_GEN_CFG: &str = "LB_GEN_CFG";
/// Name of the per-generation bucket -> owner array map.
pub const MAP_LB_BUCKETS: &str = "LB_BUCKETS";
/// Name of the per-generation external-IP set (an array of [`ExternalGroup`]s).
pub const MAP_LB_EXT_SET: &str = "LB_EXT_SET";
/// Name of the fragment-tracking LRU map.
pub const MAP_LB_FRAGS: &str = "LB_FRAGS";
/// Name of the fabric device map.
pub const MAP_LB_FABRIC: &str = "LB_FABRIC";
/// Name of the per-CPU counter array map.
pub const MAP_LB_COUNTERS: &str = "LB_COUNTERS";

/// Number of table generations.
pub const GENERATIONS: u32 = 2;
/// Entries of [`MAP_LB_BUCKETS`].
pub const LB_BUCKET_ENTRIES: u32 = GENERATIONS * MAX_BUCKETS;
/// External IPs a cluster may have.
pub const MAX_EXTERNAL_IPS: u32 = 1024;
/// log2 of [`EXT_GROUPS`].
pub const EXT_GROUP_BITS: u32 = 10;
/// Groups of the external-IP set per generation: as many as [`MAX_EXTERNAL_IPS`], so
/// even a full set averages one IP per group and a group of [`EXT_WAYS`] overflows
/// only by rare chance (the agent then picks another [`LbGenConfig::ext_seed`]).
pub const EXT_GROUPS: u32 = 1 << EXT_GROUP_BITS;
/// IPs one [`ExternalGroup`] holds.
pub const EXT_WAYS: usize = 8;
/// Entries of [`MAP_LB_EXT_SET`].
pub const LB_EXT_ENTRIES: u32 = GENERATIONS * EXT_GROUPS;
/// Interfaces an LB may declare outside-only ([`LbSettings::outside_ifindex`]).
pub const MAX_OUTSIDE_IFACES: usize = 4;
/// Entries of [`MAP_LB_FRAGS`]: first fragments remembered at once.
pub const MAX_LB_FRAGS: u32 = 16384;
/// Value of a [`MAP_LB_FRAGS`] entry whose first fragment went to the kernel (e.g. a
/// large echo request to an external IP): its later fragments pass too. Any other
/// value is the bucket of the first fragment.
pub const FRAG_PASS: u32 = u32::MAX;
/// Inside prefixes in [`LbSettings`]. A fixed array scanned with a constant-bound
/// loop is cheaper per packet than an LPM trie for the handful an LB has.
pub const MAX_INSIDE_PREFIXES: usize = 16;

/// A table generation: 0 or 1. Stored in [`MAP_LB_ACTIVE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Generation(pub u32);

impl Generation {
    /// The generation the agent writes next while this one is active.
    pub const fn other(self) -> Generation {
        Generation((self.0 & 1) ^ 1)
    }

    /// The generation as 0 or 1 (any stored value is reduced, so an index computed from
    /// it always stays inside the maps).
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self.0 & 1
    }
}

/// Index into [`MAP_LB_BUCKETS`] of `bucket` in generation `generation`.
#[inline(always)]
pub const fn bucket_index(generation: Generation, bucket: u32) -> u32 {
    generation.index() * MAX_BUCKETS + (bucket & (MAX_BUCKETS - 1))
}

/// The group of the external-IP set that holds `ip` (host order) if it is external,
/// under `seed`. A keyed integer mix, not the flow hash: the set is built by the agent
/// from the operator's IPs, so only its spread matters, and it is a few 32-bit
/// multiplications per packet.
#[inline(always)]
pub const fn ext_group(ip: u32, seed: u32) -> u32 {
    let x = (ip ^ seed).wrapping_mul(0x9e37_79b1);
    (x ^ (x >> 15)).wrapping_mul(0x85eb_ca6b) >> (32 - EXT_GROUP_BITS)
}

/// Index into [`MAP_LB_EXT_SET`] of the group of `ip` in generation `generation`.
#[inline(always)]
pub const fn ext_index(generation: Generation, ip: u32, seed: u32) -> u32 {
    generation.index() * EXT_GROUPS + ext_group(ip, seed)
}

/// One group of the external-IP set: up to [`EXT_WAYS`] IPs (host order) whose
/// [`ext_group`] is this group; unused ways are 0, which is never an external IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct ExternalGroup {
    pub ips: [u32; EXT_WAYS],
}

impl ExternalGroup {
    /// `true` if `ip` is in the group. 0.0.0.0 never is (it marks unused ways).
    #[inline(always)]
    pub const fn contains(&self, ip: u32) -> bool {
        if ip == 0 {
            return false;
        }
        let mut i = 0;
        // Constant bound: unrolled, eight compares.
        while i < EXT_WAYS {
            if self.ips[i] == ip {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Adds `ip` to the first unused way; `false` if the group is full.
    pub fn insert(&mut self, ip: u32) -> bool {
        match self.ips.iter_mut().find(|w| **w == 0) {
            Some(w) => {
                *w = ip;
                true
            }
            None => false,
        }
    }
}

/// The per-generation config ([`MAP_LB_GEN_CFG`]): the shared table config and the
/// seed the agent built this generation's external-IP set with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct LbGenConfig {
    pub table: DataplaneConfig,
    /// Seed of [`ext_group`] for this generation's [`MAP_LB_EXT_SET`] half.
    pub ext_seed: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// How the LB hands a packet to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SteerMode {
    /// Rewrite the destination MAC to the owner's (and the source MAC to the egress
    /// interface's); the packet is otherwise untouched. Owners share the L2 fabric.
    L2 = 1,
    /// Encapsulate in an outer IPv4 header (protocol 4) to the owner's IPv4 address;
    /// for routed fabrics.
    IpIp = 2,
}

impl SteerMode {
    /// The mode stored in [`LbSettings::mode`], if valid.
    #[inline(always)]
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(SteerMode::L2),
            2 => Some(SteerMode::IpIp),
            _ => None,
        }
    }
}

/// [`LbSettings::flags`]: a packet that arrived on the fabric interface leaves
/// through the device map (`XDP_REDIRECT`) instead of `XDP_TX`. Needed on veth: its
/// `XDP_TX` only wakes the peer when the peer runs an XDP program itself, so frames
/// would sit unseen; a redirect flushes them.
pub const LB_FLAG_REDIRECT_ON_FABRIC: u8 = 1;

/// An IPv4 prefix as address and mask, both host order. `addr` has no bits outside
/// `mask` (the constructor clears them), so matching is one AND and one compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Ipv4Prefix {
    pub addr: u32,
    pub mask: u32,
}

impl Ipv4Prefix {
    /// `None` if `len > 32`.
    pub const fn new(addr: u32, len: u8) -> Option<Self> {
        if len > 32 {
            return None;
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Some(Ipv4Prefix {
            addr: addr & mask,
            mask,
        })
    }

    #[inline(always)]
    pub const fn contains(&self, ip: u32) -> bool {
        ip & self.mask == self.addr
    }
}

/// The LB's static settings ([`MAP_LB_SETTINGS`] index 0), written once at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct LbSettings {
    /// [`SteerMode`] as a number; 0 means "not configured yet" (the program passes).
    pub mode: u32,
    /// Interface index of the fabric interface: a steered packet that arrived there
    /// leaves with `XDP_TX`, any other with `XDP_REDIRECT` through [`MAP_LB_FABRIC`].
    pub fabric_ifindex: u32,
    /// The LB's fabric IPv4 address (host order): outer source in IP-in-IP mode.
    pub fabric_ip: u32,
    /// Number of valid entries in `inside`.
    pub inside_count: u32,
    /// The fabric interface's MAC: the source MAC of every steered frame.
    pub fabric_mac: [u8; 6],
    /// IP-in-IP mode: the MAC of the fabric's next-hop router. All zero: the owner's
    /// own MAC (owners on the LB's segment).
    pub next_hop_mac: [u8; 6],
    /// `LB_FLAG_*` bits.
    pub flags: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
    /// Interface indexes of the interfaces declared outside-only (facing the
    /// internet), 0 in unused slots. A packet from an inside prefix cannot come from
    /// the internet: arriving on one of these it is spoofed and dropped
    /// ([`LbCounter::DropSpoofedInside`]) instead of being given a NAT session. In the
    /// settings, not a map: the check costs a few compares, not a hash lookup.
    pub outside_ifindex: [u32; MAX_OUTSIDE_IFACES],
    /// The inside prefixes: traffic from these (to anywhere outside them) is outbound.
    pub inside: [Ipv4Prefix; MAX_INSIDE_PREFIXES],
}

impl Default for LbSettings {
    fn default() -> Self {
        LbSettings {
            mode: 0,
            fabric_ifindex: 0,
            fabric_ip: 0,
            inside_count: 0,
            fabric_mac: [0; 6],
            next_hop_mac: [0; 6],
            flags: 0,
            _pad: [0; 3],
            outside_ifindex: [0; MAX_OUTSIDE_IFACES],
            inside: [Ipv4Prefix { addr: 0, mask: 0 }; MAX_INSIDE_PREFIXES],
        }
    }
}

impl LbSettings {
    /// `true` if `ip` (host order) is in one of the inside prefixes.
    #[inline(always)]
    pub fn is_inside(&self, ip: u32) -> bool {
        let mut i = 0;
        // Constant bound: the verifier sees a bounded loop.
        while i < MAX_INSIDE_PREFIXES {
            if i as u32 >= self.inside_count {
                return false;
            }
            if self.inside[i].contains(ip) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// `true` if interface `ifindex` is declared outside-only (0 never is).
    #[inline(always)]
    pub fn is_outside_only(&self, ifindex: u32) -> bool {
        let mut i = 0;
        // Constant bound: the verifier sees a bounded loop.
        while i < MAX_OUTSIDE_IFACES {
            let slot = self.outside_ifindex[i];
            if slot == 0 {
                return false;
            }
            if slot == ifindex {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The steering mode, or `None` when the settings were never written.
    #[inline(always)]
    pub const fn steer_mode(&self) -> Option<SteerMode> {
        SteerMode::from_u32(self.mode)
    }

    /// The destination MAC of an IP-in-IP frame to an owner with MAC `owner_mac`.
    #[inline(always)]
    pub const fn ipip_dst_mac(&self, owner_mac: [u8; 6]) -> [u8; 6] {
        let m = self.next_hop_mac;
        if m[0] | m[1] | m[2] | m[3] | m[4] | m[5] == 0 {
            owner_mac
        } else {
            m
        }
    }
}

/// What an [`LbCounter`] counts; the agent exports each kind as its own metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterKind {
    /// The XDP action returned; exactly one per packet, so the verdicts sum to the
    /// packets seen (no separate "received" counter costs a map write per packet).
    Verdict,
    /// Why a packet was dropped; exactly one per dropped packet.
    Drop,
    /// How a steered packet was classified, or a fragment event.
    Event,
}

macro_rules! lb_counters {
    ($( $(#[$doc:meta])* $name:ident = ($kind:ident, $label:literal), )*) => {
        /// Per-CPU counters of the LB program: the index into [`LbCounters::counts`] is
        /// `counter as u32`; `label()` is the Prometheus label value, stable across
        /// releases.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum LbCounter {
            $( $(#[$doc])* $name, )*
        }

        impl LbCounter {
            /// Every counter, in index order.
            pub const ALL: &'static [LbCounter] = &[$(LbCounter::$name,)*];
            /// Number of counters (entries of [`LbCounters::counts`]).
            pub const COUNT: u32 = LbCounter::ALL.len() as u32;

            pub const fn label(self) -> &'static str {
                match self { $( LbCounter::$name => $label, )* }
            }

            pub const fn kind(self) -> CounterKind {
                match self { $( LbCounter::$name => CounterKind::$kind, )* }
            }

            #[inline(always)]
            pub const fn index(self) -> u32 {
                self as u32
            }
        }
    };
}

lb_counters! {
    /// Verdict: not ours (ARP, IPv6, traffic neither outbound nor inbound): the kernel.
    Pass = (Verdict, "pass"),
    /// Verdict: steered back out of the interface it came in on.
    Tx = (Verdict, "tx"),
    /// Verdict: steered out of the fabric interface.
    Redirect = (Verdict, "redirect"),
    /// Verdict: dropped; a reason below says why.
    Drop = (Verdict, "drop"),
    /// Verdict: aborted (a program bug); never expected.
    Aborted = (Verdict, "aborted"),
    /// Drop: the frame ends inside a header.
    DropTruncated = (Drop, "truncated"),
    /// Drop: IPv4 version field is not 4.
    DropBadVersion = (Drop, "bad_version"),
    /// Drop: IPv4 IHL below 5.
    DropBadIhl = (Drop, "bad_ihl"),
    /// Drop: IPv4 total length shorter than the header or longer than the frame.
    DropBadLength = (Drop, "bad_length"),
    /// Drop: an ICMP error whose quoted packet is truncated or not IPv4.
    DropBadIcmpQuote = (Drop, "bad_icmp_quote"),
    /// Drop: outbound traffic the NAT cannot translate (protocol other than TCP, UDP,
    /// ICMP echo/error): passing it would leak inside addresses.
    DropUnsupported = (Drop, "unsupported"),
    /// Drop: a later fragment whose first fragment was not seen.
    DropFragmentNoHead = (Drop, "fragment_no_head"),
    /// Drop: no steering table received yet.
    DropNoTable = (Drop, "no_table"),
    /// Drop: the packet's bucket has no owner in the active table.
    DropNoOwner = (Drop, "no_owner"),
    /// Drop: the fabric interface is missing from the device map.
    DropNoFabric = (Drop, "no_fabric"),
    /// Drop: the frame could not grow for the IP-in-IP header.
    DropEncap = (Drop, "encap_failed"),
    /// Drop: a source in an inside prefix arrived on an outside-only interface
    /// (spoofed from the internet; it would take a NAT session).
    DropSpoofedInside = (Drop, "spoofed_inside_source"),
    /// Event: steered as outbound (from an inside prefix).
    Outbound = (Event, "outbound"),
    /// Event: steered as inbound (to an external IP).
    Inbound = (Event, "inbound"),
    /// Event: an ICMP error steered by its quoted header.
    IcmpError = (Event, "icmp_error"),
    /// Event: a steered packet was wrapped in an outer IPv4 header.
    Encapsulated = (Event, "encapsulated"),
    /// Event: a first fragment's bucket was remembered.
    FragmentTracked = (Event, "fragment_tracked"),
    /// Event: a later fragment followed its first fragment.
    FragmentFollowed = (Event, "fragment_followed"),
    /// Event: no settings written yet; everything passes.
    NotConfigured = (Event, "not_configured"),
}

/// All counters of one CPU: the one value of [`MAP_LB_COUNTERS`]. One struct, so the
/// program looks it up once per packet however many counters the packet bumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct LbCounters {
    /// Indexed by [`LbCounter::index`].
    pub counts: [u64; LbCounter::COUNT as usize],
}

impl Default for LbCounters {
    fn default() -> Self {
        LbCounters {
            counts: [0; LbCounter::COUNT as usize],
        }
    }
}

impl LbCounters {
    /// Adds one to `c`.
    #[inline(always)]
    pub fn bump(&mut self, c: LbCounter) {
        self.counts[c as usize] += 1;
    }

    /// The value of `c`.
    pub const fn get(&self, c: LbCounter) -> u64 {
        self.counts[c as usize]
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): repr(C)/repr(transparent) structs of integers and byte arrays with
    // explicit padding fields: every byte initialized, every bit pattern valid.
    unsafe impl aya::Pod for super::Generation {}
    unsafe impl aya::Pod for super::Ipv4Prefix {}
    unsafe impl aya::Pod for super::LbSettings {}
    unsafe impl aya::Pod for super::ExternalGroup {}
    unsafe impl aya::Pod for super::LbGenConfig {}
    unsafe impl aya::Pod for super::LbCounters {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, size_of};

    use super::*;

    #[test]
    fn layouts_are_fixed() {
        assert_eq!(size_of::<Generation>(), 4);
        assert_eq!(size_of::<Ipv4Prefix>(), 8);
        assert_eq!(
            size_of::<LbSettings>(),
            32 + 4 * MAX_OUTSIDE_IFACES + 8 * MAX_INSIDE_PREFIXES
        );
        assert_eq!(align_of::<LbSettings>(), 4);
        assert_eq!(size_of::<SteerMode>(), 4);
        assert_eq!(size_of::<LbCounter>(), 4);
        assert_eq!(size_of::<ExternalGroup>(), 4 * EXT_WAYS);
        assert_eq!(size_of::<LbGenConfig>(), 40);
        assert_eq!(align_of::<LbGenConfig>(), 8);
        assert_eq!(size_of::<LbCounters>(), 8 * LbCounter::COUNT as usize);
    }

    #[test]
    fn external_groups_stay_in_their_generation() {
        for ip in [0u32, 1, 0xc633_6401, u32::MAX] {
            for seed in [0u32, 7, u32::MAX] {
                assert!(ext_group(ip, seed) < EXT_GROUPS);
                assert!(ext_index(Generation(0), ip, seed) < EXT_GROUPS);
                let i1 = ext_index(Generation(1), ip, seed);
                assert!((EXT_GROUPS..LB_EXT_ENTRIES).contains(&i1));
            }
        }
    }

    #[test]
    fn external_group_membership() {
        let mut g = ExternalGroup::default();
        assert!(!g.contains(0), "unused ways never match 0.0.0.0");
        for ip in 1..=EXT_WAYS as u32 {
            assert!(g.insert(ip));
        }
        assert!(!g.insert(99), "a full group refuses");
        assert!(g.contains(1) && g.contains(EXT_WAYS as u32));
        assert!(!g.contains(99) && !g.contains(0));
    }

    #[test]
    fn outside_only_interfaces() {
        let mut s = LbSettings::default();
        assert!(!s.is_outside_only(0) && !s.is_outside_only(3));
        s.outside_ifindex[0] = 3;
        s.outside_ifindex[1] = 7;
        assert!(s.is_outside_only(3) && s.is_outside_only(7));
        assert!(!s.is_outside_only(0) && !s.is_outside_only(4));
        s.outside_ifindex = [1, 2, 3, 4];
        assert!(s.is_outside_only(4));
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for n in [
            MAP_LB_SETTINGS,
            MAP_LB_ACTIVE,
            MAP_LB_GEN_CFG,
            MAP_LB_BUCKETS,
            MAP_LB_EXT_SET,
            MAP_LB_FRAGS,
            MAP_LB_FABRIC,
            MAP_LB_COUNTERS,
        ] {
            assert!(n.len() <= 15, "{n}");
        }
    }

    #[test]
    fn generations_index_disjoint_halves() {
        let g0 = Generation(0);
        let g1 = g0.other();
        assert_eq!(g1, Generation(1));
        assert_eq!(g1.other(), g0);
        assert_eq!(bucket_index(g0, 5), 5);
        assert_eq!(bucket_index(g1, 5), MAX_BUCKETS + 5);
        assert!(bucket_index(Generation(7), MAX_BUCKETS - 1) < LB_BUCKET_ENTRIES);
    }

    #[test]
    fn prefixes_match() {
        let p = Ipv4Prefix::new(0x0a00_01ff, 24).unwrap();
        assert_eq!(p.addr, 0x0a00_0100);
        assert!(p.contains(0x0a00_0105));
        assert!(!p.contains(0x0a00_0205));
        assert!(Ipv4Prefix::new(0, 0).unwrap().contains(0xffff_ffff));
        assert!(Ipv4Prefix::new(0, 33).is_none());
        let mut s = LbSettings::default();
        assert!(!s.is_inside(0x0a00_0105));
        s.inside[0] = p;
        s.inside_count = 1;
        assert!(s.is_inside(0x0a00_0105));
        assert!(!s.is_inside(0x0b00_0105));
    }

    #[test]
    fn counters_are_dense_and_labelled_uniquely_per_kind() {
        for (i, c) in LbCounter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
        let mut labels: Vec<_> = LbCounter::ALL
            .iter()
            .map(|c| (format!("{:?}", c.kind()), c.label()))
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), LbCounter::COUNT as usize);
    }

    #[test]
    fn ipip_next_hop_defaults_to_owner() {
        let mut s = LbSettings::default();
        assert_eq!(s.ipip_dst_mac([1; 6]), [1; 6]);
        s.next_hop_mac = [2; 6];
        assert_eq!(s.ipip_dst_mac([1; 6]), [2; 6]);
    }
}
