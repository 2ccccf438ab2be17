//! Several runs read as one: the workers of a job, processes on several
//! machines. Each phase's and function's histograms are merged bucket by
//! bucket (quantiles by the format's one rule, clamped to the exact min and
//! max over the runs), counts combined (the latest run's last value), the
//! record and event accounting summed; CPU and RSS stay per process
//! ([`Fleet::runs`]) and are summed for the whole.

use std::collections::BTreeMap;
use std::path::Path;

use crate::run_file::{Bucket, Entry, Kind, LoadError, Run};
use runmetrics_format::{Meta, Sampled};

/// The runs, and their merge as one [`Run`] whose `meta` has the merged
/// entries and counts, the summed accounting, the earliest start and the
/// latest end.
pub struct Fleet {
    pub runs: Vec<Run>,
    pub merged: Run,
}

/// Kind, module, name.
type Key = (Kind, String, String);

/// One entry out of the same entry of several runs (`path` says which run
/// an entry is from, for the error when sums pass what any runs hold).
pub fn merge_entry(entries: &[(&Path, &Entry)]) -> Result<Entry, LoadError> {
    let (_, first) = entries[0];
    let (mut count, mut total, mut in_histograms) = (0u64, 0f64, 0u64);
    // By lower bound: (count, the widest width there).
    let mut hist: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    // The exact extremes, when every run gives them.
    let (mut min, mut max) = (Some(f64::INFINITY), Some(f64::NEG_INFINITY));
    let mut resources = first.resources;
    for (i, &(path, e)) in entries.iter().enumerate() {
        let corrupt = |what: &str, limit: String| LoadError::Corrupt {
            path: path.to_owned(),
            why: format!(
                "{} {}'s {what}, added to {i} other run{}'s, passes {limit}, \
                 more than any runs hold",
                e.kind.name(),
                e.label(),
                if i == 1 { "" } else { "s" },
            ),
        };
        let regions = || format!("{} regions", u64::MAX);
        count = count
            .checked_add(e.stats.count.unwrap_or(0))
            .ok_or_else(|| corrupt("count", regions()))?;
        total += e.stats.duration_seconds_total;
        if !total.is_finite() {
            return Err(corrupt(
                "duration_seconds_total",
                format!("{:e} s", f64::MAX),
            ));
        }
        // Bounds every merged bucket and the quantiles' sum.
        in_histograms = in_histograms
            .checked_add(e.histogram_total().unwrap_or(u64::MAX))
            .ok_or_else(|| corrupt("histogram_ns counts", regions()))?;
        for b in &e.histogram_ns {
            let (n, width) = hist.entry(b.lower_ns).or_default();
            *n = n
                .checked_add(b.count)
                .ok_or_else(|| corrupt("histogram_ns counts", regions()))?;
            *width = (*width).max(b.width_ns);
        }
        min = min.zip(e.stats.min_seconds).map(|(a, b)| a.min(b));
        max = max.zip(e.stats.max_seconds).map(|(a, b)| a.max(b));
        if i > 0 {
            resources = match (resources, e.resources) {
                (Some(mut a), Some(b)) => {
                    a.calls = a.calls.saturating_add(b.calls);
                    a.cpu_seconds_total += b.cpu_seconds_total;
                    a.rss_delta_mib_total += b.rss_delta_mib_total;
                    a.rss_delta_mib_max = a.rss_delta_mib_max.max(b.rss_delta_mib_max);
                    Some(a)
                }
                (a, b) => a.or(b),
            };
        }
    }
    let buckets: Vec<Bucket> = hist
        .iter()
        .map(|(&lower_ns, &(count, width_ns))| Bucket {
            lower_ns,
            count,
            width_ns: width_ns.max(1),
        })
        .collect();
    let q = |q: f64| runmetrics_format::quantile_seconds(&buckets, q, min, max);
    let counted = entries.iter().all(|(_, e)| e.stats.count.is_some());
    let mut stats = first.stats;
    stats.duration_seconds_total = total;
    stats.count = counted.then_some(count);
    stats.mean_seconds = (counted && count > 0).then(|| total / count as f64);
    stats.min_seconds = min;
    stats.max_seconds = max;
    stats.p50_seconds = q(0.50);
    stats.p90_seconds = q(0.90);
    stats.p99_seconds = q(0.99);
    stats.p999_seconds = q(0.999);
    let sampled = merge_sampled(entries.iter().map(|&(_, e)| e));
    Ok(Entry {
        kind: first.kind,
        module: first.module.clone(),
        name: first.name.clone(),
        stats,
        resources,
        histogram_ns: buckets,
        sampled,
    })
}

