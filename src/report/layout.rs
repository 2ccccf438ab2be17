//! The run-file layout. The seed module fixed the keys of `meta` and of the
//! three event kinds (we add `counts`); everything else here is added after them, never renamed.
//! `meta` is built as `runmetrics-format`'s `Meta`; the events stay borrowed
//! `EventOut`s (`timestamp` first as the seed has it, nothing allocated per
//! event), and `tests/format.rs` reads every kind back into the format's
//! `Event`, losing nothing.

use std::io::Write;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use runmetrics_format::{
    Bucket, Clock, Count, Entry, Kind as EntryKind, Meta, Names, Resources, Sampled, Stats, Thread,
    Window, WindowFunction, WindowPhase, WindowStats as WindowFigures, LAYOUT_VERSION,
};
#[cfg(test)]
use serde::ser::SerializeMap;
use serde::Serialize;
#[cfg(test)]
use serde::Serializer;
use serde_json::ser::{Formatter, PrettyFormatter};

use super::event_json::{float, signed, string, unsigned, Timestamps};
use super::RunSnapshot;
use crate::collector::sink::{
    DurationStats, Durations, Event, ResourceTotals, SampledStats, WindowStats,
};
use crate::config::Events as EventMode;
use crate::site::{by_id, Kind, SiteInfo};
use crate::ticks::Scale;
use crate::wall_clock::after;

