//! BPF map keys, values and names shared by the eBPF programs and userspace.
//!
//! This module is the single definition: the eBPF programs declare their maps with
//! these types and names, and the userspace agents open the maps by the same names
//! and read/write the same types (with the `user` feature, each implements
//! `aya::Pod`). Every struct is `#[repr(C)]` with explicit padding fields, so its
//! layout is the same for `bpfel-unknown-none` and `x86_64`, and has a `size_of` test.
//!
//! # Steering (used by the LB)
//! - [`MAP_CONFIG`]: `Array<DataplaneConfig>` with one entry (index 0): bucket bits and
//!   the flow hash key. A program that finds `bucket_bits == 0` (not configured yet)
//!   passes traffic and counts [`Counter::NotConfigured`].
//! - [`MAP_BUCKETS`]: `Array<OwnerSlot>` with `MAX_BUCKETS` entries, indexed by bucket
//!   number (`BucketId.0 as u32`): the owner slot of the bucket, or
//!   [`OwnerSlot::NONE`].
//! - [`MAP_OWNERS`]: `Array<Owner>` with [`MAX_OWNERS`] entries, indexed by owner slot:
//!   where to send a bucket's packets. Slots are an indirection so that moving a
//!   worker (new MAC) is one write, and so the bucket table stays 4 bytes per entry.
//! - [`MAP_COUNTERS`]: `PerCpuArray<u64>` with [`Counter::COUNT`] entries, indexed by
//!   `Counter as u32`; userspace sums the CPUs.
//!
//! Update order for a consistent switch: write the owners first, then the buckets.

use crate::hash::FlowHashKey;
use crate::types::{BucketBits, MAX_BUCKET_BITS};

/// Name of the config array map.
pub const MAP_CONFIG: &str = "MFP_CONFIG";
/// Name of the bucket -> owner-slot array map.
pub const MAP_BUCKETS: &str = "MFP_BUCKETS";
/// Name of the owner-slot -> [`Owner`] array map.
pub const MAP_OWNERS: &str = "MFP_OWNERS";
/// Name of the per-CPU counter array map.
pub const MAP_COUNTERS: &str = "MFP_COUNTERS";
/// Name of the per-CPU per-bucket packet counter array (worker program).
pub const MAP_BUCKET_PACKETS: &str = "MFP_BKT_PKTS";

/// Entries of [`MAP_BUCKETS`]: the largest bucket table (`2^MAX_BUCKET_BITS`).
pub const MAX_BUCKETS: u32 = 1 << MAX_BUCKET_BITS;
/// Entries of [`MAP_OWNERS`]: the most workers one LB can steer to.
pub const MAX_OWNERS: u32 = 256;

/// Index into [`MAP_OWNERS`]; the value type of [`MAP_BUCKETS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct OwnerSlot(pub u32);

impl OwnerSlot {
    /// A bucket without an owner: its packets are dropped and counted as
    /// [`Counter::DropNoOwner`] (never sent to a guess).
    pub const NONE: OwnerSlot = OwnerSlot(u32::MAX);

    pub const fn is_none(self) -> bool {
        self.0 == u32::MAX
    }
}

/// Where the packets of a bucket go: the owning worker's data-plane MAC (L2 mode) and
/// IPv4 address (IP-in-IP mode, host order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Owner {
    pub mac: [u8; 6],
    /// Explicit padding so `ipv4` is 4-aligned; always zero.
    pub _pad: [u8; 2],
    pub ipv4: u32,
}

impl Owner {
    /// No owner: an entry never written (all zero). Steering there would be a guess.
    pub const NONE: Owner = Owner::new([0; 6], 0);

    /// `true` for [`Owner::NONE`].
    #[inline(always)]
    pub const fn is_none(&self) -> bool {
        let m = self.mac;
        self.ipv4 == 0 && m[0] | m[1] | m[2] | m[3] | m[4] | m[5] == 0
    }

    pub const fn new(mac: [u8; 6], ipv4: u32) -> Self {
        Owner {
            mac,
            _pad: [0; 2],
            ipv4,
        }
    }
}

/// The data-plane configuration every program reads from [`MAP_CONFIG`] index 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct DataplaneConfig {
    /// The cluster's flow hash key.
    pub hash_key: FlowHashKey,
    /// The bucket table's epoch, for diagnostics (which table is this program using).
    pub epoch: u64,
    /// [`BucketBits`] as a number; 0 means "not configured yet".
    pub bucket_bits: u8,
    /// Explicit padding to a multiple of 8 bytes; always zero.
    pub _pad: [u8; 7],
}

impl DataplaneConfig {
    pub const fn new(hash_key: FlowHashKey, bits: BucketBits, epoch: u64) -> Self {
        DataplaneConfig {
            hash_key,
            epoch,
            bucket_bits: bits.get(),
            _pad: [0; 7],
        }
    }

