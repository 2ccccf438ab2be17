//! The CPU figures of a run file against an oracle outside the library: the
//! file's own `process_sample` events and `CLOCK_PROCESS_CPUTIME_ID` /
//! `CLOCK_THREAD_CPUTIME_ID` read by the test. `cpu_percent_max` is the
//! highest event over the windows the figures are defined over,
//! `cpu_percent_mean` their time-weighted mean (so never above the max), and
//! no event reports CPU used before the run.

mod common;

use std::time::{Duration, Instant};

use common::Lcg;
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;

/// The library's `MIN_WINDOW_SECONDS`, as documented.
const MIN_WINDOW: f64 = 0.01;

fn clock_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn process_cpu() -> f64 {
    clock_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn thread_cpu() -> f64 {
    clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn spin(d: Duration) {
    let until = Instant::now() + d;
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// `(cpu_percent, window_seconds)` of each `process_sample` event, in order.
fn samples(file: &Value) -> Vec<(f64, f64)> {
    file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "process_sample")
        .map(|e| {
            (
                e["cpu_percent"].as_f64().unwrap(),
                e["window_seconds"]
                    .as_f64()
                    .expect("a process_sample has window_seconds"),
            )
        })
        .collect()
}

/// The samples the figures are defined over, as documented: those whose
/// window is at least 10 ms; if there is none, the last one (its window is
/// then the whole run).
fn defined_set(samples: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let long: Vec<_> = samples
        .iter()
        .copied()
        .filter(|s| s.1 >= MIN_WINDOW)
        .collect();
    if long.is_empty() {
        samples.last().into_iter().copied().collect()
    } else {
        long
    }
}

struct Checked {
    /// CPU seconds the defined windows add up to, and the process's CPU
    /// seconds from just before `start_run` to just after `end_run`.
    file_cpu: f64,
    oracle_cpu: f64,
}

/// Checks a run file's CPU figures against its events and the oracle.
fn check(file: &Value, oracle_cpu: f64) -> Checked {
    let meta = &file["meta"];
    let max = meta["cpu_percent_max"].as_f64().unwrap();
    let mean = meta["cpu_percent_mean"].as_f64().unwrap();
    let all = samples(file);
    assert_eq!(meta["process_samples"], all.len(), "every sample listed");
    // The start sample reports no CPU: its window is the run's start.
    assert_eq!(all[0], (0.0, 0.0), "start sample");
    let set = defined_set(&all);
    assert!(max >= mean, "max {max} < mean {mean}: {all:?}");
    let event_max = set.iter().map(|s| s.0).fold(0.0, f64::max);
    assert_eq!(max, event_max, "max is the defined events' max: {all:?}");
    let file_cpu: f64 = set.iter().map(|s| s.0 / 100.0 * s.1).sum();
    let wall: f64 = set.iter().map(|s| s.1).sum();
    let weighted = if wall > 0.0 {
        100.0 * file_cpu / wall
    } else {
        0.0
    };
    assert!(
        (mean - weighted).abs() <= 1e-6 * weighted.max(1.0),
        "mean {mean} is the time-weighted mean {weighted}: {all:?}"
    );
    // The defined windows lie inside the run: no more CPU than the process
    // used around it (1 µs for the rounding of percent times seconds).
    assert!(
        file_cpu <= oracle_cpu + 1e-6,
        "windows' CPU {file_cpu} s > the process's {oracle_cpu} s: {all:?}"
    );
    Checked {
        file_cpu,
        oracle_cpu,
    }
}

#[test]
fn the_start_sample_reports_no_cpu_from_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(Events::All)
            .sample_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    // Busy before the run: none of it is the run's.
    spin(Duration::from_millis(150));
    let c0 = process_cpu();
    rec.start_run(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let path = rec.end_run(Value::Null).unwrap();
    let oracle = process_cpu() - c0;
    let file = common::read_run_file(path);
    let checked = check(&file, oracle);
    // An idle run: at most what the collector and the test's calls used.
    assert!(checked.file_cpu <= checked.oracle_cpu + 1e-6);
}

#[test]
fn random_sample_schedules_keep_the_figures_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(14);
    for case in 0..12 {
        let interval = [1, 3, 7, 25, 3_600_000][rng.below(5) as usize];
        let rec = Recorder::new(
            Config::new()
                .events(Events::All)
                .sample_interval(Duration::from_millis(interval)),
        )
        .unwrap();
        spin(Duration::from_millis(rng.below(40)));
        let c0 = process_cpu();
        rec.start_run(dir.path()).unwrap();
        let t0 = thread_cpu();
        for _ in 0..rng.below(12) {
            match rng.below(4) {
                0 => spin(Duration::from_micros(rng.below(15_000))),
                1 => std::thread::sleep(Duration::from_micros(rng.below(15_000))),
                2 => rec.sample_process_gauges(),
                _ => {
                    // A burst: busy, then requests in a row (short windows).
                    spin(Duration::from_micros(rng.below(3_000)));
                    for _ in 0..rng.below(4) {
                        rec.sample_process_gauges();
                        std::thread::sleep(Duration::from_micros(rng.below(500)));
                    }
                }
            }
        }
        let spun = thread_cpu() - t0;
        let path = rec.end_run(Value::Null).unwrap();
        let oracle = process_cpu() - c0;
        let file = common::read_run_file(path);
        let checked = check(&file, oracle);
        // The defined windows cover the run but for a tail under 10 ms: at
        // least this thread's CPU in the run, less that tail.
        assert!(
            checked.file_cpu >= spun - MIN_WINDOW,
            "case {case}: windows' CPU {} s, this thread's {spun} s",
            checked.file_cpu
        );
    }
}

/// The measured error README and ARCHITECTURE.md quote: a thread spinning
/// for a known CPU time (its own CPU clock) against the file's figure.
#[test]
fn a_known_cpu_time_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(Events::All)
            .sample_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let c0 = process_cpu();
    rec.start_run(dir.path()).unwrap();
    let spun = std::thread::spawn(|| {
        let t0 = thread_cpu();
        spin(Duration::from_millis(400));
        thread_cpu() - t0
    })
    .join()
    .unwrap();
    let path = rec.end_run(Value::Null).unwrap();
    let oracle = process_cpu() - c0;
    let file = common::read_run_file(path);
    let checked = check(&file, oracle);
    let error = checked.file_cpu - spun;
    eprintln!(
        "spun {:.6} s (thread CPU clock), file {:.6} s, process {:.6} s: file - spun {:+.6} s",
        spun, checked.file_cpu, checked.oracle_cpu, error
    );
    assert!(
        checked.file_cpu >= spun - MIN_WINDOW,
        "file {} s < spun {spun} s",
        checked.file_cpu
    );
}
