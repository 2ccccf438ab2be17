//! Exact totals and histograms (the tally's buckets, kept sparse) per site,
//! in ticks, and the per-name count summary. Figures in nanoseconds come
//! from one run's [`Scale`] when they are read.

use super::histogram::{self, bucket_at_quantile, duration_ns, ns_range, Histogram};
use crate::local::tally::Delta;
use crate::ticks::Scale;
/// One bucket of the histogram a run file carries per phase and function
/// (the format crate's, `[lower_ns, lower_ns + width_ns)`).
pub(crate) use runmetrics_format::Bucket as FileBucket;

/// Every duration of one phase or function in a run, in ticks.
#[derive(Clone)]
pub(crate) struct Durations {
    count: u64,
    total_ticks: u64,
    min_ticks: u64,
    max_ticks: u64,
    /// The tally's buckets; only the buckets with a count take memory.
    histogram: Histogram,
    pub(crate) resources: Option<ResourceTotals>,
    /// Regions of sampled timing counted but not timed: in no bucket, no
    /// sum; `count` and the histogram hold the timed ones only.
    untimed: u64,
    /// The `n` of sampled timing last seen (0: never sampled).
    one_in: u32,
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
    /// For an entry of sampled timing: which regions were timed, and the
    /// standard errors of the estimates above.
    pub(crate) sampled: Option<SampledStats>,
}

/// The estimates of a sampled entry. Of `count` regions, `timed` were (a
/// random sample: strides uniform in 1 to `2n - 1`); the total is
/// estimated as count × the timed regions' mean, its standard error as
/// count × s / √timed × √(1 − timed / count) (s the timed durations'
/// standard deviation, from the histogram's bucket middles; the last factor
/// the finite-population correction). A quantile is the timed sample's, its
/// standard error half the distance between the sample's quantiles at
/// q ± √(q(1 − q) / timed) (the order statistics one standard error of the
/// rank away). Min and max are the timed regions'.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SampledStats {
    pub(crate) one_in: u32,
    pub(crate) timed: u64,
    /// The exact sum of the timed regions.
    pub(crate) timed_total_ns: u64,
    /// `None` with fewer than two regions timed.
    pub(crate) total_se_ns: Option<f64>,
    pub(crate) p50_se_ns: Option<f64>,
    pub(crate) p90_se_ns: Option<f64>,
    pub(crate) p99_se_ns: Option<f64>,
    pub(crate) p999_se_ns: Option<f64>,
}

impl Durations {
    pub(crate) fn new() -> Durations {
        Durations {
            count: 0,
            total_ticks: 0,
            min_ticks: u64::MAX,
            max_ticks: 0,
            histogram: Histogram::default(),
            resources: None,
            untimed: 0,
            one_in: 0,
        }
    }

    /// Counts one region of `ticks`.
    pub(crate) fn record(&mut self, ticks: u64) {
        self.count += 1;
        self.total_ticks = self.total_ticks.saturating_add(ticks);
        self.min_ticks = self.min_ticks.min(ticks);
        self.max_ticks = self.max_ticks.max(ticks);
        self.histogram.record_n(ticks, 1);
    }

    /// Adds what a thread's tally counted: each bucket's regions in the
    /// same bucket, and the exact count, total, min and max.
    pub(crate) fn add_delta(&mut self, delta: &Delta) {
        self.untimed += delta.untimed;
        if delta.one_in != 0 {
            self.one_in = delta.one_in;
        }
        self.count += delta.count();
        self.total_ticks = self.total_ticks.saturating_add(delta.ticks);
        if let Some(min) = delta.min() {
            self.min_ticks = self.min_ticks.min(min);
        }
        if let Some(max) = delta.max() {
            self.max_ticks = self.max_ticks.max(max);
        }
        // The tally's buckets come in ascending order: one pass.
        self.histogram.add_counts(
            delta
                .buckets
                .iter()
                .map(|&((low, _), n)| (histogram::index(low), n)),
        );
    }