const MIB: f64 = 1024.0 * 1024.0;

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub(crate) fn timestamp(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// The file as the format's types have it, its events streamed in by
/// [`write`].
#[derive(Serialize)]
pub(crate) struct RunFile {
    meta: Meta,
    /// Always empty here: [`write`] streams the events in.
    events: [(); 0],
}

impl RunFile {
    pub(crate) fn new(s: &RunSnapshot<'_>) -> RunFile {
        let run = s.run;
        let start = run.started_at;
        let written_at = after(start, s.written_ns);
        let mut phases = Vec::new();
        let mut functions = Vec::new();
        let (mut phases_ns, mut functions_ns) = (0u64, 0u64);
        let mut window = Window {
            started_at: after(start, run.window_start_ns),
            seconds: secs(s.written_ns.saturating_sub(run.window_start_ns)),
            phases: Vec::new(),
            functions: Vec::new(),
        };
        for (id, d) in run.durations.iter().enumerate() {
            let (Some(d), Some(site)) = (d, by_id(s.sites, id)) else {
                continue;
            };
            let stats = d.stats(&run.scale);
            let recent = window_stats(run.window(id));
            let entry = |kind, resources| Entry {
                kind,
                module: site.module.to_string(),
                name: site.name.to_string(),
                stats: entry_stats(stats),
                resources,
                histogram_ns: file_histogram(d, &run.scale),
                sampled: stats.sampled.map(sampled),
            };
            match site.kind {
                Kind::Phase => {
                    phases_ns = phases_ns.saturating_add(stats.total_ns);
                    phases.push(entry(EntryKind::Phase, None));
                    window.phases.push(WindowPhase {
                        module: site.module.to_string(),
                        phase: site.name.to_string(),
                        stats: recent,
                    });
                }
                Kind::Function => {
                    functions_ns = functions_ns.saturating_add(stats.total_ns);
                    functions.push(entry(EntryKind::Function, d.resources.map(resources)));
                    window.functions.push(WindowFunction {
                        module: site.module.to_string(),
                        name: site.name.to_string(),
                        stats: recent,
                    });
                }
                Kind::Count => {}
            }
        }
        let extra = crate::extra::snapshot().unwrap_or_default();
        let mut counts: Vec<Count> = run
            .counts
            .iter()
            .enumerate()
            .filter_map(|(id, c)| {
                let c = c.as_ref()?;
                let site = by_id(s.sites, id)?;
                Some(Count {
                    name: site.name.to_string(),
                    last: c.last,
                    min: c.min,
                    max: c.max,
                    observations: c.observations,
                })
            })
            .collect();
        let count_names = s.sites.iter().filter(|i| i.kind == Kind::Count);
        let extra_counts = crate::extra::counts_beside(count_names.map(|i| &*i.name), extra.counts);
        counts.extend(extra_counts);
        let meta = Meta {
            run_id: run.run_id.to_owned(),
            started_at: start,
            ended_at: s.ended.then_some(written_at),
            cpu_percent_max: Some(run.process.cpu_percent_max),
            cpu_percent_mean: Some(run.process.cpu_percent_mean()),
            rss_max_mib: Some(run.process.rss_max_bytes as f64 / MIB),
            phase_durations_seconds_total: phases,
            all_phases_duration_seconds_total: Some(secs(phases_ns)),
            function_durations_seconds_total: functions,
            all_functions_duration_seconds_total: Some(secs(functions_ns)),
            counts,
            records_issued: Some(run.aggregated + run.dropped),
            records_aggregated: Some(run.aggregated),
            records_dropped: Some(run.dropped),
            records_outside_run: Some(run.outside_run),
            events_written: Some(run.events.written()),
            events_omitted: Some(run.events_omitted),
            event_cap: match run.events.mode {
                EventMode::First(n) => Some(n as u64),
                EventMode::None => Some(0),
                EventMode::All | EventMode::EveryNth(_) => None,
            },
            process_samples: Some(run.process.samples),
            threads: run
                .threads
                .iter()
                .map(|(id, name)| Thread {
                    thread: *id,
                    name: name.clone(),
                })
                .collect(),
            job: Some(s.config.job.clone()),
            grouping: s.config.grouping.clone(),
            pid: Some(std::process::id()),
            layout_version: Some(LAYOUT_VERSION),
            runmetrics_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            recording_enabled: Some(crate::config::ENABLED),
            in_progress: Some(!s.ended),
            flushed_at: Some(written_at),
            write_failures: Some(run.write_failures),
            last_write_error: run.last_write_error.map(str::to_owned),
            window: Some(window),
            previous_run_id: run.previous_run_id.map(str::to_owned),
            event_mode: Some(run.events.mode.name().to_owned()),
            event_every_nth: match run.events.mode {
                EventMode::EveryNth(n) => Some(n),
                _ => None,
            },
            events_file: (!s.ended && s.sidecar.lines() > 0).then(|| s.sidecar.file_name()),
            events_write_failures: Some(run.events.write_failures),
            clock: Some(Clock {
                ns_per_tick: run.scale.ns_per_tick(),
                baseline_seconds: run.scale.baseline().as_secs_f64(),
            }),
            names: Some(names()),
            histograms: extra.histograms,
            metrics_facade: extra.facade,
            extra: s.extra_meta.clone(),
        };
        RunFile { meta, events: [] }
    }
}

fn names() -> Names {
    let (distinct, max_names, refused) = crate::site::name_figures();
    Names {
        distinct,
        max_names,
        refused,
    }
}

fn entry_stats(d: DurationStats) -> Stats {
    Stats {
        duration_seconds_total: secs(d.total_ns),
        count: Some(d.count),
        min_seconds: Some(secs(d.min_ns)),
        mean_seconds: Some(d.mean_ns / 1e9),
        p50_seconds: Some(secs(d.p50_ns)),
        p90_seconds: Some(secs(d.p90_ns)),
        p99_seconds: Some(secs(d.p99_ns)),
        p999_seconds: Some(secs(d.p999_ns)),
        max_seconds: Some(secs(d.max_ns)),
    }
}

fn sampled(s: SampledStats) -> Sampled {
    let se = |ns: Option<f64>| ns.map(|ns| ns / 1e9);
    Sampled {
        one_in: s.one_in,
        timed: s.timed,
        timed_seconds_total: secs(s.timed_total_ns),
        duration_seconds_total_se: se(s.total_se_ns),
        p50_seconds_se: se(s.p50_se_ns),
        p90_seconds_se: se(s.p90_se_ns),
        p99_seconds_se: se(s.p99_se_ns),
        p999_seconds_se: se(s.p999_se_ns),
    }
}

/// `[lower bound ns, count, width ns]` per non-empty bucket: the buckets the
/// threads counted in (128 per power of two of clock ticks) in the run's
/// nanoseconds. Every region's duration, as its event gives it, lies in
/// `[lower, lower + width)` of its bucket.
fn file_histogram(d: &Durations, scale: &Scale) -> Vec<Bucket> {
    d.file_histogram(scale)
}

fn window_stats(w: WindowStats) -> WindowFigures {
    WindowFigures {
        count: w.count,
        duration_seconds_total: secs(w.total_ns),
        mean_seconds: w.mean_ns / 1e9,
        p50_seconds: secs(w.p50_ns),
        p90_seconds: secs(w.p90_ns),
        p99_seconds: secs(w.p99_ns),
    }
}

fn resources(r: ResourceTotals) -> Resources {
    Resources {
        calls: r.calls,
        cpu_seconds_total: secs(r.cpu_ns_total),
        rss_delta_mib_total: r.rss_delta_bytes_total as f64 / MIB,
        rss_delta_mib_max: r.rss_delta_bytes_max as f64 / MIB,
    }
}

/// The pretty printer's end of a file whose `events` is empty.
const EMPTY_EVENTS_END: &[u8] = b"[]\n}";

/// `meta`'s pretty-printed text (and the file's start), the entries of
/// both lists written by hand ([`entries`]) where the serializer left them
/// empty: what serializing `file` whole writes, without the serializer's
/// per-key work for every name.
fn head(mut file: RunFile) -> std::io::Result<Vec<u8>> {
    let phases = std::mem::take(&mut file.meta.phase_durations_seconds_total);
    let functions = std::mem::take(&mut file.meta.function_durations_seconds_total);
    let (window_phases, window_functions) = match &mut file.meta.window {
        Some(w) => (
            std::mem::take(&mut w.phases),
            std::mem::take(&mut w.functions),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let text = serde_head(&file)?;
    // Each key in turn, after the one before: the entries' lists, then
    // `window`, then its lists (before any user text of `meta`); with no
    // window (`null`), only the entries' lists.
    let windowed = file.meta.window.is_some();
    let keys: &[&[u8]] = if windowed {
        &[
            PHASES_KEY,
            FUNCTIONS_KEY,
            WINDOW_KEY,
            WINDOW_PHASES_KEY,
            WINDOW_FUNCTIONS_KEY,
        ]
    } else {
        &[PHASES_KEY, FUNCTIONS_KEY]
    };
    let mut marks = [0usize; 5];
    let mut from = 0;
    for (mark, &key) in marks.iter_mut().zip(keys) {
        let found = text.get(from..).and_then(|t| {
            t.windows(key.len() + 2)
                .position(|w| w.starts_with(key) && w.ends_with(b"[]"))
        });
        let at = match (found, key == WINDOW_KEY) {
            // `window` opens an object, not an empty list.
            (_, true) => text
                .get(from..)
                .and_then(|t| t.windows(key.len()).position(|w| w == key)),
            (found, false) => found,
        };
        let Some(at) = at else {
            // Never: every key is written, once, before any user text.
            file.meta.phase_durations_seconds_total = phases;
            file.meta.function_durations_seconds_total = functions;
            if let Some(w) = &mut file.meta.window {
                w.phases = window_phases;
                w.functions = window_functions;
            }
            return serde_head(&file);
        };
        *mark = from + at + key.len();
        from = *mark;
    }
    let [p, f, _, wp, wf] = marks;
    let mut out = Vec::with_capacity(text.len() + (phases.len() + functions.len()) * 600);
    out.extend_from_slice(&text[..p]);
    entries(&mut out, &phases, "phase");
    out.extend_from_slice(&text[p + 2..f]);
    entries(&mut out, &functions, "name");
    if !windowed {
        out.extend_from_slice(&text[f + 2..]);
        return Ok(out);
    }
    out.extend_from_slice(&text[f + 2..wp]);
    window_list(
        &mut out,
        window_phases
            .iter()
            .map(|w| (&w.module, &w.phase, &w.stats)),
        "phase",
    );
    out.extend_from_slice(&text[wp + 2..wf]);
    window_list(
        &mut out,
        window_functions
            .iter()
            .map(|w| (&w.module, &w.name, &w.stats)),
        "name",
    );
    out.extend_from_slice(&text[wf + 2..]);
    Ok(out)
}

/// Where each list of entries starts in `meta`'s text (`[]` follows when
/// it is empty): on a line of its own, so never inside a string.
const PHASES_KEY: &[u8] = b"\n    \"phase_durations_seconds_total\": ";
const FUNCTIONS_KEY: &[u8] = b"\n    \"function_durations_seconds_total\": ";
const WINDOW_KEY: &[u8] = b"\n    \"window\": ";
const WINDOW_PHASES_KEY: &[u8] = b"\n      \"phases\": ";
const WINDOW_FUNCTIONS_KEY: &[u8] = b"\n      \"functions\": ";

/// A list of `window`'s phases or functions as [`ShallowPretty`] writes
/// it (the list four levels deep, each element compact).
fn window_list<'a>(
    out: &mut Vec<u8>,
    list: impl Iterator<Item = (&'a String, &'a String, &'a WindowFigures)>,
    name_key: &str,
) {
    let mut empty = true;
    for (i, (module, name, w)) in list.enumerate() {
        empty = false;
        out.extend_from_slice(if i == 0 {
            b"[\n        {\"module\":"
        } else {
            b",\n        {\"module\":"
        });
        string(out, module);
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name_key.as_bytes());
        out.extend_from_slice(b"\":");
        string(out, name);
        out.extend_from_slice(b",\"count\":");
        unsigned(out, w.count);
        for (k, v) in [
            (
                &b",\"duration_seconds_total\":"[..],
                w.duration_seconds_total,
            ),
            (b",\"mean_seconds\":", w.mean_seconds),
            (b",\"p50_seconds\":", w.p50_seconds),
            (b",\"p90_seconds\":", w.p90_seconds),
            (b",\"p99_seconds\":", w.p99_seconds),
        ] {
            out.extend_from_slice(k);
            float(out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(if empty { b"[]" } else { b"\n      ]" });
}

/// `file` serialized whole, the events left out.
fn serde_head(file: &RunFile) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    file.serialize(&mut serde_json::Serializer::with_formatter(
        &mut head,
        ShallowPretty::default(),
    ))?;
    match head.strip_suffix(EMPTY_EVENTS_END) {
        Some(h) => {
            head.truncate(h.len());
            Ok(head)
        }
        None => Err(std::io::Error::other(
            "runmetrics: `events` is the run file's last key",
        )),
    }
}

/// A list of entries as [`ShallowPretty`] writes it in `meta` (the list
/// three levels deep, an entry's keys four, `histogram_ns`, `resources`
/// and `sampled` compact), each entry's name under `name_key`.
fn entries(out: &mut Vec<u8>, list: &[Entry], name_key: &str) {
    if list.is_empty() {
        out.extend_from_slice(b"[]");
        return;
    }
    out.push(b'[');
    for (i, e) in list.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n      {" } else { b",\n      {" });
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, k: &str| {
            out.extend_from_slice(if first {
                b"\n        \""
            } else {
                b",\n        \""
            });
            first = false;
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\": ");
        };
        let seconds = |out: &mut Vec<u8>, v: Option<f64>| match v {
            Some(v) => float(out, v),
            None => out.extend_from_slice(b"null"),
        };
        let st = &e.stats;
        key(out, "module");
        string(out, &e.module);
        key(out, name_key);
        string(out, &e.name);
        key(out, "duration_seconds_total");
        float(out, st.duration_seconds_total);
        key(out, "count");
        match st.count {
            Some(n) => unsigned(out, n),
            None => out.extend_from_slice(b"null"),
        }
        for (k, v) in [
            ("min_seconds", st.min_seconds),
            ("mean_seconds", st.mean_seconds),
            ("p50_seconds", st.p50_seconds),
            ("p90_seconds", st.p90_seconds),
            ("p99_seconds", st.p99_seconds),
            ("p999_seconds", st.p999_seconds),
            ("max_seconds", st.max_seconds),
        ] {
            key(out, k);
            seconds(out, v);
        }
        // Into a Vec, only a failing writer fails.
        if let (true, Some(r)) = (name_key == "name", &e.resources) {
            key(out, "resources");
            let _ = serde_json::to_writer(&mut *out, r);
        }
        key(out, "histogram_ns");
        let _ = serde_json::to_writer(&mut *out, &e.histogram_ns);
        if let Some(sampled) = &e.sampled {
            key(out, "sampled");
            let _ = serde_json::to_writer(&mut *out, sampled);
        }
        out.extend_from_slice(b"\n      }");
    }
    out.extend_from_slice(b"\n    ]");
}

/// Writes the run file: `meta` pretty-printed, then `events` in time order
/// (a region's time is its end), one per line, merged from the sidecar's
/// lines (copied as they are) and the events the collector still holds.
pub(crate) fn write(out: &mut impl Write, s: &RunSnapshot<'_>) -> std::io::Result<()> {
    let head = head(RunFile::new(s))?;
    out.write_all(&head)?;
    let log = &s.run.events;
    let text = EventText::new(s.sites, s.run.started_at);
    let held = log.held();
    let mut order: Vec<u32> = (0..held.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (held[i as usize].at_ns(), i));
    let mut order = order.into_iter().map(|i| &held[i as usize]).peekable();
    let mut lines = s.sidecar.merge()?;
    let mut line = Vec::new();
    let mut first = true;
    out.write_all(b"[")?;
    loop {
        // Ties go to the sidecar, whose events came first.
        let from_file = match (lines.peek_ns()?, order.peek()) {
            (None, None) => break,
            (Some(at), Some(e)) => at <= e.at_ns(),
            (file, _) => file.is_some(),
        };
        line.clear();
        if from_file {
            let Some((_, l)) = lines.next_line()? else {
                break;
            };
            line.extend_from_slice(l);
        } else {
            let Some(e) = order.next() else { break };
            text.write_line(&mut line, e)?;
        }
        out.write_all(if first { b"\n    " } else { b",\n    " })?;
        out.write_all(line.strip_suffix(b"\n").unwrap_or(&line))?;
        first = false;
    }
    out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })
}

/// Pretty-prints the outer levels of the file and writes anything nested
/// deeper on one line, so a histogram's `[ns, count]` pairs do not take four
/// lines each.
#[derive(Default)]
struct ShallowPretty {
    pretty: PrettyFormatter<'static>,
    depth: usize,
}

impl ShallowPretty {
    /// Containers this deep or deeper are written compactly: a histogram's
    /// list of pairs (file, `meta`, the entry list, an entry, the list).
    const COMPACT_FROM: usize = 5;

    fn compact(&self) -> bool {
        self.depth >= Self::COMPACT_FROM
    }

    /// Opens an array or object: `open` by hand when deeper than the
    /// pretty levels, else the pretty printer's way.
    fn begin<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        open: &[u8],
        pretty: fn(&mut PrettyFormatter<'static>, &mut W) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.depth += 1;
        if self.depth > Self::COMPACT_FROM {
            return w.write_all(open);
        }
        pretty(&mut self.pretty, w)
    }

    fn end<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        close: &[u8],
        pretty: fn(&mut PrettyFormatter<'static>, &mut W) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.depth -= 1;
        if self.depth >= Self::COMPACT_FROM {
            return w.write_all(close);
        }
        pretty(&mut self.pretty, w)
    }

    /// Before an element or key: a bare comma when compact.
    fn separate<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
        pretty: fn(&mut PrettyFormatter<'static>, &mut W, bool) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if self.compact() {
            return if first { Ok(()) } else { w.write_all(b",") };
        }
        pretty(&mut self.pretty, w, first)
    }

    /// After an element or value: nothing when compact.
    fn finish<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        pretty: fn(&mut PrettyFormatter<'static>, &mut W) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if self.compact() {
            return Ok(());
        }
        pretty(&mut self.pretty, w)
    }
}

