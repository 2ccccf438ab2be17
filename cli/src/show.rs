//! `runmetrics show RUN.json`: the run's phases and functions (sorted by
//! total time), counts, process CPU and memory, and what was dropped or
//! omitted; as a table, or as JSON for machines.

use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::format::{maybe_seconds, seconds, Table};
use crate::run_file::{Entry, Kind, Run};

/// Phases or functions of `kind` (both with `None`), the largest total
/// first (then by name).
pub fn sorted(run: &Run, kind: Option<Kind>) -> Vec<&Entry> {
    let mut entries: Vec<&Entry> = run
        .entries()
        .filter(|e| kind.is_none_or(|k| e.kind == k))
        .collect();
    entries.sort_by(|a, b| {
        b.stats
            .duration_seconds_total
            .total_cmp(&a.stats.duration_seconds_total)
            .then_with(|| a.label().cmp(&b.label()))
    });
    entries
}

/// The headers of [`stat_cells`]' columns.
pub const STAT_COLUMNS: [&str; 7] = ["count", "total", "mean", "p50", "p90", "p99", "max"];

/// An entry's count, total, mean, p50, p90, p99 and max, as printed.
pub fn stat_cells(e: &Entry) -> [String; 7] {
    [
        e.stats.count.map_or("-".to_owned(), |c| c.to_string()),
        seconds(e.stats.duration_seconds_total),
        maybe_seconds(e.stats.mean_seconds),
        maybe_seconds(e.stats.p50_seconds),
        maybe_seconds(e.stats.p90_seconds),
        maybe_seconds(e.stats.p99_seconds),
        maybe_seconds(e.stats.max_seconds),
    ]
}

/// The share of `seconds` (the run's wall time, or the runs' summed) an
/// entry's total is (over 100 % when threads overlap).
fn percent_of(seconds: f64, e: &Entry) -> Option<f64> {
    (seconds > 0.0).then(|| 100.0 * e.stats.duration_seconds_total / seconds)
}

pub fn text(run: &Run) -> String {
    let mut out = String::new();
    let meta = &run.meta;
    let state = if run.in_progress() {
        "in progress (a snapshot)"
    } else {
        "ended"
    };
    out.push_str(&format!("run       {} ({state})\n", meta.run_id));
    out.push_str(&format!(
        "started   {}\n",
        meta.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
    ));
    out.push_str(&format!("duration  {}\n", seconds(run.seconds())));
    let threads = meta.threads.len();
    out.push_str(&format!(
        "job       {}   pid {}   threads {threads}\n",
        meta.job.as_deref().unwrap_or("-"),
        meta.pid.map_or("-".to_owned(), |p| p.to_string()),
    ));
    entry_tables(run, run.seconds(), &mut out);
    counts_table(meta, &mut out);
    histograms_table(meta, &mut out);
    out.push('\n');
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    out.push_str(&format!(
        "process   CPU mean {} %, max {} %; RSS max {} MiB; {} samples\n",
        f(meta.cpu_percent_mean),
        f(meta.cpu_percent_max),
        f(meta.rss_max_mib),
        meta.process_samples.unwrap_or(0)
    ));
    accounting(meta, &mut out);
    out
}

/// The phase and function tables, each row's `% run` a share of `seconds`.
fn entry_tables(run: &Run, seconds: f64, out: &mut String) {
    for kind in [Kind::Phase, Kind::Function] {
        let header: Vec<&str> = [kind.name()]
            .into_iter()
            .chain(STAT_COLUMNS)
            .chain(["% run"])
            .collect();
        let mut table = Table::new(&header);
        for e in sorted(run, Some(kind)) {
            let mut row = vec![e.label()];
            row.extend(stat_cells(e));
            row.push(percent_of(seconds, e).map_or("-".to_owned(), |p| format!("{p:.1} %")));
            table.row(row);
        }
        if !table.is_empty() {
            out.push('\n');
            table.render(out);
        }
    }
}

fn counts_table(meta: &runmetrics_format::Meta, out: &mut String) {
    if !meta.counts.is_empty() {
        let mut table = Table::new(&["count", "last", "min", "max", "observations"]);
        for c in &meta.counts {
            table.row(vec![
                c.name.clone(),
                c.last.to_string(),
                c.min.to_string(),
                c.max.to_string(),
                c.observations.to_string(),
            ]);
        }
        out.push('\n');
        table.render(out);
    }
}

