//! The `metrics` facade's key cap under 10^5 distinct label sets: past
//! `METRICS_MAX_KEYS` a new key is refused, its values dropped and counted
//! in `meta.metrics_facade` (refused + kept values = the loop's own count),
//! and memory stays flat (/proc). Alone in its process: the cap is
//! process-wide.
#![cfg(feature = "metrics")]

mod common;
use common::{read_run_file, rss_bytes};
use runmetrics::{Config, Events, Recorder, METRICS_MAX_KEYS};
use serde_json::Value;

const HOSTILE: usize = 100_000;

#[test]
fn distinct_label_sets_past_the_cap_are_refused_and_counted() {
    runmetrics::install_metrics().unwrap();
    assert!(matches!(
        runmetrics::install_metrics(),
        Err(runmetrics::InstallMetricsError::AlreadySet)
    ));
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().events(Events::None)).unwrap();
    rec.start_run(dir.path()).unwrap();
    for i in 0..METRICS_MAX_KEYS {
        metrics::histogram!("h", "id" => i.to_string()).record(1.0);
    }
    let before = rss_bytes();
    for i in 0..HOSTILE {
        metrics::histogram!("h", "id" => format!("hostile{i}")).record(1.0);
        metrics::counter!("c", "id" => format!("hostile{i}")).increment(1);
    }
    let growth = rss_bytes().saturating_sub(before);
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let f = &file["meta"]["metrics_facade"];
    assert_eq!(f["keys"].as_u64(), Some(METRICS_MAX_KEYS as u64));
    assert_eq!(f["keys_refused"].as_u64(), Some(2 * HOSTILE as u64));
    assert_eq!(f["values_dropped"].as_u64(), Some(2 * HOSTILE as u64));
    let hs = file["meta"]["histograms"].as_array().unwrap();
    assert_eq!(hs.len(), METRICS_MAX_KEYS);
    assert!(hs.iter().all(|h| h["count"] == 1));
    assert!(growth < 16 << 20, "RSS grew {growth} bytes");
}