impl Formatter for ShallowPretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"[", PrettyFormatter::begin_array)
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"]", PrettyFormatter::end_array)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.separate(w, first, PrettyFormatter::begin_array_value)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.finish(w, PrettyFormatter::end_array_value)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"{", PrettyFormatter::begin_object)
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"}", PrettyFormatter::end_object)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.separate(w, first, PrettyFormatter::begin_object_key)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.compact() {
            return w.write_all(b":");
        }
        self.pretty.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.finish(w, PrettyFormatter::end_object_value)
    }
}

/// What turns an event into its JSON: the names and the run's start.
pub(crate) struct EventText<'a> {
    pub(crate) sites: &'a [SiteInfo],
    #[cfg(test)]
    started_at: DateTime<FixedOffset>,
    stamps: Timestamps,
}

impl<'a> EventText<'a> {
    pub(crate) fn new(sites: &'a [SiteInfo], started_at: DateTime<FixedOffset>) -> EventText<'a> {
        EventText {
            sites,
            #[cfg(test)]
            started_at,
            stamps: Timestamps::new(started_at),
        }
    }

    /// Appends `e` as one line of the events sidecar: the JSON of its
    /// `EventOut`, written by hand ([`event_json`](super::event_json)).
    pub(crate) fn write_line(&self, out: &mut Vec<u8>, e: &Event) -> serde_json::Result<()> {
        let key = |out: &mut Vec<u8>, k: &[u8]| out.extend_from_slice(k);
        out.extend_from_slice(b"{\"timestamp\":");
        self.stamps.write(out, e.at_ns());
        match e {
            Event::Sample {
                at_ns,
                cpu_percent,
                rss_bytes,
                window_seconds,
            } => {
                key(out, b",\"event\":\"process_sample\",\"cpu_percent\":");
                float(out, *cpu_percent);
                key(out, b",\"rss_mib\":");
                float(out, *rss_bytes as f64 / MIB);
                key(out, b",\"window_seconds\":");
                float(out, *window_seconds);
                key(out, b",\"offset_ns\":");
                unsigned(out, *at_ns);
            }
            Event::Timing {
                site,
                thread,
                duration_ns,
                end_ns,
                resources,
            } => {
                let info = self.site(*site);
                let module = info.map_or("", |s| &s.module);
                let name = info.map_or("", |s| &s.name);
                let function = matches!(info.map(|s| s.kind), Some(Kind::Function));
                key(
                    out,
                    if function {
                        b",\"event\":\"func_timing\",\"module\":"
                    } else {
                        b",\"event\":\"phase_timing\",\"module\":"
                    },
                );
                string(out, module);
                key(
                    out,
                    if function {
                        b",\"name\":"
                    } else {
                        b",\"phase\":"
                    },
                );
                string(out, name);
                key(out, b",\"duration_seconds\":");
                float(out, secs(*duration_ns));
                key(out, b",\"thread\":");
                unsigned(out, u64::from(*thread));
                // A region that began before the run (it spans a rotation)
                // starts at 0; its duration stays whole.
                key(out, b",\"start_offset_seconds\":");
                float(out, secs(end_ns.saturating_sub(*duration_ns)));
                if let (true, Some((cpu_ns, rss))) = (function, resources) {
                    key(out, b",\"cpu_seconds\":");
                    float(out, secs(*cpu_ns));
                    key(out, b",\"rss_delta_mib\":");
                    float(out, *rss as f64 / MIB);
                }
                key(out, b",\"offset_ns\":");
                unsigned(out, *end_ns);
            }
            Event::Counts {
                at_ns,
                thread,
                values,
            } => {
                key(out, b",\"event\":\"counts\",\"thread\":");
                unsigned(out, u64::from(*thread));
                key(out, b",\"counts\":{");
                for (i, (site, value)) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, self.site(*site).map_or("", |s| &s.name));
                    out.push(b':');
                    signed(out, *value);
                }
                key(out, b"},\"offset_ns\":");
                unsigned(out, *at_ns);
            }
        }
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// Appends `e` as `serde_json` writes its `EventOut`: what
    /// [`EventText::write_line`] must write.
    #[cfg(test)]
    pub(crate) fn write_line_serde(&self, out: &mut Vec<u8>, e: &Event) -> serde_json::Result<()> {
        serde_json::to_writer(&mut *out, &self.out(e))?;
        out.push(b'\n');
        Ok(())
    }

