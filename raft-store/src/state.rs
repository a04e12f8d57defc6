//! The replicated cluster state (DESIGN §2.2) and its deterministic apply.
//!
//! `apply` is a pure function of the state and the command: no clock, no randomness, no
//! iteration over hash-ordered containers, and no panics on any command content (a bad
//! command becomes a [`Rejection`]). That is what makes every member that applied the same
//! log reach the same [`ClusterState::state_hash`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use mfplane_core::{BucketBits, BucketId, ExternalKey, SessionKey, SessionRecord};
use serde::{Deserialize, Serialize};

use crate::applied::Applied;
use crate::bucket_table::BucketTable;
use crate::command::{ClusterConfig, Command, Rejection, Response};
use crate::fence::Fence;
use crate::ids::{Epoch, NodeId};
use crate::member::{MemberInfo, NodeRecord};
use crate::session_index::{Inserted, SessionIndex};
use crate::stable_hash::{StableHasher, record_digest};

/// The first id `RegisterNode` hands out. A bootstrapping node can therefore initialize
/// Raft as this id and register itself first.
pub const FIRST_NODE_ID: NodeId = NodeId(1);

/// Longest accepted member name (names show up in tables, metrics and pod names).
pub const MAX_NAME_LEN: usize = 253;

/// The whole replicated state machine data. Read it through a
/// [`StateGuard`](crate::StateGuard); it changes only by applying committed commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    config: Option<ClusterConfig>,
    next_node_id: NodeId,
    nodes: BTreeMap<NodeId, NodeRecord>,
    epoch: Epoch,
    buckets: BucketTable,
    /// Buckets whose last move took them from a suspect, with the fence their owner
    /// waits out (kept until the bucket moves again).
    fences: BTreeMap<BucketId, Fence>,
    sessions: SessionIndex,
    // Derived, rebuilt from the above on snapshot install.
    per_bucket: Vec<u32>,
    external_ips: Vec<u32>,
    sessions_digest: u64,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            config: None,
            next_node_id: FIRST_NODE_ID,
            nodes: BTreeMap::new(),
            epoch: Epoch::NONE,
            buckets: BucketTable::default(),
            fences: BTreeMap::new(),
            sessions: SessionIndex::default(),
            per_bucket: Vec::new(),
            external_ips: Vec::new(),
            sessions_digest: 0,
        }
    }
}

/// The port-in-bucket rule (DESIGN §2.1), from the shared core so the state machine, the
/// allocator and the data path agree: a session of bucket `b` uses an external port `p`
/// with `p & (B-1) == b`, never below `FIRST_NAT_PORT`.
fn port_in_bucket(bits: BucketBits, port: u16, bucket: BucketId) -> bool {
    mfplane_core::bucket::port_in_bucket(bits, bucket, port)
}

impl ClusterState {
    /// The cluster configuration, `None` before `Bootstrap`.
    pub fn config(&self) -> Option<&ClusterConfig> {
        self.config.as_ref()
    }

    /// The id the next `RegisterNode` will get.
    pub fn next_node_id(&self) -> NodeId {
        self.next_node_id
    }

