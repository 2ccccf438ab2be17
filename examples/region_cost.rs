//! `n` regions of one kind in a loop, events off, for instruction counts
//! under callgrind: run it with two values of `n` and divide the
//! difference.
//!
//! `cargo run --release --example region_cost -- phase 200000` (kinds:
//! `phase`, `new`, `measure`, `measure_fn`, `fenced`, `sampled`, `counts`, `dynamic`,
//! `tsc`, `fenced_tsc`, `fenced_sampled`).

use std::hint::black_box;

#[runmetrics::measure("measured")]
fn measured() {}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "phase".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("runmetrics-region-cost-{}", std::process::id()));
    // Events off: the steady state of a loop past the events cap (under
    // callgrind the collector is too slow to close the cap in time).
    let config = runmetrics::Config::new().events(runmetrics::Events::None);
    runmetrics::init_metrics(config).expect("init_metrics");
    runmetrics::start_run(&dir).expect("start_run");
    match kind.as_str() {
        "phase" => (0..n).for_each(|_| drop(black_box(runmetrics::phase!("p")))),
        "new" => (0..n).for_each(|_| drop(black_box(runmetrics::PhaseTimer::new("p", "m")))),
        "measure" => (0..n).for_each(|_| measured()),
        "measure_fn" => (0..n).for_each(|_| runmetrics::measure_fn("f", "m", || black_box(()))),
        "fenced" => (0..n).for_each(|_| drop(black_box(runmetrics::phase!("p", fenced)))),
        "sampled" => (0..n).for_each(|_| drop(black_box(runmetrics::phase!("p", sample = 64)))),
        "fenced_sampled" => {
            (0..n).for_each(|_| drop(black_box(runmetrics::phase!("p", sample = 64, fenced))))
        }
        "counts" => (0..n).for_each(|i| runmetrics::observe_counts(&[("c", black_box(i as i64))])),
        "dynamic" => (0..n).for_each(|_| {
            drop(black_box(runmetrics::PhaseTimer::dynamic(
                black_box("d"),
                "m",
            )))
        }),
        "tsc" => (0..n).for_each(|_| {
            // SAFETY: `rdtsc` exists on every x86_64 processor.
            let a = unsafe { core::arch::x86_64::_rdtsc() };
            // SAFETY: as above.
            black_box(unsafe { core::arch::x86_64::_rdtsc() } - a);
        }),
        other => panic!("unknown kind {other}"),
    }
    runmetrics::end_run(serde_json::Value::Null).expect("end_run");
    let _ = std::fs::remove_dir_all(&dir);
}
