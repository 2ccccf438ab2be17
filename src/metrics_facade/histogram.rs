//! A fixed-size, lock-free histogram of `f64` values: 128 log-linear buckets
//! per power of two of magnitude (a bucket is 1/128 of its lower bound wide),
//! for magnitudes in `[2^MIN_EXP, 2^MAX_EXP)`, one table per sign, each
//! power of two's buckets allocated on its first value. Below `2^MIN_EXP`
//! (zero included) a value counts in the zero bucket, at or above
//! `2^MAX_EXP` in its sign's overflow bucket; `count`, `sum`, `min` and `max`
//! are exact for every finite value. NaN and infinities are counted apart
//! and enter no figure. Memory never grows with the number of values.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use runmetrics_format::MetricHistogram;

/// Buckets per power of two.
pub(crate) const SUB: usize = 128;
const SUB_BITS: u32 = 7;
/// The least and one past the greatest exponent with buckets of its own.
pub(crate) const MIN_EXP: i32 = -64;
pub(crate) const MAX_EXP: i32 = 64;
const POWERS: usize = (MAX_EXP - MIN_EXP) as usize;

/// The overflow bucket's width: everything from `2^MAX_EXP` up (finite, so
/// the file can write it).
const OVERFLOW_WIDTH: f64 = f64::MAX;

type Chunk = [AtomicU64; SUB];

/// One sign's buckets.
struct Side {
    chunks: [AtomicPtr<Chunk>; POWERS],
    overflow: AtomicU64,
}

impl Side {
    fn new() -> Side {
        Side {
            chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            overflow: AtomicU64::new(0),
        }
    }