/// The `metrics` facade's histograms (`meta.histograms`).
fn histograms_table(meta: &runmetrics_format::Meta, out: &mut String) {
    if !meta.histograms.is_empty() {
        let mut table =
            Table::new(&["histogram", "unit", "count", "p50", "p99", "max"]).left_aligned(&[1]);
        let g = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        for h in &meta.histograms {
            let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            table.row(vec![
                if labels.is_empty() {
                    h.name.clone()
                } else {
                    format!("{}{{{}}}", h.name, labels.join(","))
                },
                h.unit.clone().unwrap_or_else(|| "-".to_owned()),
                h.count.to_string(),
                g(h.p50),
                g(h.p99),
                g(h.max),
            ]);
        }
        out.push('\n');
        table.render(out);
    }
}

/// The record, event and write accounting lines.
fn accounting(meta: &runmetrics_format::Meta, out: &mut String) {
    let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    out.push_str(&format!(
        "records   {} issued = {} aggregated + {} dropped; {} outside the run\n",
        n(meta.records_issued),
        n(meta.records_aggregated),
        n(meta.records_dropped),
        n(meta.records_outside_run),
    ));
    let mode = match (meta.event_mode.as_deref(), meta.event_cap) {
        (Some("every_nth"), _) => format!("every {}th", n(meta.event_every_nth)),
        (Some("first") | None, Some(cap)) => format!("first {cap}"),
        (Some(mode), _) => mode.to_owned(),
        (None, None) => "-".to_owned(),
    };
    out.push_str(&format!(
        "events    {} written, {} omitted ({mode})\n",
        n(meta.events_written),
        n(meta.events_omitted),
    ));
    if let Some(failures) = meta.write_failures.filter(|&f| f > 0) {
        out.push_str(&format!(
            "writes    {failures} failed, the last: {}\n",
            meta.last_write_error.as_deref().unwrap_or("-")
        ));
    }
}

pub fn json(run: &Run) -> Value {
    json_over(run, run.seconds())
}

/// [`json`], each entry's `percent_of_run` a share of `seconds`.
fn json_over(run: &Run, seconds: f64) -> Value {
    let entries = |kind: Kind| -> Vec<Value> {
        sorted(run, Some(kind))
            .into_iter()
            .map(|e| {
                json!({
                    "module": e.module,
                    "name": e.name,
                    "count": e.stats.count,
                    "total_seconds": e.stats.duration_seconds_total,
                    "mean_seconds": e.stats.mean_seconds,
                    "p50_seconds": e.stats.p50_seconds,
                    "p90_seconds": e.stats.p90_seconds,
                    "p99_seconds": e.stats.p99_seconds,
                    "max_seconds": e.stats.max_seconds,
                    "percent_of_run": percent_of(seconds, e),
                })
            })
            .collect()
    };
    let meta = &run.meta;
    let counts: Vec<Value> = meta
        .counts
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "last": c.last, "min": c.min, "max": c.max,
                "observations": c.observations,
            })
        })
        .collect();
    json!({
        "run_id": meta.run_id,
        "path": run.path,
        "in_progress": run.in_progress(),
        "started_at": meta
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        "duration_seconds": run.seconds(),
        "phases": entries(Kind::Phase),
        "functions": entries(Kind::Function),
        "counts": counts,
        "process": {
            "cpu_percent_mean": meta.cpu_percent_mean,
            "cpu_percent_max": meta.cpu_percent_max,
            "rss_max_mib": meta.rss_max_mib,
            "samples": meta.process_samples,
        },
        "records": {
            "issued": meta.records_issued,
            "aggregated": meta.records_aggregated,
            "dropped": meta.records_dropped,
            "outside_run": meta.records_outside_run,
        },
        "events": {
            "written": meta.events_written,
            "omitted": meta.events_omitted,
            "mode": meta.event_mode,
            "cap": meta.event_cap,
        },
    })
}

