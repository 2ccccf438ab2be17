//! The cap on distinct names (`Config::max_names`): names made from
//! unbounded input (a request id in a phase name) must not grow memory
//! without bound. Past the cap, a new name's regions and counts are pooled
//! under the over-cap entry, nothing is lost (every region is counted, its
//! time kept), and `meta.names` says how many lookups were refused. Oracles:
//! the loops' own counters and /proc/self/statm. One test: the cap is
//! process-wide.

mod common;
use common::{read_run_file, rss_bytes};
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;

const CAP: usize = 1_000;
/// Distinct names past the cap, from two threads.
const HOSTILE: usize = 100_000;
/// Well under what 10^5 kept names would take (2 to 7 KiB each, 200 to
/// 700 MiB): the refused names are neither kept nor cached per thread.
const MAX_GROWTH: u64 = 24 << 20;

#[test]
fn names_past_the_cap_are_pooled_counted_and_take_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().max_names(CAP).events(Events::None)).unwrap();
    rec.start_run(dir.path()).unwrap();
    drop(rec.phase("warm_up", "names_cap"));
    let first = read_run_file(rec.flush().unwrap());
    let before_fill = first["meta"]["names"]["distinct"].as_u64().unwrap() as usize;
    assert!((1..CAP).contains(&before_fill), "{before_fill}");

    // Fill the cap exactly, each kept name timed twice.
    let kept: Vec<String> = (before_fill..CAP).map(|i| format!("kept_{i}")).collect();
    for name in &kept {
        drop(rec.phase_dynamic(name, "names_cap"));
        drop(rec.phase_dynamic(name, "names_cap"));
    }
    rec.flush().unwrap();

    let before = rss_bytes();
    let rec_ref = &rec;
    let issued: u64 = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || {
                    let mut issued = 0u64;
                    for i in 0..HOSTILE / 2 {
                        let name = format!("hostile_{t}_{i}");
                        drop(rec_ref.phase_dynamic(&name, "names_cap"));
                        issued += 1;
                    }
                    issued
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    // A count name past the cap is pooled too, its value kept.
    rec.observe_counts(&[("hostile_count", 7)]);
    rec.flush().unwrap();
    let growth = rss_bytes().saturating_sub(before);
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &file["meta"];

    let phases = meta["phase_durations_seconds_total"].as_array().unwrap();
    let named = |prefix: &str| {
        phases
            .iter()
            .filter(|e| e["phase"].as_str().unwrap().starts_with(prefix))
            .collect::<Vec<_>>()
    };
    assert!(named("hostile_").is_empty(), "no refused name is an entry");
    let kept_entries = named("kept_");
    assert_eq!(
        kept_entries.len(),
        kept.len(),
        "every name under the cap kept"
    );
    assert!(kept_entries.iter().all(|e| e["count"] == 2));
    let over: Vec<_> = phases
        .iter()
        .filter(|e| e["phase"] == "(names over max_names)" && e["module"] == "runmetrics")
        .collect();
    assert_eq!(over.len(), 1, "one over-cap phase entry");
    assert_eq!(over[0]["count"].as_u64(), Some(issued), "no region lost");
    let counts = meta["counts"].as_array().unwrap();
    assert!(counts
        .iter()
        .any(|c| c["name"] == "(names over max_names)" && c["last"] == 7));

    assert_eq!(meta["names"]["max_names"].as_u64(), Some(CAP as u64));
    assert_eq!(meta["names"]["distinct"].as_u64(), Some(CAP as u64));
    // Each hostile region's name and the count's name: one refused lookup
    // each (refused names are never cached, so none is looked up twice).
    assert_eq!(meta["names"]["refused"].as_u64(), Some(issued + 1));
    assert!(
        growth < MAX_GROWTH,
        "{HOSTILE} refused names grew the process by {growth} bytes"
    );
}