    /// Every member ever registered, retired ones included, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeRecord> {
        &self.nodes
    }

    /// One member's record.
    pub fn node(&self, id: NodeId) -> Option<&NodeRecord> {
        self.nodes.get(&id)
    }

    /// The live (not retired) member registered under `name`.
    pub fn node_by_name(&self, name: &str) -> Option<(NodeId, &NodeRecord)> {
        self.nodes
            .iter()
            .find(|(_, r)| !r.retired && r.info.name == name)
            .map(|(id, r)| (*id, r))
    }

    /// The bucket table's version.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The bucket -> owner table.
    pub fn buckets(&self) -> &BucketTable {
        &self.buckets
    }

    /// The allocation fence of `bucket`, if the move that gave it to its owner was a
    /// failover before the old owner's lease ran out. The fence stays recorded until
    /// the bucket moves again; its owner counts it from when it first saw it.
    pub fn fence(&self, bucket: BucketId) -> Option<Fence> {
        self.fences.get(&bucket).copied()
    }

    /// The owner of one bucket.
    pub fn owner_of(&self, bucket: BucketId) -> Option<NodeId> {
        self.buckets.owner(bucket)
    }

    /// The session of an inside endpoint.
    pub fn session(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.sessions.get(key)
    }

    /// The session that owns an external endpoint (reverse index, used inbound).
    pub fn session_by_external(&self, key: &ExternalKey) -> Option<&SessionRecord> {
        self.sessions.get_by_external(key)
    }

    /// Up to `limit` sessions in key order, starting after `after` (exclusive): stable
    /// paging for tools while the state changes. Costs a pass over all sessions per page
    /// (the table is hashed for apply speed), so page with a generous `limit`.
    pub fn sessions_range(&self, after: Option<SessionKey>, limit: usize) -> Vec<SessionRecord> {
        self.sessions.page_after(after.as_ref(), limit)
    }

    /// Every session, in no particular order (a new owner loads its buckets' sessions
    /// from this; use [`sessions_range`](Self::sessions_range) for key order).
    pub fn sessions(&self) -> impl Iterator<Item = &SessionRecord> + '_ {
        self.sessions.iter()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> u64 {
        self.sessions.len() as u64
    }

    /// Number of live sessions in one bucket.
    pub fn sessions_in_bucket(&self, bucket: BucketId) -> u32 {
        self.per_bucket
            .get(usize::from(bucket.0))
            .copied()
            .unwrap_or(0)
    }

    /// Number of live sessions in the buckets `node` currently owns.
    pub fn sessions_owned_by(&self, node: NodeId) -> u64 {
        self.buckets
            .owned_by(node)
            .map(|b| u64::from(self.sessions_in_bucket(b)))
            .sum()
    }

    /// A stable 64-bit hash of the whole state, equal on every member that applied the
    /// same log (and after a snapshot round trip). Independent of platform and process:
    /// it hashes an explicit encoding, and sessions through an order-independent digest
    /// maintained on every change, so it is O(members + buckets), not O(sessions).
    pub fn state_hash(&self) -> u64 {
        let mut h = StableHasher::new();
        match &self.config {
            None => h.write_u8(0),
            Some(c) => {
                h.write_u8(1);
                h.write_u8(c.bucket_bits.get());
                h.write_u64(c.external_ips.len() as u64);
                for ip in &c.external_ips {
                    h.write_u32(u32::from(*ip));
                }
            }
        }
        h.write_u64(self.next_node_id.0);
        h.write_u64(self.nodes.len() as u64);
        for (id, r) in &self.nodes {
            h.write_u64(id.0);
            h.write_str(&r.info.name);
            h.write_str(&r.info.raft_addr);
            h.write_u32(u32::from(r.info.data_ip));
            h.write_bytes(&r.info.data_mac.0);
            h.write_u8(u8::from(r.draining) | (u8::from(r.retired) << 1));
        }
        h.write_u64(self.epoch.0);
        h.write_u64(self.buckets.len() as u64);
        for owner in self.buckets.owners() {
            h.write_u64(owner.map_or(0, |n| n.0.wrapping_add(1)));
        }
        h.write_u64(self.fences.len() as u64);
        for (bucket, fence) in &self.fences {
            h.write_u32(u32::from(bucket.0));
            h.write_u64(fence.from.0);
            h.write_u64(fence.since.0);
            h.write_u64(u64::try_from(fence.length.as_nanos()).unwrap_or(u64::MAX));
            h.write_u8(u8::from(fence.claimed));
        }
        h.write_u64(self.sessions.len() as u64);
        h.write_u64(self.sessions_digest);
        h.finish()
    }

    /// Applies one committed command. Never panics; refusals are in the [`Response`].
    /// When `events` is given, what changed is appended to it (the caller skips this when
    /// nobody listens, so a session batch costs no extra allocation).
    pub fn apply(&mut self, cmd: Command, events: Option<&mut Vec<Applied>>) -> Response {
        match cmd {
            Command::Bootstrap { config } => self.bootstrap(config, events),
            Command::RegisterNode { info } => self.register(info, events),
            Command::SetDraining { node, draining } => self.set_draining(node, draining, events),
            Command::RetireNode { node } => self.retire(node, events),
            Command::AssignBuckets { base_epoch, moves } => {
                self.assign(base_epoch, &moves, None, events)
            }
            Command::FailOverBuckets {
                base_epoch,
                moves,
                suspects,
                fence,
            } => self.assign(base_epoch, &moves, Some((&suspects, fence)), events),
            Command::CreateSessions {
                owner,
                epoch: _,
                sessions,
            } => self.create_sessions(owner, sessions, events),
            Command::RemoveSessions { owner, keys } => self.remove_sessions(owner, keys, events),
        }
    }

    fn bootstrap(&mut self, config: ClusterConfig, events: Option<&mut Vec<Applied>>) -> Response {
        if self.config.is_some() {
            return Response::Rejected(Rejection::AlreadyConfigured);
        }
        if let Err(why) = validate_config(&config) {
            return Response::Rejected(Rejection::InvalidConfig(why));
        }
        self.install_config(config);
        push(events, Applied::Configured);
        Response::Ok
    }

    fn install_config(&mut self, config: ClusterConfig) {
        let count = config.bucket_bits.count() as usize;
        if self.buckets.len() != count {
            self.buckets = BucketTable::unowned(config.bucket_bits);
        }
        self.per_bucket = vec![0; count];
        self.external_ips = sorted_ips(&config.external_ips);
        self.config = Some(config);
    }

    fn register(&mut self, info: MemberInfo, events: Option<&mut Vec<Applied>>) -> Response {
        if let Err(why) = validate_member(&info) {
            return Response::Rejected(Rejection::InvalidMember(why));
        }
        if let Some((id, _)) = self.node_by_name(&info.name) {
            return Response::Rejected(Rejection::NameTaken(id));
        }
        let id = self.next_node_id;
        self.next_node_id = NodeId(id.0.saturating_add(1));
        self.nodes.insert(
            id,
            NodeRecord {
                info,
                draining: false,
                retired: false,
            },
        );
        push(events, Applied::MembersChanged);
        Response::NodeRegistered(id)
    }

    fn live_node_mut(&mut self, node: NodeId) -> Result<&mut NodeRecord, Rejection> {
        match self.nodes.get_mut(&node) {
            None => Err(Rejection::UnknownNode(node)),
            Some(r) if r.retired => Err(Rejection::NodeRetired(node)),
            Some(r) => Ok(r),
        }
    }

    fn set_draining(
        &mut self,
        node: NodeId,
        draining: bool,
        events: Option<&mut Vec<Applied>>,
    ) -> Response {
        match self.live_node_mut(node) {
            Err(r) => Response::Rejected(r),
            Ok(rec) => {
                rec.draining = draining;
                push(events, Applied::MembersChanged);
                Response::Ok
            }
        }
    }

    fn retire(&mut self, node: NodeId, events: Option<&mut Vec<Applied>>) -> Response {
        match self.nodes.get(&node) {
            None => return Response::Rejected(Rejection::UnknownNode(node)),
            Some(r) if r.retired => return Response::Ok,
            Some(_) => {}
        }
        let buckets = self.buckets.count_owned_by(node);
        if buckets > 0 {
            return Response::Rejected(Rejection::NodeOwnsBuckets { node, buckets });
        }
        if let Some(rec) = self.nodes.get_mut(&node) {
            rec.retired = true;
            rec.draining = false;
        }
        push(events, Applied::MembersChanged);
        Response::Ok
    }

    fn assign(
        &mut self,
        base_epoch: Epoch,
        moves: &[(BucketId, Option<NodeId>)],
        fence: Option<(&[NodeId], Duration)>,
        events: Option<&mut Vec<Applied>>,
    ) -> Response {
        if self.config.is_none() {
            return Response::Rejected(Rejection::NotConfigured);
        }
        if base_epoch != self.epoch {
            return Response::Rejected(Rejection::StaleEpoch {
                current: self.epoch,
            });
        }
        // Validate everything before changing anything: the command is all or nothing.
        let count = self.buckets.len();
        let mut seen = vec![false; count];
        for (bucket, target) in moves {
            let idx = usize::from(bucket.0);
            let Some(slot) = seen.get_mut(idx) else {
                return Response::Rejected(Rejection::BucketOutOfRange {
                    bucket: *bucket,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                });
            };
            if std::mem::replace(slot, true) {
                return Response::Rejected(Rejection::DuplicateMove { bucket: *bucket });
            }
            if let Some(node) = target {
                match self.nodes.get(node) {
                    None => return Response::Rejected(Rejection::UnknownNode(*node)),
                    Some(r) if r.retired => {
                        return Response::Rejected(Rejection::NodeRetired(*node));
                    }
                    Some(_) => {}
                }
            }
        }
        let epoch = self.epoch.next();
        for &(bucket, target) in moves {
            let from = self.buckets.owner(bucket);
            self.buckets.set(bucket, target);
            // Whatever fence the bucket had belonged to its previous move.
            self.fences.remove(&bucket);
            if let (Some((suspects, length)), Some(from), Some(_)) = (fence, from, target)
                && suspects.contains(&from)
            {
                self.fences.insert(
                    bucket,
                    Fence {
                        from,
                        since: epoch,
                        length,
                        claimed: false,
                    },
                );
            }
        }
        self.epoch = epoch;
        push(events, Applied::BucketsChanged(self.epoch));
        Response::Epoch(self.epoch)
    }

    fn create_sessions(
        &mut self,
        owner: NodeId,
        sessions: Vec<SessionRecord>,
        events: Option<&mut Vec<Applied>>,
    ) -> Response {
        let Some(bits) = self.config.as_ref().map(|c| c.bucket_bits) else {
            return Response::Rejected(Rejection::NotConfigured);
        };
        let mut accepted: u32 = 0;
        let mut rejected = Vec::new();
        let mut created = events.as_ref().map(|_| Vec::with_capacity(sessions.len()));
        self.sessions.reserve(sessions.len());
        for rec in sessions {
            match self.add_session(bits, owner, rec) {
                Ok(Inserted::New) => {
                    if let Some(c) = created.as_mut() {
                        c.push(rec);
                    }
                    accepted = accepted.saturating_add(1);
                }
                // Identical duplicate (a re-proposed batch): accepted, nothing changes.
                Ok(Inserted::Identical) => accepted = accepted.saturating_add(1),
                Err(why) => rejected.push((rec.key, why)),
            }
        }
        if let (Some(events), Some(created)) = (events, created)
            && !created.is_empty()
        {
            events.push(Applied::SessionsCreated(created));
        }
        Response::Sessions { accepted, rejected }
    }

    /// Checks one batch entry against the rules and the session table, inserting it when
    /// it passes.
    fn add_session(
        &mut self,
        bits: BucketBits,
        owner: NodeId,
        rec: SessionRecord,
    ) -> Result<Inserted, Rejection> {
        if !port_in_bucket(bits, rec.external.port, rec.bucket) {
            return Err(Rejection::PortNotInBucket {
                port: rec.external.port,
                bucket: rec.bucket,
            });
        }
        if self.external_ips.binary_search(&rec.external.ip).is_err() {
            return Err(Rejection::UnknownExternalIp(Ipv4Addr::from(
                rec.external.ip,
            )));
        }
        let current = self.buckets.owner(rec.bucket);
        let fence = self.fences.get_mut(&rec.bucket);
        let is_owner = current == Some(owner);
        // A suspect keeps committing into the buckets taken from it until their new
        // owner claims them (see `fence`).
        let suspect_window = fence
            .as_ref()
            .is_some_and(|f| f.from == owner && !f.claimed);
        if !is_owner && !suspect_window {
            return Err(Rejection::NotOwner {
                bucket: rec.bucket,
                owner: current,
            });
        }
        let inserted = self.sessions.try_insert(rec)?;
        if is_owner && let Some(f) = fence {
            f.claimed = true;
        }
        if inserted == Inserted::New {
            self.count_session(&rec);
        }
        Ok(inserted)
    }

    /// Accounts for a session just inserted into the table.
    fn count_session(&mut self, rec: &SessionRecord) {
        if let Some(n) = self.per_bucket.get_mut(usize::from(rec.bucket.0)) {
            *n = n.saturating_add(1);
        }
        self.sessions_digest = self.sessions_digest.wrapping_add(record_digest(rec));
    }

    fn remove_sessions(
        &mut self,
        owner: NodeId,
        keys: Vec<SessionKey>,
        events: Option<&mut Vec<Applied>>,
    ) -> Response {
        let mut removed_keys = events.as_ref().map(|_| Vec::with_capacity(keys.len()));
        let mut removed: u32 = 0;
        let mut unknown: u32 = 0;
        let mut refused = Vec::new();
        for key in keys {
            let Some(rec) = self.sessions.get(&key) else {
                unknown = unknown.saturating_add(1);
                continue;
            };
            let current = self.buckets.owner(rec.bucket);
            if current != Some(owner) {
                refused.push((
                    key,
                    Rejection::NotOwner {
                        bucket: rec.bucket,
                        owner: current,
                    },
                ));
                continue;
            }
            if let Some(rec) = self.sessions.remove(&key) {
                if let Some(n) = self.per_bucket.get_mut(usize::from(rec.bucket.0)) {
                    *n = n.saturating_sub(1);
                }
                self.sessions_digest = self.sessions_digest.wrapping_sub(record_digest(&rec));
                removed = removed.saturating_add(1);
                if let Some(r) = removed_keys.as_mut() {
                    r.push(key);
                }
            }
        }
        if let (Some(events), Some(keys)) = (events, removed_keys)
            && !keys.is_empty()
        {
            events.push(Applied::SessionsRemoved(keys));
        }
        Response::SessionsRemoved {
            removed,
            unknown,
            refused,
        }
    }

    /// The whole state in its versioned snapshot encoding (what snapshots carry; also
    /// lets tools and tests compare states byte for byte).
    pub fn to_bytes(&self) -> crate::Result<Vec<u8>> {
        crate::codec::encode_state(&StateWire::from_state(self))
    }

    /// Reads [`ClusterState::to_bytes`] output back, rebuilding and checking the indexes:
    /// a damaged or foreign encoding is an error, never a wrong state.
    pub fn from_bytes(bytes: &[u8]) -> crate::Result<Self> {
        crate::codec::decode_state(bytes)
    }

    /// Checks the derived indexes against the primary data (tests and debugging).
    pub fn check_consistency(&self) -> Result<(), String> {
        let rebuilt = StateWire::from_state(self)
            .into_state()
            .map_err(|e| format!("state does not rebuild: {e}"))?;
        if rebuilt.sessions != self.sessions {
            return Err("reverse index differs from the sessions".into());
        }
        if rebuilt.per_bucket != self.per_bucket {
            return Err("per-bucket counts differ from the sessions".into());
        }
        if rebuilt.sessions_digest != self.sessions_digest {
            return Err("session digest differs from the sessions".into());
        }
        Ok(())
    }
}