/// One run's process figures: (run, pid, job, duration, CPU mean, CPU max,
/// RSS max) as printed.
fn process_row(run: &Run) -> Vec<String> {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let m = &run.meta;
    vec![
        m.run_id.clone(),
        m.pid.map_or("-".to_owned(), |p| p.to_string()),
        m.job.clone().unwrap_or_else(|| "-".to_owned()),
        seconds(run.seconds()),
        f(m.cpu_percent_mean),
        f(m.cpu_percent_max),
        f(m.rss_max_mib),
    ]
}

/// Several runs as one (`show A B ...`, a directory, a glob): the merged
/// tables, then each process's CPU and RSS and their sum; with
/// `per_process`, each entry per run too.
pub fn fleet_text(fleet: &Fleet, per_process: bool) -> String {
    let mut out = String::new();
    let m = &fleet.merged.meta;
    let stamp =
        |t: &runmetrics_format::Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let mut jobs: Vec<&str> = fleet
        .runs
        .iter()
        .map(|r| r.meta.job.as_deref().unwrap_or("-"))
        .collect();
    jobs.sort();
    jobs.dedup();
    out.push_str(&format!(
        "fleet     {} runs, merged; job {}\n",
        fleet.runs.len(),
        jobs.join(", ")
    ));
    out.push_str(&format!(
        "spans     {} to {}\n",
        stamp(&m.started_at),
        stamp(&fleet.merged.until())
    ));
    out.push_str(&format!(
        "time      {} of runs added up (% run is a share of it)\n",
        seconds(fleet.process_seconds())
    ));
    entry_tables(&fleet.merged, fleet.process_seconds(), &mut out);
    if per_process {
        for e in sorted(&fleet.merged, None) {
            let label = e.label();
            let header: Vec<&str> = [label.as_str()].into_iter().chain(STAT_COLUMNS).collect();
            let mut table = Table::new(&header);
            for run in &fleet.runs {
                if let Some(own) = run
                    .entries()
                    .find(|o| o.kind == e.kind && o.module == e.module && o.name == e.name)
                {
                    let mut row = vec![format!("  {}", run.meta.run_id)];
                    row.extend(stat_cells(own));
                    table.row(row);
                }
            }
            out.push('\n');
            out.push_str(&format!("{} per run\n", e.kind.name()));
            table.render(&mut out);
        }
    }
    counts_table(m, &mut out);
    let mut table = Table::new(&[
        "process",
        "pid",
        "job",
        "duration",
        "CPU mean %",
        "CPU max %",
        "RSS max MiB",
    ])
    .left_aligned(&[2]);
    for run in &fleet.runs {
        table.row(process_row(run));
    }
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    table.row(vec![
        "sum".to_owned(),
        String::new(),
        String::new(),
        seconds(fleet.process_seconds()),
        f(m.cpu_percent_mean),
        f(m.cpu_percent_max),
        f(m.rss_max_mib),
    ]);
    out.push('\n');
    table.render(&mut out);
    out.push('\n');
    accounting(m, &mut out);
    out
}

/// [`fleet_text`] as JSON: the merged run as `show --json` gives one, and
/// `runs`, each run's process figures (with its entries when
/// `per_process`).
pub fn fleet_json(fleet: &Fleet, per_process: bool) -> Value {
    let mut v = json_over(&fleet.merged, fleet.process_seconds());
    v["runs_merged"] = json!(fleet.runs.len());
    v["duration_seconds"] = json!(fleet.process_seconds());
    let runs: Vec<Value> = fleet
        .runs
        .iter()
        .map(|r| {
            let mut one = json!({
                "run_id": r.meta.run_id,
                "path": r.path,
                "pid": r.meta.pid,
                "job": r.meta.job,
                "duration_seconds": r.seconds(),
                "process": {
                    "cpu_percent_mean": r.meta.cpu_percent_mean,
                    "cpu_percent_max": r.meta.cpu_percent_max,
                    "rss_max_mib": r.meta.rss_max_mib,
                    "samples": r.meta.process_samples,
                },
            });
            if per_process {
                let own = json(r);
                one["phases"] = own["phases"].clone();
                one["functions"] = own["functions"].clone();
            }
            one
        })
        .collect();
    v["runs"] = Value::from(runs);
    v
}
