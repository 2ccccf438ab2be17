//! Graceful shutdown: dropping the recorder, or `std::process::exit` after
//! `end_run`, loses nothing; a process that exits with its run still open
//! leaves the run's last snapshot (and its events sidecar).
//!
//! A test without the harness: the same binary is the exiting child when
//! `RUNMETRICS_SHUTDOWN_CHILD` says which one, in the directory
//! `RUNMETRICS_SHUTDOWN_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, Recorder};
use serde_json::Value;

const CHILD: &str = "RUNMETRICS_SHUTDOWN_CHILD";
const DIR: &str = "RUNMETRICS_SHUTDOWN_DIR";

fn main() {
    match std::env::var(CHILD).ok().as_deref() {
        Some("end_run") => exit_after_end_run(&dir()),
        Some("open") => exit_with_the_run_open(&dir()),
        Some(other) => panic!("unknown child {other}"),
        None => {
            dropping_the_recorder_ends_the_run();
            println!("shutdown: dropping the recorder ends the run: ok");
            exit_after_end_run_loses_nothing();
            println!("shutdown: process::exit after end_run: ok");
            exit_with_the_run_open_keeps_the_last_snapshot();
            println!("shutdown: process::exit with the run open: ok");
        }
    }
}

fn dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR).expect("the child's directory"))
}

fn record(phase: &'static str, n: u64) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n {
                    let _t = runmetrics::PhaseTimer::new(phase, "shutdown");
                }
            });
        }
    });
}

/// The one run file in `dir`, parsed, and whether an events sidecar is
/// beside it.
fn the_run(dir: &Path) -> (Value, bool) {
    let mut runs = Vec::new();
    let mut sidecar = false;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        sidecar |= name.ends_with(".events.jsonl");
        if name.ends_with(".json") {
            runs.push(path);
        }
    }
    assert_eq!(runs.len(), 1, "{runs:?}");
    (read_run_file(&runs[0]), sidecar)
}

fn run_child(which: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, which)
        .env(DIR, dir.path())
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the child exits through process::exit(7)"
    );
    dir
}

fn dropping_the_recorder_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    for _ in 0..1_000 {
        let _t = rec.phase("step", "shutdown");
    }
    drop(rec);
    let (file, sidecar) = the_run(dir.path());
    assert_eq!(file["meta"]["in_progress"], false);
    assert!(file["meta"]["ended_at"].is_string());
    assert_eq!(phase_count(&file, "step"), 1_000);
    assert!(!sidecar, "the final file holds every event");
}

fn exit_after_end_run(dir: &Path) {
    runmetrics::start_run(dir).unwrap();
    record("step", 5_000);
    runmetrics::end_run(Value::Null).unwrap();
    std::process::exit(7);
}

fn exit_after_end_run_loses_nothing() {
    let dir = run_child("end_run");
    let (file, sidecar) = the_run(dir.path());
    assert_eq!(file["meta"]["in_progress"], false);
    assert_eq!(phase_count(&file, "step"), 10_000);
    assert_eq!(
        file["meta"]["records_issued"], file["meta"]["records_aggregated"],
        "nothing dropped"
    );
    assert!(!sidecar);
}

fn exit_with_the_run_open(dir: &Path) {
    runmetrics::init_metrics(Config::new().flush_interval(std::time::Duration::from_secs(3600)))
        .unwrap();
    runmetrics::start_run(dir).unwrap();
    record("before", 500);
    runmetrics::flush().unwrap();
    record("after", 500);
    std::process::exit(7);
}

fn exit_with_the_run_open_keeps_the_last_snapshot() {
    let dir = run_child("open");
    let (file, sidecar) = the_run(dir.path());
    assert_eq!(file["meta"]["in_progress"], true, "the last snapshot");
    assert_eq!(file["meta"]["ended_at"], Value::Null);
    assert_eq!(phase_count(&file, "before"), 1_000);
    assert_eq!(
        phase_count(&file, "after"),
        0,
        "recorded after the last snapshot"
    );
    assert!(sidecar, "the events sidecar stays beside it");
}
