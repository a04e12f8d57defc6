//! The LB program's maps. Names and types come from `mfplane_core::lb_maps`, the one
//! definition the agent opens them by.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, DevMap, HashMap, LruHashMap, PerCpuArray};
use mfplane_core::lb_maps::{
    GENERATIONS, Generation, LB_BUCKET_ENTRIES, LB_OWNER_ENTRIES, LbCounter, LbSettings,
    MAX_EXTERNAL_IPS, MAX_LB_FRAGS, bucket_index, owner_index,
};
use mfplane_core::maps::{DataplaneConfig, FragKey, Owner, OwnerSlot};

#[map(name = "LB_SETTINGS")]
pub static SETTINGS: Array<LbSettings> = Array::with_max_entries(1, 0);

#[map(name = "LB_ACTIVE")]
pub static ACTIVE: Array<Generation> = Array::with_max_entries(1, 0);

#[map(name = "LB_GEN_CFG")]
pub static GEN_CFG: Array<DataplaneConfig> = Array::with_max_entries(GENERATIONS, 0);

#[map(name = "LB_BUCKETS")]
pub static BUCKETS: Array<OwnerSlot> = Array::with_max_entries(LB_BUCKET_ENTRIES, 0);

#[map(name = "LB_OWNERS")]
pub static OWNERS: Array<Owner> = Array::with_max_entries(LB_OWNER_ENTRIES, 0);

#[map(name = "LB_EXTERNAL")]
pub static EXTERNAL: HashMap<u32, u32> = HashMap::with_max_entries(MAX_EXTERNAL_IPS, 0);

#[map(name = "LB_FRAGS")]
pub static FRAGS: LruHashMap<FragKey, u32> = LruHashMap::with_max_entries(MAX_LB_FRAGS, 0);

#[map(name = "LB_FABRIC")]
pub static FABRIC: DevMap = DevMap::with_max_entries(1, 0);

#[map(name = "LB_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LbCounter::COUNT, 0);

/// Adds one to counter `c` of this CPU.
#[inline(always)]
pub fn bump(c: LbCounter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c.index()) {
        // SAFETY: this CPU's slot of a per-CPU map; no concurrent writer.
        unsafe { *p += 1 };
    }
}

/// The active table generation as read once for this packet.
#[derive(Clone, Copy)]
pub struct Table {
    pub generation: Generation,
    pub config: &'static DataplaneConfig,
}

/// The generation in use and its config, or `None` before the agent wrote one.
#[inline(always)]
pub fn active_table() -> Option<Table> {
    let generation = ACTIVE.get(0).copied().unwrap_or_default();
    let config = GEN_CFG.get(generation.index())?;
    Some(Table { generation, config })
}

/// The owner of `bucket` in `table`, or `None` if the bucket has none.
#[inline(always)]
pub fn owner_of(table: &Table, bucket: u32) -> Option<Owner> {
    let slot = BUCKETS.get(bucket_index(table.generation, bucket))?;
    let owner = OWNERS
        .get(owner_index(table.generation, slot.0)?)
        .copied()?;
    // An all-zero entry was never written: steering there would be a guess.
    if owner.ipv4 == 0 && owner.mac == [0; 6] {
        return None;
    }
    Some(owner)
}

/// `true` if `ip` (host order) is one of the cluster's external IPs.
#[inline(always)]
pub fn is_external(ip: u32) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe { EXTERNAL.get(&ip).is_some() }
}
