//! What a distinct name costs: resident memory per phase name during the run
//! (after a flush, so the collector holds every name's aggregate and its
//! window copy) and after `end_run` (with `/metrics`: the exposition's
//! lifetime copy too), and how long `end_run` and a snapshot (`flush`)
//! take, at 10, 100, 1 000, 10 000 and 100 000 names — measured, printed,
//! and recorded in BENCHMARKS.md.
//!
//! Each size runs in a child process of its own (this binary again), so no
//! size reuses memory an earlier one freed. Each name is a dynamic phase
//! timed 8 times on one thread, in four configurations (`MODES`): events
//! off or on (the default config: capped at 100 000), `/metrics` off or
//! on. The run files go to a tmpfs (`/dev/shm`), so the times are what the
//! CPU does; the disk's part, a sync of a file of the same size, is timed
//! apart (`--disk` writes to the temporary directory instead). Times are
//! given as ratios to a baseline of the same child: writing as many
//! run-file-like entries (and, with events, event lines) with `serde_json`
//! to a file beside the run's; and per name.
//!
//! The snapshot timed is the second of two flushes in a row (the first
//! takes in the regions): every name written again, nothing new to take.
//! Each child also times a dynamic-name region with that many names alive,
//! in a second run, against a TSC pair in the same child: one name again
//! and again, and every name in turn.
//!
//! `--callgrind` counts instructions instead (`valgrind --tool=callgrind`,
//! stable on a busy machine): of the snapshot and of `end_run`, each as the
//! difference between two children that stop before and after it.
//!
//! cargo bench --bench names [-- --svg docs/names.svg]
//! cargo bench --bench names -- --callgrind   (10, 1 000, 10 000 names)
//!
//! Under `cargo test` (no `--bench` argument) the sizes stop at 1 000 names.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use runmetrics::{Config, Events, Recorder};

mod plot;
use plot::Panel;

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

/// Writes `n` entries shaped like a run file's phase entries, and
/// `events` event lines shaped like its region events, with `serde_json`
/// (each built as a `serde_json::Value` first), the baseline `end_run` and
/// a snapshot are compared with; returns the time to write and the time to
/// sync, apart.
fn serde_baseline(n: usize, events: usize, dir: &std::path::Path) -> (Duration, Duration) {
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
    for i in 0..events {
        let event = serde_json::json!({
            "timestamp": "2026-12-02T19:00:00.123456+00:00",
            "event": "phase_timing", "module": "bench",
            "phase": format!("name{}", i / REGIONS_PER_NAME),
            "duration_seconds": 1.5e-7, "thread": 1,
            "start_offset_seconds": 0.0123, "offset_ns": 12_300_000 + i,
        });
        serde_json::to_writer(&mut out, &event).expect("write");
        out.write_all(b",\n").expect("write");
    }
    out.flush().expect("flush");
    let written = start.elapsed();
    let start = Instant::now();
    out.get_ref().sync_all().expect("sync");
    let synced = start.elapsed();
    let _ = std::fs::remove_file(path);
    (written, synced)
}

/// How long syncing a file of `bytes` (and its directory) takes in `dir`:
/// the part of `end_run` the disk decides, measured apart.
fn sync_cost(bytes: u64, dir: &std::path::Path) -> Duration {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("runmetrics-names-sync-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("sync file");
    let block = vec![b' '; 1 << 16];
    let mut left = bytes as usize;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n]).expect("write");
        left -= n;
    }
    let start = Instant::now();
    file.sync_all().expect("sync");
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let took = start.elapsed();
    let _ = std::fs::remove_file(path);
    took
}

/// ns per region of `f` over `iters` calls, the least of 5 runs.
fn per_call(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Where a child stops early, for an instruction count of what comes
/// before (`RUNMETRICS_NAMES_STOP`): before the measured snapshot, before
/// `end_run`, or after it (the differences are the snapshot's and
/// `end_run`'s instructions).
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Never,
    BeforeSnapshot,
    BeforeEndRun,
    AfterEndRun,
}

fn stop_here(stop: Stop, at: Stop) {
    if stop == at {
        // No destructor: the recorder's drop would end the run.
        std::process::exit(0);
    }
}