fn push(events: Option<&mut Vec<Applied>>, ev: Applied) {
    if let Some(events) = events {
        events.push(ev);
    }
}

fn sorted_ips(ips: &[Ipv4Addr]) -> Vec<u32> {
    let mut v: Vec<u32> = ips.iter().map(|ip| u32::from(*ip)).collect();
    v.sort_unstable();
    v
}

fn validate_config(config: &ClusterConfig) -> Result<(), String> {
    if config.external_ips.is_empty() {
        return Err("no external IPs: give at least one".into());
    }
    let mut sorted = sorted_ips(&config.external_ips);
    let before = sorted.len();
    sorted.dedup();
    if sorted.len() != before {
        return Err("external IPs contain duplicates".into());
    }
    if let Some(ip) = config
        .external_ips
        .iter()
        .find(|ip| ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
    {
        return Err(format!("{ip} cannot be an external IP"));
    }
    Ok(())
}

fn validate_member(info: &MemberInfo) -> Result<(), String> {
    if info.name.is_empty() {
        return Err("empty name".into());
    }
    if info.name.len() > MAX_NAME_LEN {
        return Err(format!("name longer than {MAX_NAME_LEN} bytes"));
    }
    if info.raft_addr.is_empty() {
        return Err("empty raft address".into());
    }
    Ok(())
}

/// The serialized form of [`ClusterState`] (snapshots): primary data only; the indexes
/// are rebuilt and checked on load.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateWire {
    config: Option<ClusterConfig>,
    next_node_id: NodeId,
    nodes: Vec<(NodeId, NodeRecord)>,
    epoch: Epoch,
    buckets: BucketTable,
    fences: Vec<(BucketId, Fence)>,
    sessions: Vec<SessionRecord>,
}

