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
//! Each child also times a snapshot (`flush`), and a dynamic-name region
//! with that many names alive, against a TSC pair in the same child: one
//! name again and again, and every name in turn. A third configuration
//! keeps the default config's events on.
//!
//! cargo bench --bench names [-- --svg docs/names.svg]
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

/// One size, in this (child) process: prints one line of `key=value`.
/// `mode` 0: events off; 1: the default config (events on); 2: events off
/// and `/metrics` on.
fn child(names: usize, mode: u8) {
    let dir = std::env::temp_dir().join(format!("runmetrics-names-{}", std::process::id()));
    let mut config = Config::new();
    if mode != 1 {
        config = config.events(Events::None);
    }
    if mode == 2 {
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
    // A snapshot: what a periodic flush costs with this many names.
    let start = Instant::now();
    rec.flush().expect("flush");
    let flush = start.elapsed();
    let during = rss_bytes();
    // A dynamic-name region with this many names alive: one name again and
    // again, and every name in turn; the TSC pair is the same run's floor.
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
        "during_kib={:.2} after_kib={:.2} end_run_us={:.1} baseline_us={:.1} file_bytes={file_bytes} \
         flush_us={:.1} pair_ns={pair:.2} one_ns={one:.2} all_ns={all:.2}",
        per(during),
        per(after),
        end_run.as_secs_f64() * 1e6,
        baseline.as_secs_f64() * 1e6,
        flush.as_secs_f64() * 1e6,
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
        let (n, mode) = spec.split_once(',').expect("N,mode");
        child(n.parse().expect("N"), mode.parse().expect("mode"));
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
        None if full => &[10, 100, 1_000, 10_000, 100_000],
        None => {
            println!("(test mode: up to 1 000 names; `cargo bench --bench names` for figures)");
            &[10, 100, 1_000]
        }
    };
    // `--svg PATH`: the cost curves, drawn from the default config's rows.
    let mut args = std::env::args().skip_while(|a| a != "--svg").skip(1);
    let svg = args.next();
    let mut curve = Vec::new();
    let exe = std::env::current_exe().expect("this binary");
    for mode in [0u8, 1, 2] {
        println!(
            "{}",
            match mode {
                0 => "default config, events off:",
                1 => "default config (events on, capped at 100 000):",
                _ => "events off, with /metrics (port 0):",
            }
        );
        println!(
            "{:>8} {:>12} {:>12} {:>10} {:>8} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8}",
            "names",
            "KiB/name run",
            "KiB/name end",
            "end_run ms",
            "÷ serde",
            "µs/name>10",
            "flush ms",
            "file KiB",
            "pair ns",
            "1 name",
            "all",
            "all×pair",
        );
        let mut end_run_10 = None;
        for &n in sizes {
            let mut child = std::process::Command::new(&exe);
            if full {
                child.arg("--bench");
            }
            let out = child
                .env(CHILD, format!("{n},{mode}"))
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
            let (pair, all) = (field(line, "pair_ns"), field(line, "all_ns"));
            println!(
                "{n:>8} {:>12.2} {:>12.2} {:>10.2} {:>8.2} {over_10:>10} {:>10.2} {:>9.0} {pair:>8.2} {:>8.2} {all:>8.2} {:>8.2}",
                field(line, "during_kib"),
                field(line, "after_kib"),
                end_us / 1e3,
                end_us / field(line, "baseline_us"),
                field(line, "flush_us") / 1e3,
                field(line, "file_bytes") / 1024.0,
                field(line, "one_ns"),
                all / pair,
            );
            if mode == 1 {
                curve.push(Point {
                    names: n as f64,
                    end_us_per_name: end_us / n as f64,
                    flush_us_per_name: field(line, "flush_us") / n as f64,
                    one: field(line, "one_ns") / pair,
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
    names: f64,
    end_us_per_name: f64,
    flush_us_per_name: f64,
    /// A dynamic-name region over the TSC pair: one name, every name.
    one: f64,
    all: f64,
}

/// A panel: its unit, its title, and its curves (label, colour, values).
type Panel<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str, Vec<f64>)>);

/// Two panels, names on a log scale: `end_run` and a snapshot per name
/// (µs), and a dynamic-name region (× the TSC pair).
fn plot(points: &[Point]) -> String {
    let (w, h, pad) = (360.0, 240.0, 48.0);
    let x = |n: f64, left: f64| {
        let (lo, hi) = (
            10f64.log10(),
            points.last().map_or(1e5, |p| p.names).log10(),
        );
        left + pad + (n.log10() - lo) / (hi - lo).max(1e-9) * (w - 2.0 * pad)
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n",
        2.0 * w
    );
    let panels: [Panel; 2] = [
        (
            "µs per name",
            "end_run and a snapshot (default config)",
            vec![
                (
                    "end_run",
                    "#1f77b4",
                    points.iter().map(|p| p.end_us_per_name).collect(),
                ),
                (
                    "snapshot",
                    "#ff7f0e",
                    points.iter().map(|p| p.flush_us_per_name).collect(),
                ),
            ],
        ),
        (
            "× TSC pair",
            "a dynamic-name region",
            vec![
                (
                    "one name",
                    "#2ca02c",
                    points.iter().map(|p| p.one).collect(),
                ),
                (
                    "every name in turn",
                    "#d62728",
                    points.iter().map(|p| p.all).collect(),
                ),
            ],
        ),
    ];
    for (i, (unit, title, series)) in panels.iter().enumerate() {
        let left = i as f64 * w;
        let top = series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .fold(1e-9, f64::max)
            * 1.1;
        let y = |v: f64| h - pad - v / top * (h - 2.0 * pad);
        out += &format!(
            "<text x=\"{}\" y=\"16\">{title}</text>\n<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{}\" y1=\"{pad}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
            left + pad,
            left + pad,
            h - pad,
            left + w - pad,
            h - pad,
            left + pad,
            left + pad,
            h - pad
        );
        for k in 0..=4 {
            let v = top * k as f64 / 4.0;
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.1}</text>\n",
                left + pad - 4.0,
                y(v) + 4.0
            );
        }
        out += &format!(
            "<text x=\"{}\" y=\"{}\">{unit}</text>\n",
            left + 4.0,
            pad - 8.0
        );
        for p in points {
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                x(p.names, left),
                h - pad + 14.0,
                p.names
            );
        }
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">distinct names</text>\n",
            left + w / 2.0,
            h - 8.0
        );
        for (j, (label, color, values)) in series.iter().enumerate() {
            let pts: Vec<String> = points
                .iter()
                .zip(values)
                .map(|(p, v)| format!("{:.1},{:.1}", x(p.names, left), y(*v)))
                .collect();
            out += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>\n",
                pts.join(" "),
                left + pad + 8.0,
                pad + 14.0 * j as f64
            );
        }
    }
    out + "</svg>\n"
}
