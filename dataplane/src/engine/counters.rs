//! Verdicts and counters: every packet the engine sees ends in exactly one verdict,
//! and every drop has a reason with its own counter.

use crate::wire;

/// Why a packet was dropped. `label()` is the stable metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame ends inside a header.
    Truncated,
    /// A length field disagrees with the frame or the header.
    BadLength,
    /// IPv4 IHL below 5.
    BadIhl,
    /// IP version is not 4 in an IPv4 frame.
    BadVersion,
    /// The IPv4 header checksum (or an ICMP error's checksum) does not verify.
    BadChecksum,
    /// A later fragment whose first fragment was not seen (or has timed out).
    FragmentNoHead,
    /// Neither from an inside prefix nor to an external IP. The frame is untouched,
    /// so an I/O layer that also carries the host's own traffic may hand it to the
    /// kernel instead of dropping it.
    NotOurs,
    /// A new outbound flow of a bucket this engine does not own for allocation.
    NotOwner,
    /// Inbound (or an ICMP error) with no matching session.
    NoSession,
    /// Inbound from a remote the mapping's filter does not admit (RFC 4787 APDF).
    Filtered,
    /// No free external port in the flow's bucket.
    Exhausted,
    /// The inside host reached `max_sessions_per_host`.
    HostLimit,
    /// The session table reached `max_sessions`.
    TableFull,
    /// An IP protocol the NAT does not translate.
    UnsupportedProtocol,
    /// An ICMP type the NAT does not translate (not echo, not an error), or an
    /// error quoting something it cannot translate.
    UnsupportedIcmp,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 15] = [
        DropReason::Truncated,
        DropReason::BadLength,
        DropReason::BadIhl,
        DropReason::BadVersion,
        DropReason::BadChecksum,
        DropReason::FragmentNoHead,
        DropReason::NotOurs,
        DropReason::NotOwner,
        DropReason::NoSession,
        DropReason::Filtered,
        DropReason::Exhausted,
        DropReason::HostLimit,
        DropReason::TableFull,
        DropReason::UnsupportedProtocol,
        DropReason::UnsupportedIcmp,
    ];

    /// The metric label, stable across releases.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadLength => "bad_length",
            DropReason::BadIhl => "bad_ihl",
            DropReason::BadVersion => "bad_version",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::FragmentNoHead => "fragment_no_head",
            DropReason::NotOurs => "not_ours",
            DropReason::NotOwner => "not_owner",
            DropReason::NoSession => "no_session",
            DropReason::Filtered => "filtered",
            DropReason::Exhausted => "exhausted",
            DropReason::HostLimit => "host_limit",
            DropReason::TableFull => "table_full",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::UnsupportedIcmp => "unsupported_icmp",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    /// `true` for reasons that mean the packet itself is malformed.
    pub const fn is_malformed(self) -> bool {
        matches!(
            self,
            DropReason::Truncated
                | DropReason::BadLength
                | DropReason::BadIhl
                | DropReason::BadVersion
                | DropReason::BadChecksum
        )
    }
}

impl From<wire::Error> for DropReason {
    fn from(e: wire::Error) -> Self {
        match e {
            wire::Error::Truncated => DropReason::Truncated,
            wire::Error::BadLength => DropReason::BadLength,
            wire::Error::BadIhl => DropReason::BadIhl,
            wire::Error::BadVersion => DropReason::BadVersion,
            wire::Error::BadChecksum => DropReason::BadChecksum,
            wire::Error::Unsupported => DropReason::UnsupportedProtocol,
        }
    }
}

/// Which way a translated packet went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Inside -> outside: source rewritten to the external endpoint.
    Outbound,
    /// Outside -> external endpoint: destination rewritten to the inside endpoint.
    Inbound,
    /// Inside -> own external endpoint -> inside: both rewritten (RFC 4787 REQ-9).
    Hairpin,
}

/// What the caller does with the frame after [`crate::engine::Engine::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Translated in place: forward it.
    Translated(Direction),
    /// Not IPv4 (ARP, IPv6, ...): hand it to the host stack untouched.
    Pass,
    /// Drop it; the reason has been counted.
    Drop(DropReason),
}

/// Running totals; read them with [`crate::engine::Engine::counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub passed: u64,
    pub outbound: u64,
    pub inbound: u64,
    pub hairpin: u64,
    pub icmp_errors_translated: u64,
    pub fragments_tracked: u64,
    pub fragments_followed: u64,
    pub sessions_created: u64,
    pub sessions_imported: u64,
    pub sessions_removed: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `(label, count)` for every drop reason, for metrics export.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.label(), self.drops[r.index()]))
    }

    pub(crate) fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Translated(Direction::Outbound) => self.outbound += 1,
            Verdict::Translated(Direction::Inbound) => self.inbound += 1,
            Verdict::Translated(Direction::Hairpin) => self.hairpin += 1,
            Verdict::Pass => self.passed += 1,
            Verdict::Drop(r) => self.drops[r.index()] += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_dense_and_labels_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut l: Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        l.sort_unstable();
        l.dedup();
        assert_eq!(l.len(), DropReason::ALL.len());
    }
}