/// The runs' sampling combined, when any run sampled the entry: an
/// unsampled run counts as timed throughout (its total exact, no error).
/// The total's standard errors add in quadrature (the runs are
/// independent); the quantiles' are not combined (`None`).
fn merge_sampled<'a>(entries: impl Iterator<Item = &'a Entry>) -> Option<Sampled> {
    let mut merged: Option<Sampled> = None;
    let (mut timed, mut timed_total, mut var, mut one_in) = (0u64, 0.0, Some(0.0), 1);
    for e in entries {
        match &e.sampled {
            Some(s) => {
                merged = Some(*s);
                one_in = one_in.max(s.one_in);
                timed = timed.saturating_add(s.timed);
                timed_total += s.timed_seconds_total;
                var = var
                    .zip(s.duration_seconds_total_se)
                    .map(|(v, se)| v + se * se);
            }
            None => {
                timed = timed.saturating_add(e.stats.count.unwrap_or(0));
                timed_total += e.stats.duration_seconds_total;
            }
        }
    }
    merged.map(|_| Sampled {
        one_in,
        timed,
        timed_seconds_total: timed_total,
        duration_seconds_total_se: var.map(f64::sqrt),
        ..Sampled::default()
    })
}

fn sum(mut values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.try_fold(0u64, |a, v| Some(a.saturating_add(v?)))
}

fn sum_f(mut values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.try_fold(0.0, |a, v| Some(a + v?))
}

impl Fleet {
    /// Merges `runs` (at least one).
    pub fn merge(runs: Vec<Run>) -> Result<Fleet, LoadError> {
        let mut by_key: BTreeMap<Key, Vec<(&Path, &Entry)>> = BTreeMap::new();
        for run in &runs {
            for e in run.entries() {
                by_key
                    .entry((e.kind, e.module.clone(), e.name.clone()))
                    .or_default()
                    .push((&run.path, e));
            }
        }
        let mut phases = Vec::new();
        let mut functions = Vec::new();
        for ((kind, _, _), entries) in &by_key {
            let merged = merge_entry(entries)?;
            match kind {
                Kind::Phase => phases.push(merged),
                Kind::Function => functions.push(merged),
            }
        }
        // Counts: extremes and observations over every run, the last value
        // of the run that ended last.
        let mut counts: BTreeMap<String, (runmetrics_format::Count, _)> = BTreeMap::new();
        for run in &runs {
            for c in &run.meta.counts {
                let until = run.until();
                counts
                    .entry(c.name.clone())
                    .and_modify(|(m, at)| {
                        m.min = m.min.min(c.min);
                        m.max = m.max.max(c.max);
                        m.observations = m.observations.saturating_add(c.observations);
                        if until >= *at {
                            m.last = c.last;
                            *at = until;
                        }
                    })
                    .or_insert((c.clone(), until));
            }
        }
        let metas: Vec<&Meta> = runs.iter().map(|r| &r.meta).collect();
        let mut meta = metas[0].clone();
        meta.run_id = format!("{} runs", runs.len());
        meta.started_at = metas.iter().map(|m| m.started_at).min().unwrap();
        meta.ended_at = runs.iter().map(Run::until).max();
        meta.in_progress = Some(runs.iter().any(Run::in_progress));
        meta.flushed_at = None;
        meta.phase_durations_seconds_total = phases;
        meta.function_durations_seconds_total = functions;
        meta.all_phases_duration_seconds_total =
            sum_f(metas.iter().map(|m| m.all_phases_duration_seconds_total));
        meta.all_functions_duration_seconds_total =
            sum_f(metas.iter().map(|m| m.all_functions_duration_seconds_total));
        meta.counts = counts.into_values().map(|(c, _)| c).collect();
        meta.records_issued = sum(metas.iter().map(|m| m.records_issued));
        meta.records_aggregated = sum(metas.iter().map(|m| m.records_aggregated));
        meta.records_dropped = sum(metas.iter().map(|m| m.records_dropped));
        meta.records_outside_run = sum(metas.iter().map(|m| m.records_outside_run));
        meta.events_written = sum(metas.iter().map(|m| m.events_written));
        meta.events_omitted = sum(metas.iter().map(|m| m.events_omitted));
        meta.process_samples = sum(metas.iter().map(|m| m.process_samples));
        meta.write_failures = sum(metas.iter().map(|m| m.write_failures));
        // Summed over processes: cores busy at once, memory held at once
        // (an upper bound: the peaks need not coincide).
        meta.cpu_percent_mean = sum_f(metas.iter().map(|m| m.cpu_percent_mean));
        meta.cpu_percent_max = sum_f(metas.iter().map(|m| m.cpu_percent_max));
        meta.rss_max_mib = sum_f(metas.iter().map(|m| m.rss_max_mib));
        meta.threads = Vec::new();
        meta.pid = None;
        meta.window = None;
        let merged = Run {
            path: runs[0].path.parent().unwrap_or(Path::new("")).to_owned(),
            meta,
        };
        Ok(Fleet { runs, merged })
    }

    /// The wall seconds of every run, added: what `% run` is a share of.
    pub fn process_seconds(&self) -> f64 {
        self.runs.iter().map(Run::seconds).sum()
    }
}
