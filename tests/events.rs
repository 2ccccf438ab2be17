//! The event modes (`Config::events`) and the events sidecar: kept events
//! stream to `<run_id>.events.jsonl` while the run is open, every file lists
//! them in time order, and the sidecar goes once the final file is written.

use std::path::Path;

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, Events, Overflow, Recorder};
use serde_json::Value;

fn events_of<'a>(file: &'a Value, kind: &str) -> Vec<&'a Value> {
    file["events"]
        .as_array()
        .expect("events is a list")
        .iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

fn sidecars(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".events.jsonl"))
        .collect()
}

#[test]
fn every_event_streams_to_the_sidecar_and_the_final_file_lists_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().events(Events::All).overflow(Overflow::Block)).unwrap();
    rec.start_run(dir.path()).unwrap();
    const PER_THREAD: u64 = 20_000;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    let _t = rec.phase("step", "events");
                }
            });
        }
    });
    let snapshot = read_run_file(rec.flush().unwrap());
    let name = snapshot["meta"]["events_file"]
        .as_str()
        .expect("a snapshot names its sidecar");
    assert_eq!(sidecars(dir.path()), [name]);
    let sidecar = std::fs::read_to_string(dir.path().join(name)).unwrap();
    for line in sidecar.lines().take(100) {
        let e: Value = serde_json::from_str(line).expect("each line is one event");
        assert!(e["offset_ns"].is_u64(), "{line}");
    }
    assert_eq!(
        events_of(&snapshot, "phase_timing").len() as u64,
        2 * PER_THREAD
    );

    for _ in 0..10 {
        let _t = rec.phase("after", "events");
    }
    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &end["meta"];
    assert_eq!(meta["event_mode"], "all");
    assert_eq!(meta["event_cap"], Value::Null);
    assert_eq!(meta["events_file"], Value::Null);
    assert_eq!(meta["events_omitted"], 0);
    let events = end["events"].as_array().unwrap();
    assert_eq!(meta["events_written"], events.len());
    assert_eq!(
        events_of(&end, "phase_timing").len() as u64,
        2 * PER_THREAD + 10
    );
    assert_eq!(phase_count(&end, "step"), 2 * PER_THREAD);
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| e["offset_ns"].as_u64().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "events are in time order across threads"
    );
    let timestamps: Vec<&str> = events
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(timestamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        sidecars(dir.path()).is_empty(),
        "the final file holds every event"
    );
}

#[test]
fn every_nth_keeps_one_region_in_n_and_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().events(Events::EveryNth(10))).unwrap();
    rec.start_run(dir.path()).unwrap();
    for i in 0..1_000 {
        let _t = rec.phase("step", "events");
        if i % 250 == 0 {
            rec.sample_process_gauges();
        }
    }
    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &end["meta"];
    assert_eq!(meta["event_mode"], "every_nth");
    assert_eq!(meta["event_every_nth"], 10);
    assert_eq!(events_of(&end, "phase_timing").len(), 100);
    let samples = events_of(&end, "process_sample").len() as u64;
    assert_eq!(meta["process_samples"], samples, "every sample is kept");
    assert_eq!(meta["events_omitted"], 900);
    assert_eq!(
        phase_count(&end, "step"),
        1_000,
        "the aggregates count every region"
    );
}

#[test]
fn none_keeps_no_event_and_makes_no_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(Events::None)
            .flush_interval(std::time::Duration::from_millis(20)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();
    for _ in 0..500 {
        let _t = rec.phase("step", "events");
    }
    rec.flush().unwrap();
    assert!(sidecars(dir.path()).is_empty());
    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &end["meta"];
    assert_eq!(meta["event_mode"], "none");
    assert_eq!(meta["event_cap"], 0);
    assert_eq!(end["events"], Value::Array(Vec::new()));
    assert_eq!(meta["events_written"], 0);
    let samples = meta["process_samples"].as_u64().unwrap();
    assert_eq!(meta["events_omitted"], 500 + samples);
    assert_eq!(phase_count(&end, "step"), 500);
}

#[test]
fn every_nth_of_zero_is_refused() {
    let e = Recorder::new(Config::new().events(Events::EveryNth(0))).unwrap_err();
    assert!(e.to_string().contains("Events::None"), "{e}");
}
