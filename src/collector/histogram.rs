//! A sparse histogram over the tally's buckets (`local::tally`): values
//! under 128 ticks have a bucket each, and each power of two above is cut
//! into 128 buckets, so a bucket is at most 1/128 of its values wide. The
//! collector keeps every region in the bucket its thread counted it in, in
//! ticks; a run's [`Scale`] turns a bucket into the nanoseconds it covers
//! only when a figure is written, and turns each region's ticks into a
//! duration inside that range ([`duration_ns`]), so a region's event and
//! its bucket always agree. Only the buckets with a count are kept, as
//! (index, count) in ascending order.

use crate::local::tally::{bucket_index, bucket_span};
use crate::slot::merge_new;
use crate::ticks::Scale;

pub(crate) use crate::local::tally::bucket_index as index;

/// The nanoseconds bucket `index` covers under `scale`: from its lowest
/// value to the next bucket's with a greater one (a bucket under a
/// nanosecond wide shares its nanosecond with its neighbours); no end for
/// the top bucket.
pub(crate) fn ns_range(scale: &Scale, index: u32) -> (u64, Option<u64>) {
    let low = scale.ns(bucket_span(index).0);
    let mut at = index;
    loop {
        let (lo, width) = bucket_span(at);
        let Some(width) = width else {
            return (low, None);
        };
        let end = scale.ns(lo + width);
        if end > low {
            return (low, Some(end));
        }
        at += 1;
    }
}

/// A region's duration in nanoseconds: its ticks scaled, rounded down, and
/// kept in the range of the bucket it is counted in, so less than 2 ns
/// below the exact value (the keeping moves it only where a bucket is a
/// few nanoseconds wide or less).
pub(crate) fn duration_ns(scale: &Scale, ticks: u64) -> u64 {
    let plain = scale.ns(ticks);
    match ns_range(scale, bucket_index(ticks)) {
        (_, Some(end)) => plain.min(end - 1),
        (_, None) => plain,
    }
}

/// Counts per bucket, only the buckets with a count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    /// (bucket index, count), ascending by index, every count above 0.
    buckets: Vec<(u32, u64)>,
    /// The sum of the counts.
    total: u64,
}

impl Histogram {
    /// Counts `n` regions of `ticks`.
    pub(crate) fn record_n(&mut self, ticks: u64, n: u64) {
        if n == 0 {
            return;
        }
        let key = index(ticks);
        self.total += n;
        match self.buckets.binary_search_by_key(&key, |b| b.0) {
            Ok(at) => self.buckets[at].1 += n,
            Err(at) => self.buckets.insert(at, (key, n)),
        }
    }

    /// Counts each `(index, n)`, best given in ascending order of index
    /// (then in one pass); any order gives the same counts.
    pub(crate) fn add_counts(&mut self, counts: impl IntoIterator<Item = (u32, u64)>) {
        let mut adds: Vec<(u32, u64)> = Vec::new();
        let mut at = 0;
        let mut previous = 0;
        for (key, n) in counts {
            if n == 0 {
                continue;
            }
            if key < previous {
                // Out of order: the new buckets so far join, and the walk
                // starts over.
                merge_new(&mut self.buckets, &adds);
                adds.clear();
                at = 0;
            }
            previous = key;
            self.total += n;
            while self.buckets.get(at).is_some_and(|b| b.0 < key) {
                at += 1;
            }
            match self.buckets.get_mut(at) {
                Some(b) if b.0 == key => b.1 += n,
                _ => match adds.last_mut() {
                    Some(a) if a.0 == key => a.1 += n,
                    _ => adds.push((key, n)),
                },
            }
        }
        merge_new(&mut self.buckets, &adds);
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn add(&mut self, other: &Histogram) {
        self.add_counts(other.buckets.iter().copied());
    }

    /// How many values.
    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// Each bucket with a count: (index, count), ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.buckets.iter().copied()
    }

    /// The counts added since `base`, an earlier state of this histogram:
    /// each bucket's count less `base`'s, the buckets that grew only.
    pub(crate) fn since<'a>(
        &'a self,
        base: &'a Histogram,
    ) -> impl Iterator<Item = (u32, u64)> + 'a {
        let mut before = base.buckets.iter().peekable();
        self.iter().filter_map(move |(key, n)| {
            while before.peek().is_some_and(|b| b.0 < key) {
                before.next();
            }
            let was = before.peek().filter(|b| b.0 == key).map_or(0, |b| b.1);
            let grew = n.saturating_sub(was);
            (grew > 0).then_some((key, grew))
        })
    }
}

/// The bucket of quantile `q` of the `total` values counted in `buckets`
/// (ascending), as HDR gives it: the first bucket at which at least `q` of
/// the values are counted; `None` when there are none.
pub(crate) fn bucket_at_quantile(
    buckets: impl Iterator<Item = (u32, u64)>,
    total: u64,
    q: f64,
) -> Option<u32> {
    let q = q.min(1.0);
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut counted = 0;
    for (key, n) in buckets {
        counted += n;
        if counted >= rank {
            return Some(key);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lies_in_its_buckets_range_and_ranges_tile() {
        // A 2.6 GHz TSC, a tick per ns, and slower counters.
        for ns_per_tick in [0.385_187_5, 1.0, 2.5, 41.666] {
            let scale = Scale::fixed(ns_per_tick);
            let mut ticks: u64 = 0;
            while ticks < 1 << 40 {
                let d = duration_ns(&scale, ticks);
                let (low, end) = ns_range(&scale, index(ticks));
                assert!(
                    low <= d && end.is_none_or(|e| d < e),
                    "{ticks} ticks: {d} ns"
                );
                let exact = ticks as f64 * ns_per_tick;
                let below = exact - d as f64;
                assert!(
                    (0.0..2.0).contains(&below),
                    "{ticks} ticks: {d} ns, not {exact}"
                );
                // Where this bucket's range ends, the next range with another
                // lowest value starts.
                if let Some(end) = end {
                    let mut next = index(ticks) + 1;
                    while ns_range(&scale, next).0 < end {
                        assert_eq!(ns_range(&scale, next), (low, Some(end)));
                        next += 1;
                    }
                    assert_eq!(ns_range(&scale, next).0, end);
                }
                ticks += 1 + ticks / 97;
            }
        }
    }

    #[test]
    fn counts_in_any_order_are_the_same_counts() {
        let values = [5u64, 70_000, 3, 9_000_000_000, 70_001, 5, 2_048, 2_049];
        let mut one_by_one = Histogram::default();
        for &v in &values {
            one_by_one.record_n(v, 2);
        }
        let mut sorted: Vec<(u32, u64)> = values.iter().map(|&v| (index(v), 2)).collect();
        sorted.sort_unstable();
        let mut ascending = Histogram::default();
        ascending.add_counts(sorted.iter().copied());
        let mut shuffled = Histogram::default();
        shuffled.add_counts(values.iter().rev().map(|&v| (index(v), 1)));
        shuffled.add_counts(values.iter().map(|&v| (index(v), 1)));
        assert_eq!(ascending, one_by_one);
        assert_eq!(shuffled, one_by_one);
        assert_eq!(one_by_one.len(), 16);
        assert!(one_by_one
            .iter()
            .zip(one_by_one.iter().skip(1))
            .all(|(a, b)| a.0 < b.0));
        let mut twice = one_by_one.clone();
        twice.add(&one_by_one);
        assert_eq!(twice.len(), 32);
        let grown: Vec<_> = twice.since(&one_by_one).collect();
        assert_eq!(grown, one_by_one.iter().collect::<Vec<_>>());
        assert_eq!(twice.since(&twice).count(), 0);
    }
}
