//! The free functions, as users of the Python module call them. One test:
//! the global recorder is process-wide state.

mod common;
use common::{entry_names, read_run_file};
use runmetrics::{Config, EndRunError, InitMetricsError};
use serde_json::{json, Value};

#[runmetrics::measure("main_infer", module = "inference")]
fn main_infer() -> u32 {
    let _t = runmetrics::phase!("inner", "inference");
    7
}

#[test]
fn the_seed_flow_on_the_global_recorder() {
    // Before anything: nothing open, timers are free no-ops, counts ignored.
    assert!(matches!(
        runmetrics::end_run(Value::Null),
        Err(EndRunError::NoOpenRun)
    ));
    assert!(!runmetrics::PhaseTimer::new("early", "g").is_recording());
    runmetrics::observe_counts(&[("ignored", 1)]);
    runmetrics::sample_process_gauges();

    // Port 0: any free port (the Prometheus tests use a real one); pushing
    // is tested against a real gateway in tests/pushgateway.rs.
    runmetrics::init_metrics(
        Config::new()
            .port(0)
            .job("al_inference")
            .grouping("env", "dev"),
    )
    .unwrap();
    let again = runmetrics::init_metrics(Config::new()).unwrap_err();
    assert!(
        matches!(again, InitMetricsError::AlreadyInitialized { .. }),
        "{again:?}"
    );
    assert!(again.to_string().contains("once"), "{again}");

    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("metrics_logs");
    let run_id = runmetrics::start_run(&log_dir).unwrap();
    {
        let _t = runmetrics::PhaseTimer::new("grounding", "pipeline");
        let _d = runmetrics::PhaseTimer::dynamic(&format!("execute{}", 1), "pipeline");
    }
    assert_eq!(main_infer(), 7);
    assert_eq!(runmetrics::measure_fn("closure", "inference", || 3), 3);
    {
        let _f = runmetrics::FunctionTimer::dynamic(&String::from("dyn_fn"), "inference");
    }
    runmetrics::observe_counts(&[("grounded_rules", 10), ("facts_count", 200)]);
    runmetrics::sample_process_gauges();
    let path = runmetrics::end_run(json!({"facts_final": 100, "rules_total": 50})).unwrap();

    assert_eq!(path, log_dir.join(format!("{run_id}.json")));
    let file = read_run_file(&path);
    let meta = &file["meta"];
    assert_eq!(meta["run_id"], run_id.as_str());
    assert_eq!(meta["job"], "al_inference");
    assert_eq!(meta["grouping"], json!({"env": "dev"}));
    assert_eq!(meta["facts_final"], 100);
    let phases = entry_names(&file, "phase_durations_seconds_total", "phase");
    assert_eq!(phases, ["grounding", "execute1", "inner"]);
    let functions = entry_names(&file, "function_durations_seconds_total", "name");
    assert_eq!(functions, ["main_infer", "closure", "dyn_fn"]);
    assert_eq!(meta["counts"].as_array().unwrap().len(), 2);
    assert!(meta["process_samples"].as_u64().unwrap() >= 3);

    // Runs are sequential: a second one works the same way.
    let second = runmetrics::start_run(&log_dir).unwrap();
    assert_ne!(second, run_id);
    runmetrics::end_run(Value::Null).unwrap();
}
