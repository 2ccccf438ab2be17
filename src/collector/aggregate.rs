//! Exact totals and histograms (HDR's buckets at 3 significant digits, kept
//! sparse) per site, and the per-name count summary.

use super::histogram::{self, value_at_quantile, Histogram};
use crate::local::tally::Delta;
use crate::ticks::Clock;

/// Sub-buckets per power of two of the histogram a run file carries per
/// phase and function: a bucket is at most 1/64 (1.6 %) of its values wide,
/// and values under 128 ns are exact.
pub(crate) const FILE_SUB_BUCKETS: u64 = 64;

/// The lower bound of the run-file histogram bucket that holds `ns`.
pub(crate) fn file_bucket(ns: u64) -> u64 {
    if ns < 2 * FILE_SUB_BUCKETS {
        return ns;
    }
    let shift = 63 - ns.leading_zeros() - FILE_SUB_BUCKETS.trailing_zeros();
    (ns >> shift) << shift
}

/// Every duration of one phase or function in a run.
#[derive(Clone)]
pub(crate) struct Durations {
    count: u64,
    total_ns: u64,
    min_ns: u64,
    max_ns: u64,
    /// 3 significant digits, from 0 to `u64::MAX` ns; only the buckets
    /// with a count take memory.
    histogram: Histogram,
    pub(crate) resources: Option<ResourceTotals>,
}

/// Sums of what `#[measure(resources = true)]` captured per call.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ResourceTotals {
    pub(crate) calls: u64,
    pub(crate) cpu_ns_total: u64,
    pub(crate) rss_delta_bytes_total: i64,
    pub(crate) rss_delta_bytes_max: i64,
}

/// The summary the reports print for one site.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DurationStats {
    pub(crate) count: u64,
    pub(crate) total_ns: u64,
    pub(crate) min_ns: u64,
    pub(crate) mean_ns: f64,
    pub(crate) p50_ns: u64,
    pub(crate) p90_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) p999_ns: u64,
    pub(crate) max_ns: u64,
}

impl Durations {
    pub(crate) fn new() -> Durations {
        Durations {
            count: 0,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            histogram: Histogram::default(),
            resources: None,
        }
    }

    pub(crate) fn record(&mut self, ns: u64) {
        self.count += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.histogram.record_n(ns, 1);
    }

    /// Adds what a thread's tally counted: each bucket's regions at the
    /// bucket's middle, and the exact count, total, min and max.
    pub(crate) fn add_delta(&mut self, delta: &Delta, clock: &Clock) {
        let ns = |ticks: u64| clock.delta_as_nanos(0, ticks);
        self.count += delta.count();
        self.total_ns = self.total_ns.saturating_add(ns(delta.ticks));
        if let Some(min) = delta.min() {
            self.min_ns = self.min_ns.min(ns(min));
        }
        if let Some(max) = delta.max() {
            self.max_ns = self.max_ns.max(ns(max));
        }
        // The tally's buckets come in ascending order, and so do their
        // middles in nanoseconds: one pass over the histogram.
        self.histogram.add_counts(
            delta
                .buckets
                .iter()
                .map(|&((low, width), n)| (histogram::index(ns(low + width / 2)), n)),
        );
    }