    /// The validated bucket bits, or `None` if unset or out of range.
    #[inline(always)]
    pub const fn bucket_bits(&self) -> Option<BucketBits> {
        BucketBits::new(self.bucket_bits)
    }
}

/// Key of a fragment-tracking LRU map (DESIGN §2.5): later fragments carry no ports,
/// so the first fragment's decision is remembered under `(src, dst, IP id, proto)`.
/// Addresses host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub id: u16,
    pub proto: u8,
    /// Explicit padding; always zero so equal keys hash equally in the kernel.
    pub _pad: u8,
}

impl FragKey {
    pub const fn new(src: u32, dst: u32, id: u16, proto: u8) -> Self {
        FragKey {
            src,
            dst,
            id,
            proto,
            _pad: 0,
        }
    }
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident = $label:literal, )*) => {
        /// Per-CPU counters: one slot per verdict and per drop reason. The index into
        /// [`MAP_COUNTERS`] is `counter as u32`; `label()` is the Prometheus label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Counter {
            $( $(#[$doc])* $name, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            /// Number of counters (entries of [`MAP_COUNTERS`]).
            pub const COUNT: u32 = Counter::ALL.len() as u32;

            /// The metric label, stable across releases.
            pub const fn label(self) -> &'static str {
                match self { $( Counter::$name => $label, )* }
            }

            /// The index into [`MAP_COUNTERS`].
            pub const fn index(self) -> u32 {
                self as u32
            }
        }
    };
}

counters! {
    /// Every packet the program saw.
    RxPackets = "rx_packets",
    /// Verdict: handed to the kernel stack (not ours: ARP, other EtherTypes, ...).
    VerdictPass = "verdict_pass",
    /// Verdict: transmitted back out of the same interface (steered or translated).
    VerdictTx = "verdict_tx",
    /// Verdict: redirected to another interface or an AF_XDP socket.
    VerdictRedirect = "verdict_redirect",
    /// Verdict: dropped (one of the reasons below says why).
    VerdictDrop = "verdict_drop",
    /// Verdict: aborted (a program bug or an unexpected helper failure).
    VerdictAborted = "verdict_aborted",
    /// Drop: the frame ends inside a header.
    DropTruncated = "drop_truncated",
    /// Drop: IPv4 version field is not 4.
    DropBadVersion = "drop_bad_version",
    /// Drop: IPv4 IHL below 5.
    DropBadIhl = "drop_bad_ihl",
    /// Drop: IPv4 total length shorter than the header or longer than the frame.
    DropBadLength = "drop_bad_length",
    /// Drop: a later fragment whose first fragment was not seen.
    DropFragmentNoHead = "drop_fragment_no_head",
    /// Drop: the packet's bucket has no owner.
    DropNoOwner = "drop_no_owner",
    /// Drop: no session matches (inbound to an external IP).
    DropNoSession = "drop_no_session",
    /// Pass: the program has no configuration yet.
    NotConfigured = "not_configured",
    /// Informational: a first fragment was tracked.
    FragmentTracked = "fragment_tracked",
    /// Informational: a later fragment followed its first fragment.
    FragmentFollowed = "fragment_followed",
    /// Informational: an IPv4 packet that is not TCP, UDP or ICMP.
    OtherProtocol = "other_protocol",
    /// Informational: handed to the userspace slow path (new flow).
    SlowPath = "slow_path",
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all four): repr(C)/repr(transparent) structs of integers and byte arrays
    // with explicit padding fields, so every byte is initialized and every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::OwnerSlot {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::DataplaneConfig {}
    unsafe impl aya::Pod for super::FragKey {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, size_of};

    use super::*;

    #[test]
    fn layouts_are_fixed() {
        assert_eq!(size_of::<OwnerSlot>(), 4);
        assert_eq!(size_of::<Owner>(), 12);
        assert_eq!(align_of::<Owner>(), 4);
        assert_eq!(size_of::<DataplaneConfig>(), 32);
        assert_eq!(size_of::<FlowHashKey>(), 16);
        assert_eq!(size_of::<FragKey>(), 12);
        assert_eq!(size_of::<Counter>(), 4);
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        // BPF object names are at most 15 bytes plus NUL.
        for n in [
            MAP_CONFIG,
            MAP_BUCKETS,
            MAP_OWNERS,
            MAP_COUNTERS,
            MAP_BUCKET_PACKETS,
        ] {
            assert!(n.len() <= 15, "{n}");
        }
    }

    #[test]
    fn counters_are_dense_and_labelled_uniquely() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
        let mut labels: Vec<_> = Counter::ALL.iter().map(|c| c.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Counter::COUNT as usize);
    }

    #[test]
    fn config_validates_bits() {
        let c = DataplaneConfig::default();
        assert!(c.bucket_bits().is_none());
        let c = DataplaneConfig::new(FlowHashKey::DEFAULT, BucketBits::DEFAULT, 3);
        assert_eq!(c.bucket_bits(), Some(BucketBits::DEFAULT));
    }
}
