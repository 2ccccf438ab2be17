//! The exposition sink: aggregates over the life of the process (runs do
//! not reset them), and the publishing of a [`MetricsSnapshot`] for scrapes
//! on an interval. Nothing here runs per record: a run's histograms are
//! merged in when it leaves the collector, and the open run's are read from
//! the view at publish time. A publish renders nothing: a scrape or a push
//! renders the encoding it needs (`published.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::published::{Generation, Published};
use super::{DurationSeries, MetricsSnapshot};
use crate::collector::sink::{deadline, ns_range, Durations, Histogram, RunView, Sink, View};
use crate::site::{by_id, Kind, SiteInfo};
use crate::slot::slot;
use crate::ticks::Scale;

pub(crate) struct Exposition {
    published: Arc<Published>,
    namespace: Arc<str>,
    bounds_seconds: Vec<f64>,
    bounds_ns: Vec<u64>,
    interval: Duration,
    /// `None`: never (an interval past what the clock can hold).
    next_publish: Option<Instant>,
    /// Every ended run's durations per site, added up (in ticks).
    durations: Vec<Option<Durations>>,
    /// The scale of the last run ended: converts them while no run is open.
    scale: Scale,
    counts: Vec<Option<i64>>,
    runs_completed: u64,
    aggregated: u64,
    dropped: u64,
    last_sample: (f64, u64),
    pub(crate) push_failures: u64,
}

impl Exposition {
    pub(crate) fn new(
        published: Arc<Published>,
        namespace: String,
        bounds_seconds: Vec<f64>,
        interval: Duration,
    ) -> Exposition {
        let bounds_ns = bounds_seconds
            .iter()
            .map(|s| (s * 1e9).round() as u64)
            .collect();
        Exposition {
            published,
            namespace: namespace.into(),
            bounds_seconds,
            bounds_ns,
            interval,
            next_publish: Some(Instant::now()),
            durations: Vec::new(),
            scale: Scale::fixed(1.0),
            counts: Vec::new(),
            runs_completed: 0,
            aggregated: 0,
            dropped: 0,
            last_sample: (0.0, 0),
            push_failures: 0,
        }
    }

    /// When the next publish is due.
    pub(crate) fn next_publish(&self) -> Option<Instant> {
        self.next_publish
    }

    /// Folds a finished run into the lifetime aggregates.
    fn end_run(&mut self, run: &RunView<'_>) {
        for (site, d) in run.durations.iter().enumerate() {
            if let Some(d) = d {
                slot(&mut self.durations, site)
                    .get_or_insert_with(Durations::new)
                    .add_durations(d);
            }
        }
        for (site, c) in run.counts.iter().enumerate() {
            if let Some(c) = c {
                *slot(&mut self.counts, site) = Some(c.last);
            }
        }
        self.scale = run.scale;
        self.runs_completed += 1;
        self.aggregated += run.aggregated;
        self.dropped += run.dropped;
    }

    /// What was last published.
    #[cfg_attr(not(feature = "push"), allow(dead_code))]
    pub(crate) fn current(&self) -> Arc<Generation> {
        self.published.get()
    }

    /// Publishes what a scrape should see now (its snapshot: the first
    /// scrape of each encoding renders it).
    pub(crate) fn publish(&mut self, run: Option<&RunView<'_>>, sites: &[SiteInfo]) {
        let snapshot = self.snapshot(run, sites);
        self.published
            .set(Generation::new(snapshot, self.namespace.clone()));
        self.next_publish = deadline(Instant::now(), self.interval);
    }