    /// Adds `other`'s durations (count, total, min, max and histogram; not
    /// its resources) to these.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn add_durations(&mut self, other: &Durations) {
        self.count += other.count;
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.histogram.add(&other.histogram);
    }

    /// The histogram at the run file's coarser precision: (lower bound in
    /// ns, count) for each non-empty bucket of [`file_bucket`], ascending.
    pub(crate) fn file_histogram(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (bucket, count) in self.histogram.iter() {
            let ns = histogram::median(bucket);
            let key = file_bucket(ns.clamp(self.min_ns, self.max_ns));
            match out.last_mut() {
                Some((k, n)) if *k == key => *n += count,
                _ => out.push((key, count)),
            }
        }
        out
    }

    /// How many durations, and their exact sum in nanoseconds.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn count_and_total_ns(&self) -> (u64, u64) {
        (self.count, self.total_ns)
    }

    /// The histogram of every duration so far.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    pub(crate) fn add_resources(&mut self, cpu_ns: u64, rss_delta_bytes: i64) {
        let r = self.resources.get_or_insert(ResourceTotals {
            rss_delta_bytes_max: i64::MIN,
            ..ResourceTotals::default()
        });
        r.calls += 1;
        r.cpu_ns_total = r.cpu_ns_total.saturating_add(cpu_ns);
        r.rss_delta_bytes_total = r.rss_delta_bytes_total.saturating_add(rss_delta_bytes);
        r.rss_delta_bytes_max = r.rss_delta_bytes_max.max(rss_delta_bytes);
    }

    /// The durations added since `base`, an earlier copy of these (`None`:
    /// since the start): exact count and total, and quantiles from the
    /// difference of the histograms, kept within the exact min and max.
    pub(crate) fn since(&self, base: Option<&Durations>) -> WindowStats {
        let Some(base) = base else {
            let s = self.stats();
            return WindowStats {
                count: s.count,
                total_ns: s.total_ns,
                mean_ns: s.mean_ns,
                p50_ns: s.p50_ns,
                p90_ns: s.p90_ns,
                p99_ns: s.p99_ns,
            };
        };
        let count = self.count - base.count;
        let total_ns = self.total_ns.saturating_sub(base.total_ns);
        if count == 0 {
            return WindowStats::default();
        }
        // `base` is an earlier state of this histogram, so every one of its
        // values is here too: the difference is exact, and walked in place.
        let in_window = self.histogram.len() - base.histogram.len();
        let q = |q: f64| {
            value_at_quantile(self.histogram.since(&base.histogram), in_window, q)
                .clamp(self.min_ns, self.max_ns)
        };
        WindowStats {
            count,
            total_ns,
            mean_ns: total_ns as f64 / count as f64,
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
        }
    }

    pub(crate) fn stats(&self) -> DurationStats {
        if self.count == 0 {
            return DurationStats {
                count: 0,
                total_ns: 0,
                min_ns: 0,
                mean_ns: 0.0,
                p50_ns: 0,
                p90_ns: 0,
                p99_ns: 0,
                p999_ns: 0,
                max_ns: 0,
            };
        }
        // The histogram answers with the top of a bucket; the exact min and
        // max bound it.
        let q = |q: f64| {
            value_at_quantile(self.histogram.iter(), self.histogram.len(), q)
                .clamp(self.min_ns, self.max_ns)
        };
        DurationStats {
            count: self.count,
            total_ns: self.total_ns,
            min_ns: self.min_ns,
            mean_ns: self.total_ns as f64 / self.count as f64,
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: self.max_ns,
        }
    }
}

/// The durations of one site within a window of a run (between two writes
/// of its file): no min or max, which the histograms cannot give exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct WindowStats {
    pub(crate) count: u64,
    pub(crate) total_ns: u64,
    pub(crate) mean_ns: f64,
    pub(crate) p50_ns: u64,
    pub(crate) p90_ns: u64,
    pub(crate) p99_ns: u64,
}

/// `observe_counts` values of one name over a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountStats {
    /// The value with the latest raw time, across threads.
    pub(crate) last: i64,
    pub(crate) last_at: u64,
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) observations: u64,
}

impl CountStats {
    pub(crate) fn new(value: i64, at: u64) -> CountStats {
        CountStats {
            last: value,
            last_at: at,
            min: value,
            max: value,
            observations: 1,
        }
    }

    pub(crate) fn observe(&mut self, value: i64, at: u64) {
        self.merge(1, value, at, value, value);
    }

