//! A session's state between packets: its replication record, when it was last
//! used, and for TCP where the connection is (RFC 5382).
//!
//! TCP is tracked per mapping, with three kinds of state:
//! - *transitory* (SYN sent, closing after a FIN, reset): idle timeout
//!   `tcp_transitory` (>= 4 min, RFC 5382 REQ-5);
//! - *established* (a SYN went out and an ACK came back, or the session was
//!   imported from another worker): idle timeout `tcp_established` (>= 2 h 4 min).
//!
//! A new outbound SYN on a closing or reset mapping reopens it: the mapping is
//! endpoint-independent (RFC 5382 REQ-1), so a new connection from the same inside
//! endpoint keeps its external endpoint.

use mfplane_core::{Proto, SessionRecord};

use super::config::Timeouts;
use crate::wire::tcp::Flags;

/// Where a TCP connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// Opened from inside; waiting for the answer.
    SynSent,
    /// Both directions seen.
    Established,
    /// A FIN went either way.
    Closing,
    /// A RST went either way.
    Reset,
}

impl TcpState {
    /// The next state after a packet with `flags`, `outbound` or not.
    pub fn next(self, flags: Flags, outbound: bool) -> TcpState {
        if flags.contains(Flags::RST) {
            return TcpState::Reset;
        }
        if outbound && flags.contains(Flags::SYN) && !flags.contains(Flags::ACK) {
            // A new connection attempt from inside; an established mapping stays
            // established (several connections may share the mapping).
            return match self {
                TcpState::Established => TcpState::Established,
                _ => TcpState::SynSent,
            };
        }
        if flags.contains(Flags::FIN) {
            return TcpState::Closing;
        }
        // Established once the outside acknowledges: a SYN-ACK after our SYN, the
        // SYN-ACK of a simultaneous open, or any ACK of a connection picked up mid-
        // stream (a mapping created by a non-SYN segment starts transitory).
        match self {
            TcpState::SynSent if flags.contains(Flags::ACK) && !outbound => TcpState::Established,
            s => s,
        }
    }

    /// `true` for the states timed out by the transitory timer.
    pub const fn is_transitory(self) -> bool {
        !matches!(self, TcpState::Established)
    }
}

/// Whether this engine allocated the session or learned it from replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Allocated here, by the bucket owner.
    Local,
    /// Installed by [`crate::engine::Engine::import`] (committed elsewhere).
    Imported,
}

/// One session in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub record: SessionRecord,
    /// Last packet that refreshed the idle timer (ms, the engine's clock).
    pub last_seen_ms: u64,
    /// TCP state; `Established` for imported TCP sessions, unused for UDP/ICMP.
    pub tcp: TcpState,
    pub origin: Origin,
    /// For address-and-port-dependent filtering: set once this engine has seen an
    /// outbound packet of the session. An imported session admits inbound packets
    /// until then, so a failover does not cut flows whose permissions were learned
    /// on the old owner.
    pub seen_outbound: bool,
}

impl Session {
    /// The idle timeout that applies now.
    pub fn timeout_ms(&self, t: &Timeouts) -> u64 {
        let d = match self.record.key.proto {
            Proto::Udp => t.udp,
            Proto::Icmp => t.icmp,
            Proto::Tcp if self.tcp.is_transitory() => t.tcp_transitory,
            Proto::Tcp => t.tcp_established,
        };
        d.as_millis() as u64
    }

    /// `true` if idle for longer than its timeout at `now_ms`.
    pub fn is_expired(&self, now_ms: u64, t: &Timeouts) -> bool {
        now_ms.saturating_sub(self.last_seen_ms) > self.timeout_ms(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: Flags = Flags::SYN;
    const SYNACK: Flags = Flags(0x12);
    const ACK: Flags = Flags::ACK;
    const FINACK: Flags = Flags(0x11);
    const RST: Flags = Flags::RST;

    #[test]
    fn three_way_handshake_establishes() {
        let s = TcpState::SynSent.next(SYNACK, false);
        assert_eq!(s, TcpState::Established);
        assert_eq!(s.next(ACK, true), TcpState::Established);
    }

    #[test]
    fn fin_and_rst_are_transitory() {
        assert_eq!(TcpState::Established.next(FINACK, true), TcpState::Closing);
        assert_eq!(TcpState::Established.next(RST, false), TcpState::Reset);
        assert!(TcpState::Closing.is_transitory() && TcpState::Reset.is_transitory());
    }

    #[test]
    fn only_the_outside_can_establish() {
        // Outbound ACKs alone (a scan, or a pick-up mid-stream) stay transitory.
        assert_eq!(TcpState::SynSent.next(ACK, true), TcpState::SynSent);
        assert_eq!(TcpState::SynSent.next(ACK, false), TcpState::Established);
    }

    #[test]
    fn new_syn_reopens_a_closed_mapping() {
        assert_eq!(TcpState::Closing.next(SYN, true), TcpState::SynSent);
        assert_eq!(TcpState::Reset.next(SYN, true), TcpState::SynSent);
        assert_eq!(TcpState::Established.next(SYN, true), TcpState::Established);
    }
}
