//! The steering table as the agent holds it, and its translation into one BPF map
//! generation.
//!
//! [`SteeringTable::apply`] is the single boundary where Steering messages (strings
//! and integers off the wire) become validated values; a message that fails
//! validation changes nothing, so the LB keeps steering by the last good table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

use mfplane_core::lb_maps::{LbGenConfig, MAX_EXTERNAL_IPS};
use mfplane_core::maps::{DataplaneConfig, MAX_OWNERS, Owner};
use mfplane_core::{BucketBits, BucketId, FlowHashKey};
use mfplane_proto::steering::SteeringUpdate;

use crate::error::{Error, Result};
use crate::external_set::ExternalSet;

/// A worker node as the Steering stream names it (`0` on the wire means "none").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// Version of the bucket table; 0 means "no table yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// Where an owner receives steered packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnerAddr {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// An Ethernet address, parsed from and shown as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts
                .next()
                .ok_or_else(|| format!("{s:?} is not a MAC (aa:bb:cc:dd:ee:ff)"))?;
            if p.len() != 2 {
                return Err(format!("{s:?} is not a MAC (aa:bb:cc:dd:ee:ff)"));
            }
            *b = u8::from_str_radix(p, 16)
                .map_err(|_| format!("{s:?} is not a MAC (aa:bb:cc:dd:ee:ff)"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?} is not a MAC (aa:bb:cc:dd:ee:ff)"));
        }
        Ok(MacAddr(out))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The whole steering state at one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringTable {
    pub epoch: Epoch,
    pub bits: BucketBits,
    /// Owner of each bucket, indexed by bucket number; `bits.count()` entries.
    pub buckets: Vec<Option<NodeId>>,
    /// Every owner's data-plane address.
    pub owners: BTreeMap<NodeId, OwnerAddr>,
    /// The cluster's external IPs.
    pub external_ips: BTreeSet<Ipv4Addr>,
    /// The cluster's flow-hash key: outbound buckets must be computed exactly as the
    /// workers compute them when they allocate.
    pub hash_key: FlowHashKey,
}

/// One BPF map generation: what [`crate::datapath::Datapath::install`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationImage {
    /// The table config and the external set's seed.
    pub config: LbGenConfig,
    /// Owner of each bucket (`bits.count()` entries), written into the bucket entry
    /// itself so the program steers with one lookup.
    pub buckets: Vec<Option<Owner>>,
    /// The external IPs.
    pub external: ExternalSet,
}