    #[cfg(test)]
    fn at(&self, ns: u64) -> String {
        timestamp(after(self.started_at, ns))
    }

    fn site(&self, id: u32) -> Option<&'a SiteInfo> {
        by_id(self.sites, id as usize)
    }

    #[cfg(test)]
    fn out(&self, e: &'a Event) -> EventOut<'a> {
        match e {
            Event::Sample {
                at_ns,
                cpu_percent,
                rss_bytes,
                window_seconds,
            } => EventOut::Sample {
                timestamp: self.at(*at_ns),
                event: "process_sample",
                cpu_percent: *cpu_percent,
                rss_mib: *rss_bytes as f64 / MIB,
                window_seconds: *window_seconds,
                offset_ns: *at_ns,
            },
            Event::Timing {
                site,
                thread,
                duration_ns,
                end_ns,
                resources,
            } => {
                let info = self.site(*site);
                let module = info.map_or("", |s| &s.module);
                let name = info.map_or("", |s| &s.name);
                let duration_seconds = secs(*duration_ns);
                let timestamp = self.at(*end_ns);
                // A region that began before the run (it spans a rotation)
                // starts at 0; its duration stays whole.
                let start_offset_seconds = secs(end_ns.saturating_sub(*duration_ns));
                match info.map(|s| s.kind) {
                    Some(Kind::Function) => EventOut::Function {
                        timestamp,
                        event: "func_timing",
                        module,
                        name,
                        duration_seconds,
                        thread: *thread,
                        start_offset_seconds,
                        cpu_seconds: resources.map(|r| secs(r.0)),
                        rss_delta_mib: resources.map(|r| r.1 as f64 / MIB),
                        offset_ns: *end_ns,
                    },
                    _ => EventOut::Phase {
                        timestamp,
                        event: "phase_timing",
                        module,
                        phase: name,
                        duration_seconds,
                        thread: *thread,
                        start_offset_seconds,
                        offset_ns: *end_ns,
                    },
                }
            }
            Event::Counts {
                at_ns,
                thread,
                values,
            } => EventOut::Counts {
                timestamp: self.at(*at_ns),
                event: "counts",
                thread: *thread,
                counts: CountValues {
                    values,
                    sites: self.sites,
                },
                offset_ns: *at_ns,
            },
        }
    }
}

