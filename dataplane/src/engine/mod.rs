//! The stateful NAT engine.
//!
//! One [`Engine`] translates IPv4 packets in place between inside hosts and the
//! cluster's external IPs:
//! - **mapping** is endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): a session is
//!   keyed by the inside endpoint only ([`SessionKey`]);
//! - **filtering** is configurable: endpoint-independent, or address-and-port-
//!   dependent (RFC 4787 REQ-8);
//! - **allocation** happens only in buckets the engine has been told it owns
//!   ([`Engine::set_owned_buckets`]), from a per-bucket free set ([`pool`]); sessions
//!   of other buckets are translated once imported ([`Engine::import`]);
//! - **state**: TCP per RFC 5382 ([`session`]), UDP and ICMP echo by idle timers;
//! - **ICMP errors** are translated both ways with the quoted header (RFC 5508);
//! - **hairpinning** (RFC 4787 REQ-9) and a per-inside-host session limit;
//! - **fragments** follow their first fragment ([`frag`]);
//! - every packet ends in one [`Verdict`]; every drop has a counted [`DropReason`].
//!
//! Time is passed in explicitly ([`Timestamp`]), so a simulation drives it. The
//! packet path does not allocate once the tables have reached their working size
//! (they are created with their configured capacity).
//!
//! The header rewrite is `mfplane_core::rewrite`, the same code the eBPF programs
//! run; this module decides *what* to rewrite. Forwarding (TTL, next hop, MAC
//! addresses) is the caller's job: the engine changes only IP addresses, ports or
//! echo identifiers, and the checksums that cover them.

pub mod config;
pub mod counters;
pub mod frag;
pub mod pool;
pub mod session;
pub mod table;
mod translate;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use foldhash::fast::FixedState;
use mfplane_core::{
    BucketId, Endpoint, ExternalKey, FIRST_NAT_PORT, Proto, SessionKey, SessionRecord, flow_hash,
    inbound_bucket,
};

pub use self::config::{EngineConfig, Filtering, Ipv4Prefix, Pooling, Timeouts};
pub use self::counters::{Counters, Direction, DropReason, Verdict};
use self::frag::FragTracker;
use self::pool::BucketPool;
pub use self::session::{Origin, Session, TcpState};
pub use self::table::{MemTable, SessionTable};
use crate::error::{Error, Result};

/// The engine's clock: milliseconds since the Unix epoch (the unit of
/// `SessionRecord::created_ms`). The caller owns the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_secs(s: u64) -> Self {
        Timestamp(s * 1000)
    }
}

/// The NAT engine over a session table `T`.
#[derive(Debug)]
pub struct Engine<T: SessionTable = MemTable> {
    cfg: EngineConfig,
    /// External IPs, host order, in configuration order (the allocator's IP index).
    ext_ips: Vec<u32>,
    /// `(ip, index into ext_ips)` sorted by IP: every packet asks "is this one of
    /// ours?", so the lookup is a binary search, not a scan of up to 255 IPs.
    ext_sorted: Vec<(u32, usize)>,
    /// The smallest prefix covering every external IP, `(network, mask)`: most
    /// packets (outbound to the internet) are rejected by one AND and compare.
    ext_cover: (u32, u32),
    /// Inside prefixes as `(network, mask)`, precomputed for the per-packet check.
    inside: Vec<(u32, u32)>,
    table: T,
    /// Allocation pools of the owned buckets, indexed by bucket number.
    pools: Vec<Option<BucketPool>>,
    /// Per inside IP: its session count (for `max_sessions_per_host`) and its paired
    /// external IP (computed once per host, not per session).
    host_sessions: HashMap<u32, HostState, FixedState>,
    /// Address-and-port-dependent filtering: `(session, remote) -> last outbound ms`.
    permissions: HashMap<(SessionKey, Endpoint), u64, FixedState>,
    frags: FragTracker,
    /// Sessions allocated here and not yet handed to replication.
    created: Vec<SessionRecord>,
    counters: Counters,
}

impl Engine<MemTable> {
    /// An engine with an in-memory session table sized for `max_sessions`.
    pub fn new(cfg: EngineConfig) -> Result<Self> {
        let seed = seed_of(&cfg);
        let cap = cfg.max_sessions.min(1 << 16);
        Engine::with_table(cfg, MemTable::with_capacity(cap, seed))
    }
}

fn seed_of(cfg: &EngineConfig) -> u64 {
    cfg.hash_key.k0 ^ cfg.hash_key.k1.rotate_left(29)
}

