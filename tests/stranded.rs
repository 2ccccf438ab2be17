//! Nothing stranded: end_run includes every region that finished before it
//! was called, from parked, idle and exited threads alike.

use std::sync::mpsc;

mod common;
use common::phase_count;
use runmetrics::{Config, Recorder};
use serde_json::Value;

#[test]
fn records_of_a_parked_thread_and_an_exited_thread_are_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A long poll interval: the collector only sees the records because
    // end_run takes them, not because it happened to poll.
    let rec =
        Recorder::new(Config::new().poll_interval(std::time::Duration::from_secs(3600))).unwrap();
    rec.start_run(dir.path()).unwrap();
    let (recorded_tx, recorded_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        // Owned here, so a failed check drops it and the parked thread's
        // `recv` ends: a failure fails, never hangs.
        let release_tx = release_tx;
        let rec = &rec;
        s.spawn(move || {
            for _ in 0..7 {
                let _t = rec.phase("parked", "stranded");
            }
            recorded_tx.send(()).unwrap();
            // Parked, mid-batch, while main ends the run.
            let _ = release_rx.recv();
        });
        s.spawn(move || {
            for _ in 0..5 {
                let _t = rec.phase("exited", "stranded");
            }
        })
        .join()
        .unwrap();
        recorded_rx.recv().unwrap();
        let path = rec.end_run(Value::Null).unwrap();
        release_tx.send(()).unwrap();
        let file = common::read_run_file(path);
        assert_eq!(phase_count(&file, "parked"), 7);
        assert_eq!(phase_count(&file, "exited"), 5);
        assert_eq!(file["meta"]["records_dropped"], 0);
        assert_eq!(file["meta"]["records_issued"], 12);
    });
}

#[test]
fn many_short_lived_threads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    for _ in 0..50 {
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..100 {
                    let _t = rec.phase("short", "threads");
                }
            });
        });
    }
    let file = common::read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(phase_count(&file, "short"), 5_000);
    assert_eq!(file["meta"]["threads"].as_array().unwrap().len(), 50);
}

/// With events off a region never touches the ring, so a thread that exits
/// just after the collector read its tally leaves regions only there: its
/// ring must stay until a pass that saw it closed has read them.
#[test]
fn threads_that_exit_between_two_looks_lose_nothing_with_events_off() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(runmetrics::Events::None)
            .poll_interval(std::time::Duration::from_micros(100)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();
    const ROUNDS: u64 = 100;
    const THREADS: u64 = 4;
    const REGIONS: u64 = 20_000;
    for _ in 0..ROUNDS {
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..REGIONS {
                        let _t = rec.phase("exiting", "threads");
                    }
                });
            }
        });
    }
    let file = common::read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(phase_count(&file, "exiting"), ROUNDS * THREADS * REGIONS);
    assert_eq!(file["meta"]["records_issued"], ROUNDS * THREADS * REGIONS);
}
