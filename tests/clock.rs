//! Wall-clock jumps: a faked wall clock jumps back an hour and forward a day
//! while a run records, and across a rotation. Durations stay positive and
//! events stay in order, because every time after a run's start comes from
//! the TSC. (The one test in this file: the wall clock is process-wide.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Local, TimeDelta};
use runmetrics::{Config, Recorder};
use serde_json::Value;

mod common;
use common::read_run_file;

/// Seconds the fake wall clock is off from the real one.
static JUMP: AtomicI64 = AtomicI64::new(0);

fn fake_now() -> DateTime<Local> {
    Local::now() + TimeDelta::seconds(JUMP.load(Ordering::Relaxed))
}

fn time(v: &Value) -> DateTime<Local> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Local)
}

fn record(rec: &Recorder) {
    for _ in 0..3 {
        let _t = rec.phase("sleep", "clock");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every event is at or after the start, in order, with a duration that is
/// not negative; returns the last event's time.
fn check_events(file: &Value) -> DateTime<Local> {
    let started = time(&file["meta"]["started_at"]);
    let mut last = started;
    let mut last_offset = 0;
    for e in file["events"].as_array().unwrap() {
        let at = time(&e["timestamp"]);
        assert!(at >= last, "events out of order: {e}");
        let offset = e["offset_ns"].as_u64().unwrap();
        assert!(offset >= last_offset, "{e}");
        if e["event"] == "phase_timing" {
            let d = e["duration_seconds"].as_f64().unwrap();
            assert!(d >= 0.005, "a 5 ms sleep took {d} s");
            assert!(e["start_offset_seconds"].as_f64().unwrap() >= 0.0);
        }
        (last, last_offset) = (at, offset);
    }
    last
}

#[test]
fn wall_clock_jumps_never_reorder_or_negate_anything() {
    runmetrics::__private::set_wall_clock(fake_now);
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    let before = fake_now();
    rec.start_run(dir.path()).unwrap();
    record(&rec);
    JUMP.store(-3_600, Ordering::Relaxed);
    record(&rec);
    let snapshot = read_run_file(rec.flush().unwrap());
    JUMP.store(86_400, Ordering::Relaxed);
    record(&rec);
    JUMP.store(-7_200, Ordering::Relaxed);
    let end = read_run_file(rec.end_run(Value::Null).unwrap());

    let started = time(&end["meta"]["started_at"]);
    assert!(started >= before && started - before < TimeDelta::seconds(5));
    let flushed = time(&snapshot["meta"]["flushed_at"]);
    let ended = time(&end["meta"]["ended_at"]);
    assert!(
        started <= flushed && flushed <= ended,
        "{started} {flushed} {ended}"
    );
    assert!(
        ended - started < TimeDelta::seconds(60),
        "no jump reached the file"
    );
    assert!(end["meta"]["window"]["seconds"].as_f64().unwrap() >= 0.0);
    assert!(check_events(&end) <= ended);
    check_events(&snapshot);

    // A rotation's next run starts where the previous ended, by the TSC,
    // though the wall clock went back two hours.
    JUMP.store(0, Ordering::Relaxed);
    let rec = Recorder::new(Config::new().rotate_every(Duration::from_millis(100))).unwrap();
    rec.start_run(dir.path()).unwrap();
    record(&rec);
    JUMP.store(-7_200, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(150));
    record(&rec);
    let last = read_run_file(rec.end_run(Value::Null).unwrap());
    let previous_id = last["meta"]["previous_run_id"]
        .as_str()
        .expect("the run was rotated");
    let previous = read_run_file(dir.path().join(format!("{previous_id}.json")));
    let previous_end = time(&previous["meta"]["ended_at"]);
    let next_start = time(&last["meta"]["started_at"]);
    assert!(
        previous_end <= next_start && next_start - previous_end < TimeDelta::seconds(5),
        "{previous_end} then {next_start}"
    );
    check_events(&last);
}
