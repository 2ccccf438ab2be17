//! Where the time goes in a program — phases, functions, counts, process CPU
//! and memory — recorded with nanosecond overhead on the hot path and written
//! as one JSON report per run.
//!
//! # Getting started
//!
//! ```
//! use serde_json::json;
//!
//! # let log_dir = std::env::temp_dir().join(format!("rm-doc-lib-{}", std::process::id()));
//! runmetrics::init_metrics(runmetrics::Config::new().job("al_inference").grouping("env", "dev"))?;
//! let run_id = runmetrics::start_run(&log_dir)?; // e.g. "20230801-120000-ab12cd"
//! {
//!     let _t = runmetrics::PhaseTimer::new("grounding", "pipeline"); // ends on drop
//!     // ... grounding ...
//! }
//! infer_step();
//! runmetrics::observe_counts(&[("grounded_rules", 10), ("facts_count", 200)]);
//! runmetrics::sample_process_gauges();
//! let path = runmetrics::end_run(json!({"facts_final": 100, "rules_total": 50}))?;
//! assert!(path.ends_with(format!("{run_id}.json")));
//!
//! #[runmetrics::measure("infer_step", module = "inference")]
//! fn infer_step() { /* ... */ }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What goes where
//!
//! The run file `<log_dir>/<run_id>.json` holds `meta` (run id, start and
//! end, CPU and RSS summary, per-phase and per-function totals with count,
//! min, mean, p50/p90/p99/p99.9 and max, counts, the record accounting and your
//! `extra_meta` keys) and `events` (process samples, each timed region, each
//! `observe_counts` call, in time order). The layout is the one the Python
//! metrics module writes, with keys added, never renamed.
//!
//! CPU percent is per core, as psutil reports it: 100 is one busy core, and
//! two busy threads show 200. The collector samples at the start and end of
//! each run, every `sample_interval` (default 1 s) in between, and when you
//! call [`sample_process_gauges`]. Each sample's `cpu_percent` covers the
//! window (`window_seconds`) since the last one that ended: the start sample
//! starts the first (0 %, 0 s), and a window under 10 ms does not end (the
//! next sample covers it too). `cpu_percent_max` is the highest sample of the
//! windows that ended, `cpu_percent_mean` their time-weighted mean (CPU
//! seconds over wall seconds), so never above the max.
//!
//! # Costs
//!
//! A [`PhaseTimer`] region inside a run costs two raw TSC reads plus a few
//! nanoseconds; in a loop with tens of nanoseconds of work it adds from under
//! a nanosecond (when the processor hides the reads behind the work) to about
//! three times what the two reads alone add: see BENCHMARKS.md for the
//! measured figures. With no run open a timer costs one load and a branch.
//! The recording path never allocates, locks or does I/O once a thread has
//! its buffer (its first record allocates the buffer: 1 MiB by default).
//! Regions and count values are counted on their thread and never dropped;
//! when a thread's buffer is full because the collector is behind, an event
//! is dropped and counted (`events_omitted`), or, with [`Overflow::Block`],
//! the thread waits.
//!
//! # Caveats
//!
//! - A region belongs to the run that was open when it started; one that ends
//!   after its run's `end_run` is counted as `records_outside_run` in the next
//!   run and kept nowhere else.
//! - Names with `&'static str` are resolved through a per-thread cache; names
//!   made at run time (`PhaseTimer::dynamic`) are looked up by their text per call.
//! - Each distinct name is kept for the life of the process.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod collector;
mod config;
#[cfg(feature = "criterion")]
mod criterion_runs;
mod error;
mod extra;
#[allow(unsafe_code)]
mod local;
#[cfg(feature = "metrics")]
mod metrics_facade;
#[allow(unsafe_code)]
mod os;
#[cfg(feature = "prometheus")]
mod prometheus;
mod recorder;
mod redact;
mod report;
mod run_id;
#[allow(unsafe_code)]
mod shared;
mod site;
mod slot;
#[cfg(feature = "tracing")]
mod spans;
#[allow(unsafe_code)]
mod ticks;
mod wall_clock;