#[cfg(test)]
#[derive(Serialize)]
#[serde(untagged)]
enum EventOut<'a> {
    Sample {
        timestamp: String,
        event: &'static str,
        cpu_percent: f64,
        rss_mib: f64,
        /// The wall seconds `cpu_percent` covers, ending at `timestamp`: 0 for
        /// the run's start sample; under 0.01 for a sample whose window did
        /// not end (the next one covers it too).
        window_seconds: f64,
        offset_ns: u64,
    },
    Phase {
        timestamp: String,
        event: &'static str,
        module: &'a str,
        phase: &'a str,
        duration_seconds: f64,
        thread: u32,
        start_offset_seconds: f64,
        offset_ns: u64,
    },
    Function {
        timestamp: String,
        event: &'static str,
        module: &'a str,
        name: &'a str,
        duration_seconds: f64,
        thread: u32,
        start_offset_seconds: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        cpu_seconds: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rss_delta_mib: Option<f64>,
        offset_ns: u64,
    },
    Counts {
        timestamp: String,
        event: &'static str,
        thread: u32,
        counts: CountValues<'a>,
        offset_ns: u64,
    },
}

#[cfg(test)]
struct CountValues<'a> {
    values: &'a [(u32, i64)],
    sites: &'a [SiteInfo],
}

