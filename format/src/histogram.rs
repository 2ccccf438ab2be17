//! The `histogram_ns` buckets: what a bucket covers in each layout, and the
//! one rule by which a quantile is read from buckets.

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One bucket of a `histogram_ns`: `count` regions lasted from `lower_ns`
/// to less than `lower_ns + width_ns`.
///
/// Written as `[lower_ns, count, width_ns]` (layout 2). Layout 1's
/// `[lower_ns, count]` reads with the width [`v1_bucket_width`] gives; a
/// width of 0 reads as 1.
///
/// ```
/// use runmetrics_format::Bucket;
/// let b: Bucket = serde_json::from_str("[1024, 3, 8]").unwrap();
/// assert_eq!(b, Bucket { lower_ns: 1024, count: 3, width_ns: 8 });
/// assert_eq!(b.middle_ns(), 1027.5);
/// let v1: Bucket = serde_json::from_str("[1024, 3]").unwrap();
/// assert_eq!(v1.width_ns, 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The shortest duration the bucket holds, in ns.
    pub lower_ns: u64,
    /// How many regions it holds.
    pub count: u64,
    /// How many nanoseconds it covers (at least 1).
    pub width_ns: u64,
}

impl Bucket {
    /// The bucket's middle, in ns: where a quantile falling in it is put.
    ///
    /// ```
    /// # use runmetrics_format::Bucket;
    /// assert_eq!(Bucket { lower_ns: 100, count: 1, width_ns: 1 }.middle_ns(), 100.0);
    /// ```
    pub fn middle_ns(&self) -> f64 {
        self.lower_ns as f64 + (self.width_ns.max(1) - 1) as f64 / 2.0
    }
}

/// The width in ns of a layout-1 `histogram_ns` bucket (`[lower, count]`)
/// whose lower bound is `lower`: 1 under 128 ns, then 64 buckets per power
/// of two (the rule runmetrics wrote them by).
///
/// ```
/// use runmetrics_format::v1_bucket_width;
/// assert_eq!(v1_bucket_width(127), 1);
/// assert_eq!(v1_bucket_width(128), 2);
/// assert_eq!(v1_bucket_width(999_424), 8_192);
/// ```
pub fn v1_bucket_width(lower: u64) -> u64 {
    if lower < 128 {
        1
    } else {
        1 << (63 - lower.leading_zeros() - 6)
    }
}

/// The sum of a histogram's counts; `None` past `u64::MAX`.
///
/// ```
/// use runmetrics_format::{histogram_total, Bucket};
/// let b = |count| Bucket { lower_ns: 0, count, width_ns: 1 };
/// assert_eq!(histogram_total(&[b(1), b(2)]), Some(3));
/// assert_eq!(histogram_total(&[b(u64::MAX), b(1)]), None);
/// ```
pub fn histogram_total(buckets: &[Bucket]) -> Option<u64> {
    buckets
        .iter()
        .try_fold(0u64, |sum, b| sum.checked_add(b.count))
}

/// The value at quantile `q` (0 to 1) of `buckets` (ascending by lower
/// bound, as a run file lists them, or merged from several), in seconds:
/// the middle of the bucket holding the `ceil(q · n)`-th region (at least
/// the first), clamped to the exact `min_seconds` and `max_seconds` when
/// they are known, so that no quantile lies outside the durations that
/// happened. `None` for an empty histogram or one whose counts add up past
/// `u64::MAX`.
///
/// This is the one rule every reader of run files uses (`runmetrics
/// compare` merges runs' buckets and reads their quantiles by it).
///
/// ```
/// use runmetrics_format::{quantile_seconds, Bucket};
/// let buckets = [
///     Bucket { lower_ns: 100, count: 50, width_ns: 1 },
///     Bucket { lower_ns: 999_424, count: 50, width_ns: 8_192 },
/// ];
/// assert_eq!(quantile_seconds(&buckets, 0.5, None, None), Some(100e-9));
/// // The top bucket's middle lies past the longest region: clamped.
/// assert_eq!(quantile_seconds(&buckets, 0.99, None, Some(1e-3)), Some(1e-3));
/// ```
pub fn quantile_seconds(
    buckets: &[Bucket],
    q: f64,
    min_seconds: Option<f64>,
    max_seconds: Option<f64>,
) -> Option<f64> {
    let n = histogram_total(buckets)?;
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0u64;
    let bucket = buckets.iter().find(|b| {
        seen = seen.saturating_add(b.count);
        seen >= rank
    })?;
    let v = bucket.middle_ns() / 1e9;
    let v = min_seconds.map_or(v, |m| v.max(m));
    Some(max_seconds.map_or(v, |m| v.min(m)))
}

impl Serialize for Bucket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.lower_ns, self.count, self.width_ns).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bucket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bucket, D::Error> {
        d.deserialize_seq(BucketVisitor)
    }
}

struct BucketVisitor;

impl<'de> Visitor<'de> for BucketVisitor {
    type Value = Bucket;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a histogram bucket: [lower_ns, count, width_ns] or [lower_ns, count]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bucket, A::Error> {
        let lower_ns: u64 = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?;
        let count: u64 = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(1, &self))?;
        let width_ns = match seq.next_element::<u64>()? {
            Some(w) => w.max(1),
            None => v1_bucket_width(lower_ns),
        };
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::invalid_length(4, &self));
        }
        Ok(Bucket {
            lower_ns,
            count,
            width_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_a_buckets_middle_within_min_and_max() {
        let b = |lower_ns, count, width_ns| Bucket {
            lower_ns,
            count,
            width_ns,
        };
        let h = [b(100, 50, 1), b(999_424, 50, 8_192)];
        let p99 = quantile_seconds(&h, 0.99, None, None).unwrap();
        assert!((p99 - 1_003_519.5e-9).abs() < 1e-12, "{p99}");
        assert_eq!(quantile_seconds(&h, 0.0, Some(2e-7), None), Some(2e-7));
        assert_eq!(quantile_seconds(&[], 0.5, None, None), None);
        assert_eq!(quantile_seconds(&[b(5, 0, 1)], 0.5, None, None), None);
    }

    #[test]
    fn buckets_of_both_layouts_read_and_others_do_not() {
        let read = |s: &str| serde_json::from_str::<Bucket>(s);
        assert_eq!(read("[200, 1]").unwrap().width_ns, 2);
        assert_eq!(read("[200, 1, 0]").unwrap().width_ns, 1);
        assert!(read("[200]").is_err());
        assert!(read("[200, 1, 2, 3]").is_err());
        assert!(read("[-1, 1]").is_err());
        assert_eq!(
            serde_json::to_string(&read("[200, 1, 2]").unwrap()).unwrap(),
            "[200,1,2]"
        );
    }
}
