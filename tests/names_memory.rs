//! What a distinct name costs in memory: resident memory (this process's,
//! from /proc/self/statm) per phase name at 10 000 names, the run file
//! written, stays within a few KiB. A bound on memory, not on speed.

mod common;
use common::{read_run_file, rss_bytes};
use runmetrics::{Config, Recorder};
use serde_json::Value;

const NAMES: usize = 10_000;
/// Generous: the aggregate, its window copy, the tally's counters and the
/// name itself take under 4 KiB each (BENCHMARKS.md).
const MAX_BYTES_PER_NAME: u64 = 16 * 1024;

#[test]
fn ten_thousand_names_take_under_16_kib_each_with_the_file_written() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    // The ring, the collector and the first file before measuring.
    drop(rec.phase("warm_up", "names_memory"));
    rec.flush().unwrap();
    let names: Vec<String> = (0..NAMES).map(|i| format!("name_{i}")).collect();
    let before = rss_bytes();
    for name in &names {
        for _ in 0..8 {
            drop(rec.phase_dynamic(name, "names_memory"));
        }
    }
    rec.flush().unwrap();
    let path = rec.end_run(Value::Null).unwrap();
    let per_name = rss_bytes().saturating_sub(before) / NAMES as u64;
    let file = read_run_file(path);
    let phases = file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == "names_memory" && e["count"] == 8)
        .count();
    assert_eq!(phases, NAMES, "every name timed 8 times is in the file");
    assert!(
        per_name < MAX_BYTES_PER_NAME,
        "{per_name} bytes per name, over {MAX_BYTES_PER_NAME}"
    );
}
