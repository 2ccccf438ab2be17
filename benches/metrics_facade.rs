//! `metrics::histogram!("latency", "route" => "/a").record(v)` through
//! runmetrics' `metrics` recorder and through `metrics-exporter-prometheus`'s
//! (built as its README does, never scraped), at 1 and 2 threads, same run.
//! Both are each thread's local recorder, so the macro's path to the
//! recorder is the same. BENCHMARKS.md has the ratios.
//!
//! cargo bench --features metrics --bench metrics_facade
//!
//! With `FACADE_ONLY=runmetrics|peer` it records `FACADE_N` (100 000)
//! values through that recorder on one thread and exits: for `valgrind
//! --tool=callgrind` (BENCHMARKS.md takes the difference of two `FACADE_N`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use metrics::Recorder;

fn record_n(rec: &(dyn Recorder + Sync), n: u64) {
    metrics::with_local_recorder(rec, || {
        for i in 0..n {
            metrics::histogram!("latency", "route" => "/a")
                .record(black_box((i & 1023) as f64 * 0.37));
        }
    });
}

fn recorders() -> Vec<(&'static str, Box<dyn Recorder + Sync + Send>)> {
    vec![
        ("runmetrics", Box::new(runmetrics::metrics_recorder())),
        (
            "metrics-exporter-prometheus",
            Box::new(metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()),
        ),
    ]
}

fn histogram(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram_record");
    for (name, rec) in recorders() {
        for threads in [1u64, 2] {
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| record_n(rec.as_ref(), iters));
                        }
                    });
                    start.elapsed()
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = histogram
}

fn main() {
    if let Ok(which) = std::env::var("FACADE_ONLY") {
        let n = std::env::var("FACADE_N").map_or(100_000, |n| n.parse().expect("FACADE_N"));
        let recs = recorders();
        let rec = match which.as_str() {
            "runmetrics" => &recs[0].1,
            "peer" => &recs[1].1,
            other => panic!("FACADE_ONLY={other}: runmetrics or peer"),
        };
        record_n(rec.as_ref(), n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
