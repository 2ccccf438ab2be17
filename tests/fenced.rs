//! Fenced timers against an independent oracle: a body of known cost, its
//! true duration calibrated by timing a million back-to-back calls with
//! `Instant` over the whole loop (no clock per call), then timed per call
//! with `phase!(.., fenced)`. The mean region the run file reports must not
//! be short of that duration: unfenced reads, which the processor overlaps
//! with a body of tens of nanoseconds, are (BENCHMARKS.md, "Fenced reads").
//!
//! Then sampled timing with fenced reads (`phase!(.., sample = 64, fenced)`):
//! its estimated mean region against the same `Instant` oracle, and against
//! the body plus two fenced reads (timed by `Instant` back to back).

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
/// How much shorter than the oracle a fenced region may be: a quarter, for a
/// TSC that (on the reference VM) advances in steps of 10 ns. Unfenced reads
/// put the least of 10^6 regions at 9–20 ns around a 45 ns body (-55 to -80 %), and
/// their mean 17 % short in some runs and long in others (BENCHMARKS.md).
const TOLERANCE: f64 = 0.25;

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

/// The fewest steps (a power of two) that make the body last at least `ns`:
/// 40 ns gives 40 to 80 ns.
fn steps_for(ns: f64) -> u32 {
    let mut steps = 4;
    while oracle_ns(steps) < ns && steps < 1 << 16 {
        steps *= 2;
    }
    steps
}

/// The mean and the least duration, in ns, of the phase `name` of the run file at `path`.
fn durations_ns(path: &std::path::Path, name: &str) -> (f64, f64) {
    let file = read_run_file(path);
    let phase = file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .expect("meta.phase_durations_seconds_total is a list")
        .iter()
        .find(|e| e["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {}", path.display()));
    assert_eq!(phase["count"], u64::from(REGIONS), "every region counted");
    let ns = |key: &str| phase[key].as_f64().expect("a duration") * 1e9;
    (
        ns("duration_seconds_total") / f64::from(REGIONS),
        ns("min_seconds"),
    )
}

/// Of `TRIES` runs of `REGIONS` regions timed by `timed`: the least mean
/// region, the least region, and the least oracle taken between the runs.
fn measure(steps: u32, timed: fn(u64, u32) -> u64) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut region, mut least, mut oracle) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..TRIES {
        oracle = oracle.min(oracle_ns(steps));
        runmetrics::start_run(dir.path()).expect("start_run");
        let mut x = black_box(1u64);
        for _ in 0..REGIONS {
            x = timed(x, black_box(steps));
        }
        black_box(x);
        let path = runmetrics::end_run(serde_json::Value::Null).expect("end_run");
        let (mean, min) = durations_ns(&path, "body");
        region = region.min(mean);
        least = least.min(min);
    }
    (region, least, oracle)
}

/// This file's tests, one at a time: each times loops on the global
/// recorder's one run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    if cfg!(debug_assertions) {
        // Unoptimized, the oracle's own loop and the timer's code inside the
        // region outweigh the 50 ns body, so neither figure means anything.
        // scripts/test runs this file again with --release.
        eprintln!(
            "NOT RUN: tests/fenced.rs needs an optimized build: \
             cargo test --release --all-features --test fenced"
        );
        return;
    }
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let steps = steps_for(40.0);
    let (mean, least, oracle) = measure(steps, fenced);
    let (bare_mean, bare_least, _) = measure(steps, unfenced);
    let pct = |ns: f64| (ns / oracle - 1.0) * 100.0;
    eprintln!(
        "body of {steps} steps: oracle {oracle:.1} ns; fenced mean {mean:.1} ns ({:+.0} %), least {least:.0} ns ({:+.0} %); \
         unfenced mean {bare_mean:.1} ns ({:+.0} %), least {bare_least:.0} ns ({:+.0} %)",
        pct(mean),
        pct(least),
        pct(bare_mean),
        pct(bare_least),
    );
    let floor = oracle * (1.0 - TOLERANCE);
    assert!(
        least >= floor,
        "a fenced region measured {least:.0} ns, short of the body's {oracle:.1} ns by more than {TOLERANCE}"
    );
    assert!(
        mean >= floor,
        "the fenced mean {mean:.1} ns is short of the body's {oracle:.1} ns by more than {TOLERANCE}"
    );
}

