//! `runmetrics show` over several runs (a fleet): real run files written by
//! separate runs of known work, merged, against the union of their events
//! (a sorted vector of every region's duration): counts and totals exact,
//! min and max exact, quantiles within the histogram's bucket precision;
//! counts combined; CPU and RSS per process and summed; the per-process
//! breakdown equal to each file's own figures; files, a directory and a
//! quoted glob give the same merge.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use runmetrics::{Config, Events, Recorder};
use runmetrics_format::{Event, RunFile};
use serde_json::Value;

fn runmetrics(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runmetrics"))
        .args(args)
        .output()
        .expect("the runmetrics binary runs")
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Worker `w`'s run: 60 regions of `step` lasting (w + 1) * 30 µs plus up to
/// 9 µs, 5 of `rare`, and counts with known values.
fn worker(dir: &Path, w: u64) -> PathBuf {
    let rec = Recorder::new(Config::new().job("fleet").events(Events::All)).unwrap();
    rec.start_run(dir).unwrap();
    for j in 0..60u64 {
        let _t = rec.phase("step", "work");
        spin(Duration::from_micros((w + 1) * 30 + j % 10));
    }
    for _ in 0..5 {
        let _t = rec.function("rare", "work");
        spin(Duration::from_micros(200));
    }
    rec.observe_counts(&[("queue", 10 * w as i64)]);
    rec.observe_counts(&[("queue", -(w as i64))]);
    rec.sample_process_gauges();
    rec.end_run(Value::Null).unwrap()
}

/// Every region's duration, in seconds, from the files' events, by name.
fn events(files: &[PathBuf], name: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for f in files {
        for e in RunFile::open(f).unwrap().events().unwrap() {
            match e.unwrap() {
                Event::Phase(p) if p.phase == name => out.push(p.duration_seconds),
                Event::Function(p) if p.name == name => out.push(p.duration_seconds),
                _ => {}
            }
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn show_json(args: &[&str]) -> Value {
    let o = runmetrics(&[&["show", "--json", "--per-process"], args].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn several_runs_merge_into_the_figures_of_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..4)
        .map(|w| worker(&dir.path().join(format!("worker{w}")), w))
        .collect();
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let v = show_json(&args);
    assert_eq!(v["runs_merged"], 4);

    for (list, name) in [("phases", "step"), ("functions", "rare")] {
        let truth = events(&files, name);
        let row = v[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap();
        assert_eq!(row["count"].as_u64().unwrap() as usize, truth.len());
        let total: f64 = truth.iter().sum();
        let got = row["total_seconds"].as_f64().unwrap();
        // Each event's duration is rounded to its nanosecond on its own.
        let slack = truth.len() as f64 * 1e-9;
        assert!((got - total).abs() <= slack, "{name}: {got} {total}");
        assert!((row["max_seconds"].as_f64().unwrap() - truth[truth.len() - 1]).abs() <= 1e-9);
        for (key, q) in [
            ("p50_seconds", 0.5),
            ("p90_seconds", 0.9),
            ("p99_seconds", 0.99),
        ] {
            let want = quantile(&truth, q);
            let got = row[key].as_f64().unwrap();
            // A bucket is 1/64 of its power of two wide.
            assert!(
                (got - want).abs() <= want / 64.0 + 2e-9,
                "{name} {key}: {got} against the events' {want}"
            );
        }
        // The per-process breakdown is each file's own entry.
        for (run, file) in v["runs"].as_array().unwrap().iter().zip(&files) {
            let own = RunFile::open(file).unwrap();
            let e = own.entries().find(|e| e.name == name).unwrap();
            let r = run[list]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            assert_eq!(r["count"].as_u64(), e.stats.count);
            assert_eq!(r["p99_seconds"].as_f64(), e.stats.p99_seconds);
        }
    }
    // Workers' steps last 30, 60, 90 and 120 µs and more: the merged
    // median lies between the second and third worker's.
    let p50 = v["phases"][0]["p50_seconds"].as_f64().unwrap();
    assert!((60e-6..100e-6).contains(&p50), "{p50}");

    // Counts: extremes and observations over all, the last of the last run.
    let c = &v["counts"][0];
    assert_eq!(
        (
            &c["name"],
            &c["min"],
            &c["max"],
            &c["observations"],
            &c["last"]
        ),
        (
            &"queue".into(),
            &(-3).into(),
            &30.into(),
            &8.into(),
            &(-3).into()
        )
    );

    // CPU and RSS: per process, and the sum of the processes'.
    let runs = v["runs"].as_array().unwrap();
    for key in ["cpu_percent_mean", "cpu_percent_max", "rss_max_mib"] {
        let per: Vec<f64> = files
            .iter()
            .map(|f| {
                let m = RunFile::open(f).unwrap().meta;
                match key {
                    "cpu_percent_mean" => m.cpu_percent_mean,
                    "cpu_percent_max" => m.cpu_percent_max,
                    _ => m.rss_max_mib,
                }
                .unwrap()
            })
            .collect();
        for (r, want) in runs.iter().zip(&per) {
            assert_eq!(r["process"][key].as_f64().unwrap(), *want);
        }
        let sum: f64 = per.iter().sum();
        assert!((v["process"][key].as_f64().unwrap() - sum).abs() < 1e-9);
    }

    // A directory tree's glob and each worker directory give the same merge.
    let glob = format!("{}/worker*/*.json", dir.path().display());
    let by_glob = show_json(&[&glob]);
    let dirs: Vec<String> = (0..4)
        .map(|w| dir.path().join(format!("worker{w}")).display().to_string())
        .collect();
    let by_dir = show_json(&dirs.iter().map(String::as_str).collect::<Vec<_>>());
    for other in [&by_glob, &by_dir] {
        assert_eq!(other["phases"], v["phases"]);
        assert_eq!(other["counts"], v["counts"]);
    }

    // The text view: one merged table, then the processes and their sum.
    let o = runmetrics(&[&["show"], &args[..]].concat());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.starts_with("fleet     4 runs, merged; job fleet"),
        "{text}"
    );
    assert_eq!(text.matches("work/step").count(), 1, "{text}");
    assert!(text.lines().any(|l| l.starts_with("sum ")), "{text}");

    // The report of the fleet: the merged table, a CPU line and a timeline
    // lane per run.
    let page = dir.path().join("fleet.html");
    let o = runmetrics(&["report", &glob, "-o", page.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let steps = v["phases"][0]["count"].as_u64().unwrap();
    assert!(
        html.contains(&format!("<td>phase work/step</td><td>{steps}</td>")),
        "the merged count {steps}"
    );
    for run in v["runs"].as_array().unwrap() {
        let id = run["run_id"].as_str().unwrap();
        assert!(html.matches(id).count() >= 2, "{id}: a CPU line and a lane");
    }
}
