//! The run file: its layout (golden), its numbers against independent
//! measurements, and the kinds of regions that must work.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod common;

use common::{block_on, read_run_file};
use runmetrics::{Config, Recorder};
use serde_json::{json, Value};

/// The shape of a JSON value: objects keep their keys in order, arrays show
/// the distinct shapes of their elements, leaves show their type.
fn shape(v: &Value) -> Value {
    match v {
        // The event kind is part of the layout: keep it literally.
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), if k == "event" { v.clone() } else { shape(v) }))
                .collect(),
        ),
        Value::Array(a) => {
            let mut shapes: Vec<Value> = Vec::new();
            for s in a.iter().map(shape) {
                if !shapes.contains(&s) {
                    shapes.push(s);
                }
            }
            Value::Array(shapes)
        }
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(n) if n.is_f64() => json!("number"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
    }
}

/// Everything a run can hold, once each.
fn full_run(rec: &Recorder, dir: &std::path::Path) -> Value {
    rec.start_run(dir).unwrap();
    {
        let _g = rec.phase("grounding", "pipeline");
        let _e = rec.phase("execute", "pipeline");
    }
    rec.measure_fn("main_infer", "inference", || std::hint::black_box(1));
    {
        let _f = rec.function("load_model", "init").with_resources();
    }
    rec.observe_counts(&[("facts_count", 200), ("grounded_rules", 10)]);
    rec.sample_process_gauges();
    let path = rec
        .end_run(json!({"facts_final": 150, "rules_total": 200}))
        .unwrap();
    read_run_file(&path)
}

#[test]
fn layout_matches_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().job("al_inference").grouping("env", "dev")).unwrap();
    let file = full_run(&rec, dir.path());
    let got = serde_json::to_string_pretty(&shape(&file)).unwrap() + "\n";
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/run_file_shape.json"
    );
    if std::env::var_os("RUNMETRICS_BLESS").is_some() {
        std::fs::write(golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(golden).expect("golden file; RUNMETRICS_BLESS=1 writes it");
    assert_eq!(
        got, want,
        "run file layout changed; if on purpose, RUNMETRICS_BLESS=1 cargo test"
    );
}

#[test]
fn seed_keys_come_first_in_the_seed_order_and_extra_meta_last() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    let file = full_run(&rec, dir.path());
    let keys: Vec<&str> = file["meta"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let seed = common::SEED_META_KEYS;
    assert_eq!(&keys[..seed.len()], &seed);
    assert_eq!(&keys[keys.len() - 2..], &["facts_final", "rules_total"]);
    let run_id = file["meta"]["run_id"].as_str().unwrap();
    for key in ["started_at", "ended_at"] {
        let t = file["meta"][key].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{key} {t}: {e}"));
    }
    assert!(dir.path().join(format!("{run_id}.json")).exists());
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{run_id}.json")]);
}

#[test]
fn totals_equal_the_sum_of_events_and_events_are_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    std::thread::scope(|s| {
        for t in 0..3 {
            let rec = &rec;
            s.spawn(move || {
                for i in 0..2_000 {
                    let _p = rec.phase("step", "loop");
                    if i % 10 == t {
                        let _q = rec.phase_dynamic(&format!("odd{t}"), "loop");
                    }
                    rec.measure_fn("f", "loop", || std::hint::black_box(i));
                }
            });
        }
    });
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &file["meta"];
    assert_eq!(meta["events_omitted"], 0);
    let mut sums: BTreeMap<(String, String), (f64, u64)> = BTreeMap::new();
    let mut last = String::new();
    for e in file["events"].as_array().unwrap() {
        let ts = e["timestamp"].as_str().unwrap().to_owned();
        assert!(ts >= last, "events out of order: {last} then {ts}");
        last = ts;
        let name = match e["event"].as_str().unwrap() {
            "phase_timing" => &e["phase"],
            "func_timing" => &e["name"],
            _ => continue,
        };
        let key = (
            e["module"].as_str().unwrap().to_owned(),
            name.as_str().unwrap().to_owned(),
        );
        let entry = sums.entry(key).or_default();
        entry.0 += e["duration_seconds"].as_f64().unwrap();
        entry.1 += 1;
        assert!(e["thread"].is_u64());
        assert!(e["start_offset_seconds"].as_f64().unwrap() >= 0.0);
    }
    let entries = meta["phase_durations_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e, "phase"))
        .chain(
            meta["function_durations_seconds_total"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e, "name")),
        );
    let mut seen = 0;
    for (e, key) in entries {
        let k = (
            e["module"].as_str().unwrap().to_owned(),
            e[key].as_str().unwrap().to_owned(),
        );
        let (sum, n) = sums[&k];
        let total = e["duration_seconds_total"].as_f64().unwrap();
        assert!(
            (total - sum).abs() <= 1e-9 * n as f64 + 1e-12,
            "{k:?}: total {total} vs events {sum}"
        );
        assert_eq!(e["count"].as_u64().unwrap(), n, "{k:?}");
        let p = |q: &str| e[q].as_f64().unwrap();
        assert!(p("min_seconds") <= p("p50_seconds") && p("p50_seconds") <= p("p90_seconds"));
        assert!(p("p90_seconds") <= p("p99_seconds") && p("p99_seconds") <= p("p999_seconds"));
        assert!(p("p999_seconds") <= p("max_seconds"));
        seen += 1;
    }
    assert_eq!(seen, sums.len());
    assert_eq!(sums[&("loop".to_owned(), "step".to_owned())].1, 6_000);
    assert_eq!(meta["records_issued"], 6_000 * 2 + 600);
    assert_eq!(meta["threads"].as_array().unwrap().len(), 3);
}