/// The configurations, by number: events on or off, `/metrics` on or off.
const MODES: [(&str, bool, bool); 4] = [
    ("default config, events off", false, false),
    ("default config (events on, capped at 100 000)", true, false),
    ("events off, with /metrics (port 0)", false, true),
    (
        "default config with /metrics (events on, port 0)",
        true,
        true,
    ),
];

/// Where the children write: a tmpfs when there is one (`/dev/shm`), so
/// `end_run` shows what it costs the CPU; `--disk` (or
/// `RUNMETRICS_NAMES_DIR`) picks another place.
fn base_dir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("RUNMETRICS_NAMES_DIR") {
        return dir.into();
    }
    let shm = std::path::Path::new("/dev/shm");
    if !std::env::args().any(|a| a == "--disk") && shm.is_dir() {
        return shm.to_owned();
    }
    std::env::temp_dir()
}

/// One size, in this (child) process: prints one line of `key=value`.
fn child(names: usize, mode: usize, stop: Stop) {
    let (_, events, metrics) = MODES[mode];
    let dir = base_dir().join(format!("runmetrics-names-{}", std::process::id()));
    let mut config = Config::new();
    if !events {
        config = config.events(Events::None);
    }
    if metrics {
        // No periodic publish inside what is timed (a slow child under
        // valgrind would have many): `end_run`'s own publish is the one
        // measured, and what `/metrics` adds to it is a publish's cost.
        config = config.port(0).publish_interval(Duration::from_secs(3_600));
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
    // The first snapshot also takes in every region; the second writes
    // the same names with nothing new: what a periodic flush costs.
    let start = Instant::now();
    rec.flush().expect("flush");
    let first_flush = start.elapsed();
    stop_here(stop, Stop::BeforeSnapshot);
    let start = Instant::now();
    rec.flush().expect("flush");
    let flush = start.elapsed();
    stop_here(stop, Stop::BeforeEndRun);
    let during = rss_bytes();
    let start = Instant::now();
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let end_run = start.elapsed();
    stop_here(stop, Stop::AfterEndRun);
    let after = rss_bytes();
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let kept_events = if events {
        (names.len() * REGIONS_PER_NAME).min(100_000)
    } else {
        0
    };
    let (baseline, baseline_sync) = serde_baseline(names.len(), kept_events, &dir);
    let disk_sync = sync_cost(file_bytes, &std::env::temp_dir());
    // A dynamic-name region with this many names alive, in a run of its
    // own (so that `end_run` above wrote the names' first 8 regions only):
    // one name again and again, and every name in turn; the TSC pair is
    // the same run's floor.
    rec.start_run(&dir).expect("start_run");
    let clock = quanta::Clock::new();
    let iters = if std::env::args().any(|a| a == "--bench") {
        200_000
    } else {
        2_000
    };
    let pair = per_call(iters, |_| {
        let a = clock.raw();
        black_box((a, clock.raw()));
    });
    let one = per_call(iters, |_| {
        drop(black_box(rec.phase_dynamic(&names[0], "bench")));
    });
    let all = per_call(iters, |i| {
        drop(black_box(
            rec.phase_dynamic(&names[i % names.len()], "bench"),
        ));
    });
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);
    let per = |rss: u64| (rss.saturating_sub(before)) as f64 / names.len() as f64 / 1024.0;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "during_kib={:.2} after_kib={:.2} end_run_us={:.1} baseline_us={:.1} \
         baseline_sync_us={:.1} disk_sync_us={:.1} file_bytes={file_bytes} \
         first_flush_us={:.1} flush_us={:.1} pair_ns={pair:.2} one_ns={one:.2} all_ns={all:.2}",
        per(during),
        per(after),
        us(end_run),
        us(baseline),
        us(baseline_sync),
        us(disk_sync),
        us(first_flush),
        us(flush),
    );
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
}

