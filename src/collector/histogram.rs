//! A sparse histogram with the buckets of an HDR histogram at 3 significant
//! digits: values under 2 048 have a bucket each, and each power of two
//! above is cut into 1 024 buckets, so a bucket is at most 1/1 024 of its
//! values wide (the same buckets as `hdrhistogram` with a lowest value of 1
//! and 3 digits, up to `u64::MAX`). Only the buckets with a count are kept,
//! as (index, count) in ascending order: a phase whose regions all last
//! about the same costs a few of them, where a dense HDR histogram holds
//! every bucket from 1 ns to its largest value (13 312 counters, 104 KiB,
//! up to 2 ms).

use crate::slot::merge_new;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 10;
/// Values below this have a bucket of their own.
const LINEAR: u64 = 2 << SUB_BITS;

/// The index of the bucket that holds `value`.
pub(crate) fn index(value: u64) -> u32 {
    if value < LINEAR {
        return value as u32;
    }
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    (shift << SUB_BITS) + (value >> shift) as u32
}

/// The lowest value of bucket `index`, and its width.
fn bounds(index: u32) -> (u64, u64) {
    if u64::from(index) < LINEAR {
        return (u64::from(index), 1);
    }
    let shift = (index >> SUB_BITS) - 1;
    let mantissa = u64::from(index - (shift << SUB_BITS));
    (mantissa << shift, 1 << shift)
}

/// The lowest value of bucket `index`.
pub(crate) fn lowest(index: u32) -> u64 {
    bounds(index).0
}

/// The highest value of bucket `index`.
pub(crate) fn highest(index: u32) -> u64 {
    let (low, width) = bounds(index);
    low + (width - 1)
}

/// The middle of bucket `index` (its lowest value plus half its width).
pub(crate) fn median(index: u32) -> u64 {
    let (low, width) = bounds(index);
    low + width / 2
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
    /// Counts `n` values of `value`.
    pub(crate) fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        let key = index(value);
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

/// The value at quantile `q` of the `total` values counted in `buckets`
/// (ascending), as HDR gives it: the highest value of the first bucket at
/// which at least `q` of the values are counted (the lowest for `q` = 0);
/// 0 when there are none.
pub(crate) fn value_at_quantile(
    buckets: impl Iterator<Item = (u32, u64)>,
    total: u64,
    q: f64,
) -> u64 {
    let q = q.min(1.0);
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut counted = 0;
    for (key, n) in buckets {
        counted += n;
        if counted >= rank {
            return if q == 0.0 { lowest(key) } else { highest(key) };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_three_digits_narrow() {
        let mut next = 0u64;
        let last = index(u64::MAX);
        for i in 0..=last {
            let (low, width) = bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(highest(i)), i);
            assert!(width == 1 || width * 1024 <= low, "at most 1/1024 wide");
            next = low.wrapping_add(width);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        assert_eq!(highest(last), u64::MAX);
        assert_eq!(index(2_047), 2_047);
        assert_eq!(bounds(index(2_048)), (2_048, 2));
        assert_eq!(median(index(1_000_001)), 999_936 + 256);
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