#[test]
fn a_10ms_sleep_is_recorded_within_1_percent_of_instant() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    // Each region is bracketed by two Instant spans: `inner` inside the
    // timer, `outer` around it. The recorded duration must lie between
    // them (to the TSC scale's error), however the thread was scheduled.
    let mut spans = Vec::new();
    for _ in 0..5 {
        let o = Instant::now();
        let t = rec.phase("sleep", "timing");
        let i = Instant::now();
        std::thread::sleep(Duration::from_millis(10));
        let inner = i.elapsed();
        drop(t);
        let outer = o.elapsed();
        spans.push((inner.as_secs_f64(), outer.as_secs_f64()));
    }
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let got: Vec<f64> = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "phase_timing")
        .map(|e| e["duration_seconds"].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), 5);
    for (g, (inner, outer)) in got.iter().zip(&spans) {
        // 0.1 %: well above the TSC scale's error, well below a 10 ms
        // sleep's 1 % of slack.
        assert!(
            *g >= inner * 0.999 && *g <= outer * 1.001,
            "runmetrics {g} s, Instant inside {inner} s, around {outer} s"
        );
        assert!((g - inner) / inner < 0.01 || outer - inner > 0.01 * inner);
    }
}

#[test]
fn nested_overlapping_recursive_and_awaited_regions_all_count() {
    fn recurse(rec: &Recorder, depth: u32) {
        let _t = rec.phase("recurse", "r");
        if depth > 0 {
            recurse(rec, depth - 1);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    let outer = rec.phase("outer", "n");
    let a = rec.phase("a", "n");
    let b = rec.phase("b", "n"); // overlaps a: a ends first
    drop(a);
    drop(b);
    drop(outer);
    recurse(&rec, 9);
    // A timer is Send: it can end on another thread (as across an await).
    let moved = rec.phase("moved", "n");
    std::thread::scope(|s| {
        s.spawn(move || drop(moved));
    });
    let fut = async {
        let _t = rec.phase("awaited", "n");
        std::future::ready(()).await;
    };
    block_on(fut);
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let count = |phase: &str| {
        file["meta"]["phase_durations_seconds_total"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["phase"] == phase)
            .map(|e| e["count"].as_u64().unwrap())
    };
    for (phase, n) in [
        ("outer", 1),
        ("a", 1),
        ("b", 1),
        ("recurse", 10),
        ("moved", 1),
        ("awaited", 1),
    ] {
        assert_eq!(count(phase), Some(n), "{phase}");
    }
}

#[test]
fn counts_and_resources_are_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    for v in [5, -2, 9, 3] {
        rec.observe_counts(&[("facts", v), ("rules", v * 10)]);
    }
    {
        let _f = rec.function("alloc", "res").with_resources();
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
        let mut x = 0u64;
        for i in 0..3_000_000 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        std::mem::forget(v); // keep the pages resident until the end
    }
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let counts = file["meta"]["counts"].as_array().unwrap();
    assert_eq!(
        counts[0],
        json!({"name": "facts", "last": 3, "min": -2, "max": 9, "observations": 4})
    );
    assert_eq!(counts[1]["max"], 90);
    let events: Vec<&Value> = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "counts")
        .collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["counts"], json!({"facts": 5, "rules": 50}));
    let f = &file["meta"]["function_durations_seconds_total"][0];
    assert_eq!(f["resources"]["calls"], 1);
    assert!(
        f["resources"]["cpu_seconds_total"].as_f64().unwrap() > 0.0,
        "{f}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            f["resources"]["rss_delta_mib_max"].as_f64().unwrap() >= 60.0,
            "{f}"
        );
    }
    let e = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "func_timing")
        .unwrap();
    assert!(e["cpu_seconds"].as_f64().unwrap() > 0.0);
    assert!(e["rss_delta_mib"].is_f64());
}

