//! `histogram_ns` against a sorted-vector oracle built from the run's own
//! events: 100 000 regions of seeded log-normal lengths (200 ns to 2 ms),
//! each event's duration put into the file's bucket bounds. Every region is
//! in the bucket that holds its duration, every bucket's count is the
//! oracle's, and the quantiles lie in the oracle's buckets.

mod common;

use std::time::{Duration, Instant};

use common::Lcg;
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;

const REGIONS: usize = 100_000;

/// Log-normal around 8 µs (σ = 1.3), kept within 200 ns..2 ms.
fn length(lcg: &mut Lcg) -> Duration {
    let (u, v) = (lcg.unit(), lcg.unit());
    let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
    let ns = (8_000f64.ln() + 1.3 * normal).exp().clamp(200.0, 2e6);
    Duration::from_nanos(ns as u64)
}

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// `[lower, count, width]` buckets of the phase `name`.
fn buckets(file: &Value, name: &str) -> Vec<(u64, u64, u64)> {
    let entry = file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == name)
        .expect("the phase's entry");
    entry["histogram_ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let n = |i: usize| {
                b.get(i)
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| panic!("bucket {b} has no number {i}"))
            };
            let lower = n(0);
            // Layout 1 had no width: 64 buckets per power of two of ns.
            let width = match b.get(2) {
                Some(_) => n(2),
                None if lower < 128 => 1,
                None => 1 << (63 - lower.leading_zeros() - 6),
            };
            (lower, n(1), width)
        })
        .collect()
}

/// The region durations of phase `name`'s events, in ns.
fn event_durations(file: &Value, name: &str) -> Vec<u64> {
    file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "phase_timing" && e["phase"] == name)
        .map(|e| (e["duration_seconds"].as_f64().unwrap() * 1e9).round() as u64)
        .collect()
}

#[test]
fn every_region_is_counted_in_the_bucket_that_holds_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(Events::All)
            .sample_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();
    let mut lengths = Lcg(0x5EED);
    for _ in 0..REGIONS {
        let d = length(&mut lengths);
        let _t = rec.phase("lognormal", "oracle");
        spin(d);
    }
    let file = common::read_run_file(rec.end_run(serde_json::json!({})).unwrap());
    assert_eq!(file["meta"]["records_dropped"], 0);

    let mut oracle = event_durations(&file, "lognormal");
    assert_eq!(oracle.len(), REGIONS, "an event per region");
    oracle.sort_unstable();
    let buckets = buckets(&file, "lognormal");
    for w in buckets.windows(2) {
        assert!(w[0].0 + w[0].2 <= w[1].0, "buckets overlap: {w:?}");
    }
    // Each event into the file's bounds.
    let mut counted = vec![0u64; buckets.len()];
    let mut outside = Vec::new();
    for &d in &oracle {
        let at = buckets.partition_point(|b| b.0 <= d);
        match at.checked_sub(1).map(|i| (i, buckets[i])) {
            Some((i, (low, _, width))) if d < low + width => counted[i] += 1,
            _ => outside.push(d),
        }
    }
    assert!(
        outside.is_empty(),
        "{} regions in no bucket: {:?}",
        outside.len(),
        &outside[..outside.len().min(10)]
    );
    let wrong: Vec<_> = buckets
        .iter()
        .zip(&counted)
        .filter(|(b, &n)| b.1 != n)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} buckets count other regions than the events put there, e.g. {:?}",
        wrong.len(),
        buckets.len(),
        &wrong[..wrong.len().min(5)]
    );

    for &(low, _, width) in &buckets {
        // The stated width: at most 1/128 of the bucket's values (and a
        // nanosecond of rounding).
        assert!(
            width >= 1 && width <= low / 128 + 2,
            "[{low}, +{width}) is too wide"
        );
    }

    // The figures beside the histogram, against the same oracle.
    let entry = &file["meta"]["phase_durations_seconds_total"][0];
    let ns = |k: &str| (entry[k].as_f64().unwrap() * 1e9).round() as u64;
    assert_eq!(entry["count"], REGIONS as u64);
    assert_eq!(ns("min_seconds"), oracle[0]);
    assert_eq!(ns("max_seconds"), oracle[REGIONS - 1]);
    let total: u64 = oracle.iter().sum();
    let file_total = ns("duration_seconds_total");
    // Each event is rounded down to the ns, the total once.
    assert!(
        file_total >= total && file_total - total <= 2 * REGIONS as u64,
        "total {file_total} ns, events {total} ns"
    );
    for (key, q) in [
        ("p50_seconds", 0.5),
        ("p90_seconds", 0.9),
        ("p99_seconds", 0.99),
    ] {
        let want = oracle[((q * REGIONS as f64).ceil() as usize).max(1) - 1];
        let got = ns(key);
        let (low, _, width) = buckets[buckets.partition_point(|b| b.0 <= want) - 1];
        assert!(
            (low..low + width).contains(&got),
            "{key} {got} ns is not in the bucket [{low}, +{width}) of the oracle's {want} ns"
        );
    }
}
