//! The LB program's maps. Names and types come from `mfplane_core::lb_maps`, the one
//! definition the agent opens them by.
//!
//! Every per-packet map is an array, which the kernel inlines into a bounds check and
//! an address computation: the table costs two lookups (active word, generation
//! config) plus one for the owner and, for traffic that is not outbound, one for the
//! external-IP group.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, DevMap, LruHashMap, PerCpuArray};
use mfplane_core::lb_maps::{
    ExternalGroup, GENERATIONS, Generation, LB_BUCKET_ENTRIES, LB_EXT_ENTRIES, LbCounters,
    LbGenConfig, LbSettings, MAX_LB_FRAGS, bucket_index, ext_index,
};
use mfplane_core::maps::{FragKey, Owner};

#[map(name = "LB_SETTINGS")]
pub static SETTINGS: Array<LbSettings> = Array::with_max_entries(1, 0);

#[map(name = "LB_ACTIVE")]
pub static ACTIVE: Array<Generation> = Array::with_max_entries(1, 0);

#[map(name = "LB_GEN_CFG")]
pub static GEN_CFG: Array<LbGenConfig> = Array::with_max_entries(GENERATIONS, 0);

#[map(name = "LB_BUCKETS")]
pub static BUCKETS: Array<Owner> = Array::with_max_entries(LB_BUCKET_ENTRIES, 0);

#[map(name = "LB_EXT_SET")]
pub static EXT_SET: Array<ExternalGroup> = Array::with_max_entries(LB_EXT_ENTRIES, 0);

#[map(name = "LB_FRAGS")]
pub static FRAGS: LruHashMap<FragKey, u32> = LruHashMap::with_max_entries(MAX_LB_FRAGS, 0);

#[map(name = "LB_FABRIC")]
pub static FABRIC: DevMap = DevMap::with_max_entries(1, 0);

#[map(name = "LB_COUNTERS")]
pub static COUNTERS: PerCpuArray<LbCounters> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's counters, looked up once per packet and handed down.
#[inline(always)]
pub fn counters() -> Option<&'static mut LbCounters> {
    // SAFETY: this CPU's slot of a per-CPU map; the program runs with preemption off,
    // so nothing else writes it while the packet is processed.
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The active table generation as read once for this packet.
#[derive(Clone, Copy)]
pub struct Table {
    pub generation: Generation,
    pub config: &'static LbGenConfig,
}

impl Table {
    /// The generation in use and its config. `None` only if an array lookup of a
    /// constant, in-range index failed, which the verifier makes us handle.
    #[inline(always)]
    pub fn active() -> Option<Table> {
        let generation = ACTIVE.get(0).copied().unwrap_or_default();
        let config = GEN_CFG.get(generation.index())?;
        Some(Table { generation, config })
    }

    /// The owner of `bucket`, or `None` if the bucket has none.
    #[inline(always)]
    pub fn owner_of(&self, bucket: u32) -> Option<&'static Owner> {
        let owner = BUCKETS.get(bucket_index(self.generation, bucket))?;
        // An all-zero entry was never written: steering there would be a guess.
        if owner.is_none() {
            return None;
        }
        Some(owner)
    }

    /// `true` if `ip` (host order) is one of the cluster's external IPs in this
    /// generation.
    #[inline(always)]
    pub fn is_external(&self, ip: u32) -> bool {
        EXT_SET
            .get(ext_index(self.generation, ip, self.config.ext_seed))
            .is_some_and(|g| g.contains(ip))
    }
}