use std::path::{Path, PathBuf};

pub use config::{Config, Events, Overflow};
#[cfg(feature = "criterion")]
pub use criterion_runs::{BenchRunError, CriterionRuns};
#[cfg(feature = "metrics")]
pub use error::InstallMetricsError;
#[cfg(feature = "push")]
pub use error::PushError;
pub use error::{
    ConfigError, EndRunError, FlushError, InitMetricsError, NewRecorderError, StartRunError,
};
pub use local::timer::{ClockRead, Fenced, FunctionTimer, PhaseTimer, Unfenced};
#[cfg(feature = "metrics")]
pub use metrics_facade::{
    install_metrics, metrics_recorder, MetricsRecorder, MAX_KEYS as METRICS_MAX_KEYS,
};
#[cfg(feature = "push")]
pub use prometheus::push::PushMethod;
#[cfg(feature = "prometheus")]
pub use prometheus::sanitize_metric_name;
pub use recorder::Recorder;
/// The run file's types and reader (the `runmetrics-format` crate): open a
/// run file and iterate its entries and events.
///
/// ```
/// # let log_dir = std::env::temp_dir().join(format!("rm-doc-format-{}", std::process::id()));
/// let recorder = runmetrics::Recorder::new(runmetrics::Config::new().events(runmetrics::Events::All))?;
/// recorder.start_run(&log_dir)?;
/// for _ in 0..3 {
///     let _t = recorder.phase("load", "io");
/// }
/// let path = recorder.end_run(serde_json::Value::Null)?;
///
/// let run = runmetrics::format::RunFile::open(&path)?;
/// let load = run.entries().find(|e| e.label() == "io/load").unwrap();
/// assert_eq!(load.stats.count, Some(3));
/// let mut phases = 0;
/// for event in run.events()? {
///     if let runmetrics::format::Event::Phase(p) = event? {
///         assert_eq!(p.phase, "load");
///         phases += 1;
///     }
/// }
/// assert_eq!(phases, 3);
/// # std::fs::remove_dir_all(&log_dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use runmetrics_format as format;
#[cfg(feature = "tracing")]
pub use spans::{layer as tracing_layer, TracingLayer};

/// Times every call of the function it is put on, as a `func_timing` event and
/// an entry of `meta.function_durations_seconds_total`.
///
/// - `#[measure]`: name = the function's name, module = `module_path!()`.
/// - `#[measure("infer_step", module = "inference")]`, or `name = "..."`.
/// - `resources = true`: also the thread's CPU time and the RSS change per
///   call (costs microseconds per call).
/// - `fenced = true`: read the clock [`Fenced`], for functions of tens or
///   hundreds of nanoseconds (see [`Fenced`] and the README).
/// - `sample = n` (1 to 32 768): every call counted, about one in `n` timed
///   (see [`PhaseTimer::sampled`]); with `fenced = true` too, the timed
///   ones read the clock fenced. Not with `resources`.
///
/// Works on `async fn` (the time includes the awaits) and on methods.
///
/// ```
/// #[runmetrics::measure]
/// fn parse(s: &str) -> usize { s.len() }
///
/// #[runmetrics::measure("load_model", module = "init", resources = true)]
/// fn load() -> Vec<u8> { vec![0; 1 << 20] }
/// # assert_eq!(parse("abc"), 3);
/// # assert_eq!(load().len(), 1 << 20);
/// ```
pub use runmetrics_macros::measure;

