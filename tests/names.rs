//! However many distinct names a process uses, no region is lost to their
//! number: a name past the first 65 535 (count names share the ids) is
//! counted like any other, flat out and with a tiny ring alike.

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, Recorder};
use serde_json::Value;

const NAMES: usize = 70_000;

/// Registers `NAMES` count names in the open run, draining as it goes so
/// that the count values themselves are not what fills the ring.
fn count_names(rec: &Recorder, prefix: &str) {
    let names: Vec<String> = (0..NAMES).map(|i| format!("{prefix}{i}")).collect();
    for (i, chunk) in names.chunks(8).enumerate() {
        let counts: Vec<(&str, i64)> = chunk.iter().map(|n| (n.as_str(), 1)).collect();
        rec.observe_counts(&counts);
        if i % 1_000 == 999 {
            rec.flush().unwrap();
        }
    }
}

#[test]
fn a_phase_named_after_70_000_count_names_loses_no_region_flat_out() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    count_names(&rec, "flat_out_count_");
    const THREADS: usize = 2;
    const REGIONS: u64 = 1_000_000;
    // The oracle: each thread's own count of the regions it made.
    let made: u64 = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut made = 0u64;
                    for _ in 0..REGIONS {
                        let _t = rec.phase("after_the_count_names", "names");
                        made += 1;
                    }
                    made
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(made, THREADS as u64 * REGIONS);
    assert_eq!(phase_count(&file, "after_the_count_names"), made);
}

#[test]
fn seventy_thousand_dynamic_names_with_a_64_record_ring_are_all_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().buffer_records(64)).unwrap();
    rec.start_run(dir.path()).unwrap();
    // Name i is timed 1 + i % 3 times: the oracle.
    let times = |i: usize| 1 + (i % 3) as u64;
    let names: Vec<String> = (0..NAMES).map(|i| format!("many_{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        for _ in 0..times(i) {
            let _t = rec.phase_dynamic(name, "names_tiny_ring");
        }
    }
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let counts: std::collections::HashMap<&str, u64> = file["meta"]
        ["phase_durations_seconds_total"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|e| e["module"] == "names_tiny_ring")
        .map(|e| (e["phase"].as_str().unwrap(), e["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts.len(), NAMES, "every name is in the file");
    for (i, name) in names.iter().enumerate() {
        assert_eq!(counts.get(name.as_str()), Some(&times(i)), "{name}");
    }
}
