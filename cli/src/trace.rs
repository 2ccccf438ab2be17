//! `runmetrics export --format chrome-trace RUN.json`: the run's events in
//! the Trace Event Format that Perfetto UI and chrome://tracing load. Each
//! phase and function event is a complete event (`"ph": "X"`) on its
//! thread's track; process samples and counts are counter tracks
//! (`"ph": "C"`). Times are microseconds since the run's start. The file
//! streams through: each event is written as it is read.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::run_file::{self, Event, LoadError, Run};

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

/// The trace events one run event becomes (none for an unknown kind).
fn trace_events(started_at: run_file::Timestamp, e: &Event) -> Vec<Value> {
    let Some(at) = e.at_seconds(started_at) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut span = |name: &str,
                    cat: &str,
                    module: &str,
                    duration: f64,
                    start: Option<f64>,
                    thread: Option<u32>,
                    args: Map<String, Value>| {
        let start = start.unwrap_or(at - duration).max(0.0);
        let mut all = Map::new();
        all.insert("module".into(), json!(module));
        all.extend(args);
        out.push(json!({
            "name": name, "cat": cat, "ph": "X", "pid": PID, "tid": thread.unwrap_or(0),
            "ts": start * 1e6, "dur": duration.max(0.0) * 1e6, "args": all,
        }));
    };
    match e {
        Event::Phase(p) => span(
            &p.phase,
            "phase",
            &p.module,
            p.duration_seconds,
            p.start_offset_seconds,
            p.thread,
            Map::new(),
        ),
        Event::Function(f) => {
            let mut args = Map::new();
            for (k, v) in [
                ("cpu_seconds", f.cpu_seconds),
                ("rss_delta_mib", f.rss_delta_mib),
            ] {
                if let Some(v) = v {
                    args.insert(k.into(), json!(v));
                }
            }
            span(
                &f.name,
                "function",
                &f.module,
                f.duration_seconds,
                f.start_offset_seconds,
                f.thread,
                args,
            )
        }
        Event::Sample(s) => {
            for (track, key, v) in [
                ("CPU %", "cpu_percent", s.cpu_percent),
                ("RSS MiB", "rss_mib", s.rss_mib),
            ] {
                out.push(json!({
                    "name": track, "ph": "C", "pid": PID, "ts": at * 1e6,
                    "args": {key: v},
                }));
            }
        }
        Event::Counts(c) => {
            for (name, v) in &c.counts {
                out.push(json!({
                    "name": name, "ph": "C", "pid": PID, "ts": at * 1e6,
                    "args": {name: v},
                }));
            }
        }
        Event::Other(_) => {}
    }
    out
}

/// The process and thread names, from `meta`.
fn names(run: &Run) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID,
        "args": {"name": format!("runmetrics {}", run.meta.run_id)},
    })];
    for t in &run.meta.threads {
        let tid = t.thread;
        let name = t.name.clone().unwrap_or_else(|| format!("thread {tid}"));
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
    let run = run_file::load(path)?;
    for e in run.events()? {
        for t in trace_events(run.meta.started_at, &e?) {
            write(out, &t)?;
        }
    }
    for t in names(&run) {
        write(out, &t)?;
    }
    let tail = json!({
        "run_id": run.meta.run_id,
        "started_at": run
            .meta
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        "source": "runmetrics export --format chrome-trace",
    });
    write!(out, "],\"displayTimeUnit\":\"ms\",\"otherData\":{tail}}}")?;
    writeln!(out)?;
    Ok(())
}
