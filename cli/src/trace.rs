//! `runmetrics export --format chrome-trace RUN.json`: the run's events in
//! the Trace Event Format that Perfetto UI and chrome://tracing load. Each
//! phase and function event is a complete event (`"ph": "X"`) on its
//! thread's track; process samples and counts are counter tracks
//! (`"ph": "C"`). Times are microseconds since the run's start. The file
//! streams through: each event is written as it is read.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Map, Value};

use crate::run_file::{self, LoadError, Run};

/// Why the trace was not written whole.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The run file could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The output could not be written (the caller decides what a closed
    /// pipe means).
    #[error("{0}")]
    Write(#[from] std::io::Error),
}

/// The process id every event carries: one run is one process.
const PID: u64 = 1;

/// Seconds after `started_at` at which `event` happened, by its
/// `offset_ns` (exact) or else its timestamp.
pub fn at_seconds(started_at: Option<DateTime<FixedOffset>>, event: &Value) -> Option<f64> {
    if let Some(ns) = event.get("offset_ns").and_then(Value::as_u64) {
        return Some(ns as f64 / 1e9);
    }
    let ts = event.get("timestamp")?.as_str()?;
    let at = DateTime::parse_from_rfc3339(ts).ok()?;
    Some((at - started_at?).num_nanoseconds()? as f64 / 1e9)
}

/// The trace events one run event becomes (none for an unknown kind).
fn trace_events(started_at: Option<DateTime<FixedOffset>>, e: &Value) -> Vec<Value> {
    let Some(at) = at_seconds(started_at, e) else {
        return Vec::new();
    };
    let tid = e.get("thread").and_then(Value::as_u64).unwrap_or(0);
    let str_of = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = Vec::new();
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
            out.push(json!({
                "name": name, "cat": cat, "ph": "X", "pid": PID, "tid": tid,
                "ts": start * 1e6, "dur": duration.max(0.0) * 1e6, "args": args,
            }));
        }
        "process_sample" => {
            for (track, key) in [("CPU %", "cpu_percent"), ("RSS MiB", "rss_mib")] {
                if let Some(v) = e.get(key).and_then(Value::as_f64) {
                    out.push(json!({
                        "name": track, "ph": "C", "pid": PID, "ts": at * 1e6,
                        "args": {key: v},
                    }));
                }
            }
        }
        "counts" => {
            if let Some(counts) = e.get("counts").and_then(Value::as_object) {
                for (name, v) in counts {
                    out.push(json!({
                        "name": name, "ph": "C", "pid": PID, "ts": at * 1e6,
                        "args": {name: v},
                    }));
                }
            }
        }
        _ => {}
    }
    out
}

/// The process and thread names, from `meta`.
fn names(run: &Run) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID,
        "args": {"name": format!("runmetrics {}", run.run_id)},
    })];
    for t in run
        .meta
        .get("threads")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(tid) = t.get("thread").and_then(Value::as_u64) else {
            continue;
        };
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("thread {tid}"), str::to_owned);
        out.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
            "args": {"name": name},
        }));
    }
    out
}

/// Writes the run at `path` as a trace to `out`, one event at a time as the
/// run file streams by: memory stays flat however many events it has. The
/// first failed write stops the reading.
pub fn write_chrome_trace(path: &Path, out: &mut impl Write) -> Result<(), TraceError> {
    out.write_all(b"{\"traceEvents\":[")?;
    let mut first = true;
    let mut write = |out: &mut dyn Write, v: &Value| -> std::io::Result<()> {
        if !std::mem::take(&mut first) {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut *out, v)?;
        Ok(())
    };
    let mut started_at = None;
    let mut failed = None;
    let run = run_file::load_each(path, &mut |meta, e| {
        let start = *started_at.get_or_insert_with(|| {
            meta.get("started_at")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        });
        for t in trace_events(start, &e) {
            if let Err(e) = write(out, &t) {
                let message = format!("cannot write the trace: {e}");
                failed = Some(e);
                return Err(message);
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(TraceError::Write(e));
    }
    let run = run?;
    for t in names(&run) {
        write(out, &t)?;
    }
    let tail = json!({
        "run_id": run.run_id,
        "started_at": run.meta.get("started_at"),
        "source": "runmetrics export --format chrome-trace",
    });
    write!(out, "],\"displayTimeUnit\":\"ms\",\"otherData\":{tail}}}")?;
    writeln!(out)?;
    Ok(())
}