impl SteeringTable {
    /// The table after `update`, given the table in use (`None` before the first).
    ///
    /// # Returns
    /// `Ok(None)` for a stale update (epoch not newer than the current table) and for
    /// epoch 0 (no table in the cluster yet), which the caller skips.
    ///
    /// # Errors
    /// [`Error::InvalidUpdate`] when the update is malformed, is incremental without a
    /// base table or with different bucket bits, or leaves a bucket owned by a node
    /// without an address. The caller keeps its table and resynchronizes.
    pub fn apply(current: Option<&SteeringTable>, update: &SteeringUpdate) -> Result<Option<Self>> {
        let invalid = |reason: String| Error::InvalidUpdate {
            epoch: update.epoch,
            reason,
        };
        // Epoch 0 is a cluster that has not assigned buckets yet: nothing to steer by.
        if update.epoch == 0 {
            return Ok(None);
        }
        if let Some(cur) = current
            && update.epoch <= cur.epoch.0
            && !(update.full && update.epoch == cur.epoch.0)
        {
            return Ok(None);
        }
        let bits = u8::try_from(update.bucket_bits)
            .ok()
            .and_then(BucketBits::new)
            .ok_or_else(|| invalid(format!("bucket_bits {} out of range", update.bucket_bits)))?;
        let hash_key = update.flow_hash_key.map(|k| FlowHashKey::new(k.k0, k.k1));
        let mut table = match (update.full, current) {
            (true, _) => SteeringTable {
                epoch: Epoch(update.epoch),
                bits,
                buckets: vec![None; bits.count() as usize],
                owners: BTreeMap::new(),
                external_ips: BTreeSet::new(),
                hash_key: hash_key.ok_or_else(|| {
                    invalid(
                        "full table without flow_hash_key: the member is older than this LB; upgrade the members first".into(),
                    )
                })?,
            },
            (false, Some(cur)) if cur.bits == bits => {
                let mut t = cur.clone();
                t.epoch = Epoch(update.epoch);
                t
            }
            (false, Some(cur)) => {
                return Err(invalid(format!(
                    "incremental update changes bucket bits {} -> {}",
                    cur.bits.get(),
                    bits.get()
                )));
            }
            (false, None) => return Err(invalid("incremental update without a full table".into())),
        };
        if hash_key.is_some_and(|k| k != table.hash_key) {
            // A cluster's key never changes; a different one means another cluster's
            // stream, and steering by it would send flows to the wrong owners.
            return Err(invalid(
                "the flow hash key differs from the table's: is this member in another cluster?"
                    .into(),
            ));
        }
        for b in &update.buckets {
            let slot = table.buckets.get_mut(b.bucket as usize).ok_or_else(|| {
                invalid(format!(
                    "bucket {} out of range for {} buckets",
                    b.bucket,
                    bits.count()
                ))
            })?;
            *slot = (b.node_id != 0).then_some(NodeId(b.node_id));
        }
        for o in &update.owners {
            let ip = Ipv4Addr::from_str(&o.data_ip).map_err(|_| {
                invalid(format!(
                    "node {}: data_ip {:?} is not IPv4",
                    o.node_id, o.data_ip
                ))
            })?;
            let mac = MacAddr::from_str(&o.data_mac)
                .map_err(|e| invalid(format!("node {}: data_mac: {e}", o.node_id)))?;
            table
                .owners
                .insert(NodeId(o.node_id), OwnerAddr { ip, mac });
        }
        if update.full || !update.external_ips.is_empty() {
            table.external_ips = update
                .external_ips
                .iter()
                .map(|s| match Ipv4Addr::from_str(s) {
                    Ok(ip) if ip.is_unspecified() => {
                        Err(invalid("external IP 0.0.0.0 is not an address".into()))
                    }
                    Ok(ip) => Ok(ip),
                    Err(_) => Err(invalid(format!("external IP {s:?} is not IPv4"))),
                })
                .collect::<Result<_>>()?;
        }
        // Owners no bucket refers to are dropped, so the owner map never fills up with
        // retired nodes.
        let used: BTreeSet<NodeId> = table.buckets.iter().flatten().copied().collect();
        table.owners.retain(|id, _| used.contains(id));
        if let Some(orphan) = used.iter().find(|id| !table.owners.contains_key(id)) {
            return Err(invalid(format!(
                "node {} owns buckets but has no address",
                orphan.0
            )));
        }
        if table.owners.len() > MAX_OWNERS as usize {
            return Err(Error::TooManyOwners {
                count: table.owners.len(),
                max: MAX_OWNERS,
            });
        }
        if table.external_ips.len() > MAX_EXTERNAL_IPS as usize {
            return Err(Error::TooManyExternalIps {
                count: table.external_ips.len(),
                max: MAX_EXTERNAL_IPS,
            });
        }
        Ok(Some(table))
    }

    /// The owner of `bucket`, if any.
    pub fn owner_of(&self, bucket: BucketId) -> Option<&OwnerAddr> {
        let node = (*self.buckets.get(bucket.0 as usize)?)?;
        self.owners.get(&node)
    }

    /// Number of buckets without an owner (their packets are dropped).
    pub fn unowned_buckets(&self) -> usize {
        self.buckets.iter().filter(|b| b.is_none()).count()
    }

    /// The map generation for this table.
    ///
    /// # Errors
    /// [`Error::ExternalSetUnplaceable`] when the external IPs do not fit the
    /// program's set (0.0.0.0 among them).
    pub fn image(&self) -> Result<GenerationImage> {
        let external = ExternalSet::build(&self.external_ips)?;
        Ok(GenerationImage {
            config: LbGenConfig {
                table: DataplaneConfig::new(self.hash_key, self.bits, self.epoch.0),
                ext_seed: external.seed,
                _pad: 0,
            },
            buckets: self
                .buckets
                .iter()
                .map(|b| {
                    let addr = self.owners.get(&(*b)?)?;
                    Some(Owner::new(addr.mac.0, u32::from(addr.ip)))
                })
                .collect(),
            external,
        })
    }
}

#[cfg(test)]
mod tests {
    use mfplane_proto::steering::{BucketOwner, FlowHashKey as PbKey, Owner as PbOwner};

    use super::*;

    fn owner(id: u64, last: u8) -> PbOwner {
        PbOwner {
            node_id: id,
            data_ip: format!("192.0.2.{last}"),
            data_mac: format!("02:00:00:00:00:{last:02x}"),
        }
    }

    fn full(epoch: u64) -> SteeringUpdate {
        SteeringUpdate {
            epoch,
            bucket_bits: 4,
            full: true,
            buckets: (0..16)
                .map(|b| BucketOwner {
                    bucket: b,
                    node_id: 1 + u64::from(b % 2),
                })
                .collect(),
            owners: vec![owner(1, 11), owner(2, 12)],
            external_ips: vec!["198.51.100.1".into()],
            flow_hash_key: Some(PbKey {
                k0: KEY.k0,
                k1: KEY.k1,
            }),
        }
    }

