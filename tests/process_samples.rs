//! `sample_process_gauges` never waits for the collector: a request is a
//! flag the collector's next pass answers with one sample, so calls that
//! come faster than its passes merge; none is lost.

mod common;

use std::time::Duration;

use runmetrics::{Config, Recorder};
use serde_json::Value;

/// Samples only at the run's start and end and on request.
fn recorder() -> Recorder {
    Recorder::new(Config::new().sample_interval(Duration::from_secs(3600))).unwrap()
}

fn samples(path: std::path::PathBuf) -> u64 {
    common::read_run_file(path)["meta"]["process_samples"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_tight_loop_of_requests_does_not_wait_for_a_collector_pass_each() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    rec.start_run(dir.path()).unwrap();
    const CALLS: u64 = 20_000;
    for _ in 0..CALLS {
        rec.sample_process_gauges();
    }
    let taken = samples(rec.end_run(Value::Null).unwrap());
    // A sample takes the collector tens of microseconds: a call that waited
    // for it would get one each. Calls that do not wait merge.
    assert!(
        taken < CALLS / 10,
        "{taken} samples for {CALLS} calls: each call waited for a collector pass"
    );
    assert!(
        taken >= 3,
        "the start, end and at least one requested sample: {taken}"
    );
}

#[test]
fn a_request_is_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    rec.start_run(dir.path()).unwrap();
    rec.sample_process_gauges();
    // The snapshot's pass answers the request at the latest.
    assert_eq!(
        samples(rec.flush().unwrap()),
        2,
        "the start's and the one asked for"
    );
    std::thread::sleep(Duration::from_millis(50));
    rec.sample_process_gauges();
    assert_eq!(samples(rec.flush().unwrap()), 3);
    // Outside a run there is nothing to sample.
    assert_eq!(
        samples(rec.end_run(Value::Null).unwrap()),
        4,
        "and the end's"
    );
    rec.sample_process_gauges();
    rec.start_run(dir.path()).unwrap();
    assert_eq!(samples(rec.end_run(Value::Null).unwrap()), 2);
}
