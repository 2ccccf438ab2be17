//! Memory stays flat however many events a run keeps: 500 000 events with
//! `Events::All` move RSS by no more than the collector's held events (at
//! most 2^17 of 48 bytes, 6 MiB, and usually far fewer) and its buffers,
//! where holding them all would take 24 MiB and more (about 200 bytes each
//! in the file). The one test in this file, so that nothing else moves RSS.

mod common;
use common::{read_run_file, rss_bytes};
use runmetrics::{Config, Events, Overflow, Recorder};
use serde_json::Value;

const MIB: f64 = 1048576.0;

#[test]
fn keeping_every_event_does_not_grow_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().events(Events::All).overflow(Overflow::Block)).unwrap();
    rec.start_run(dir.path()).unwrap();
    let chunk = |n| {
        for _ in 0..n {
            let _t = rec.phase("step", "memory");
        }
    };
    // Warm up: the ring, the tally's rows, the held buffer, the sidecar.
    chunk(50_000);
    rec.flush().unwrap();
    let baseline = rss_bytes();
    let mut peak = baseline;
    for _ in 0..45 {
        chunk(10_000);
        peak = peak.max(rss_bytes());
    }
    let path = rec.end_run(Value::Null).unwrap();
    peak = peak.max(rss_bytes());
    let bytes = std::fs::metadata(&path).unwrap().len();
    let file = read_run_file(&path);
    let written = file["meta"]["events_written"].as_u64().unwrap();
    println!(
        "{written} events, a {:.0} MiB file; RSS {:.1} MiB after the warm-up, peak {:.1} MiB",
        bytes as f64 / MIB,
        baseline as f64 / MIB,
        peak as f64 / MIB
    );
    assert!(written >= 500_000, "{written}");
    assert_eq!(file["meta"]["events_omitted"], 0);
    // Reading the file back above is the test's own cost, after `peak`.
    assert!(
        peak - baseline < 12 << 20,
        "RSS grew by {:.1} MiB while keeping {written} events",
        (peak - baseline) as f64 / MIB
    );
}