    /// Adds `n` values, the last of which was `last` at raw time `at`.
    pub(crate) fn merge(&mut self, n: u64, last: i64, at: u64, min: i64, max: i64) {
        if at >= self.last_at {
            self.last = last;
            self.last_at = at;
        }
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        self.observations += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_histogram_has_64_buckets_per_power_of_two() {
        assert_eq!(file_bucket(0), 0);
        assert_eq!(file_bucket(127), 127);
        assert_eq!(file_bucket(128), 128);
        assert_eq!(file_bucket(129), 128);
        assert_eq!(file_bucket(131), 130);
        assert_eq!(file_bucket(1_000_000), 999_424);
        let width = |ns: u64| {
            let shift = 63 - ns.leading_zeros() - 6;
            1u64 << shift
        };
        assert!(width(1_000_000) * 64 <= 1 << 20);
        let mut d = Durations::new();
        for ns in [100, 100, 1_000_000, 1_000_100, 5_000_000_000] {
            d.record(ns);
        }
        let h = d.file_histogram();
        assert_eq!(h.iter().map(|b| b.1).sum::<u64>(), 5);
        assert_eq!(h[0], (100, 2));
        assert_eq!(h[1], (999_424, 2), "1.0 ms and 1.0001 ms share a bucket");
        assert!(h.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// The value at quantile `q` of sorted `v`, as HDR defines it (the
    /// smallest value with at least `q` of the values at or below it).
    fn oracle(v: &[u64], q: f64) -> u64 {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    #[test]
    fn percentiles_match_a_sorted_vector_within_hdr_precision() {
        // A deterministic, skewed spread from 1 ns to ~1 h.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = Vec::new();
        let mut d = Durations::new();
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1 + (x % 1_000) * (1 << (x % 32));
            values.push(v);
            d.record(v);
        }
        values.sort_unstable();
        let s = d.stats();
        for (q, got) in [
            (0.5, s.p50_ns),
            (0.9, s.p90_ns),
            (0.99, s.p99_ns),
            (0.999, s.p999_ns),
        ] {
            let want = oracle(&values, q);
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 1e-3, "q{q}: got {got}, want {want} (rel err {err})");
        }
        assert_eq!(s.min_ns, values[0]);
        assert_eq!(s.max_ns, *values.last().unwrap());
        assert_eq!(s.total_ns, values.iter().sum::<u64>());
        assert_eq!(s.count, values.len() as u64);
    }

    #[test]
    fn added_durations_are_the_durations_of_both() {
        let (mut a, mut b, mut both) = (Durations::new(), Durations::new(), Durations::new());
        for ns in [5, 1_000, 70_000] {
            a.record(ns);
            both.record(ns);
        }
        for ns in [3, 9_000_000_000] {
            b.record(ns);
            both.record(ns);
        }
        a.add_durations(&b);
        assert_eq!(a.stats(), both.stats());
        assert_eq!(a.count_and_total_ns(), (5, 9_000_071_008));
    }

    #[test]
    fn a_window_holds_only_what_came_after_its_base() {
        let mut d = Durations::new();
        for _ in 0..1_000 {
            d.record(10_000_000); // 10 ms, before the window
        }
        let base = d.clone();
        for ns in 1..=100 {
            d.record(ns * 1_000); // 1..100 µs, in the window
        }
        let w = d.since(Some(&base));
        assert_eq!((w.count, w.total_ns), (100, 5_050_000));
        assert!((49_900..=50_100).contains(&w.p50_ns), "{w:?}");
        assert!((98_900..=99_100).contains(&w.p99_ns), "{w:?}");
        assert_eq!(d.since(Some(&d.clone())), WindowStats::default());
        assert_eq!(d.since(None).count, 1_100);
    }

    #[test]
    fn zero_and_huge_values_are_kept() {
        let mut d = Durations::new();
        d.record(0);
        d.record(5 * 3_600 * 1_000_000_000);
        let s = d.stats();
        assert_eq!(s.min_ns, 0);
        assert_eq!(s.max_ns, 5 * 3_600 * 1_000_000_000);
        assert_eq!(s.count, 2);
    }

    #[test]
    fn counts_keep_last_min_max_and_observations() {
        let mut c = CountStats::new(5, 10);
        c.observe(-2, 20);
        c.observe(9, 30);
        c.observe(3, 40);
        c.merge(2, 7, 35, 1, 8); // another thread's, the last one earlier
        assert_eq!(
            c,
            CountStats {
                last: 3,
                last_at: 40,
                min: -2,
                max: 9,
                observations: 6
            }
        );
    }
}