impl<T: SessionTable> Engine<T> {
    /// An engine over a caller-provided table (which should be empty).
    pub fn with_table(cfg: EngineConfig, table: T) -> Result<Self> {
        cfg.validate()?;
        let seed = seed_of(&cfg);
        let ext_ips: Vec<u32> = cfg.external_ips.iter().map(|a| a.to_bits()).collect();
        let mut ext_sorted: Vec<(u32, usize)> =
            ext_ips.iter().enumerate().map(|(i, ip)| (*ip, i)).collect();
        ext_sorted.sort_unstable();
        let ext_cover = match (ext_sorted.first(), ext_sorted.last()) {
            (Some((lo, _)), Some((hi, _))) => {
                let common = (lo ^ hi).leading_zeros();
                let mask = u32::MAX.checked_shl(32 - common).unwrap_or(0);
                (lo & mask, mask)
            }
            _ => (0, 0),
        };
        let buckets = cfg.bucket_bits.count() as usize;
        let frags = FragTracker::new(
            cfg.fragment_slots,
            cfg.fragment_timeout.as_millis() as u64,
            seed.rotate_left(7),
        );
        Ok(Engine {
            ext_ips,
            ext_sorted,
            ext_cover,
            inside: cfg
                .inside_prefixes
                .iter()
                .map(|p| p.network_and_mask())
                .collect(),
            table,
            pools: vec![None; buckets],
            host_sessions: HashMap::with_hasher(FixedState::with_seed(seed.rotate_left(13))),
            permissions: HashMap::with_hasher(FixedState::with_seed(seed.rotate_left(19))),
            frags,
            created: Vec::new(),
            counters: Counters::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Number of sessions (owned and imported).
    pub fn session_count(&self) -> usize {
        self.table.len()
    }

    pub fn session(&self, key: &SessionKey) -> Option<&Session> {
        self.table.get(key)
    }

    pub fn session_by_external(&self, key: &ExternalKey) -> Option<&Session> {
        self.table.get_by_external(key)
    }

    /// `true` if the engine may allocate in `bucket`.
    pub fn owns(&self, bucket: BucketId) -> bool {
        self.pools
            .get(usize::from(bucket.0))
            .is_some_and(Option::is_some)
    }

    /// Makes `buckets` the set this engine allocates in. Newly owned buckets get a
    /// pool with the ports of existing sessions (imported earlier) marked used; no
    /// longer owned buckets drop their pool, and their sessions keep being
    /// translated. Buckets outside the table are ignored.
    pub fn set_owned_buckets(&mut self, buckets: impl IntoIterator<Item = BucketId>) {
        let mut want = vec![false; self.pools.len()];
        for b in buckets {
            if let Some(w) = want.get_mut(usize::from(b.0)) {
                *w = true;
            }
        }
        let mut added = false;
        for (i, w) in want.iter().enumerate() {
            match (*w, self.pools[i].is_some()) {
                (true, false) => {
                    self.pools[i] = BucketPool::new(
                        self.cfg.bucket_bits,
                        BucketId(i as u16),
                        self.ext_ips.len() * PROTOS,
                        &self.cfg.hash_key,
                    );
                    added = true;
                }
                (false, true) => self.pools[i] = None,
                _ => {}
            }
        }
        if added {
            // One pass over the table marks every port in use in the new pools (the
            // old ones already know theirs).
            let (ext_ips, pools, bits) = (&self.ext_ips, &mut self.pools, self.cfg.bucket_bits);
            self.table.for_each(&mut |s| {
                let ext = s.record.external;
                let b = inbound_bucket(bits, ext.port);
                if let (Some(Some(pool)), Some(ip)) = (
                    pools.get_mut(usize::from(b.0)),
                    ext_ips.iter().position(|x| *x == ext.ip),
                ) {
                    pool.mark_used(list(ip, s.record.key.proto), ext.port);
                }
            });
        }
    }

    /// Free `proto` ports of an owned bucket on external IP `ip`, or `None` if the
    /// bucket is not owned (or `ip` is not an external IP).
    pub fn free_ports(&self, bucket: BucketId, ip: Ipv4Addr, proto: Proto) -> Option<u32> {
        let i = self.ext_index(ip.to_bits())?;
        Some(
            self.pools
                .get(usize::from(bucket.0))?
                .as_ref()?
                .free_count(list(i, proto)),
        )
    }

    /// Installs a committed session (from replication) so this engine translates it,
    /// whether or not it owns the bucket. Importing the identical session twice is a
    /// no-op; a conflicting one is an error and changes nothing.
    pub fn import(&mut self, rec: SessionRecord, now: Timestamp) -> Result<()> {
        let key = rec.key;
        let ext = rec.external;
        let Some(ip_index) = self.ext_index(ext.ip) else {
            return Err(Error::UnknownExternalIp {
                key,
                ip: Ipv4Addr::from_bits(ext.ip),
            });
        };
        let bits = self.cfg.bucket_bits;
        if ext.port < FIRST_NAT_PORT || inbound_bucket(bits, ext.port) != rec.bucket {
            return Err(Error::PortNotInBucket {
                key,
                port: ext.port,
                bucket: rec.bucket,
            });
        }
        if let Some(s) = self.table.get(&key) {
            return if s.record.external == ext {
                Ok(())
            } else {
                Err(Error::KeyConflict { key })
            };
        }
        if let Some(other) = self.table.get_by_external(&rec.external_key()) {
            return Err(Error::ExternalTaken {
                key,
                other: other.record.key,
            });
        }
        if self.table.len() >= self.cfg.max_sessions {
            return Err(Error::TableFull(self.cfg.max_sessions));
        }
        if let Some(Some(pool)) = self.pools.get_mut(usize::from(rec.bucket.0)) {
            pool.mark_used(list(ip_index, key.proto), ext.port);
        }
        self.table.insert(Session {
            record: rec,
            last_seen_ms: now.0,
            tcp: TcpState::Established,
            origin: Origin::Imported,
            seen_outbound: false,
        });
        self.host_added(key.inside.ip);
        self.counters.sessions_imported += 1;
        Ok(())
    }

    /// Removes a session (expired, closed, or removed by replication) and returns
    /// its port to the pool if the bucket is owned here.
    pub fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let s = self.table.remove(key)?;
        let ext = s.record.external;
        if let (Some(Some(pool)), Some(ip)) = (
            self.pools.get_mut(usize::from(s.record.bucket.0)),
            self.ext_ips.iter().position(|x| *x == ext.ip),
        ) {
            pool.free(list(ip, key.proto), ext.port);
        }
        if let Some(h) = self.host_sessions.get_mut(&key.inside.ip) {
            h.sessions -= 1;
            if h.sessions == 0 {
                self.host_sessions.remove(&key.inside.ip);
            }
        }
        // Its filter permissions are left to `gc`: finding them here would cost a scan
        // of all permissions per removal.
        self.counters.sessions_removed += 1;
        Some(s.record)
    }

    /// Every session's record, for a full replication snapshot.
    pub fn export(&self) -> Vec<SessionRecord> {
        let mut out = Vec::with_capacity(self.table.len());
        self.table.for_each(&mut |s| out.push(s.record));
        out
    }

    /// The sessions allocated here since the last call, oldest first, for the next
    /// replication batch. Sessions removed in the meantime are left out (checked
    /// here, once per record, rather than by a scan of the batch per removal).
    pub fn drain_created(&mut self) -> impl Iterator<Item = SessionRecord> + '_ {
        let table = &self.table;
        self.created
            .drain(..)
            .filter(move |r| table.get(&r.key).is_some_and(|s| s.record == *r))
    }

    /// Keys of sessions in owned buckets idle past their timeout at `now`. The owner
    /// decides expiry (it sees both directions); removal happens through
    /// [`remove`](Self::remove) once replication has committed it. One call scans
    /// the whole table; a worker with many sessions uses
    /// [`expired_step`](Self::expired_step) instead, a slice at a time.
    pub fn expired(&self, now: Timestamp, out: &mut Vec<SessionKey>) {
        let mut cursor = Some(0);
        while let Some(c) = cursor {
            cursor = self.expired_step(now, c, usize::MAX, out);
        }
    }

    /// [`expired`](Self::expired) over at most `limit` table positions from
    /// `cursor`; returns where to continue, or `None` after the last position. A
    /// sweep is `cursor = Some(0)` then calls until `None`, with packets in between.
    pub fn expired_step(
        &self,
        now: Timestamp,
        cursor: usize,
        limit: usize,
        out: &mut Vec<SessionKey>,
    ) -> Option<usize> {
        let (pools, t) = (&self.pools, &self.cfg.timeouts);
        self.table.scan(cursor, limit, &mut |s| {
            let owned = pools
                .get(usize::from(s.record.bucket.0))
                .is_some_and(Option::is_some);
            if owned && s.is_expired(now.0, t) {
                out.push(s.record.key);
            }
        })
    }

    /// [`expired`](Self::expired), [`remove`](Self::remove) and [`gc`](Self::gc) in
    /// one step, for a standalone engine with nothing to replicate. Returns the
    /// removed records.
    pub fn expire(&mut self, now: Timestamp) -> Vec<SessionRecord> {
        let mut keys = Vec::new();
        self.expired(now, &mut keys);
        let removed = keys.iter().filter_map(|k| self.remove(k)).collect();
        self.gc(now);
        removed
    }

    /// Drops filter permissions that have timed out or whose session is gone. Call
    /// it periodically (for example with each expiry sweep); it scans the
    /// permissions once.
    pub fn gc(&mut self, now: Timestamp) {
        let (table, t) = (&self.table, &self.cfg.timeouts);
        self.permissions.retain(|(key, _), at| {
            table
                .get(key)
                .is_some_and(|s| now.0.saturating_sub(*at) <= s.timeout_ms(t))
        });
    }

    /// Number of address-and-port-dependent filter permissions held.
    pub fn permission_count(&self) -> usize {
        self.permissions.len()
    }

    /// Index of the external IP paired with an inside host (RFC 4787 REQ-2): a keyed
    /// hash, so every worker picks the same one.
    fn paired_ip_index(&self, inside_ip: u32) -> u8 {
        let h = flow_hash(&self.cfg.hash_key, inside_ip, 0, 0);
        // `validate` caps the external IPs at 255, so the index fits.
        ((h as usize) % self.ext_ips.len()) as u8
    }

    #[inline]
    fn ext_index(&self, ip: u32) -> Option<usize> {
        if ip & self.ext_cover.1 != self.ext_cover.0 {
            return None;
        }
        match self.ext_sorted.as_slice() {
            [(only, i)] => (*only == ip).then_some(*i),
            sorted => sorted
                .binary_search_by_key(&ip, |(x, _)| *x)
                .ok()
                .map(|k| sorted[k].1),
        }
    }

    #[inline]
    fn is_inside(&self, ip: u32) -> bool {
        self.inside.iter().any(|(net, mask)| ip & mask == *net)
    }

    /// The state of an inside host, for a new session of it.
    fn host(&self, inside_ip: u32) -> HostState {
        match self.host_sessions.get(&inside_ip) {
            Some(h) => *h,
            None => HostState {
                sessions: 0,
                paired: self.paired_ip_index(inside_ip),
            },
        }
    }

    /// Counts a new session of `inside_ip`.
    fn host_added(&mut self, inside_ip: u32) {
        let paired = self.host(inside_ip).paired;
        self.host_sessions
            .entry(inside_ip)
            .or_insert(HostState {
                sessions: 0,
                paired,
            })
            .sessions += 1;
    }

    /// Allocates an external endpoint in `bucket`, on the host's paired external IP
    /// first (and, with arbitrary pooling, on the others next).
    fn allocate(
        &mut self,
        host: HostState,
        bucket: BucketId,
        proto: Proto,
    ) -> Result<Endpoint, DropReason> {
        let preferred = usize::from(host.paired);
        let n = self.ext_ips.len();
        let tries = match self.cfg.pooling {
            Pooling::Paired => 1,
            Pooling::Arbitrary => n,
        };
        let Some(Some(pool)) = self.pools.get_mut(usize::from(bucket.0)) else {
            return Err(DropReason::NotOwner);
        };
        for k in 0..tries {
            let ip = (preferred + k) % n;
            if let Some(port) = pool.allocate(list(ip, proto)) {
                return Ok(Endpoint::new(self.ext_ips[ip], port));
            }
        }
        Err(DropReason::Exhausted)
    }
}

/// Protocols with their own port space.
const PROTOS: usize = 3;

/// The free list of (external IP index, protocol) in a bucket's pool.
#[inline]
fn list(ip: usize, proto: Proto) -> usize {
    ip * PROTOS
        + match proto {
            Proto::Tcp => 0,
            Proto::Udp => 1,
            Proto::Icmp => 2,
        }
}

/// What the engine keeps per inside host.
#[derive(Clone, Copy, Debug)]
struct HostState {
    sessions: u32,
    /// Index of the paired external IP (RFC 4787 REQ-2); at most 255 IPs.
    paired: u8,
}

#[cfg(test)]
mod tests;
