//! The loaded LB program and its maps: the only code that talks to the kernel.
//!
//! Used by the agent and by the tests and the benchmark (which run the program with
//! `BPF_PROG_TEST_RUN` through [`Datapath::program`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use aya::Ebpf;
use aya::maps::{Array, DevMap, HashMap, MapData, PerCpuArray};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{Xdp, XdpMode};
use mfplane_core::lb_maps::{
    CounterKind, EXT_GROUPS, ExternalGroup, Generation, LbCounter, LbCounters, LbGenConfig,
    LbSettings, MAP_LB_ACTIVE, MAP_LB_BUCKETS, MAP_LB_COUNTERS, MAP_LB_EXT_SET, MAP_LB_FABRIC,
    MAP_LB_FRAGS, MAP_LB_GEN_CFG, MAP_LB_SETTINGS, bucket_index,
};
use mfplane_core::maps::{DataplaneConfig, FragKey, Owner};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::object::{self, PROGRAM_NAME};
use crate::table::{GenerationImage, SteeringTable};
use crate::watch::TableSink;

/// Counter values summed over all CPUs, indexed like [`LbCounter::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CounterSnapshot(pub Vec<u64>);

impl CounterSnapshot {
    /// The value of `c` (0 if the snapshot is shorter).
    pub fn get(&self, c: LbCounter) -> u64 {
        self.0.get(c.index() as usize).copied().unwrap_or(0)
    }

    /// Packets seen: every packet gets exactly one verdict.
    pub fn received(&self) -> u64 {
        LbCounter::ALL
            .iter()
            .filter(|c| c.kind() == CounterKind::Verdict)
            .map(|c| self.get(*c))
            .sum()
    }

    /// `self - before`, per counter (saturating: counters only grow).
    pub fn since(&self, before: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot(
            self.0
                .iter()
                .enumerate()
                .map(|(i, v)| v.saturating_sub(before.0.get(i).copied().unwrap_or(0)))
                .collect(),
        )
    }
}

/// How XDP was attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

/// Which XDP attach mode to use (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to generic with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (SKB) mode only: works on every interface, slower.
    Generic,
}

/// The loaded program, its maps and its attachments.
#[derive(Debug)]
pub struct Datapath {
    ebpf: Ebpf,
    /// The generation packets use now; the next [`Datapath::install`] writes the other.
    active: Generation,
    links: Vec<(String, XdpLinkId, AttachedMode)>,
}

impl Datapath {
    /// Loads the embedded object and the program (the verifier runs here).
    pub fn load_embedded() -> Result<Self> {
        Self::load(object::embedded()?)
    }

    /// Loads `object` and its XDP program.
    pub fn load(object: &[u8]) -> Result<Self> {
        let mut ebpf = Ebpf::load(object)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(Error::Program(aya::programs::ProgramError::NotLoaded))?
            .try_into()?;
        prog.load()?;
        let mut dp = Datapath {
            ebpf,
            active: Generation(0),
            links: Vec::new(),
        };
        // Start from a known state: generation 0 active, neither configured.
        dp.array::<Generation>(MAP_LB_ACTIVE)?
            .set(0, Generation(0), 0)
            .map_err(Error::map(MAP_LB_ACTIVE))?;
        Ok(dp)
    }

