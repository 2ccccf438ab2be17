//! The cost of one timed region, against the floor measured in the same run:
//! two back-to-back raw TSC reads (`quanta::Clock::raw`), and a pair of
//! `std::time::Instant::now()`. BENCHMARKS.md records the ratios.
//!
//! cargo bench --bench overhead

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use runmetrics::{Config, Recorder};

#[runmetrics::measure("attr", module = "bench")]
fn measured() {}

fn region(c: &mut Criterion) {
    let clock = quanta::Clock::new();
    let dir = std::env::temp_dir().join(format!("runmetrics-bench-{}", std::process::id()));
    runmetrics::init_metrics(Config::new()).expect("init_metrics");
    runmetrics::start_run(&dir).expect("start_run");
    let rec = Recorder::new(Config::new()).expect("recorder");

    let mut g = c.benchmark_group("region");
    g.bench_function("floor: tsc pair", |b| {
        b.iter(|| {
            let start = clock.raw();
            let end = clock.raw();
            black_box((start, end))
        })
    });
    g.bench_function("floor: Instant pair", |b| {
        b.iter(|| {
            let start = Instant::now();
            let end = Instant::now();
            black_box((start, end))
        })
    });
    g.bench_function("PhaseTimer::new", |b| {
        b.iter(|| drop(black_box(runmetrics::PhaseTimer::new("p", "bench"))))
    });
    g.bench_function("phase!", |b| {
        b.iter(|| drop(black_box(runmetrics::phase!("m", "bench"))))
    });
    g.bench_function("#[measure]", |b| b.iter(measured));
    g.bench_function("measure_fn", |b| {
        b.iter(|| runmetrics::measure_fn("f", "bench", || black_box(1)))
    });
    g.bench_function("PhaseTimer::dynamic", |b| {
        b.iter(|| drop(black_box(runmetrics::PhaseTimer::dynamic("d", "bench"))))
    });
    g.bench_function("observe_counts (1 value)", |b| {
        b.iter(|| runmetrics::observe_counts(black_box(&[("n", 1)])))
    });
    g.bench_function("Recorder::phase, no run open", |b| {
        b.iter(|| drop(black_box(rec.phase("idle", "bench"))))
    });
    g.finish();

    let path = runmetrics::end_run(serde_json::Value::Null).expect("end_run");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("run file")).expect("json");
    let m = &file["meta"];
    eprintln!(
        "run file {}: issued {} aggregated {} dropped {}",
        path.display(),
        m["records_issued"],
        m["records_aggregated"],
        m["records_dropped"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, region);
criterion_main!(benches);