impl StateWire {
    /// A copy of the primary data. Cheap next to encoding it, so a snapshot holds the
    /// state lock only for this copy and encodes afterwards, without stalling apply.
    pub(crate) fn from_state(state: &ClusterState) -> Self {
        StateWire {
            config: state.config.clone(),
            next_node_id: state.next_node_id,
            nodes: state.nodes.iter().map(|(k, v)| (*k, v.clone())).collect(),
            epoch: state.epoch,
            buckets: state.buckets.clone(),
            fences: state.fences.iter().map(|(b, f)| (*b, *f)).collect(),
            sessions: state.sessions.iter().copied().collect(),
        }
    }

    /// Rebuilds the state and its indexes, refusing anything `apply` could never have
    /// produced (so a damaged snapshot is an error, not a silently wrong state).
    pub(crate) fn into_state(self) -> Result<ClusterState, String> {
        let mut st = ClusterState {
            next_node_id: self.next_node_id,
            epoch: self.epoch,
            ..ClusterState::default()
        };
        for (id, rec) in self.nodes {
            if id >= self.next_node_id {
                return Err(format!(
                    "node {id} is not below the id counter {}",
                    self.next_node_id
                ));
            }
            if st.nodes.insert(id, rec).is_some() {
                return Err(format!("node {id} appears twice"));
            }
        }
        let Some(config) = self.config else {
            if !self.buckets.is_empty()
                || !self.sessions.is_empty()
                || !self.fences.is_empty()
                || self.epoch != Epoch::NONE
            {
                return Err("buckets or sessions without a configuration".into());
            }
            return Ok(st);
        };
        validate_config(&config)?;
        if self.buckets.len() != config.bucket_bits.count() as usize {
            return Err(format!(
                "bucket table has {} entries, configuration says {}",
                self.buckets.len(),
                config.bucket_bits.count()
            ));
        }
        if let Some((bucket, owner)) = self.buckets.iter().find_map(|(b, owner)| {
            let owner = owner?;
            let live = st.nodes.get(&owner).is_some_and(|r| !r.retired);
            (!live).then_some((b, owner))
        }) {
            return Err(format!(
                "bucket {bucket} is owned by {owner}, which is not a live member"
            ));
        }
        for (bucket, fence) in self.fences {
            if self.buckets.owner(bucket).is_none() {
                return Err(format!("bucket {bucket} is fenced but has no owner"));
            }
            if fence.since > self.epoch {
                return Err(format!(
                    "bucket {bucket} is fenced since epoch {}, after the table's epoch {}",
                    fence.since, self.epoch
                ));
            }
            if st.fences.insert(bucket, fence).is_some() {
                return Err(format!("bucket {bucket} is fenced twice"));
            }
        }
        st.buckets = self.buckets;
        st.install_config(config);
        let bits = config_bits(&st);
        st.sessions.reserve(self.sessions.len());
        for rec in self.sessions {
            if !port_in_bucket(bits, rec.external.port, rec.bucket) {
                return Err(format!(
                    "session {:?} breaks the port-in-bucket rule",
                    rec.key
                ));
            }
            if st.external_ips.binary_search(&rec.external.ip).is_err() {
                return Err(format!("session {:?} uses a foreign external IP", rec.key));
            }
            match st.sessions.try_insert(rec) {
                Ok(Inserted::New) => st.count_session(&rec),
                Ok(Inserted::Identical) | Err(Rejection::KeyMapped { .. }) => {
                    return Err(format!("session {:?} appears twice", rec.key));
                }
                Err(_) => return Err(format!("external endpoint {} is used twice", rec.external)),
            }
        }
        Ok(st)
    }
}

fn config_bits(st: &ClusterState) -> BucketBits {
    st.config
        .as_ref()
        .map(|c| c.bucket_bits)
        .unwrap_or_default()
}