    /// Adds `other`'s durations (count, total, min, max and histogram; not
    /// its resources) to these.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn add_durations(&mut self, other: &Durations) {
        self.untimed += other.untimed;
        if other.one_in != 0 {
            self.one_in = other.one_in;
        }
        self.count += other.count;
        self.total_ticks = self.total_ticks.saturating_add(other.total_ticks);
        self.min_ticks = self.min_ticks.min(other.min_ticks);
        self.max_ticks = self.max_ticks.max(other.max_ticks);
        self.histogram.add(&other.histogram);
    }

    /// The histogram as the run file lists it under `scale`: each non-empty
    /// bucket's nanoseconds and count, ascending, buckets that share their
    /// nanoseconds (under a nanosecond wide) as one. The top bucket, which
    /// has no end, ends after the greatest duration.
    pub(crate) fn file_histogram(&self, scale: &Scale) -> Vec<FileBucket> {
        let mut out: Vec<FileBucket> = Vec::new();
        let max_ns = duration_ns(scale, self.max_ticks);
        for (bucket, count) in self.histogram.iter() {
            let (low_ns, end) = ns_range(scale, bucket);
            let end = end.unwrap_or(max_ns.saturating_add(1).max(low_ns + 1));
            match out.last_mut() {
                Some(b) if b.lower_ns == low_ns => b.count += count,
                _ => out.push(FileBucket {
                    lower_ns: low_ns,
                    count,
                    width_ns: end - low_ns,
                }),
            }
        }
        out
    }

    /// How many regions, and their sum in nanoseconds: exact, or for
    /// sampled timing the exact count and the estimated total.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn count_and_total_ns(&self, scale: &Scale) -> (u64, u64) {
        let total = scale.ns(self.total_ticks);
        (
            self.count + self.untimed,
            self.estimate(self.count, self.untimed, total),
        )
    }

    /// Regions counted for each one timed (1 unless sampled; 0 when none
    /// was timed): what a timed bucket count stands for.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn per_timed(&self) -> f64 {
        match (self.count, self.untimed) {
            (_, 0) => 1.0,
            (0, _) => 0.0,
            (k, u) => (k + u) as f64 / k as f64,
        }
    }

    /// The estimated total of `timed + untimed` regions whose `timed`
    /// sum to `total_ns`: count × mean of the timed.
    fn estimate(&self, timed: u64, untimed: u64, total_ns: u64) -> u64 {
        if untimed == 0 || timed == 0 {
            return total_ns;
        }
        (total_ns as f64 * ((timed + untimed) as f64 / timed as f64)).round() as u64
    }

    /// The estimates' figures when some regions went untimed (or the
    /// site is sampled).
    fn sampled(&self, scale: &Scale, timed_total_ns: u64) -> Option<SampledStats> {
        if self.untimed == 0 && self.one_in <= 1 {
            return None;
        }
        let k = self.count;
        let n = k + self.untimed;
        let mut out = SampledStats {
            one_in: self.one_in.max(1),
            timed: k,
            timed_total_ns,
            total_se_ns: None,
            p50_se_ns: None,
            p90_se_ns: None,
            p99_se_ns: None,
            p999_se_ns: None,
        };
        if k < 2 {
            return Some(out);
        }
        let mean = timed_total_ns as f64 / k as f64;
        let max_ns = duration_ns(scale, self.max_ticks);
        let squares: f64 = self
            .histogram
            .iter()
            .map(|(bucket, c)| {
                let (low, end) = ns_range(scale, bucket);
                let middle = (low as f64 + end.unwrap_or(max_ns.max(low) + 1) as f64 - 1.0) / 2.0;
                c as f64 * (middle - mean).powi(2)
            })
            .sum();
        let sd = (squares / (k - 1) as f64).sqrt();
        let correction = (1.0 - k as f64 / n as f64).max(0.0).sqrt();
        out.total_se_ns = Some(n as f64 * sd / (k as f64).sqrt() * correction);
        let q = |q: f64| self.quantile_ns(scale, self.histogram.iter(), k, q) as f64;
        let se = |p: f64| {
            let band = (p * (1.0 - p) / k as f64).sqrt();
            Some((q((p + band).min(1.0)) - q((p - band).max(0.0))) / 2.0)
        };
        out.p50_se_ns = se(0.5);
        out.p90_se_ns = se(0.9);
        out.p99_se_ns = se(0.99);
        out.p999_se_ns = se(0.999);
        Some(out)
    }

    /// The shortest and longest duration, in ns, as the run file gives them.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn min_max_ns(&self, scale: &Scale) -> (u64, u64) {
        (
            duration_ns(scale, self.min_ticks),
            duration_ns(scale, self.max_ticks),
        )
    }

    /// The histogram of every duration so far, in ticks.
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

    /// The value at quantile `q` of `buckets` (holding `total` values)
    /// under `scale`: the highest duration of the bucket it falls in (the
    /// lowest for `q` = 0), kept within the exact min and max.
    fn quantile_ns(
        &self,
        scale: &Scale,
        buckets: impl Iterator<Item = (u32, u64)>,
        total: u64,
        q: f64,
    ) -> u64 {
        let (min, max) = (
            duration_ns(scale, self.min_ticks),
            duration_ns(scale, self.max_ticks),
        );
        let Some(bucket) = bucket_at_quantile(buckets, total, q) else {
            return 0;
        };
        let (low, end) = ns_range(scale, bucket);
        let value = if q == 0.0 {
            low
        } else {
            end.map_or(max, |e| e - 1)
        };
        value.clamp(min, max)
    }

    /// The durations added since `base`, an earlier copy of these (`None`:
    /// since the start): exact count and total, and quantiles from the
    /// difference of the histograms, kept within the exact min and max.
    pub(crate) fn since(&self, base: Option<&Durations>, scale: &Scale) -> WindowStats {
        let Some(base) = base else {
            let s = self.stats(scale);
            return WindowStats {
                count: s.count,
                total_ns: s.total_ns,
                mean_ns: s.mean_ns,
                p50_ns: s.p50_ns,
                p90_ns: s.p90_ns,
                p99_ns: s.p99_ns,
            };
        };
        let timed = self.count - base.count;
        let untimed = self.untimed - base.untimed;
        let count = timed + untimed;
        let total_ns = self.estimate(
            timed,
            untimed,
            scale.ns(self.total_ticks.saturating_sub(base.total_ticks)),
        );
        if count == 0 {
            return WindowStats::default();
        }
        // `base` is an earlier state of this histogram, so every one of its
        // values is here too: the difference is exact, and walked in place.
        let in_window = self.histogram.len() - base.histogram.len();
        let q =
            |q: f64| self.quantile_ns(scale, self.histogram.since(&base.histogram), in_window, q);
        WindowStats {
            count,
            total_ns,
            mean_ns: total_ns as f64 / count as f64,
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
        }
    }

    pub(crate) fn stats(&self, scale: &Scale) -> DurationStats {
        if self.count == 0 {
            return DurationStats {
                count: self.untimed,
                total_ns: 0,
                min_ns: 0,
                mean_ns: 0.0,
                p50_ns: 0,
                p90_ns: 0,
                p99_ns: 0,
                p999_ns: 0,
                max_ns: 0,
                sampled: self.sampled(scale, 0),
            };
        }
        let q = |q: f64| self.quantile_ns(scale, self.histogram.iter(), self.histogram.len(), q);
        let timed_total_ns = scale.ns(self.total_ticks);
        let count = self.count + self.untimed;
        let total_ns = self.estimate(self.count, self.untimed, timed_total_ns);
        DurationStats {
            count,
            total_ns,
            min_ns: duration_ns(scale, self.min_ticks),
            mean_ns: total_ns as f64 / count as f64,
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: duration_ns(scale, self.max_ticks),
            sampled: self.sampled(scale, timed_total_ns),
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

    const TICK_A_NS: Scale = Scale::fixed(1.0);

    #[test]
    fn the_file_histogram_lists_the_tallys_buckets_in_ns() {
        let mut d = Durations::new();
        for ticks in [100, 100, 1_000_000, 1_000_100, 5_000_000_000] {
            d.record(ticks);
        }
        let h = d.file_histogram(&TICK_A_NS);
        let b = |lower_ns, count, width_ns| FileBucket {
            lower_ns,
            count,
            width_ns,
        };
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(h[0], b(100, 2, 1));
        assert_eq!(
            h[1],
            b(999_424, 2, 4_096),
            "1.0 ms and 1.0001 ms share a bucket"
        );
        assert!(h
            .windows(2)
            .all(|w| w[0].lower_ns + w[0].width_ns <= w[1].lower_ns));
        // At 0.4 ns a tick, the buckets under 1 ns wide merge: 100 to 102
        // ticks are all 40 ns (rounded down), 103 ticks 41 ns.
        let mut d = Durations::new();
        for ticks in [100, 101, 102, 103] {
            d.record(ticks);
        }
        let h = d.file_histogram(&Scale::fixed(0.4));
        assert_eq!(h, [b(40, 3, 1), b(41, 1, 1)]);
    }

    /// The value at quantile `q` of sorted `v`, as HDR defines it (the
    /// smallest value with at least `q` of the values at or below it).
    fn oracle(v: &[u64], q: f64) -> u64 {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    #[test]
    fn percentiles_match_a_sorted_vector_within_a_buckets_width() {
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
        let s = d.stats(&TICK_A_NS);
        for (q, got) in [
            (0.5, s.p50_ns),
            (0.9, s.p90_ns),
            (0.99, s.p99_ns),
            (0.999, s.p999_ns),
        ] {
            let want = oracle(&values, q);
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(
                err <= 1.0 / 128.0,
                "q{q}: got {got}, want {want} (rel err {err})"
            );
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
        assert_eq!(a.stats(&TICK_A_NS), both.stats(&TICK_A_NS));
        assert_eq!(a.count_and_total_ns(&TICK_A_NS), (5, 9_000_071_008));
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
        let w = d.since(Some(&base), &TICK_A_NS);
        assert_eq!((w.count, w.total_ns), (100, 5_050_000));
        // The top of the bucket holding the 50th and the 99th value.
        assert!(
            (50_000..=50_000 + 50_000 / 128).contains(&w.p50_ns),
            "{w:?}"
        );
        assert!(
            (99_000..=99_000 + 99_000 / 128).contains(&w.p99_ns),
            "{w:?}"
        );
        assert_eq!(
            d.since(Some(&d.clone()), &TICK_A_NS),
            WindowStats::default()
        );
        assert_eq!(d.since(None, &TICK_A_NS).count, 1_100);
    }

    #[test]
    fn zero_and_huge_values_are_kept() {
        let mut d = Durations::new();
        d.record(0);
        d.record(5 * 3_600 * 1_000_000_000);
        let s = d.stats(&TICK_A_NS);
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
