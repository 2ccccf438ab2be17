//! A soak: two threads record flat out for `RUNMETRICS_SOAK_SECONDS`
//! (default 20, the shortened form CI runs; 600 is the full soak) with a
//! snapshot every second, a rotation every minute (every fifth of a short
//! soak) and every 10 000th event kept. At the end, RSS is within 10 % of
//! what it was after the first minute (the first fifth), and the runs'
//! counts add up exactly to the regions made.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{phase_count, read_run_file, rss_bytes};
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;

#[test]
fn two_threads_for_minutes_keep_memory_flat_and_counts_exact() {
    let seconds: u64 = std::env::var("RUNMETRICS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let total = Duration::from_secs(seconds);
    let warm = (total / 5).min(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .flush_interval(Duration::from_secs(1))
            .rotate_every(warm)
            .events(Events::EveryNth(10_000)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    let made = AtomicU64::new(0);
    let started = Instant::now();
    let (mut baseline, mut peak) = (0, 0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1_000 {
                        let _t = rec.phase("work", "soak");
                    }
                    n += 1_000;
                }
                made.fetch_add(n, Ordering::Relaxed);
            });
        }
        let mut next_report = warm;
        while started.elapsed() < total {
            std::thread::sleep(Duration::from_millis(250));
            let rss = rss_bytes();
            if baseline == 0 && started.elapsed() >= warm {
                baseline = rss;
            }
            if baseline > 0 {
                peak = peak.max(rss);
            }
            if started.elapsed() >= next_report {
                println!(
                    "soak: {:>4} s  RSS {:.1} MiB",
                    started.elapsed().as_secs(),
                    rss as f64 / 1048576.0
                );
                next_report += warm;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let end_rss = rss_bytes();
    let last = rec.end_run(Value::Null).unwrap();
    drop(rec);

    let mut counted = 0;
    let mut runs = 0;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let file = read_run_file(&path);
            assert_eq!(file["meta"]["in_progress"], false, "{}", path.display());
            assert_eq!(file["meta"]["records_outside_run"], 0);
            counted += phase_count(&file, "work");
            runs += 1;
        }
    }
    let made = made.into_inner();
    println!(
        "soak: {seconds} s, {made} regions in {runs} runs; RSS after {} s {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        warm.as_secs(),
        baseline as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        end_rss as f64 / 1048576.0
    );
    assert!(
        runs >= 3,
        "rotated: {runs} runs, the last {}",
        last.display()
    );
    assert_eq!(counted, made, "every region counted once across the runs");
    assert!(
        (end_rss as f64) <= baseline as f64 * 1.10,
        "RSS grew from {baseline} to {end_rss} bytes"
    );
}