#[cfg(test)]
impl Serialize for CountValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for (site, value) in self.values {
            let name = by_id(self.sites, *site as usize).map_or("", |s| &s.name);
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_entries_are_the_serializers() {
        let seed: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/seed_module_example.json"
        )))
        .unwrap();
        let meta: Meta = serde_json::from_value(seed["meta"].clone()).unwrap();
        let state = std::cell::Cell::new(0x2545_F491_4F6C_DD1Du64);
        let next = || {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            x
        };
        let names = ["plain", "", "q\"uote", "back\\slash\n", "ünï\u{7}"];
        for round in 0..50 {
            let entry = |kind| {
                let opt = || (next() % 4 != 0).then(|| f64::from_bits(next() >> 2));
                Entry {
                    kind,
                    module: names[(next() % 5) as usize].to_owned(),
                    name: names[(next() % 5) as usize].to_owned(),
                    stats: Stats {
                        duration_seconds_total: f64::from_bits(next() >> 2),
                        count: (next() % 4 != 0).then(&next),
                        min_seconds: opt(),
                        mean_seconds: opt(),
                        p50_seconds: opt(),
                        p90_seconds: opt(),
                        p99_seconds: opt(),
                        p999_seconds: opt(),
                        max_seconds: opt(),
                    },
                    resources: (next() % 2 == 0).then(|| Resources {
                        calls: next(),
                        cpu_seconds_total: 0.5,
                        rss_delta_mib_total: -1.25,
                        rss_delta_mib_max: f64::NAN,
                    }),
                    histogram_ns: (0..next() % 4)
                        .map(|_| Bucket {
                            lower_ns: next(),
                            count: next() % 9,
                            width_ns: 1 + next() % 7,
                        })
                        .collect(),
                    sampled: (next() % 3 == 0).then(|| Sampled {
                        one_in: 64,
                        timed: next(),
                        timed_seconds_total: 1e-3,
                        duration_seconds_total_se: Some(2e-4),
                        p50_seconds_se: None,
                        p90_seconds_se: Some(f64::INFINITY),
                        p99_seconds_se: None,
                        p999_seconds_se: None,
                    }),
                }
            };
            let mut meta = meta.clone();
            meta.phase_durations_seconds_total =
                (0..round % 4).map(|_| entry(EntryKind::Phase)).collect();
            meta.function_durations_seconds_total =
                (0..round % 3).map(|_| entry(EntryKind::Function)).collect();
            let figures = || WindowFigures {
                count: next(),
                duration_seconds_total: f64::from_bits(next() >> 2),
                mean_seconds: if next() % 5 == 0 { f64::NAN } else { 0.5 },
                p50_seconds: 1e-9,
                p90_seconds: f64::from_bits(next() >> 2),
                p99_seconds: 3.0,
            };
            let started_at = DateTime::from_timestamp(1_800_000_000, 5)
                .unwrap()
                .fixed_offset();
            meta.window = (round % 5 != 4).then(|| Window {
                started_at,
                seconds: 1.5,
                phases: (0..round % 3)
                    .map(|_| WindowPhase {
                        module: names[(next() % 5) as usize].to_owned(),
                        phase: names[(next() % 5) as usize].to_owned(),
                        stats: figures(),
                    })
                    .collect(),
                functions: (0..round % 4)
                    .map(|_| WindowFunction {
                        module: names[(next() % 5) as usize].to_owned(),
                        name: names[(next() % 5) as usize].to_owned(),
                        stats: figures(),
                    })
                    .collect(),
            });
            // The hand-written lists go where the serializer leaves them empty.
            let mut bare = RunFile {
                meta: meta.clone(),
                events: [],
            };
            bare.meta.phase_durations_seconds_total.clear();
            bare.meta.function_durations_seconds_total.clear();
            if let Some(w) = &mut bare.meta.window {
                w.phases.clear();
                w.functions.clear();
            }
            let windowed = bare.meta.window.is_some();
            let bare = serde_head(&bare).unwrap();
            let keys = [
                PHASES_KEY,
                FUNCTIONS_KEY,
                WINDOW_PHASES_KEY,
                WINDOW_FUNCTIONS_KEY,
            ];
            for key in &keys[..if windowed { 4 } else { 2 }] {
                let marked = [*key, &b"[]"[..]].concat();
                assert!(bare.windows(marked.len()).any(|w| w == marked));
            }
            let file = RunFile { meta, events: [] };
            let want = serde_head(&file).unwrap();
            let got = head(file).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn a_hand_written_event_line_is_serde_jsons() {
        let site = |kind, module: &str, name: &str| SiteInfo {
            kind,
            module: module.into(),
            name: name.into(),
        };
        let sites = [
            site(Kind::Phase, "m", "plain"),
            site(Kind::Function, "a\"b\\c", "f\n\u{1}ü"),
            site(Kind::Count, "", "count \"x\""),
            site(Kind::Function, "m", "g"),
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let offsets = [0, 3_600 * 5 + 1_800, -3_600 * 8];
        for round in 0..300u64 {
            let offset = FixedOffset::east_opt(offsets[(round % 3) as usize]).unwrap();
            let start = DateTime::from_timestamp(
                1_800_000_000 + (next() % 1_000) as i64,
                (next() % 1_000_000_000) as u32,
            )
            .unwrap()
            .with_timezone(&offset);
            let text = EventText::new(&sites, start);
            // Times near each other (the kept second reused) and far apart.
            let mut at = next() % 10_000_000_000;
            for _ in 0..20 {
                at += match next() % 3 {
                    0 => next() % 1_000,
                    1 => next() % 2_000_000_000,
                    _ => 0,
                };
                let e = match next() % 4 {
                    0 => Event::Sample {
                        at_ns: at,
                        cpu_percent: f64::from_bits(next() >> 2),
                        rss_bytes: next(),
                        window_seconds: if next() % 5 == 0 { f64::NAN } else { 0.25 },
                    },
                    1 => Event::Counts {
                        at_ns: at,
                        thread: next() as u32,
                        values: (0..next() % 3)
                            .map(|_| ((next() % 6) as u32, next() as i64))
                            .collect(),
                    },
                    _ => Event::Timing {
                        site: (next() % 6) as u32,
                        thread: next() as u32,
                        duration_ns: next() % (at + 2),
                        end_ns: at,
                        resources: (next() % 2 == 0).then(|| (next() % 1_000_000, next() as i64)),
                    },
                };
                let (mut got, mut want) = (Vec::new(), Vec::new());
                text.write_line(&mut got, &e).unwrap();
                text.write_line_serde(&mut want, &e).unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap()
                );
            }
        }
    }

    #[test]
    fn only_the_outer_four_levels_are_pretty() {
        let v = serde_json::json!({"meta": {"list": [{"h": [[1, 2], [3, 4]], "o": {"a": 1}}]}});
        let mut out = Vec::new();
        v.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            ShallowPretty::default(),
        ))
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"h\": [[1,2],[3,4]]"), "{text}");
        assert!(text.contains("\"o\": {\"a\":1}"), "{text}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }
}
