//! Snapshots of an open run: `flush`, `Config::flush_interval`, the window
//! they carry, and what a failed write leaves.

use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, FlushError, Recorder};
use serde_json::Value;

fn window_count(file: &Value, phase: &str) -> u64 {
    file["meta"]["window"]["phases"]
        .as_array()
        .expect("meta.window.phases is a list")
        .iter()
        .find(|e| e["phase"] == phase)
        .map_or(0, |e| e["count"].as_u64().expect("a count"))
}

fn record(rec: &Recorder, phase: &'static str, n: u64) {
    for _ in 0..n {
        let _t = rec.phase(phase, "flush");
    }
}

#[test]
fn flush_writes_a_snapshot_and_end_run_the_final_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    record(&rec, "step", 30);

    let path = rec.flush().unwrap();
    let first = read_run_file(&path);
    let meta = &first["meta"];
    assert_eq!(meta["in_progress"], true);
    assert_eq!(meta["ended_at"], Value::Null);
    assert_eq!(meta["write_failures"], 0);
    assert_eq!(
        (phase_count(&first, "step"), window_count(&first, "step")),
        (30, 30)
    );
    assert_eq!(meta["window"]["started_at"], meta["started_at"]);

    record(&rec, "step", 12);
    let second = read_run_file(rec.flush().unwrap());
    assert_eq!(
        (phase_count(&second, "step"), window_count(&second, "step")),
        (42, 12),
        "the window holds what came since the previous snapshot"
    );
    assert_eq!(
        second["meta"]["window"]["started_at"], first["meta"]["flushed_at"],
        "each window starts where the previous file was written"
    );
    let p50 = second["meta"]["window"]["phases"][0]["p50_seconds"]
        .as_f64()
        .unwrap();
    assert!(p50 > 0.0);

    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(end["meta"]["in_progress"], false);
    assert!(end["meta"]["ended_at"].is_string());
    assert_eq!(
        (phase_count(&end, "step"), window_count(&end, "step")),
        (42, 0)
    );
    assert!(matches!(rec.flush(), Err(FlushError::NoOpenRun)));
}

#[test]
fn periodic_snapshots_show_an_idle_threads_region_within_two_intervals() {
    let interval = Duration::from_millis(250);
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().flush_interval(interval)).unwrap();
    rec.start_run(dir.path()).unwrap();
    let run_file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("with flush_interval, start_run writes the first snapshot");
    assert_eq!(read_run_file(&run_file)["meta"]["in_progress"], true);

    let (done_tx, done_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        // Owned here, so a failed check below drops it on the way out and
        // the idle thread's `recv` ends: a failure fails, never hangs.
        let release_tx = release_tx;
        let rec = &rec;
        s.spawn(move || {
            record(rec, "idle", 1);
            done_tx.send(Instant::now()).unwrap();
            // Alive and idle: nothing more to push the region along.
            let _ = release_rx.recv();
        });
        let ended = done_rx.recv().unwrap();
        let seen = common::eventually("the idle thread's region", 4 * interval, || {
            let file: Value = serde_json::from_str(&std::fs::read_to_string(&run_file).ok()?)
                .expect("a reader always sees a complete file");
            (phase_count(&file, "idle") == 1).then(Instant::now)
        });
        // Polled every 100 ms: the region was in a file no later than then.
        assert!(
            seen.duration_since(ended) <= 2 * interval + Duration::from_millis(150),
            "took {:?}",
            seen.duration_since(ended)
        );
        release_tx.send(()).unwrap();
    });
    rec.end_run(Value::Null).unwrap();
}

#[test]
fn a_failed_write_is_returned_counted_and_retried() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("logs");
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(&dir).unwrap();
    record(&rec, "before", 5);
    std::fs::remove_dir_all(&dir).unwrap();

    let e = rec.flush().unwrap_err();
    assert!(matches!(e, FlushError::WriteRunFile { .. }), "{e:?}");
    assert!(e.to_string().contains("next flush tries again"), "{e}");
    record(&rec, "during", 3);
    let e = rec.end_run(Value::Null).unwrap_err();
    assert!(e.to_string().contains("still open"), "{e}");

    std::fs::create_dir(&dir).unwrap();
    let snapshot = read_run_file(rec.flush().unwrap());
    assert_eq!(snapshot["meta"]["write_failures"], 2);
    let cause = snapshot["meta"]["last_write_error"].as_str().unwrap();
    assert!(cause.contains("No such file"), "{cause}");
    assert_eq!(
        window_count(&snapshot, "before"),
        5,
        "a failed write does not end the window"
    );
    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(
        (phase_count(&end, "before"), phase_count(&end, "during")),
        (5, 3)
    );
    assert_eq!(end["meta"]["write_failures"], 2);
}