/// A fenced read made by hand, as the library's `Fenced` timers make theirs
/// (`lfence; rdtsc; lfence`): for the oracle of what a fenced region holds.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn fenced_read() -> u64 {
    use core::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: `lfence` (SSE2) and `rdtsc` are in every x86_64 processor.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

/// What `Instant` says one fenced read costs, in ns: `ORACLE_CALLS` of
/// them back to back, `Instant` around the loop; the least of 3.
#[cfg(target_arch = "x86_64")]
fn fenced_read_ns() -> f64 {
    let mut least = f64::INFINITY;
    for _ in 0..3 {
        let mut ticks = 0u64;
        let t = Instant::now();
        for _ in 0..ORACLE_CALLS {
            ticks = ticks.wrapping_add(fenced_read());
        }
        least = least.min(t.elapsed().as_nanos() as f64 / f64::from(ORACLE_CALLS));
        black_box(ticks);
    }
    least
}

#[cfg(target_arch = "x86_64")]
fn fenced_sampled(x: u64, steps: u32) -> u64 {
    let _t = runmetrics::phase!("sampled body", sample = 64, fenced);
    body(x, steps)
}

/// Regions per run of the sampled test: about 15 600 timed.
#[cfg(target_arch = "x86_64")]
const SAMPLED_REGIONS: u64 = 1_000_000;

#[cfg(target_arch = "x86_64")]
#[test]
fn a_fenced_sampled_estimate_of_50_ns_is_within_the_body_and_its_reads() {
    if cfg!(debug_assertions) {
        // As above: scripts/test runs this file again with --release.
        eprintln!(
            "NOT RUN: tests/fenced.rs needs an optimized build: \
             cargo test --release --all-features --test fenced"
        );
        return;
    }
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let steps = steps_for(40.0);
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Each try against its own oracle; on a shared machine a preempted
    // timed region can pull one try off, so up to TRIES, and a biased
    // estimate (unfenced reads read this body less than half) misses all.
    let mut tries = Vec::new();
    for _ in 0..TRIES {
        // The least of 3: preemption and a busy sibling core only add time.
        let body_ns = (0..3)
            .map(|_| oracle_ns(steps))
            .fold(f64::INFINITY, f64::min);
        let read_ns = fenced_read_ns();
        runmetrics::start_run(dir.path()).expect("start_run");
        let mut x = black_box(1u64);
        for _ in 0..SAMPLED_REGIONS {
            x = fenced_sampled(x, black_box(steps));
        }
        black_box(x);
        let path = runmetrics::end_run(serde_json::Value::Null).expect("end_run");
        let file = read_run_file(&path);
        let e = file["meta"]["phase_durations_seconds_total"]
            .as_array()
            .expect("meta.phase_durations_seconds_total is a list")
            .iter()
            .find(|e| e["phase"] == "sampled body")
            .expect("the phase's entry")
            .clone();
        assert_eq!(e["count"], SAMPLED_REGIONS, "every region counted: {e}");
        assert_eq!(e["sampled"]["one_in"], 64, "{e}");
        let n = SAMPLED_REGIONS as f64;
        let mean = e["duration_seconds_total"].as_f64().expect("a total") * 1e9 / n;
        let se = e["sampled"]["duration_seconds_total_se"]
            .as_f64()
            .expect("a standard error")
            * 1e9
            / n;
        let median = e["p50_seconds"].as_f64().expect("a median") * 1e9;
        // Not short of the body at all (a fenced region holds the body and
        // parts of its two reads; unfenced reads put this median 20 % short
        // of a ~45 ns body, though not of a ~60 ns one),
        // and not longer than the body and the two fenced reads: the mean
        // within 4 standard errors of that, and the median (which a
        // preempted region, widening the standard error, cannot move) within it.
        let (low, high) = (body_ns, body_ns + 2.0 * read_ns);
        eprintln!(
            "body of {steps} steps: oracle {body_ns:.1} ns, a fenced read {read_ns:.1} ns; \
             estimated mean {mean:.1} ns (se {se:.2} ns, {:+.1} % of the body), median {median:.1} ns, \
             bounds {low:.1} to {high:.1} ns",
            (mean / body_ns - 1.0) * 100.0
        );
        if (low - 4.0 * se..=high + 4.0 * se).contains(&mean) && (low..=high).contains(&median) {
            return;
        }
        tries.push((mean, median, low, high));
    }
    panic!("fenced sampled estimate, (mean ns, median ns, low, high) per try: {tries:?}");
}
