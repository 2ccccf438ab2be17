//! The criterion adapter (feature `criterion`): each benchmark's phases go to
//! `new/<id>.json`, and a second "cargo bench" moves the first to `base/`.
//! (The one test in this file: it uses the global recorder.)

use std::time::Duration;

use criterion::Criterion;

mod common;
use common::{phase_count, read_run_file};

#[test]
fn each_benchmark_writes_its_run_and_the_previous_becomes_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runmetrics::CriterionRuns::in_dir(dir.path());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(10))
        .measurement_time(Duration::from_millis(50))
        .without_plots();
    let bench = |c: &mut Criterion| {
        runs.bench_function(c, "infer/batch 8", |b| {
            b.iter(|| {
                let _p = runmetrics::phase!("forward", "bench");
                std::hint::black_box((0..100u64).sum::<u64>())
            })
        })
        .unwrap()
        .expect("the benchmark ran")
    };
    let first = bench(&mut c);
    assert_eq!(first, dir.path().join("new/infer_batch_8.json"));
    let run = read_run_file(&first);
    assert!(phase_count(&run, "forward") >= 10, "every iteration");
    assert_eq!(run["meta"]["benchmark_id"], "infer/batch 8");
    assert!(!dir.path().join("base").exists());

    let second = bench(&mut c);
    assert_eq!(second, first);
    let base = read_run_file(dir.path().join("base/infer_batch_8.json"));
    assert_eq!(
        base["meta"]["run_id"], run["meta"]["run_id"],
        "the first run is the base"
    );
    assert_ne!(
        read_run_file(&second)["meta"]["run_id"],
        run["meta"]["run_id"]
    );

    // A benchmark filtered out records nothing and leaves the files alone.
    let mut filtered = Criterion::default().with_filter("no such benchmark");
    let none = runs
        .bench_function(&mut filtered, "infer/batch 8", |b| b.iter(|| 1))
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(
        read_run_file(&second)["meta"]["run_id"],
        read_run_file(&first)["meta"]["run_id"]
    );
}
