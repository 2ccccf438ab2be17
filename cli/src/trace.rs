//! `runmetrics export --format chrome-trace RUN.json`: the run's events in
//! the Trace Event Format that Perfetto UI and chrome://tracing load. Each
//! phase and function event is a complete event (`"ph": "X"`) on its
//! thread's track; process samples and counts are counter tracks
//! (`"ph": "C"`). Times are microseconds since the run's start.

use serde_json::{json, Map, Value};

use crate::run_file::Run;

/// The process id every event carries: one run is one process.
const PID: u64 = 1;

/// Seconds since the start at which `event` happened, by its `offset_ns`
/// (exact) or else its timestamp.
pub fn at_seconds(run: &Run, event: &Value) -> Option<f64> {
    if let Some(ns) = event.get("offset_ns").and_then(Value::as_u64) {
        return Some(ns as f64 / 1e9);
    }
    let ts = event.get("timestamp")?.as_str()?;
    let at = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((at - run.started_at).num_nanoseconds()? as f64 / 1e9)
}

pub fn chrome_trace(run: &Run) -> Value {
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID,
        "args": {"name": format!("runmetrics {}", run.run_id)},
    })];
    if let Some(threads) = run.meta.get("threads").and_then(Value::as_array) {
        for t in threads {
            let (Some(tid), name) = (t.get("thread").and_then(Value::as_u64), t.get("name")) else {
                continue;
            };
            let name = name
                .and_then(Value::as_str)
                .map_or_else(|| format!("thread {tid}"), str::to_owned);
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
                "args": {"name": name},
            }));
        }
    }
    for e in &run.events {
        let Some(at) = at_seconds(run, e) else {
            continue;
        };
        let tid = e.get("thread").and_then(Value::as_u64).unwrap_or(0);
        let str_of = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        match str_of("event") {
            kind @ ("phase_timing" | "func_timing") => {
                let duration = e
                    .get("duration_seconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let start = e
                    .get("start_offset_seconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(at - duration)
                    .max(0.0);
                let (name, cat) = if kind == "phase_timing" {
                    (str_of("phase"), "phase")
                } else {
                    (str_of("name"), "function")
                };
                let mut args = Map::new();
                args.insert("module".into(), json!(str_of("module")));
                for k in ["cpu_seconds", "rss_delta_mib"] {
                    if let Some(v) = e.get(k) {
                        args.insert(k.into(), v.clone());
                    }
                }
                events.push(json!({
                    "name": name, "cat": cat, "ph": "X", "pid": PID, "tid": tid,
                    "ts": start * 1e6, "dur": duration.max(0.0) * 1e6, "args": args,
                }));
            }
            "process_sample" => {
                for (track, key) in [("CPU %", "cpu_percent"), ("RSS MiB", "rss_mib")] {
                    if let Some(v) = e.get(key).and_then(Value::as_f64) {
                        events.push(json!({
                            "name": track, "ph": "C", "pid": PID, "ts": at * 1e6,
                            "args": {key: v},
                        }));
                    }
                }
            }
            "counts" => {
                if let Some(counts) = e.get("counts").and_then(Value::as_object) {
                    for (name, v) in counts {
                        events.push(json!({
                            "name": name, "ph": "C", "pid": PID, "ts": at * 1e6,
                            "args": {name: v},
                        }));
                    }
                }
            }
            _ => {}
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run_id": run.run_id,
            "started_at": run.meta.get("started_at"),
            "source": "runmetrics export --format chrome-trace",
        },
    })
}