/// Starts a [`PhaseTimer`] whose name id is cached in a `static` at the call
/// site: the cheapest way to time a phase. The module defaults to `module_path!()`.
/// A last argument `fenced` reads the clock [`Fenced`] (for phases of tens or
/// hundreds of nanoseconds).
///
/// A last argument `sample = n` (a constant from 1 to 32 768) times about
/// one region in `n` and counts every one exactly (see
/// [`PhaseTimer::sampled`]): for loops where even two clock reads are too
/// much. `sample = n, fenced` does both: about one region in `n` timed,
/// its reads fenced (see [`PhaseTimer::fenced_sampled`]).
///
/// ```
/// let _t = runmetrics::phase!("grounding", "pipeline");
/// let _u = runmetrics::phase!("execute");
/// let _v = runmetrics::phase!("lookup", fenced);
/// let _w = runmetrics::phase!("lookup", "index", fenced);
/// let _x = runmetrics::phase!("decode", sample = 64);
/// let _y = runmetrics::phase!("decode", "codec", sample = 64);
/// let _z = runmetrics::phase!("probe", sample = 64, fenced);
/// let _a = runmetrics::phase!("probe", "index", sample = 64, fenced);
/// ```
#[macro_export]
macro_rules! phase {
    ($phase:expr) => {
        $crate::phase!($phase, ::core::module_path!())
    };
    ($phase:expr, fenced) => {
        $crate::phase!($phase, ::core::module_path!(), fenced)
    };
    // Before `($phase, $module, fenced)`, which `sample = n` (an
    // assignment, as an expression) would otherwise match.
    ($phase:expr, sample = $n:expr, fenced) => {
        $crate::phase!($phase, ::core::module_path!(), sample = $n, fenced)
    };
    ($phase:expr, sample = $n:expr) => {
        $crate::phase!($phase, ::core::module_path!(), sample = $n)
    };
    ($phase:expr, $module:expr, sample = $n:expr, fenced) => {{
        static __RUNMETRICS_SITE: $crate::__private::Site =
            $crate::__private::Site::phase($phase, $module);
        const __RUNMETRICS_ONE_IN: u32 = $crate::__private::one_in($n);
        $crate::PhaseTimer::at_fenced_sampled(&__RUNMETRICS_SITE, __RUNMETRICS_ONE_IN)
    }};
    ($phase:expr, $module:expr, sample = $n:expr) => {{
        static __RUNMETRICS_SITE: $crate::__private::Site =
            $crate::__private::Site::phase($phase, $module);
        const __RUNMETRICS_ONE_IN: u32 = $crate::__private::one_in($n);
        $crate::PhaseTimer::at_sampled(&__RUNMETRICS_SITE, __RUNMETRICS_ONE_IN)
    }};
    ($phase:expr, $module:expr, fenced) => {{
        static __RUNMETRICS_SITE: $crate::__private::Site =
            $crate::__private::Site::phase($phase, $module);
        $crate::PhaseTimer::at_fenced(&__RUNMETRICS_SITE)
    }};
    ($phase:expr, $module:expr) => {{
        static __RUNMETRICS_SITE: $crate::__private::Site =
            $crate::__private::Site::phase($phase, $module);
        $crate::PhaseTimer::at(&__RUNMETRICS_SITE)
    }};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::site::Site;
    pub use crate::wall_clock::set_wall_clock;

    /// `sample = n` of `phase!`, checked where it is written: a constant
    /// outside 1 to 32 768 fails to compile.
    pub const fn one_in(n: u32) -> u32 {
        assert!(
            n >= 1 && n <= crate::config::MAX_TIME_ONE_IN,
            "runmetrics: sample = n must be from 1 to 32768"
        );
        n
    }
}

/// Sets up the global recorder. Optional (the first [`start_run`] uses the
/// defaults), and at most once: a second call is an error.
///
/// ```no_run
/// runmetrics::init_metrics(
///     runmetrics::Config::new().port(14233).job("al_inference").grouping("env", "dev"),
/// )?;
/// # Ok::<(), runmetrics::InitMetricsError>(())
/// ```
pub fn init_metrics(config: Config) -> Result<(), InitMetricsError> {
    recorder::init_global(config)
}

/// Opens a run on the global recorder; its file will be
/// `<log_dir>/<run_id>.json`. Makes `log_dir` if needed and checks it is
/// writable now, not at the end. Returns the run id.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("rm-doc-start-{}", std::process::id()));
/// let run_id = runmetrics::start_run(&dir)?;
/// assert_eq!(run_id.len(), "20230801-120000-ab12cd".len());
/// # runmetrics::end_run(serde_json::Value::Null)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start_run(log_dir: impl AsRef<Path>) -> Result<String, StartRunError> {
    recorder::global_or_default()?.start_run(log_dir)
}

