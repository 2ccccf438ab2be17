//! What a distinct name costs: resident memory per phase name during the run
//! (after a flush, so the collector holds every name's aggregate and its
//! window copy) and after `end_run` (with `/metrics`: the exposition's
//! lifetime copy too), and how long `end_run` takes, at 10, 1 000, 10 000
//! and 100 000 names — measured, printed, and recorded in BENCHMARKS.md.
//!
//! Each size runs in a child process of its own (this binary again), so no
//! size reuses memory an earlier one freed. Each name is a dynamic phase
//! timed 8 times on one thread, with the default config but events off (so
//! that the file holds the entries only, not a number of events that the
//! cap stops at 100 000), and once more with `/metrics` on. `end_run`'s
//! time is given as a ratio to a baseline measured in the same child:
//! writing as many run-file-like entries with `serde_json` to a file; and
//! per name beyond the 10-name run's (its fixed costs, the syncs and the
//! last sample, taken out).
//!
//! cargo bench --bench names
//!
//! Under `cargo test` (no `--bench` argument) the sizes stop at 1 000 names.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use runmetrics::{Config, Events, Recorder};

const CHILD: &str = "RUNMETRICS_NAMES_CHILD";
const REGIONS_PER_NAME: usize = 8;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Writes `n` entries shaped like a run file's phase entries, the
/// baseline `end_run` is compared with.
fn serde_baseline(n: usize, dir: &std::path::Path) -> Duration {
    let path = dir.join("baseline.json");
    let start = Instant::now();
    let file = std::fs::File::create(&path).expect("baseline file");
    let mut out = std::io::BufWriter::new(file);
    for i in 0..n {
        let entry = serde_json::json!({
            "module": "bench",
            "phase": format!("name{i}"),
            "count": 8, "total_seconds": 1.2e-6, "min_seconds": 1e-7,
            "mean_seconds": 1.5e-7, "p50_seconds": 1.5e-7, "p90_seconds": 2e-7,
            "p99_seconds": 2e-7, "p999_seconds": 2e-7, "max_seconds": 2e-7,
            "histogram_ns": [[100, 4], [150, 4]],
        });
        serde_json::to_writer(&mut out, &entry).expect("write");
        out.write_all(b",\n").expect("write");
    }
    out.flush().expect("flush");
    out.get_ref().sync_all().expect("sync");
    let took = start.elapsed();
    let _ = std::fs::remove_file(path);
    took
}

/// One size, in this (child) process: prints one line of `key=value`.
fn child(names: usize, metrics: bool) {
    let dir = std::env::temp_dir().join(format!("runmetrics-names-{}", std::process::id()));
    let mut config = Config::new().events(Events::None);
    if metrics {
        config = config.port(0);
    }
    let rec = Recorder::new(config).expect("recorder");
    rec.start_run(&dir).expect("start_run");
    // The ring and the collector's first allocations, before any name.
    drop(black_box(rec.phase("warm_up", "bench")));
    rec.flush().expect("flush");
    let names: Vec<String> = (0..names).map(|i| format!("name{i}")).collect();
    let before = rss_bytes();
    for name in &names {
        for _ in 0..REGIONS_PER_NAME {
            drop(black_box(rec.phase_dynamic(name, "bench")));
        }
    }
    rec.flush().expect("flush");
    let during = rss_bytes();
    let start = Instant::now();
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let end_run = start.elapsed();
    let after = rss_bytes();
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let baseline = serde_baseline(names.len(), &dir);
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);
    let per = |rss: u64| (rss.saturating_sub(before)) as f64 / names.len() as f64 / 1024.0;
    println!(
        "during_kib={:.2} after_kib={:.2} end_run_us={:.1} baseline_us={:.1} file_bytes={file_bytes}",
        per(during),
        per(after),
        end_run.as_secs_f64() * 1e6,
        baseline.as_secs_f64() * 1e6,
    );
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (n, metrics) = spec.split_once(',').expect("N,metrics");
        child(n.parse().expect("N"), metrics == "1");
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    // RUNMETRICS_NAMES_SIZES=10,1000 picks the sizes (a build whose names
    // cost too much for the largest, say).
    let chosen: Option<Vec<usize>> = std::env::var("RUNMETRICS_NAMES_SIZES")
        .ok()
        .map(|v| v.split(',').map(|n| n.parse().expect("a size")).collect());
    let sizes: &[usize] = match &chosen {
        Some(sizes) => sizes,
        None if full => &[10, 1_000, 10_000, 100_000],
        None => {
            println!("(test mode: up to 1 000 names; `cargo bench --bench names` for figures)");
            &[10, 1_000]
        }
    };
    let exe = std::env::current_exe().expect("this binary");
    for metrics in [false, true] {
        println!(
            "{}",
            if metrics {
                "with /metrics (port 0):"
            } else {
                "default config, events off:"
            }
        );
        println!(
            "{:>8} {:>14} {:>14} {:>12} {:>12} {:>16} {:>10}",
            "names",
            "KiB/name run",
            "KiB/name end",
            "end_run ms",
            "÷ serde",
            "µs/name over 10",
            "file KiB"
        );
        let mut end_run_10 = None;
        for &n in sizes {
            let out = std::process::Command::new(&exe)
                .env(CHILD, format!("{n},{}", u8::from(metrics)))
                .output()
                .expect("run the child");
            let line = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child {n} failed: {line}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = line.trim();
            let end_us = field(line, "end_run_us");
            let (n_10, us_10) = *end_run_10.get_or_insert((n, end_us));
            let over_10 = if n > n_10 {
                format!("{:.2}", (end_us - us_10) / (n - n_10) as f64)
            } else {
                "-".to_owned()
            };
            println!(
                "{n:>8} {:>14.2} {:>14.2} {:>12.2} {:>12.2} {over_10:>16} {:>10.0}",
                field(line, "during_kib"),
                field(line, "after_kib"),
                end_us / 1e3,
                end_us / field(line, "baseline_us"),
                field(line, "file_bytes") / 1024.0,
            );
        }
    }
}
