//! The `metrics` facade (feature `metrics`): `histogram!` values recorded
//! from several threads against a sorted-vector oracle (count, sum, min and
//! max exact; p50, p90, p99 within the bucket width, 1/128 of the value),
//! `counter!` totals and `gauge!` last values against the loops' own
//! figures, NaN and infinities counted apart. One process-wide recorder, so
//! one test (the key cap is `metrics_facade_cap.rs`).
#![cfg(feature = "metrics")]

mod common;
use common::{eventually, http, read_run_file, Lcg};
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;
use std::time::Duration;

const THREADS: u64 = 4;
const PER_THREAD: usize = 25_000;

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= want.abs() / 128.0 + 1e-300
}

fn oracle_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

#[test]
fn histogram_counter_and_gauge_values_reach_the_run_file() {
    runmetrics::install_metrics().unwrap();
    metrics::describe_histogram!("latency", metrics::Unit::Seconds, "request latency");
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(Events::None)
            .port(0)
            .publish_interval(Duration::from_millis(50)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();

    let mut all: Vec<Vec<f64>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Lcg(t + 1);
                    let mut mine = Vec::with_capacity(PER_THREAD);
                    for _ in 0..PER_THREAD {
                        // Log-uniform over 12 decades, a tenth negative.
                        let mag = 10f64.powf(rng.unit() * 12.0 - 9.0);
                        let v = if rng.below(10) == 0 { -mag } else { mag };
                        metrics::histogram!("latency", "route" => "/a").record(v);
                        mine.push(v);
                        metrics::counter!("requests", "route" => "/a").increment(2);
                    }
                    metrics::histogram!("latency", "route" => "/a").record(f64::NAN);
                    metrics::histogram!("latency", "route" => "/a").record(f64::INFINITY);
                    mine
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    metrics::gauge!("queue_depth").set(10.0);
    metrics::gauge!("queue_depth").increment(5.0);
    metrics::gauge!("queue_depth").decrement(12.0);

    // /metrics, parsed: the same figures as a summary.
    let addr = rec.metrics_addr().unwrap();
    let n = THREADS as usize * PER_THREAD;
    let body = eventually(
        "the facade's histogram on /metrics",
        Duration::from_secs(20),
        || {
            let (_, _, body) = http(addr, "GET", "/metrics");
            body.contains(&format!("_latency_count{{route=\"/a\"}} {n}"))
                .then_some(body)
        },
    );
    let scraped = |suffix: &str| -> f64 {
        body.lines()
            .find(|l| l.contains(suffix))
            .unwrap_or_else(|| panic!("{suffix} in {body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &file["meta"];
    let mut sorted: Vec<f64> = all.drain(..).flatten().collect();
    sorted.sort_by(f64::total_cmp);

    let hs = meta["histograms"].as_array().expect("meta.histograms");
    let h = hs
        .iter()
        .find(|h| h["name"] == "latency" && h["labels"]["route"] == "/a")
        .expect("the latency entry");
    assert_eq!(h["unit"], "seconds");
    assert_eq!(h["count"].as_u64().unwrap(), sorted.len() as u64);
    // Exact but for serde_json's parse (without `float_roundtrip`, an ulp).
    let exact = |got: f64, want: f64| (got - want).abs() <= want.abs() * 4.0 * f64::EPSILON;
    assert!(exact(h["min"].as_f64().unwrap(), sorted[0]));
    assert!(exact(h["max"].as_f64().unwrap(), *sorted.last().unwrap()));
    let sum: f64 = sorted.iter().sum();
    let got = h["sum"].as_f64().unwrap();
    assert!((got - sum).abs() <= sum.abs() * 1e-9, "sum {got} vs {sum}");
    for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let want = oracle_quantile(&sorted, q);
        let got = h[key].as_f64().unwrap();
        assert!(close(got, want), "{key}: {got} vs oracle {want}");
    }
    for (q, key) in [("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")] {
        let got = scraped(&format!("_latency{{route=\"/a\",quantile=\"{q}\"}}"));
        let want = h[key].as_f64().unwrap();
        assert!(
            (got - want).abs() <= want.abs() * 1e-12,
            "/metrics {q}: {got} vs file {want}"
        );
    }
    let got = scraped("_latency_sum{route=\"/a\"}");
    assert!(
        (got - sum).abs() <= sum.abs() * 1e-9,
        "/metrics sum {got} vs {sum}"
    );
    let reqs = scraped("_count_value{name=\"requests{route=\\\"/a\\\"}\"}");
    assert_eq!(reqs, (2 * THREADS * PER_THREAD as u64) as f64);
    // Every value in a bucket, none twice.
    let buckets = h["histogram"].as_array().unwrap();
    let total: u64 = buckets.iter().map(|b| b[1].as_f64().unwrap() as u64).sum();
    assert_eq!(total, sorted.len() as u64);
    let mut i = 0;
    for b in buckets {
        let (lo, n, w) = (
            b[0].as_f64().unwrap(),
            b[1].as_f64().unwrap() as usize,
            b[2].as_f64().unwrap(),
        );
        for &v in &sorted[i..i + n] {
            let slack = v.abs() * 4.0 * f64::EPSILON;
            assert!(
                lo - slack <= v && v < lo + w + slack,
                "{v} outside [{lo}, {})",
                lo + w
            );
        }
        i += n;
    }

    let facade = &meta["metrics_facade"];
    assert_eq!(facade["nan_values"].as_u64(), Some(THREADS));
    assert_eq!(facade["infinite_values"].as_u64(), Some(THREADS));
    assert_eq!(facade["keys_refused"].as_u64(), Some(0));

    let counts = meta["counts"].as_array().unwrap();
    let find = |name: &str| {
        counts
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {counts:?}"))
    };
    let requests = find("requests{route=\"/a\"}");
    assert_eq!(
        requests["last"].as_u64(),
        Some(2 * THREADS * PER_THREAD as u64)
    );
    assert_eq!(
        requests["observations"].as_u64(),
        Some(THREADS * PER_THREAD as u64)
    );
    let depth = find("queue_depth");
    assert_eq!(
        (
            depth["last"].as_i64(),
            depth["min"].as_i64(),
            depth["max"].as_i64()
        ),
        (Some(3), Some(3), Some(15))
    );
    assert_eq!(depth["observations"].as_u64(), Some(3));

    // The format crate reads it back, nothing lost.
    let back = runmetrics_format::RunFile::open(
        dir.path()
            .join(format!("{}.json", meta["run_id"].as_str().unwrap())),
    )
    .unwrap();
    let hb = back
        .meta
        .histograms
        .iter()
        .find(|h| h.name == "latency")
        .unwrap();
    assert_eq!(hb.count, sorted.len() as u64);
    assert_eq!(back.meta.metrics_facade.unwrap().nan_values, THREADS);
}
