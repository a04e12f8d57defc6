//! What the configuration says the cluster looks like, checked against every steering
//! table before it is installed.
//!
//! A Nat's bucket bits and external IPs never change after it is created, so a table
//! that disagrees with the LB's `bucket_bits` / `external_ips` comes from another
//! cluster (a wrong `cluster` list) or the file is wrong. Steering this machine's
//! traffic by such a table would hand it to workers that translate it to the wrong
//! addresses, so the table is refused, loudly, and `/readyz` says why.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use mfplane_core::BucketBits;

use crate::error::{Error, Result};
use crate::table::SteeringTable;

/// The cluster's fixed parameters as configured; `None` checks nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterExpectation {
    pub bucket_bits: Option<BucketBits>,
    pub external_ips: Option<BTreeSet<Ipv4Addr>>,
}

impl ClusterExpectation {
    /// Checks `table` against the configured values.
    ///
    /// # Errors
    /// [`Error::ClusterMismatch`] naming the setting that disagrees and both values.
    pub fn check(&self, table: &SteeringTable) -> Result<()> {
        if let Some(bits) = self.bucket_bits
            && bits != table.bits
        {
            return Err(Error::ClusterMismatch {
                setting: "bucket_bits",
                configured: bits.get().to_string(),
                cluster: table.bits.get().to_string(),
            });
        }
        if let Some(ips) = &self.external_ips
            && *ips != table.external_ips
        {
            let show = |s: &BTreeSet<Ipv4Addr>| {
                s.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::ClusterMismatch {
                setting: "external_ips",
                configured: show(ips),
                cluster: show(&table.external_ips),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::fixture_table;

    #[test]
    fn refuses_a_table_of_another_cluster() {
        let table = fixture_table(3, BucketBits::DEFAULT, 2, |b| Some(1 + u64::from(b % 2)));
        assert!(ClusterExpectation::default().check(&table).is_ok());
        let same = ClusterExpectation {
            bucket_bits: Some(BucketBits::DEFAULT),
            external_ips: Some(table.external_ips.clone()),
        };
        assert!(same.check(&table).is_ok());
        let bits = ClusterExpectation {
            bucket_bits: BucketBits::new(10),
            ..ClusterExpectation::default()
        };
        let e = bits.check(&table).unwrap_err().to_string();
        assert!(
            e.contains("bucket_bits") && e.contains("10") && e.contains(" 8"),
            "{e}"
        );
        let ips = ClusterExpectation {
            external_ips: Some(BTreeSet::from([Ipv4Addr::new(192, 0, 2, 99)])),
            ..ClusterExpectation::default()
        };
        let e = ips.check(&table).unwrap_err().to_string();
        assert!(
            e.contains("external_ips") && e.contains("192.0.2.99"),
            "{e}"
        );
    }
}
