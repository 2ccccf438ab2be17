//! Runs that last as long as a service: rotation and retention of old run files.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, Recorder};
use serde_json::Value;

fn run_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".json") && name.starts_with("20")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn rotation_chains_the_runs_and_loses_or_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .rotate_every(Duration::from_millis(150))
            .event_cap(500),
    )
    .unwrap();
    let first = rec.start_run(dir.path()).unwrap();
    let made = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    {
                        let _t = rec.phase("work", "rotate");
                        // Some regions last long enough to span a boundary.
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    made.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(800));
        stop.store(true, Ordering::Relaxed);
    });
    let last = rec.end_run(Value::Null).unwrap();

    let files: Vec<Value> = run_files(dir.path()).iter().map(read_run_file).collect();
    assert!(files.len() >= 4, "{} runs in 800 ms", files.len());
    // Follow the chain back from the last run to the first.
    let mut id = read_run_file(&last)["meta"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut chain = 1;
    let mut total = 0;
    loop {
        let file = files
            .iter()
            .find(|f| f["meta"]["run_id"] == id.as_str())
            .unwrap_or_else(|| panic!("run {id} has no file"));
        let meta = &file["meta"];
        assert_eq!(meta["in_progress"], false, "{id} is final");
        assert_eq!(
            meta["records_outside_run"], 0,
            "{id}: a spanning region was lost"
        );
        assert_eq!(meta["records_dropped"], 0);
        total += phase_count(file, "work");
        match meta["previous_run_id"].as_str() {
            Some(previous) => {
                id = previous.to_owned();
                chain += 1;
            }
            None => break,
        }
    }
    assert_eq!(id, first, "the chain ends at the run start_run began");
    assert_eq!(chain, files.len(), "every run is in the chain");
    assert_eq!(
        total,
        made.load(Ordering::Relaxed),
        "each region counted once"
    );
}

#[test]
fn keep_runs_removes_the_oldest_run_files_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.json"), "{}").unwrap();
    let rec = Recorder::new(Config::new().keep_runs(2)).unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(rec.start_run(dir.path()).unwrap());
        rec.end_run(Value::Null).unwrap();
        // Distinct modification times, whatever the file system's granularity.
        std::thread::sleep(Duration::from_millis(20));
    }
    let kept: Vec<String> = run_files(dir.path())
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut newest = ids[2..].to_vec();
    newest.sort();
    assert_eq!(kept, newest);
    assert!(dir.path().join("notes.json").exists(), "not a run file");
    assert!(Recorder::new(Config::new().keep_runs(0)).is_err());
}