/// Runs one child: `n` names in configuration `mode`, stopping at `stop`
/// (under `valgrind` when `callgrind` names its output file).
fn run_child(n: usize, mode: usize, stop: Stop, callgrind: Option<&std::path::Path>) -> String {
    let exe = std::env::current_exe().expect("this binary");
    let mut child = match callgrind {
        Some(out) => {
            let mut c = std::process::Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    if std::env::args().any(|a| a == "--bench") {
        child.arg("--bench");
    }
    if std::env::args().any(|a| a == "--disk") {
        child.arg("--disk");
    }
    let stop = match stop {
        Stop::Never => "never",
        Stop::BeforeSnapshot => "snapshot",
        Stop::BeforeEndRun => "end_run",
        Stop::AfterEndRun => "after",
    };
    let out = child
        .env(CHILD, format!("{n},{mode},{stop}"))
        .output()
        .expect("run the child");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "child {n} failed: {line}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

/// The instructions a callgrind output file counted (its `totals:` line).
fn instructions(path: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(path).expect("callgrind's output");
    let _ = std::fs::remove_file(path);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a totals line")
}

/// `--callgrind`: the instructions of the second snapshot and of `end_run`,
/// each the difference between two children under `valgrind
/// --tool=callgrind` that stop before and after it (stable on a busy
/// machine, unlike the times).
fn callgrind(sizes: &[usize], modes: &[usize]) {
    let out = std::env::temp_dir().join(format!("runmetrics-names-{}.cg", std::process::id()));
    for &mode in modes {
        println!("{}: instructions (callgrind)", MODES[mode].0);
        println!(
            "{:>8} {:>14} {:>9} {:>9} {:>14} {:>9} {:>9}",
            "names", "snapshot", "÷ names", "slope", "end_run", "÷ names", "slope"
        );
        let mut previous: Option<(usize, f64, f64)> = None;
        for &n in sizes {
            let at = |stop| {
                run_child(n, mode, stop, Some(&out));
                instructions(&out)
            };
            let (a, b, c) = (
                at(Stop::BeforeSnapshot),
                at(Stop::BeforeEndRun),
                at(Stop::AfterEndRun),
            );
            let (snapshot, end_run) = (b - a, c - b);
            let slope = |x: f64, x0: f64, n0: usize| format!("{:.0}", (x - x0) / (n - n0) as f64);
            let (s_slope, e_slope) = match previous {
                Some((n0, s0, e0)) => (slope(snapshot, s0, n0), slope(end_run, e0, n0)),
                None => ("-".to_owned(), "-".to_owned()),
            };
            previous = Some((n, snapshot, end_run));
            println!(
                "{n:>8} {snapshot:>14.0} {:>9.0} {s_slope:>9} {end_run:>14.0} {:>9.0} {e_slope:>9}",
                snapshot / n as f64,
                end_run / n as f64,
            );
        }
    }
    println!(
        "(÷ names: each count over the names; slope: per name added since the size above; \
         a count is ± a few 10^5 instructions of the collector's own wake-ups)"
    );
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let mut parts = spec.split(',');
        let n = parts.next().and_then(|n| n.parse().ok()).expect("N");
        let mode = parts.next().and_then(|m| m.parse().ok()).expect("mode");
        let stop = match parts.next() {
            Some("snapshot") => Stop::BeforeSnapshot,
            Some("end_run") => Stop::BeforeEndRun,
            Some("after") => Stop::AfterEndRun,
            _ => Stop::Never,
        };
        child(n, mode, stop);
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    // RUNMETRICS_NAMES_SIZES=10,1000 picks the sizes (a build whose names
    // cost too much for the largest, say); RUNMETRICS_NAMES_MODES=1,3 the
    // configurations (numbers into `MODES`).
    let list = |var: &str| -> Option<Vec<usize>> {
        std::env::var(var)
            .ok()
            .map(|v| v.split(',').map(|n| n.parse().expect("a number")).collect())
    };
    let chosen = list("RUNMETRICS_NAMES_SIZES");
    let modes = list("RUNMETRICS_NAMES_MODES").unwrap_or_else(|| (0..MODES.len()).collect());
    if std::env::args().any(|a| a == "--callgrind") {
        callgrind(chosen.as_deref().unwrap_or(&[10, 1_000, 10_000]), &modes);
        return;
    }
    let sizes: &[usize] = match &chosen {
        Some(sizes) => sizes,
        None if full => &[10, 100, 1_000, 10_000, 100_000],
        None => {
            println!("(test mode: up to 1 000 names; `cargo bench --bench names` for figures)");
            &[10, 100, 1_000]
        }
    };
    // `--svg PATH`: the cost curves, drawn from the events-on rows.
    let mut args = std::env::args().skip_while(|a| a != "--svg").skip(1);
    let svg = args.next();
    let mut curve = Vec::new();
    println!(
        "writing to {} (the disk's sync of a same-size file timed apart)",
        base_dir().display()
    );
    for &mode in &modes {
        println!("{}:", MODES[mode].0);
        println!(
            "{:>7} {:>7} {:>7} {:>9} {:>6} {:>7} {:>7} {:>9} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7}",
            "names",
            "KiB run",
            "KiB end",
            "end_run",
            "÷serde",
            "µs/name",
            ">10",
            "snapshot",
            "÷serde",
            "µs/name",
            "file KiB",
            "disk syn",
            "pair ns",
            "1 name",
            "all",
            "all×pair",
        );
        let mut first = None;
        for &n in sizes {
            let line = run_child(n, mode, Stop::Never, None);
            let end_us = field(&line, "end_run_us");
            let flush_us = field(&line, "flush_us");
            let baseline_us = field(&line, "baseline_us");
            let (n0, us0) = *first.get_or_insert((n, end_us));
            let over = if n > n0 {
                format!("{:.2}", (end_us - us0) / (n - n0) as f64)
            } else {
                "-".to_owned()
            };
            let (pair, all) = (field(&line, "pair_ns"), field(&line, "all_ns"));
            println!(
                "{n:>7} {:>7.2} {:>7.2} {:>7.2}ms {:>6.2} {:>7.2} {over:>7} {:>7.2}ms {:>6.2} {:>7.2} {:>8.0} {:>6.2}ms {pair:>7.2} {:>7.2} {all:>7.2} {:>7.2}",
                field(&line, "during_kib"),
                field(&line, "after_kib"),
                end_us / 1e3,
                end_us / baseline_us,
                end_us / n as f64,
                flush_us / 1e3,
                flush_us / baseline_us,
                flush_us / n as f64,
                field(&line, "file_bytes") / 1024.0,
                field(&line, "disk_sync_us") / 1e3,
                field(&line, "one_ns"),
                all / pair,
            );
            if MODES[mode].1 {
                curve.push(Point {
                    metrics: MODES[mode].2,
                    names: n as f64,
                    end_us_per_name: end_us / n as f64,
                    flush_us_per_name: flush_us / n as f64,
                    one: field(&line, "one_ns") / pair,
                    all: all / pair,
                });
            }
        }
    }
    if let Some(path) = svg {
        std::fs::write(&path, plot(&curve)).expect("write the SVG");
        println!("plot written to {path}");
    }
}

/// One size's figures for the plot.
struct Point {
    /// With `/metrics` on.
    metrics: bool,
    names: f64,
    end_us_per_name: f64,
    flush_us_per_name: f64,
    /// A dynamic-name region over the TSC pair: one name, every name.
    one: f64,
    all: f64,
}

/// The µs per name target of `end_run` and a snapshot (issue 16).
const TARGET_US_PER_NAME: f64 = 10.0;

/// Two panels, names on a log scale: `end_run` and a snapshot per name
/// (µs), with and without `/metrics`, and a dynamic-name region (× the
/// TSC pair).
fn plot(points: &[Point]) -> String {
    let curve = |metrics: bool, f: fn(&Point) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| p.metrics == metrics)
            .map(|p| (p.names, f(p)))
            .collect()
    };
    let panels: [Panel; 2] = [
        (
            "µs per name",
            "end_run and a snapshot (events on)",
            vec![
                ("end_run", "#1f77b4", curve(false, |p| p.end_us_per_name)),
                ("snapshot", "#ff7f0e", curve(false, |p| p.flush_us_per_name)),
                (
                    "end_run, /metrics",
                    "#9467bd",
                    curve(true, |p| p.end_us_per_name),
                ),
                (
                    "snapshot, /metrics",
                    "#8c564b",
                    curve(true, |p| p.flush_us_per_name),
                ),
            ],
            Some(TARGET_US_PER_NAME),
        ),
        (
            "× TSC pair",
            "a dynamic-name region",
            vec![
                ("one name", "#2ca02c", curve(false, |p| p.one)),
                ("every name in turn", "#d62728", curve(false, |p| p.all)),
            ],
            None,
        ),
    ];
    plot::svg(&panels, "distinct names")
}