    fn snapshot(&self, run: Option<&RunView<'_>>, sites: &[SiteInfo]) -> MetricsSnapshot {
        let len = self
            .durations
            .len()
            .max(run.map_or(0, |r| r.durations.len()));
        let mut durations = Vec::new();
        for site in 1..len {
            let life = self.durations.get(site).and_then(Option::as_ref);
            let open = run
                .and_then(|r| r.durations.get(site))
                .and_then(Option::as_ref);
            if life.is_none() && open.is_none() {
                continue;
            }
            let Some(info) = by_id(sites, site) else {
                continue;
            };
            let mut buckets = vec![0u64; self.bounds_ns.len()];
            let mut count = 0;
            let mut total_ns = 0u64;
            let scale = run.map_or(self.scale, |r| r.scale);
            let (mut min, mut max) = (u64::MAX, 0);
            for d in [life, open].into_iter().flatten() {
                add_buckets(
                    d.histogram(),
                    d.per_timed(),
                    &scale,
                    &self.bounds_ns,
                    &mut buckets,
                );
                let (n, ns) = d.count_and_total_ns(&scale);
                count += n;
                total_ns = total_ns.saturating_add(ns);
                let (lo, hi) = d.min_max_ns(&scale);
                (min, max) = (min.min(lo), max.max(hi));
            }
            let values_ns = [life, open]
                .into_iter()
                .flatten()
                .flat_map(|d| d.histogram().iter())
                .map(|(bucket, n)| (quantile_value(&scale, bucket, min, max), n))
                .collect();
            durations.push(DurationSeries {
                function: info.kind == Kind::Function,
                module: info.module.clone(),
                name: info.name.clone(),
                buckets,
                count,
                sum_seconds: total_ns as f64 / 1e9,
                values_ns,
            });
        }
        let mut counts = Vec::new();
        let clen = self.counts.len().max(run.map_or(0, |r| r.counts.len()));
        for site in 1..clen {
            let open = run
                .and_then(|r| r.counts.get(site))
                .and_then(|c| c.map(|c| c.last));
            let last = open.or_else(|| self.counts.get(site).copied().flatten());
            if let (Some(v), Some(info)) = (last, by_id(sites, site)) {
                counts.push((info.name.to_string(), v));
            }
        }
        MetricsSnapshot {
            bucket_bounds: self.bounds_seconds.clone(),
            durations,
            counts,
            cpu_percent: self.last_sample.0,
            rss_bytes: self.last_sample.1,
            run_id: run.map(|r| r.run_id.to_owned()),
            runs_completed: self.runs_completed,
            records_aggregated: self.aggregated + run.map_or(0, |r| r.aggregated),
            records_dropped: self.dropped + run.map_or(0, |r| r.dropped),
            push_failures: self.push_failures,
            extra: crate::extra::snapshot().unwrap_or_default(),
        }
    }
}

impl Sink for Exposition {
    fn next_due(&self) -> Option<Instant> {
        self.next_publish()
    }

    fn due(&mut self, view: &View<'_>, now: Instant) {
        if self.next_publish.is_some_and(|at| now >= at) {
            self.publish(view.run.as_ref(), view.sites);
        }
    }

    fn refresh(&mut self, view: &View<'_>) {
        self.publish(view.run.as_ref(), view.sites);
    }

    fn sampled(&mut self, cpu_percent: Option<f64>, rss_bytes: u64) {
        // A sample that ends no window keeps the last CPU figure.
        self.last_sample = (cpu_percent.unwrap_or(self.last_sample.0), rss_bytes);
    }

    fn run_closed(&mut self, run: &RunView<'_>, _sites: &[SiteInfo]) {
        self.end_run(run);
    }
}

/// The value a run file gives a quantile falling in tally bucket `bucket`
/// (aggregate.rs' `quantile_ns`): its highest duration, kept within the
/// exact `min` and `max`.
fn quantile_value(scale: &Scale, bucket: u32, min: u64, max: u64) -> u64 {
    let (_, end) = ns_range(scale, bucket);
    end.map_or(max, |e| e - 1).clamp(min.min(max), max)
}

/// Adds `h`'s values to cumulative counts at each bound (values at a bound
/// count as within it, to the histogram's precision: a bucket counts at its
/// lowest value), each value standing for `per_value` regions (sampled
/// timing: the timed sample scaled to the exact count, rounded, so that a
/// bucket never exceeds `_count`).
fn add_buckets(
    h: &Histogram,
    per_value: f64,
    scale: &Scale,
    bounds_ns: &[u64],
    cumulative: &mut [u64],
) {
    // The buckets come in ascending order, so their lowest values do too:
    // one pass over both.
    // Each bucket's lowest value is worked out once, not once per bound.
    let mut values = h
        .iter()
        .map(|(bucket, count)| (ns_range(scale, bucket).0, count))
        .peekable();
    let mut running = 0;
    for (c, &bound) in cumulative.iter_mut().zip(bounds_ns) {
        while let Some(&(lowest, count)) = values.peek() {
            if lowest > bound {
                break;
            }
            running += count;
            values.next();
        }
        *c += if per_value == 1.0 {
            running
        } else {
            (running as f64 * per_value).round() as u64
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bound_inclusive() {
        let mut d = Durations::new();
        for ns in [500, 1_000, 1_500, 2_000_000, 5_000_000_000] {
            d.record(ns);
        }
        let bounds = [1_000, 1_000_000, 10_000_000];
        let mut out = vec![0; 3];
        add_buckets(d.histogram(), 1.0, &Scale::fixed(1.0), &bounds, &mut out);
        assert_eq!(out, vec![2, 3, 4]);
    }
}