    #[inline]
    fn add(&self, magnitude: f64) {
        let bits = magnitude.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
        if exp >= MAX_EXP {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let power = (exp - MIN_EXP) as usize;
        let sub = ((bits >> (52 - SUB_BITS)) as usize) & (SUB - 1);
        let mut chunk = self.chunks[power].load(Ordering::Acquire);
        if chunk.is_null() {
            chunk = self.make(power);
        }
        // SAFETY: a chunk, once published, is freed only by `Drop for Side`,
        // which has `&mut self`.
        unsafe { &(*chunk)[sub] }.fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn make(&self, power: usize) -> *mut Chunk {
        let fresh = Box::into_raw(Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        match self.chunks[power].compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: `fresh` was never published.
                drop(unsafe { Box::from_raw(fresh) });
                theirs
            }
        }
    }

    /// `(lower magnitude, count, width)` of every non-empty bucket, in
    /// increasing magnitude, the overflow bucket last (`OVERFLOW_WIDTH`).
    fn buckets(&self) -> Vec<(f64, u64, f64)> {
        let mut out = Vec::new();
        for (power, chunk) in self.chunks.iter().enumerate() {
            let chunk = chunk.load(Ordering::Acquire);
            if chunk.is_null() {
                continue;
            }
            let base = 2f64.powi(power as i32 + MIN_EXP);
            let width = base / SUB as f64;
            // SAFETY: as in `add`.
            for (sub, n) in unsafe { &*chunk }.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((base + width * sub as f64, n, width));
                }
            }
        }
        let over = self.overflow.load(Ordering::Relaxed);
        if over > 0 {
            out.push((2f64.powi(MAX_EXP), over, OVERFLOW_WIDTH));
        }
        out
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        for chunk in &mut self.chunks {
            let p = *chunk.get_mut();
            if !p.is_null() {
                // SAFETY: made by `Box::into_raw` in `make`, freed once here.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// `f64` to a `u64` whose unsigned order is the `f64`'s order.
#[inline]
fn ordered(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn unordered(o: u64) -> f64 {
    f64::from_bits(if o >> 63 == 1 { o & !(1 << 63) } else { !o })
}

/// One `histogram!` key's values.
pub(crate) struct Histogram {
    positive: Side,
    negative: Side,
    zero: AtomicU64,
    count: AtomicU64,
    /// `f64` bits.
    sum: AtomicU64,
    /// [`ordered`] values.
    min: AtomicU64,
    max: AtomicU64,
    nan: AtomicU64,
    infinite: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            positive: Side::new(),
            negative: Side::new(),
            zero: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            nan: AtomicU64::new(0),
            infinite: AtomicU64::new(0),
        }
    }

    /// Records `v`; never allocates but a power of two's first bucket.
    #[inline]
    pub(crate) fn record(&self, v: f64) {
        if !v.is_finite() {
            if v.is_nan() {
                self.nan.fetch_add(1, Ordering::Relaxed);
            } else {
                self.infinite.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let m = v.abs();
        if m < 2f64.powi(MIN_EXP) {
            self.zero.fetch_add(1, Ordering::Relaxed);
        } else if v > 0.0 {
            self.positive.add(m);
        } else {
            self.negative.add(m);
        }
        let o = ordered(v);
        if o < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(o, Ordering::Relaxed);
        }
        if o > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(o, Ordering::Relaxed);
        }
        let mut sum = self.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(sum) + v).to_bits();
            match self
                .sum
                .compare_exchange_weak(sum, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => sum = now,
            }
        }
        // Last, so that a snapshot's count never exceeds its buckets' by
        // more than the values being recorded at that moment.
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// NaN and infinite values refused.
    pub(crate) fn refused(&self) -> (u64, u64) {
        (
            self.nan.load(Ordering::Relaxed),
            self.infinite.load(Ordering::Relaxed),
        )
    }

    /// `(lower, count, width)` of every non-empty bucket in increasing
    /// order of value: values in `[lower, lower + width)`, or for a negative
    /// bucket (a positive one mirrored) in `(lower, lower + width]`.
    pub(crate) fn buckets(&self) -> Vec<(f64, u64, f64)> {
        let mut out: Vec<(f64, u64, f64)> = self
            .negative
            .buckets()
            .into_iter()
            .rev()
            .map(|(lo, n, w)| (-(lo + w), n, w))
            .collect();
        let zero = self.zero.load(Ordering::Relaxed);
        if zero > 0 {
            let tiny = 2f64.powi(MIN_EXP);
            out.push((-tiny, zero, 2.0 * tiny));
        }
        out.extend(self.positive.buckets());
        out
    }

    /// The entry of `meta.histograms`, given its name, labels and unit.
    pub(crate) fn entry(
        &self,
        name: String,
        labels: serde_json::Map<String, serde_json::Value>,
        unit: Option<String>,
    ) -> MetricHistogram {
        let buckets = self.buckets();
        let count = self.count.load(Ordering::Relaxed);
        let (min, max) = (
            self.min.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
        );
        let seen = count > 0 && min != u64::MAX;
        let (min, max) = (seen.then(|| unordered(min)), seen.then(|| unordered(max)));
        let q = |q: f64| quantile(&buckets, q).map(|v| clamp(v, min, max));
        MetricHistogram {
            name,
            labels,
            unit,
            count,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            min,
            max,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            histogram: buckets
                .iter()
                .map(|&(lo, n, w)| [lo, n as f64, w])
                .collect(),
        }
    }
}

fn clamp(v: f64, min: Option<f64>, max: Option<f64>) -> f64 {
    match (min, max) {
        (Some(lo), Some(hi)) => v.max(lo).min(hi),
        _ => v,
    }
}

/// The `q` quantile: the midpoint of the bucket holding the value of rank
/// `ceil(q * n)` (1-based).
pub(crate) fn quantile(buckets: &[(f64, u64, f64)], q: f64) -> Option<f64> {
    let n: u64 = buckets.iter().map(|b| b.1).sum();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for &(lo, c, w) in buckets {
        seen += c;
        if seen >= rank {
            return Some(if w < OVERFLOW_WIDTH {
                lo + w / 2.0
            } else {
                lo.max(-(2f64.powi(MAX_EXP)))
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lies_in_its_bucket() {
        let h = Histogram::new();
        for v in [1.0, 1.5, 3.0e-9, 7.0e12, -2.5, -1.0e-3, 0.0, 1e300, -1e300] {
            let one = Histogram::new();
            one.record(v);
            h.record(v);
            let b = one.buckets();
            assert_eq!(b.len(), 1, "{v}");
            let (lo, n, w) = b[0];
            assert_eq!(n, 1);
            let inside = if v < 0.0 {
                lo <= v && v <= lo + w
            } else {
                lo <= v && v < lo + w
            };
            assert!(
                inside && lo.is_finite() && w.is_finite(),
                "{v} in [{lo}, +{w})"
            );
        }
        assert_eq!(h.count.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn nan_and_infinities_are_counted_apart() {
        let h = Histogram::new();
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        h.record(f64::NEG_INFINITY);
        h.record(2.0);
        assert_eq!(h.refused(), (1, 2));
        let e = h.entry("x".into(), Default::default(), None);
        assert_eq!(
            (e.count, e.sum, e.min, e.max),
            (1, 2.0, Some(2.0), Some(2.0))
        );
    }

    #[test]
    fn ordered_keeps_order() {
        let vs = [-1e300, -2.0, -0.5, -0.0, 0.0, 1e-300, 3.0, 1e300];
        for w in vs.windows(2) {
            assert!(ordered(w[0]) <= ordered(w[1]));
            assert_eq!(unordered(ordered(w[0])).to_bits(), w[0].to_bits());
        }
    }
}