    /// The XDP program, e.g. for `test_run`.
    pub fn program(&self) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(Error::Program(aya::programs::ProgramError::NotLoaded))?
            .try_into()?)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(Error::Program(aya::programs::ProgramError::NotLoaded))?
            .try_into()?)
    }

    fn array<T: aya::Pod>(&mut self, name: &'static str) -> Result<Array<&mut MapData, T>> {
        let map = self.ebpf.map_mut(name).ok_or(Error::MapMissing(name))?;
        Array::try_from(map).map_err(Error::map(name))
    }

    /// Writes the static settings (mode, fabric, inside prefixes).
    pub fn set_settings(&mut self, settings: &LbSettings) -> Result<()> {
        self.array::<LbSettings>(MAP_LB_SETTINGS)?
            .set(0, settings, 0)
            .map_err(Error::map(MAP_LB_SETTINGS))
    }

    /// Points the fabric device map at interface `ifindex`.
    pub fn set_fabric(&mut self, ifindex: u32) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(MAP_LB_FABRIC)
            .ok_or(Error::MapMissing(MAP_LB_FABRIC))?;
        let mut devmap = DevMap::try_from(map).map_err(Error::map(MAP_LB_FABRIC))?;
        devmap
            .set(0, ifindex, None, 0)
            .map_err(|source| Error::DevMap {
                name: MAP_LB_FABRIC,
                source,
            })
    }

    /// The generation packets use now.
    pub fn active_generation(&self) -> Generation {
        self.active
    }

    /// Writes `image` into the inactive generation, then flips the active word.
    ///
    /// Packets only read the active half; the single `LB_ACTIVE` write switches all
    /// of them at once. A program run that read the old index finishes within
    /// microseconds, long before the next install writes that half again.
    ///
    /// # Returns
    /// The now-active generation.
    pub fn install(&mut self, image: &GenerationImage) -> Result<Generation> {
        let next = self.active.other();
        self.write_generation(next, image)?;
        self.activate(next)?;
        debug!(
            generation = next.0,
            epoch = image.config.table.epoch,
            "steering table installed"
        );
        Ok(next)
    }

    /// Writes `image` into generation `generation` without activating it. Order:
    /// buckets, external set, then the config (bucket bits, epoch and the set's
    /// seed), so even a reader of this half never pairs a seed with groups placed by
    /// another.
    pub fn write_generation(
        &mut self,
        generation: Generation,
        image: &GenerationImage,
    ) -> Result<()> {
        {
            let mut buckets = self.array::<Owner>(MAP_LB_BUCKETS)?;
            for (b, owner) in image.buckets.iter().enumerate() {
                buckets
                    .set(
                        bucket_index(generation, b as u32),
                        owner.unwrap_or(Owner::NONE),
                        0,
                    )
                    .map_err(Error::map(MAP_LB_BUCKETS))?;
            }
        }
        {
            let mut set = self.array::<ExternalGroup>(MAP_LB_EXT_SET)?;
            let base = generation.index() * EXT_GROUPS;
            for (i, group) in image.external.groups.iter().enumerate() {
                set.set(base + i as u32, group, 0)
                    .map_err(Error::map(MAP_LB_EXT_SET))?;
            }
        }
        self.array::<LbGenConfig>(MAP_LB_GEN_CFG)?
            .set(generation.index(), image.config, 0)
            .map_err(Error::map(MAP_LB_GEN_CFG))
    }

    /// Makes `generation` the one packets use: one word, one write.
    pub fn activate(&mut self, generation: Generation) -> Result<()> {
        self.array::<Generation>(MAP_LB_ACTIVE)?
            .set(0, generation, 0)
            .map_err(Error::map(MAP_LB_ACTIVE))?;
        self.active = generation;
        Ok(())
    }

    /// Reads back what generation `generation` steers bucket `bucket` to (for tests and
    /// diagnostics).
    pub fn owner_in_map(&mut self, generation: Generation, bucket: u32) -> Result<Option<Owner>> {
        let owner = self
            .array::<Owner>(MAP_LB_BUCKETS)?
            .get(&bucket_index(generation, bucket), 0)
            .map_err(Error::map(MAP_LB_BUCKETS))?;
        Ok((!owner.is_none()).then_some(owner))
    }

    /// The table config of generation `generation`.
    pub fn generation_config(&mut self, generation: Generation) -> Result<DataplaneConfig> {
        Ok(self
            .array::<LbGenConfig>(MAP_LB_GEN_CFG)?
            .get(&generation.index(), 0)
            .map_err(Error::map(MAP_LB_GEN_CFG))?
            .table)
    }

    /// The external IPs of the active generation.
    pub fn external_ips(&mut self) -> Result<BTreeSet<Ipv4Addr>> {
        let base = self.active.index() * EXT_GROUPS;
        let set = self.array::<ExternalGroup>(MAP_LB_EXT_SET)?;
        let mut ips = BTreeSet::new();
        for i in base..base + EXT_GROUPS {
            let group = set.get(&i, 0).map_err(Error::map(MAP_LB_EXT_SET))?;
            ips.extend(
                group
                    .ips
                    .iter()
                    .filter(|ip| **ip != 0)
                    .map(|ip| Ipv4Addr::from(*ip)),
            );
        }
        Ok(ips)
    }

    /// Empties the fragment-tracking map (tests start from a clean LRU).
    pub fn clear_fragments(&mut self) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(MAP_LB_FRAGS)
            .ok_or(Error::MapMissing(MAP_LB_FRAGS))?;
        let mut hm: HashMap<&mut MapData, FragKey, u32> =
            HashMap::try_from(map).map_err(Error::map(MAP_LB_FRAGS))?;
        let keys: Vec<FragKey> = hm.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            // A key evicted meanwhile is already gone: nothing to do.
            let _ = hm.remove(&k);
        }
        Ok(())
    }

    /// All counters, summed over CPUs.
    pub fn counters(&self) -> Result<CounterSnapshot> {
        let map = self
            .ebpf
            .map(MAP_LB_COUNTERS)
            .ok_or(Error::MapMissing(MAP_LB_COUNTERS))?;
        let arr: PerCpuArray<&MapData, LbCounters> =
            PerCpuArray::try_from(map).map_err(Error::map(MAP_LB_COUNTERS))?;
        let per_cpu = arr.get(&0, 0).map_err(Error::map(MAP_LB_COUNTERS))?;
        Ok(CounterSnapshot(
            LbCounter::ALL
                .iter()
                .map(|c| per_cpu.iter().map(|cpu| cpu.get(*c)).sum())
                .collect(),
        ))
    }

    /// Attaches the program to `iface` in `mode`; `Auto` tries native mode and falls
    /// back to generic with a warning.
    pub fn attach(&mut self, iface: &str, mode: XdpModeChoice) -> Result<AttachedMode> {
        let prog = self.program_mut()?;
        let err = |source| Error::Attach {
            iface: iface.to_owned(),
            source,
        };
        let (link, attached) = match mode {
            XdpModeChoice::Native => (
                prog.attach(iface, XdpMode::Driver).map_err(err)?,
                AttachedMode::Native,
            ),
            XdpModeChoice::Generic => (
                prog.attach(iface, XdpMode::Skb).map_err(err)?,
                AttachedMode::Generic,
            ),
            XdpModeChoice::Auto => match prog.attach(iface, XdpMode::Driver) {
                Ok(link) => (link, AttachedMode::Native),
                Err(e) => {
                    warn!(iface, error = %e, "native XDP refused; attaching in generic (SKB) mode, which is slower");
                    (
                        prog.attach(iface, XdpMode::Skb).map_err(err)?,
                        AttachedMode::Generic,
                    )
                }
            },
        };
        info!(iface, mode = ?attached, "XDP program attached");
        self.links.push((iface.to_owned(), link, attached));
        Ok(attached)
    }

    /// Detaches from every interface (also happens when the `Datapath` is dropped).
    pub fn detach_all(&mut self) {
        let links = std::mem::take(&mut self.links);
        for (iface, link, _) in links {
            let result = self.program_mut().and_then(|p| Ok(p.detach(link)?));
            match result {
                Ok(()) => info!(iface, "XDP program detached"),
                Err(e) => warn!(iface, error = %e, "detaching XDP failed"),
            }
        }
    }
}

impl TableSink for Datapath {
    /// The external IPs are part of the generation, so they flip with the buckets.
    fn install_table(&mut self, table: &SteeringTable) -> Result<()> {
        let image = table.image()?;
        self.install(&image)?;
        Ok(())
    }
}