/// Ends the open run of the global recorder and writes its file atomically;
/// returns its path. `extra_meta` (a JSON object, or null) is added to `meta`.
/// It may nest arrays and objects 64 levels deep, itself level 1; a deeper
/// one is refused with [`EndRunError::ExtraMetaTooDeep`] and the run stays
/// open, so every run file loads in every JSON reader.
///
/// Every region that finished before this call, on any thread (parked and
/// exited ones included), is in the file. If writing the file fails the run
/// stays open, so it can be retried without losing anything. (A failed push
/// to a Pushgateway comes after the file is written: that run is ended.)
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("rm-doc-end-{}", std::process::id()));
/// # runmetrics::start_run(&dir)?;
/// let path = runmetrics::end_run(serde_json::json!({"facts_final": 100}))?;
/// let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
/// assert_eq!(file["meta"]["facts_final"], 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn end_run(extra_meta: serde_json::Value) -> Result<PathBuf, EndRunError> {
    match recorder::global() {
        Some(r) => r.end_run(extra_meta),
        None => {
            recorder::drop_flat(extra_meta);
            Err(EndRunError::NoOpenRun)
        }
    }
}

/// Writes a snapshot of the open run to its file now, and returns the path
/// once the file is on disk: everything recorded before this call, on every
/// thread, with `meta.in_progress` true and `meta.ended_at` null. The run
/// stays open. [`Config::flush_interval`] does the same periodically.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("rm-doc-flush-{}", std::process::id()));
/// runmetrics::start_run(&dir)?;
/// drop(runmetrics::phase!("load"));
/// let path = runmetrics::flush()?;
/// let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
/// assert_eq!(file["meta"]["in_progress"], true);
/// assert_eq!(file["meta"]["phase_durations_seconds_total"][0]["count"], 1);
/// # runmetrics::end_run(serde_json::Value::Null)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn flush() -> Result<PathBuf, FlushError> {
    match recorder::global() {
        Some(r) => r.flush(),
        None => Err(FlushError::NoOpenRun),
    }
}

/// Runs `f`, timed as one call of function `name` in `module` (the closure
/// form of [`measure`]).
///
/// ```
/// let n = runmetrics::measure_fn("count_rules", "inference", || 2 + 2);
/// assert_eq!(n, 4);
/// ```
#[inline]
pub fn measure_fn<R>(name: &'static str, module: &'static str, f: impl FnOnce() -> R) -> R {
    let _t = FunctionTimer::new(name, module);
    f()
}

/// [`measure_fn`] reading the clock [`Fenced`], for calls of tens or hundreds
/// of nanoseconds.
///
/// ```
/// let n = runmetrics::measure_fn_fenced("lookup", "index", || 2 + 2);
/// assert_eq!(n, 4);
/// ```
#[inline]
pub fn measure_fn_fenced<R>(name: &'static str, module: &'static str, f: impl FnOnce() -> R) -> R {
    let _t = FunctionTimer::fenced(name, module);
    f()
}

/// Records the current value of named counts (rules, facts, iterations ...).
/// The run file keeps each name's last, min and max value and how often it was
/// observed, plus a `counts` event per call. Outside a run it does nothing.
///
/// ```
/// runmetrics::observe_counts(&[("grounded_rules", 10), ("facts_count", 200)]);
/// ```
pub fn observe_counts(counts: &[(&str, i64)]) {
    local::timer::observe_counts(shared::global_shared, counts);
}

/// Takes a process CPU and RSS sample now, as a `process_sample` event
/// (during a run; the collector also samples on its own interval).
///
/// ```
/// runmetrics::sample_process_gauges();
/// ```
pub fn sample_process_gauges() {
    if let Some(r) = recorder::global() {
        r.sample_process_gauges();
    }
}
