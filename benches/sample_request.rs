//! What `sample_process_gauges` costs its caller, next to
//! `std::time::Instant::now()` measured in the same run: during a run (a
//! flag raised and, when it was down, the collector woken) and outside one.
//! The collector takes the samples on its own thread; the caller never
//! waits for it.
//!
//! cargo bench --bench sample_request

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use runmetrics::{Config, Recorder};

fn sample_request(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("runmetrics-sample-{}", std::process::id()));
    let rec = Recorder::new(Config::new()).expect("recorder");
    let mut g = c.benchmark_group("sample_process_gauges");
    g.bench_function("floor: Instant::now()", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    g.bench_function("outside a run", |b| b.iter(|| rec.sample_process_gauges()));
    rec.start_run(&dir).expect("start_run");
    g.bench_function("during a run", |b| b.iter(|| rec.sample_process_gauges()));
    g.finish();
    rec.end_run(serde_json::Value::Null).expect("end_run");
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = sample_request
}
criterion_main!(benches);