    const KEY: FlowHashKey = FlowHashKey::new(7, 9);

    #[test]
    fn full_then_incremental() {
        let t = SteeringTable::apply(None, &full(3)).unwrap().unwrap();
        assert_eq!(t.epoch, Epoch(3));
        assert_eq!(
            t.owner_of(BucketId(1)).unwrap().ip,
            Ipv4Addr::new(192, 0, 2, 12)
        );
        let inc = SteeringUpdate {
            epoch: 4,
            bucket_bits: 4,
            full: false,
            buckets: vec![
                BucketOwner {
                    bucket: 1,
                    node_id: 3,
                },
                BucketOwner {
                    bucket: 2,
                    node_id: 0,
                },
            ],
            owners: vec![owner(3, 13)],
            external_ips: vec![],
            flow_hash_key: None,
        };
        let t2 = SteeringTable::apply(Some(&t), &inc).unwrap().unwrap();
        assert_eq!(
            t2.owner_of(BucketId(1)).unwrap().mac.to_string(),
            "02:00:00:00:00:0d"
        );
        assert!(t2.owner_of(BucketId(2)).is_none());
        assert_eq!(t2.unowned_buckets(), 1);
        assert_eq!(t2.external_ips.len(), 1);
        let img = t2.image().unwrap();
        assert_eq!(img.config.table.hash_key, KEY);
        assert_eq!(img.buckets.len(), 16);
        assert_eq!(img.buckets[2], None);
        assert_eq!(img.buckets[1].unwrap().ipv4, 0xc000_020d);
        assert_eq!(img.buckets[1].unwrap().mac, [2, 0, 0, 0, 0, 0x0d]);
        assert_eq!(img.config.table.epoch, 4);
        assert!(img.external.contains(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(img.external.ips().len(), 1);
        // Stale and repeated updates are skipped.
        assert!(SteeringTable::apply(Some(&t2), &inc).unwrap().is_none());
    }

    #[test]
    fn the_flow_hash_key_comes_with_the_full_table_and_never_changes() {
        let mut u = full(1);
        u.flow_hash_key = None;
        let err = SteeringTable::apply(None, &u).unwrap_err().to_string();
        assert!(err.contains("without flow_hash_key"), "{err}");

        let t = SteeringTable::apply(None, &full(1)).unwrap().unwrap();
        assert_eq!(t.hash_key, KEY);
        let mut other = full(2);
        other.full = false;
        other.flow_hash_key = Some(PbKey { k0: 1, k1: 2 });
        let err = SteeringTable::apply(Some(&t), &other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("flow hash key differs"), "{err}");
        other.flow_hash_key = Some(PbKey {
            k0: KEY.k0,
            k1: KEY.k1,
        });
        let t2 = SteeringTable::apply(Some(&t), &other).unwrap().unwrap();
        assert_eq!(t2.hash_key, KEY, "the same key again is fine");
    }

    #[test]
    fn epoch_zero_is_no_table_yet() {
        let mut u = full(0);
        u.bucket_bits = 0;
        u.buckets.clear();
        assert!(SteeringTable::apply(None, &u).unwrap().is_none());
    }

    #[test]
    fn bad_updates_are_rejected_with_reasons() {
        let mut u = full(1);
        u.bucket_bits = 20;
        assert!(
            SteeringTable::apply(None, &u)
                .unwrap_err()
                .to_string()
                .contains("bucket_bits 20")
        );
        let mut u = full(1);
        u.owners[0].data_ip = "nope".into();
        assert!(
            SteeringTable::apply(None, &u)
                .unwrap_err()
                .to_string()
                .contains("not IPv4")
        );
        let mut u = full(1);
        u.owners.pop();
        assert!(
            SteeringTable::apply(None, &u)
                .unwrap_err()
                .to_string()
                .contains("no address")
        );
        let mut u = full(1);
        u.buckets.push(BucketOwner {
            bucket: 16,
            node_id: 1,
        });
        assert!(
            SteeringTable::apply(None, &u)
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        let mut u = full(1);
        u.full = false;
        assert!(SteeringTable::apply(None, &u).is_err());
        let mut u = full(1);
        u.external_ips.push("0.0.0.0".into());
        assert!(
            SteeringTable::apply(None, &u)
                .unwrap_err()
                .to_string()
                .contains("0.0.0.0")
        );
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "02:aB:00:00:00:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:00:00:00:ff");
        assert!("02:ab:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:ab:00:00:00:00:01".parse::<MacAddr>().is_err());
        assert!("zz:ab:00:00:00:00".parse::<MacAddr>().is_err());
    }
}
