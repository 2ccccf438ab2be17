//! Fenced timers against an independent oracle: a body of known cost, its
//! true duration calibrated by timing a million back-to-back calls with
//! `Instant` over the whole loop (no clock per call), then timed per call
//! with `phase!(.., fenced)`. The mean region the run file reports must not
//! be short of that duration: unfenced reads, which the processor overlaps
//! with a body of tens of nanoseconds, are (BENCHMARKS.md, "Fenced reads").

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::read_run_file;

/// Back-to-back calls of the body that make up the oracle.
const ORACLE_CALLS: u32 = 1_000_000;
/// Timed regions per run.
const REGIONS: u32 = 200_000;
/// Runs (and oracles) per measurement: each figure is the least, since
/// preemption and a busy sibling core only ever add time.
const TRIES: usize = 5;
/// How much shorter than the oracle a fenced mean may be. Unfenced reads
/// measured 3–26 % short around a 50 ns body on the reference machine.
const TOLERANCE: f64 = 0.02;

/// `steps` dependent multiply-adds: a chain the processor cannot shorten, so
/// its duration is its latency, whether it runs alone or back to back.
#[inline(never)]
fn body(mut x: u64, steps: u32) -> u64 {
    for _ in 0..steps {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    }
    x
}

/// The body's duration in ns per call, amortised over `ORACLE_CALLS` calls.
fn oracle_ns(steps: u32) -> f64 {
    let mut x = black_box(1u64);
    let t = Instant::now();
    for _ in 0..ORACLE_CALLS {
        x = body(x, black_box(steps));
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(ORACLE_CALLS);
    black_box(x);
    ns
}

/// The fewest steps that make the body last at least `ns`.
fn steps_for(ns: f64) -> u32 {
    let mut steps = 4;
    while oracle_ns(steps) < ns && steps < 1 << 16 {
        steps *= 2;
    }
    steps
}

/// The mean duration, in ns, of the phase `name` of the run file at `path`.
fn mean_ns(path: &std::path::Path, name: &str) -> f64 {
    let file = read_run_file(path);
    let phase = file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .expect("meta.phase_durations_seconds_total is a list")
        .iter()
        .find(|e| e["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {}", path.display()));
    assert_eq!(phase["count"], u64::from(REGIONS), "every region counted");
    phase["duration_seconds_total"].as_f64().expect("a total") * 1e9 / f64::from(REGIONS)
}

/// The least mean region of `TRIES` runs of `REGIONS` regions timed by
/// `timed`, and the least oracle taken between them.
fn measure(steps: u32, timed: fn(u64, u32) -> u64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut region, mut oracle) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..TRIES {
        oracle = oracle.min(oracle_ns(steps));
        runmetrics::start_run(dir.path()).expect("start_run");
        let mut x = black_box(1u64);
        for _ in 0..REGIONS {
            x = timed(x, black_box(steps));
        }
        black_box(x);
        let path = runmetrics::end_run(serde_json::Value::Null).expect("end_run");
        region = region.min(mean_ns(&path, "body"));
    }
    (region, oracle)
}

fn fenced(x: u64, steps: u32) -> u64 {
    let _t = runmetrics::phase!("body", fenced);
    body(x, steps)
}

fn unfenced(x: u64, steps: u32) -> u64 {
    let _t = runmetrics::phase!("body");
    body(x, steps)
}

#[test]
fn a_fenced_region_of_50_ns_is_not_measured_short() {
    let steps = steps_for(50.0);
    let (region, oracle) = measure(steps, fenced);
    let (bare, _) = measure(steps, unfenced);
    let error = region / oracle - 1.0;
    eprintln!(
        "body {steps} steps: oracle {oracle:.1} ns, fenced {region:.1} ns ({:+.1} %), unfenced {bare:.1} ns ({:+.1} %)",
        error * 100.0,
        (bare / oracle - 1.0) * 100.0
    );
    assert!(
        error >= -TOLERANCE,
        "fenced mean {region:.1} ns is {:.1} % short of the body's {oracle:.1} ns",
        -error * 100.0
    );
}
