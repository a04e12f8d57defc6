//! The external-IP set as the program reads it: [`EXT_GROUPS`] groups of
//! `EXT_WAYS` IPs, an IP in group `ext_group(ip, seed)`.
//!
//! An exact set in an array map costs the program one inlined lookup and eight
//! compares, where a BPF hash map costs a helper walk with jhash: the difference was
//! about 20 ns on every inbound and every passed IPv4 packet. The price is that a
//! group can overflow; the builder then tries the next seed, so a set the LB accepts
//! (at most `MAX_EXTERNAL_IPS`, about one IP per group on average) always fits.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use mfplane_core::lb_maps::{EXT_GROUPS, ExternalGroup, ext_group};

use crate::error::{Error, Result};

/// Seeds tried before giving up. With at most one IP per group on average, one seed
/// fails with a probability near 1e-3, so this bound is never reached in practice.
const SEED_ATTEMPTS: u32 = 64;

/// The set's groups (`EXT_GROUPS` of them) and the seed that placed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalSet {
    pub seed: u32,
    pub groups: Vec<ExternalGroup>,
}

impl ExternalSet {
    /// Places `ips` with the first seed under which no group overflows.
    ///
    /// # Errors
    /// [`Error::ExternalSetUnplaceable`] if every seed overflows some group (not
    /// expected for a set within `MAX_EXTERNAL_IPS`) or an IP is 0.0.0.0, which marks
    /// unused ways and is never a valid external IP.
    pub fn build(ips: &BTreeSet<Ipv4Addr>) -> Result<Self> {
        if ips.contains(&Ipv4Addr::UNSPECIFIED) {
            return Err(Error::ExternalSetUnplaceable {
                count: ips.len(),
                reason: "0.0.0.0 is not an external IP",
            });
        }
        'seeds: for attempt in 0..SEED_ATTEMPTS {
            // Spread the seeds over the whole u32 range.
            let seed = attempt.wrapping_mul(0x9e37_79b9);
            let mut groups = vec![ExternalGroup::default(); EXT_GROUPS as usize];
            for ip in ips {
                let ip = u32::from(*ip);
                if !groups[ext_group(ip, seed) as usize].insert(ip) {
                    continue 'seeds;
                }
            }
            return Ok(ExternalSet { seed, groups });
        }
        Err(Error::ExternalSetUnplaceable {
            count: ips.len(),
            reason: "a group overflowed under every seed",
        })
    }

    /// `true` if `ip` is in the set, computed as the program does.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.groups
            .get(ext_group(ip, self.seed) as usize)
            .is_some_and(|g| g.contains(ip))
    }

    /// Every IP in the set.
    pub fn ips(&self) -> BTreeSet<Ipv4Addr> {
        self.groups
            .iter()
            .flat_map(|g| g.ips)
            .filter(|ip| *ip != 0)
            .map(Ipv4Addr::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mfplane_core::lb_maps::MAX_EXTERNAL_IPS;

    use super::*;

    #[test]
    fn members_and_only_members_are_found() {
        let ips: BTreeSet<Ipv4Addr> = (1..=300u32)
            .map(|i| Ipv4Addr::from(0xc633_6400 + i))
            .collect();
        let set = ExternalSet::build(&ips).unwrap();
        assert_eq!(set.groups.len(), EXT_GROUPS as usize);
        assert_eq!(set.ips(), ips);
        for ip in &ips {
            assert!(set.contains(*ip), "{ip}");
        }
        for i in 301..5000u32 {
            assert!(!set.contains(Ipv4Addr::from(0xc633_6400 + i)));
        }
        assert!(!set.contains(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn a_full_set_of_contiguous_or_scattered_ips_fits() {
        // Contiguous blocks (how operators allocate) and a scattered set, both at the
        // maximum size.
        let blocks: BTreeSet<Ipv4Addr> = (0..MAX_EXTERNAL_IPS)
            .map(|i| Ipv4Addr::from(0xcb00_7100 + i))
            .collect();
        let scattered: BTreeSet<Ipv4Addr> = (0..MAX_EXTERNAL_IPS)
            .map(|i| Ipv4Addr::from(i.wrapping_mul(0x0101_0107) | 1))
            .collect();
        for ips in [blocks, scattered] {
            let set = ExternalSet::build(&ips).unwrap();
            assert_eq!(set.ips(), ips);
            assert!(ips.iter().all(|ip| set.contains(*ip)));
        }
    }

    #[test]
    fn unspecified_is_refused() {
        let ips = BTreeSet::from([Ipv4Addr::UNSPECIFIED]);
        let err = ExternalSet::build(&ips).unwrap_err().to_string();
        assert!(err.contains("0.0.0.0"), "{err}");
    }
}
