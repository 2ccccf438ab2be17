//! Every recording call of the API, compiled with `default-features = false`
//! (no `enabled`): it all builds, runs, returns what the user's code returns,
//! and records nothing; the run file says so.

#[path = "../../common/mod.rs"]
mod common;

use common::{block_on, read_run_file};
use runmetrics::{Config, FunctionTimer, PhaseTimer, Recorder};

#[runmetrics::measure]
fn bare(x: u32) -> u32 {
    x + 1
}

#[runmetrics::measure("named", module = "disabled", resources = true)]
fn named() -> Vec<u8> {
    vec![7; 3]
}

#[runmetrics::measure(fenced = true, resources = true)]
fn fenced(x: u32) -> u32 {
    x + 1
}

#[runmetrics::measure]
async fn later(x: u32) -> u32 {
    x * 2
}

struct Model;

impl Model {
    #[runmetrics::measure]
    fn infer(&self, x: u32) -> u32 {
        x + 2
    }
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("runmetrics-disabled-{name}-{}", std::process::id()))
}

#[test]
fn the_global_api_builds_runs_and_records_nothing() {
    runmetrics::init_metrics(Config::new().job("disabled")).expect("init_metrics");
    let log_dir = dir("global");
    let run_id = runmetrics::start_run(&log_dir).expect("start_run");
    {
        let t = PhaseTimer::new("grounding", "pipeline");
        assert!(!t.is_recording(), "a timer recorded with `enabled` off");
        let _d = PhaseTimer::dynamic(&format!("p{}", 1), "pipeline");
        let _m = runmetrics::phase!("macro");
        let _n = runmetrics::phase!("macro", "module");
        let _o = runmetrics::phase!("macro", fenced);
        let _p = runmetrics::phase!("macro", "module", fenced);
        let g = PhaseTimer::fenced("fenced", "pipeline");
        assert!(
            !g.is_recording(),
            "a fenced timer recorded with `enabled` off"
        );
        let h = FunctionTimer::fenced("f", "m").with_resources();
        assert!(!h.is_recording());
        h.end();
        let f = FunctionTimer::new("f", "m").with_resources();
        assert!(!f.is_recording());
        f.end();
    }
    assert_eq!(bare(1), 2);
    assert_eq!(named(), vec![7; 3]);
    assert_eq!(block_on(later(4)), 8);
    assert_eq!(Model.infer(1), 3);
    assert_eq!(runmetrics::measure_fn("f", "m", || 5), 5);
    assert_eq!(runmetrics::measure_fn_fenced("f", "m", || 6), 6);
    assert_eq!(fenced(2), 3);
    runmetrics::observe_counts(&[("rules", 10)]);
    runmetrics::sample_process_gauges();
    let path = runmetrics::end_run(serde_json::json!({"facts": 1})).expect("end_run");
    assert!(path.ends_with(format!("{run_id}.json")));

    let meta = &read_run_file(&path)["meta"];
    assert_eq!(meta["recording_enabled"], false);
    assert_eq!(meta["records_issued"], 0);
    assert_eq!(meta["phase_durations_seconds_total"], serde_json::json!([]));
    assert_eq!(
        meta["function_durations_seconds_total"],
        serde_json::json!([])
    );
    assert_eq!(meta["counts"], serde_json::json!([]));
    assert_eq!(meta["facts"], 1);
    let _ = std::fs::remove_dir_all(&log_dir);
}

#[test]
fn the_recorder_handle_builds_runs_and_records_nothing() {
    let rec = Recorder::new(Config::new()).expect("recorder");
    let log_dir = dir("handle");
    rec.start_run(&log_dir).expect("start_run");
    {
        let _p = rec.phase("p", "m");
        let _d = rec.phase_dynamic("p", "m");
        let _f = rec.function("f", "m");
        let _g = rec.function_dynamic("f", "m");
    }
    assert_eq!(rec.measure_fn("f", "m", || "x"), "x");
    rec.observe_counts(&[("n", 1)]);
    rec.sample_process_gauges();
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let file = read_run_file(&path);
    assert_eq!(file["meta"]["recording_enabled"], false);
    assert_eq!(file["meta"]["records_issued"], 0);
    let events = file["events"].as_array().expect("events");
    assert!(
        events.iter().all(|e| e["event"] == "process_sample"),
        "only the collector's own process samples: {events:?}"
    );
    let _ = std::fs::remove_dir_all(&log_dir);
}
