//! Balanced bucket assignment with minimal movement.
//!
//! A pure function of the current table and the set of members that may own buckets,
//! so that the controller, the property tests and the simulation all agree on it. Every
//! eligible member ends with `floor(B/N)` or `ceil(B/N)` buckets; buckets only move
//! away from members above their target (or from members that may no longer own any),
//! and only to members below it. Ties are broken by node id and bucket id, never by
//! hash order, so the result is deterministic.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use mfplane_core::BucketId;

/// One reassignment: the bucket and its new owner (`None`: unowned).
pub type Move<N> = (BucketId, Option<N>);

/// Computes the moves that balance `table` over `eligible`.
///
/// `table[b]` is the current owner of bucket `b`. Buckets owned by members outside
/// `eligible` (draining, retired, removed, learners) and unowned buckets are handed out;
/// eligible members keep what they own up to their target. With no eligible member the
/// table is left as it is: unowned buckets are worse than buckets on a draining member.
///
/// # Returns
/// The moves in bucket order; empty when the table is already balanced.
pub fn rebalance<N: Ord + Copy>(table: &[Option<N>], eligible: &BTreeSet<N>) -> Vec<Move<N>> {
    let n = eligible.len();
    if n == 0 || table.is_empty() {
        return Vec::new();
    }
    let total = table.len();
    let floor = total / n;
    let extra = total % n;

    // Current buckets of every eligible member, in bucket order.
    let mut held: BTreeMap<N, Vec<usize>> = eligible.iter().map(|&id| (id, Vec::new())).collect();
    let mut free: Vec<usize> = Vec::new();
    for (bucket, owner) in table.iter().enumerate() {
        match owner.and_then(|o| held.get_mut(&o)) {
            Some(list) => list.push(bucket),
            None => free.push(bucket),
        }
    }

    // The `extra` members that get one more bucket are those holding the most already
    // (they then give up the least); ties go to the lower node id.
    let mut by_count: Vec<(N, usize)> = held.iter().map(|(&id, b)| (id, b.len())).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let target: BTreeMap<N, usize> = by_count
        .iter()
        .enumerate()
        .map(|(rank, &(id, _))| (id, floor + usize::from(rank < extra)))
        .collect();

    // Surplus: a member above target gives up its highest-numbered buckets, so the
    // buckets a member keeps are stable across repeated rebalancing.
    for (id, list) in held.iter_mut() {
        let keep = target[id];
        if list.len() > keep {
            free.extend(list.drain(keep..));
        }
    }
    free.sort_unstable();

    // Deficit: members below target take freed buckets in node-id order.
    let mut moves = Vec::with_capacity(free.len());
    let mut free = free.into_iter();
    for (id, list) in &held {
        for _ in list.len()..target[id] {
            if let Some(bucket) = free.next() {
                moves.push((bucket_id(bucket), Some(*id)));
            }
        }
    }
    moves.sort_unstable_by_key(|m| m.0);
    moves
}

/// Bucket indexes come from a table of at most `2^12` entries.
fn bucket_id(index: usize) -> BucketId {
    BucketId(u16::try_from(index).unwrap_or(u16::MAX))
}

/// Applies `moves` to `table` (what the state machine does on commit); used by tests
/// and by the controller to predict the table it is about to propose.
pub fn apply<N: Copy>(table: &mut [Option<N>], moves: &[Move<N>]) {
    for &(bucket, owner) in moves {
        if let Some(slot) = table.get_mut(usize::from(bucket.0)) {
            *slot = owner;
        }
    }
}

/// Counts buckets per owner.
pub fn counts<N: Ord + Copy>(table: &[Option<N>]) -> BTreeMap<N, usize> {
    let mut out = BTreeMap::new();
    for owner in table.iter().flatten() {
        *out.entry(*owner).or_insert(0) += 1;
    }
    out
}