#[test]
fn event_cap_keeps_aggregates_exact_and_counts_the_omitted() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().event_cap(100)).unwrap();
    rec.start_run(dir.path()).unwrap();
    for _ in 0..1_000 {
        let _t = rec.phase("p", "cap");
    }
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &file["meta"];
    assert_eq!(file["events"].as_array().unwrap().len(), 100);
    assert_eq!(meta["events_written"], 100);
    // 1 000 regions + start/end samples = 1 002 events, 100 kept.
    assert_eq!(meta["events_omitted"], 902);
    assert_eq!(meta["phase_durations_seconds_total"][0]["count"], 1_000);
}

#[test]
fn process_samples_report_cpu_per_core_and_rss() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().sample_interval(Duration::from_millis(50))).unwrap();
    rec.start_run(dir.path()).unwrap();
    // Two busy threads for 300 ms: about 200 % on a 2-core machine.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let until = Instant::now() + Duration::from_millis(300);
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            });
        }
    });
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let meta = &file["meta"];
    let samples = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "process_sample")
        .count();
    assert!(samples >= 4, "{samples} samples in 300 ms at 50 ms");
    assert_eq!(meta["process_samples"], samples);
    let max = meta["cpu_percent_max"].as_f64().unwrap();
    let mean = meta["cpu_percent_mean"].as_f64().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(max > 50.0 && max <= 100.0 * cores * 1.5, "max {max}");
    assert!(mean > 30.0 && mean <= max, "mean {mean} max {max}");
    assert!(meta["rss_max_mib"].as_f64().unwrap() > 1.0);
}

#[test]
fn timers_outside_a_run_record_nothing_and_late_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    {
        let t = rec.phase("before", "o");
        assert!(!t.is_recording());
    }
    rec.start_run(dir.path()).unwrap();
    let late = rec.phase("late", "o");
    assert!(late.is_recording());
    let first = read_run_file(rec.end_run(Value::Null).unwrap());
    drop(late); // ends after its run was ended
    rec.start_run(dir.path()).unwrap();
    let second = read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(first["meta"]["records_issued"], 0);
    assert_eq!(first["meta"]["phase_durations_seconds_total"], json!([]));
    assert_eq!(second["meta"]["phase_durations_seconds_total"], json!([]));
    assert_eq!(second["meta"]["records_outside_run"], 1);
}

#[test]
fn timers_can_cross_threads_and_awaits() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<runmetrics::PhaseTimer<'static>>();
    send_and_sync::<runmetrics::FunctionTimer<'static>>();
    send_and_sync::<Recorder>();
}

#[test]
fn dropping_a_recorder_with_a_run_open_writes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    let run_id = rec.start_run(dir.path()).unwrap();
    {
        let _t = rec.phase("kept", "drop");
    }
    drop(rec);
    let file = read_run_file(dir.path().join(format!("{run_id}.json")));
    assert_eq!(file["meta"]["phase_durations_seconds_total"][0]["count"], 1);
}
