//! `runmetrics report RUN.json [BASE.json] -o report.html` (each side one
//! run, or several merged: a directory, a quoted glob): one
//! self-contained HTML page (inline SVG and CSS, nothing fetched): CPU and
//! RSS over time, each phase's and function's latency distribution, a
//! timeline of the phases per thread, and the tables; with a base run, its
//! curves and distributions beside the run's, p50/p99 bars side by side, and
//! the comparison table.

use std::fmt::Write;

use crate::compare::{self, Metric, Options};
use crate::format::{maybe_seconds, seconds};
use crate::run_file::{Event, ProcessSample, Run};
use crate::svg::{self, escape, BLUE, ORANGE};

/// The lines of several merged runs (orange is the base's).
const PALETTE: &[&str] = &[BLUE, "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf"];

/// Distributions drawn: the entries with the largest totals.
const MAX_DISTRIBUTIONS: usize = 12;
/// Spans drawn on the timeline: the run's first ones.
const MAX_SPANS: usize = 5_000;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:960px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:12px}td,th{padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#f6f6f6}\
.regressed{color:#c00;font-weight:bold}.improved{color:#080;font-weight:bold}\
.note{color:#666;font-size:12px}svg.plot{display:block;margin:8px 0}";

/// After the page is laid out, count the plots that have a size: a browser
/// test reads `data-plots-rendered` from the DOM.
const SCRIPT: &str = "window.addEventListener('load',function(){var n=0;\
document.querySelectorAll('svg.plot').forEach(function(s){var r=s.getBoundingClientRect();\
if(r.width>0&&r.height>0)n++;});document.body.setAttribute('data-plots-rendered',n);});";

/// A run file read for the report: `meta`, and the events the report
/// draws (every process sample, the first timed events), taken as the file
/// streams by.
pub struct Loaded {
    run: Run,
    samples: Vec<ProcessSample>,
    /// Phase and function events.
    timed: Vec<Event>,
    /// Timed events in the file, drawn or not.
    timed_total: u64,
    /// Of several runs merged (`run` is their merge): each run as read,
    /// for its own CPU, RSS and timeline; empty for one run.
    members: Vec<Loaded>,
}

impl Loaded {
    pub fn load(path: &std::path::Path) -> Result<Loaded, crate::run_file::LoadError> {
        let (mut samples, mut timed, mut timed_total) = (Vec::new(), Vec::new(), 0);
        let run = crate::run_file::load(path)?;
        for e in run.events()? {
            let e = e?;
            match e {
                Event::Sample(s) => samples.push(s),
                Event::Phase(_) | Event::Function(_) => {
                    timed_total = u64::saturating_add(timed_total, 1);
                    if timed.len() < MAX_SPANS {
                        timed.push(e);
                    }
                }
                Event::Counts(_) | Event::Other(_) => {}
            }
        }
        Ok(Loaded {
            run,
            samples,
            timed,
            timed_total,
            members: Vec::new(),
        })
    }

    /// The runs `args` name (files, directories, quoted globs): one as
    /// [`Loaded::load`] reads it, several merged (`crate::fleet`).
    pub fn load_side(args: &[String]) -> Result<Loaded, Box<dyn std::error::Error>> {
        let mut paths = Vec::new();
        for arg in args {
            paths.extend(compare::expand(arg)?);
        }
        let mut members = paths
            .iter()
            .map(|p| Loaded::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        if members.len() == 1 {
            return Ok(members.remove(0));
        }
        let fleet = crate::fleet::Fleet::merge(members.iter().map(|m| m.run.clone()).collect())?;
        Ok(Loaded {
            run: fleet.merged,
            samples: Vec::new(),
            timed: Vec::new(),
            timed_total: members.iter().map(|m| m.timed_total).sum(),
            members,
        })
    }

    /// Each run drawn, with the seconds its start is after the side's
    /// start: the run itself, or each merged one.
    fn parts(&self) -> Vec<(f64, &Loaded)> {
        if self.members.is_empty() {
            return vec![(0.0, self)];
        }
        let start = self.run.meta.started_at;
        self.members
            .iter()
            .map(|m| {
                let shift = (m.run.meta.started_at - start)
                    .num_nanoseconds()
                    .map_or(0.0, |ns| ns as f64 / 1e9);
                (shift, m)
            })
            .collect()
    }

    fn at_seconds(&self, e: &Event) -> Option<f64> {
        e.at_seconds(self.run.meta.started_at)
    }
}

/// A CPU window shorter than this is not one the run's CPU figures count
/// (runmetrics' `MIN_WINDOW_SECONDS`).
const MIN_CPU_WINDOW_SECONDS: f64 = 0.01;

/// Seconds since the start of each process sample: (cpu %, rss MiB). The CPU
/// line has the samples `cpu_percent_max` and `cpu_percent_mean` are over, so
/// its peak is the max: those whose `window_seconds` is at least 10 ms (if
/// none is, the last, whose window is the whole run). A file without
/// `window_seconds` was written when the start sample's CPU was of the time
/// before the run and the max skipped windows under 10 ms: the line skips
/// the same, the window being the time since the previous sample.
fn samples(l: &Loaded) -> (svg::Points, svg::Points) {
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    let mut last = None;
    let mut previous_at: Option<f64> = None;
    let mut has_windows = false;
    for e in &l.samples {
        let at = match e.offset_ns {
            Some(ns) => ns as f64 / 1e9,
            None => match (e.timestamp - l.run.meta.started_at).num_nanoseconds() {
                Some(ns) => ns as f64 / 1e9,
                None => continue,
            },
        };
        has_windows |= e.window_seconds.is_some();
        let window = e.window_seconds.or_else(|| previous_at.map(|p| at - p));
        previous_at = Some(at);
        match window {
            Some(w) if w >= MIN_CPU_WINDOW_SECONDS => cpu.push((at, e.cpu_percent)),
            Some(w) if w > 0.0 => last = Some((at, e.cpu_percent)),
            _ => {}
        }
        rss.push((at, e.rss_mib));
    }
    if cpu.is_empty() && has_windows {
        cpu.extend(last);
    }
    (cpu, rss)
}

fn entry_table(out: &mut String, run: &Run) {
    let head: String = crate::show::STAT_COLUMNS
        .iter()
        .map(|c| format!("<th>{c}</th>"))
        .collect();
    let _ = writeln!(out, "<table><tr><th>phase / function</th>{head}</tr>");
    for e in crate::show::sorted(run, None) {
        let cells: String = crate::show::stat_cells(e)
            .iter()
            .map(|c| format!("<td>{c}</td>"))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{} {}</td>{cells}</tr>",
            e.kind.name(),
            escape(&e.label())
        );
    }
    out.push_str("</table>\n");
}

fn comparison_table(out: &mut String, rows: &[compare::Row]) {
    out.push_str("<table><tr><th>phase / function</th><th>base p50</th><th>p50</th><th>base p99</th><th>p99</th><th>change (p50)</th><th>verdict</th></tr>\n");
    for r in rows {
        let stat = |side: &Option<compare::Stats>, f: fn(&compare::Stats) -> Option<f64>| {
            maybe_seconds(side.as_ref().and_then(f))
        };
        let verdict = r.verdict.name();
        let _ = writeln!(
            out,
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{verdict}\">{verdict}</td></tr>",
            r.key.0.name(),
            escape(&r.label()),
            stat(&r.base, |s| s.p50),
            stat(&r.new, |s| s.p50),
            stat(&r.base, |s| s.p99),
            stat(&r.new, |s| s.p99),
            r.change.map_or("-".to_owned(), crate::format::change),
        );
    }
    out.push_str("</table>\n");
}

/// The page; an error names a file whose figures cannot be true.
pub fn html(loaded: &Loaded, base: Option<&Loaded>) -> Result<String, crate::run_file::LoadError> {
    let run = &loaded.run;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>runmetrics {}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>\n",
        escape(&run.meta.run_id)
    );
    let _ = writeln!(
        out,
        "<h1>runmetrics run {}</h1><p>started {}, {}{}; job {}{}</p>",
        escape(&run.meta.run_id),
        run.meta
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        seconds(run.seconds()),
        if run.in_progress() {
            " so far (a snapshot)"
        } else {
            ""
        },
        escape(run.meta.job.as_deref().unwrap_or("-")),
        base.map_or(String::new(), |b| format!(
            "; compared with base run {}",
            escape(&b.run.meta.run_id)
        )),
    );

    out.push_str("<h2>CPU and memory</h2>\n");
    // One line per process: the run (or each merged run), then the base.
    let mut lines: Vec<(String, &str, svg::Points, svg::Points)> = Vec::new();
    for (side, l) in [("run", Some(loaded)), ("base", base)] {
        let Some(l) = l else { continue };
        let parts = l.parts();
        for (i, (shift, m)) in parts.iter().enumerate() {
            let (cpu, rss) = samples(m);
            let moved = |p: svg::Points| p.into_iter().map(|(x, y)| (x + shift, y)).collect();
            let (name, color) = match (side, parts.len()) {
                ("run", 1) => ("run".to_owned(), BLUE),
                (_, 1) => ("base".to_owned(), ORANGE),
                ("run", _) => (m.run.meta.run_id.clone(), PALETTE[i % PALETTE.len()]),
                _ => (format!("base {}", m.run.meta.run_id), ORANGE),
            };
            lines.push((name, color, moved(cpu), moved(rss)));
        }
    }
    let cpu_series: Vec<svg::Line<'_>> = lines
        .iter()
        .map(|(n, c, cpu, _)| (n.as_str(), *c, cpu.clone()))
        .collect();
    let rss_series: Vec<svg::Line<'_>> = lines
        .iter()
        .map(|(n, c, _, rss)| (n.as_str(), *c, rss.clone()))
        .collect();
    out.push_str(&svg::lines("cpu", "CPU, % of one core", "%", &cpu_series));
    out.push_str(&svg::lines(
        "rss",
        "Resident memory (RSS)",
        "MiB",
        &rss_series,
    ));

    out.push_str("<h2>Phases and functions</h2>\n");
    entry_table(&mut out, run);
    if let Some(base) = base {
        let c = compare::compare(
            std::slice::from_ref(&base.run),
            std::slice::from_ref(run),
            &Options {
                metric: Metric::P50,
                threshold: 0.05,
            },
        )?;
        out.push_str("<h2>Against the base run</h2>\n");
        comparison_table(&mut out, c.rows());
        for (id, stat, title) in [
            (
                "compare-p50",
                (|s| s.p50) as fn(&compare::Stats) -> Option<f64>,
                "p50, base and run",
            ),
            ("compare-p99", |s| s.p99, "p99, base and run"),
        ] {
            let bars: Vec<(String, Vec<f64>)> = c
                .rows()
                .iter()
                .map(|r| {
                    let v =
                        |side: &Option<compare::Stats>| side.as_ref().and_then(stat).unwrap_or(0.0);
                    (r.label(), vec![v(&r.base), v(&r.new)])
                })
                .collect();
            out.push_str(&svg::bars(
                id,
                title,
                &[("base", ORANGE), ("run", BLUE)],
                &bars,
            ));
        }
    }

    out.push_str("<h2>Latency distributions</h2>\n<p class=\"note\">Share of each phase's or function's regions per 1/128 of a power of two of duration (each bucket's share scaled to that width), log scale.</p>\n");
    let entries = crate::show::sorted(run, None);
    for (i, e) in entries.iter().take(MAX_DISTRIBUTIONS).enumerate() {
        let base_entry = base.and_then(|b| {
            b.run
                .entries()
                .find(|x| x.kind == e.kind && x.module == e.module && x.name == e.name)
        });
        let mut series = vec![("run", BLUE, &e.histogram_ns[..])];
        if let Some(b) = base_entry {
            series.push(("base", ORANGE, &b.histogram_ns[..]));
        }
        let title = format!("{} {}", e.kind.name(), e.label());
        out.push_str(&svg::histogram(&format!("latency-{i}"), &title, &series));
    }
    if entries.len() > MAX_DISTRIBUTIONS {
        let _ = writeln!(
            out,
            "<p class=\"note\">The {MAX_DISTRIBUTIONS} largest totals of {} are drawn.</p>",
            entries.len()
        );
    }

    out.push_str("<h2>Timeline</h2>\n");
    // A lane per thread (of each run, when several are merged).
    let parts = loaded.parts();
    let mut lanes: Vec<(usize, u32)> = Vec::new();
    let mut spans = Vec::new();
    for (member, (shift, m)) in parts.iter().enumerate() {
        for e in &m.timed {
            let Some(at) = m.at_seconds(e) else {
                continue;
            };
            let (name, duration, start, thread) = match e {
                Event::Phase(p) => (
                    &p.phase,
                    p.duration_seconds,
                    p.start_offset_seconds,
                    p.thread,
                ),
                Event::Function(f) => (
                    &f.name,
                    f.duration_seconds,
                    f.start_offset_seconds,
                    f.thread,
                ),
                _ => continue,
            };
            let start = start.unwrap_or(at - duration).max(0.0) + shift;
            let key = (member, thread.unwrap_or(0));
            let lane = match lanes.iter().position(|&t| t == key) {
                Some(l) => l,
                None => {
                    lanes.push(key);
                    lanes.len() - 1
                }
            };
            spans.push((lane, start, start + duration, name.as_str()));
        }
    }
    let names: Vec<String> = lanes
        .iter()
        .map(|&(member, t)| {
            let m = &parts[member].1.run;
            let thread = m
                .meta
                .threads
                .iter()
                .find(|x| x.thread == t)
                .and_then(|x| x.name.as_deref())
                .map_or_else(|| format!("thread {t}"), |n| format!("{n} ({t})"));
            if parts.len() == 1 {
                thread
            } else {
                format!("{} {thread}", m.meta.run_id)
            }
        })
        .collect();
    out.push_str(&svg::timeline(
        "timeline",
        "Phases and functions by thread",
        &names,
        &spans,
        run.seconds(),
    ));
    let total = loaded.timed_total;
    if total > spans.len() as u64 {
        let _ = writeln!(
            out,
            "<p class=\"note\">The first {} of {total} timed events are drawn.</p>",
            spans.len()
        );
    }
    let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "<p class=\"note\">{} events written, {} omitted; {} records dropped. Made by runmetrics {}.</p>",
        n(run.meta.events_written),
        n(run.meta.events_omitted),
        n(run.meta.records_dropped),
        env!("CARGO_PKG_VERSION"),
    );
    out.push_str("</body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU line has the samples the file's CPU figures are over.
    #[test]
    fn the_cpu_line_has_the_samples_the_figures_are_over() {
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/base.json");
        // An old file: no start sample (its CPU was of the time before the run).
        let (cpu, _) = samples(&Loaded::load(&fixture).unwrap());
        assert_eq!(cpu, vec![(1.0, 62.5), (2.0, 81.25)]);
        let mut file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let mut with_windows = |windows: [f64; 3]| {
            let events = file["events"].as_array_mut().unwrap();
            let listed = events.iter_mut().filter(|e| e["event"] == "process_sample");
            for (e, w) in listed.zip(windows) {
                e["window_seconds"] = serde_json::json!(w);
            }
            std::fs::write(&path, file.to_string()).unwrap();
            samples(&Loaded::load(&path).unwrap()).0
        };
        // A window under 10 ms is left out; the start sample's is 0.
        assert_eq!(with_windows([0.0, 1.0, 0.005]), vec![(1.0, 62.5)]);
        // No window of 10 ms: the last sample's is the whole run.
        assert_eq!(with_windows([0.0, 0.001, 0.002]), vec![(2.0, 81.25)]);
    }

    #[test]
    fn the_page_is_self_contained() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/base.json");
        let run = Loaded::load(&path).unwrap();
        let page = html(&run, Some(&run)).unwrap();
        for id in [
            "cpu",
            "rss",
            "compare-p50",
            "compare-p99",
            "latency-0",
            "latency-2",
            "timeline",
        ] {
            assert!(page.contains(&format!("<svg id=\"{id}\"")), "{id}");
        }
        // Nothing is fetched: the only URL is the SVG namespace.
        let urls = page.matches("http").count();
        let namespaces = page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        assert_eq!(urls, namespaces);
        assert!(!page.contains(" src="));
        assert!(run
            .run
            .entries()
            .any(|e| e.kind == crate::run_file::Kind::Function));
    }
}