/// Whether every eligible member holds `floor(B/N)` or `ceil(B/N)` buckets and nobody
/// else holds any.
pub fn is_balanced<N: Ord + Copy>(table: &[Option<N>], eligible: &BTreeSet<N>) -> bool {
    if eligible.is_empty() {
        return true;
    }
    let floor = table.len() / eligible.len();
    let ceil = table.len().div_ceil(eligible.len());
    let counts = counts(table);
    table
        .iter()
        .all(|o| o.is_some_and(|o| eligible.contains(&o)))
        && eligible.iter().all(|id| {
            let c = counts.get(id).copied().unwrap_or(0);
            c == floor || c == ceil
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(ids: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        ids.into_iter().collect()
    }

    fn balanced(total: usize, ids: &BTreeSet<u64>) -> Vec<Option<u64>> {
        let mut table = vec![None; total];
        let moves = rebalance(&table, ids);
        apply(&mut table, &moves);
        table
    }

    #[test]
    fn first_assignment_spreads_evenly() {
        let ids = set([1, 2, 3]);
        let table = balanced(256, &ids);
        assert!(is_balanced(&table, &ids));
        let c = counts(&table);
        assert_eq!(c[&1], 86, "the lowest id gets the extra bucket");
        assert_eq!(c[&2], 85);
        assert_eq!(c[&3], 85);
        assert!(
            rebalance(&table, &ids).is_empty(),
            "a balanced table stays put"
        );
    }

    #[test]
    fn no_eligible_member_leaves_the_table_alone() {
        let table = vec![Some(1u64); 16];
        assert!(rebalance(&table, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn draining_member_gives_everything_up() {
        let table = balanced(64, &set([1, 2, 3, 4]));
        let eligible = set([1, 2, 4]);
        let moves = rebalance(&table, &eligible);
        assert_eq!(moves.len(), 16, "exactly the drained member's buckets move");
        assert!(
            moves
                .iter()
                .all(|(b, _)| table[usize::from(b.0)] == Some(3))
        );
        let mut after = table.clone();
        apply(&mut after, &moves);
        assert!(is_balanced(&after, &eligible));
    }

    /// Number of buckets whose owner differs between two tables.
    fn moved(a: &[Option<u64>], b: &[Option<u64>]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn join_and_leave_move_only_the_surplus_for_every_size_up_to_64() {
        for bits in [4u8, 8, 10] {
            let total = 1usize << bits;
            for n in 1..=64u64 {
                let ids = set(1..=n);
                let table = balanced(total, &ids);
                assert!(is_balanced(&table, &ids), "B={total} N={n}");

                // N -> N+1: only the newcomer's share moves, all of it to the newcomer.
                let grown = set(1..=n + 1);
                let mut after = table.clone();
                let moves = rebalance(&table, &grown);
                apply(&mut after, &moves);
                assert!(is_balanced(&after, &grown), "join B={total} N={n}");
                let new_share = counts(&after).get(&(n + 1)).copied().unwrap_or(0);
                assert_eq!(moved(&table, &after), new_share, "join B={total} N={n}");
                assert!(moves.iter().all(|m| m.1 == Some(n + 1)));

                // N -> N-1 (any member leaves): only the leaver's buckets move.
                if n > 1 {
                    for leaver in [1, n / 2 + 1, n] {
                        let shrunk: BTreeSet<u64> =
                            ids.iter().copied().filter(|&i| i != leaver).collect();
                        let mut after = table.clone();
                        let moves = rebalance(&table, &shrunk);
                        apply(&mut after, &moves);
                        assert!(is_balanced(&after, &shrunk), "leave B={total} N={n}");
                        let had = counts(&table).get(&leaver).copied().unwrap_or(0);
                        assert_eq!(
                            moved(&table, &after),
                            had,
                            "leave B={total} N={n} leaver={leaver}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        /// From any table (owners possibly gone, buckets unowned), one rebalance gives a
        /// balanced table, is idempotent, and moves no more than the lower bound: every
        /// bucket of a non-member plus each member's excess over the ceiling, plus the
        /// excess that has to go because too many members sit at the ceiling.
        #[test]
        fn any_table_becomes_balanced_with_minimal_moves(
            bits in 4u8..=9,
            members in proptest::collection::btree_set(1u64..80, 1..64),
            owners in proptest::collection::vec(proptest::option::of(0u64..100), 512),
        ) {
            let total = 1usize << bits;
            let table: Vec<Option<u64>> = owners[..total].to_vec();
            let moves = rebalance(&table, &members);
            let mut after = table.clone();
            apply(&mut after, &moves);
            prop_assert!(is_balanced(&after, &members));
            prop_assert!(rebalance(&after, &members).is_empty());
            prop_assert_eq!(moves.len(), moved(&table, &after));

            let n = members.len();
            let (floor, extra) = (total / n, total % n);
            let before = counts(&table);
            let held: Vec<usize> = members.iter().map(|m| before.get(m).copied().unwrap_or(0)).collect();
            let orphans = total - held.iter().sum::<usize>();
            let over_ceil: usize = held.iter().map(|&h| h.saturating_sub(floor + usize::from(extra > 0))).sum();
            let at_or_above_ceil = held.iter().filter(|&&h| extra > 0 && h > floor).count();
            let forced = at_or_above_ceil.saturating_sub(extra);
            prop_assert_eq!(moves.len(), orphans + over_ceil + forced);
        }
    }
}
