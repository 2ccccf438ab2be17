//! The run file's owned types: `meta` and what it lists, and the events.
//!
//! Field names are the file's keys. Where the Python seed module's files
//! lack a key, the field is an `Option` (or an empty list): the reader
//! refuses a file of layout 2 or later without it (see
//! [`RunFile`](crate::RunFile)), so `None` means "an older file".

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::Bucket;

/// A point in time as the run file writes it: RFC 3339 with microseconds
/// and the offset (`2026-11-25T07:10:23.944526+00:00`).
pub type Timestamp = DateTime<FixedOffset>;

/// Defines a struct whose fields are keys of the file, in the order
/// written, and `KEYS`, their names: the key list is the type.
macro_rules! keyed {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$fattr:meta])* pub $field:ident : $ty:ty, )*
        }
        $( flatten { $(#[$xattr:meta])* pub $extra:ident : $xty:ty, } )?
    ) => {
        $(#[$attr])*
        pub struct $name {
            $( $(#[$fattr])* pub $field: $ty, )*
            $( $(#[$xattr])* #[serde(flatten)] pub $extra: $xty, )?
        }

        impl $name {
            /// The keys this type writes, in order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

keyed! {
    /// A run file's `meta`: what the run did, the seed module's keys first.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Meta {
        /// `<YYYYmmdd-HHMMSS>-<6 hex>`; the file is `<run_id>.json`.
        pub run_id: String,
        /// When the run started.
        #[serde(with = "timestamp")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::timestamp"))]
        pub started_at: Timestamp,
        /// When it ended; `None` (null) in a snapshot of a run still open.
        #[serde(default, with = "timestamp::option")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::optional_timestamp"))]
        pub ended_at: Option<Timestamp>,
        /// The process's highest CPU use over the run's sample windows, in %.
        pub cpu_percent_max: Option<f64>,
        /// Its mean CPU use over the run, in %.
        pub cpu_percent_mean: Option<f64>,
        /// Its highest resident set, in MiB.
        pub rss_max_mib: Option<f64>,
        /// One entry per phase, each of [`Kind::Phase`].
        #[serde(default, with = "entries::phases")]
        #[cfg_attr(feature = "schema", schemars(with = "Vec<entries::PhaseIn>"))]
        pub phase_durations_seconds_total: Vec<Entry>,
        /// The sum of the phases' totals, in seconds.
        pub all_phases_duration_seconds_total: Option<f64>,
        /// One entry per function, each of [`Kind::Function`].
        #[serde(default, with = "entries::functions")]
        #[cfg_attr(feature = "schema", schemars(with = "Vec<entries::FunctionIn>"))]
        pub function_durations_seconds_total: Vec<Entry>,
        /// The sum of the functions' totals, in seconds.
        pub all_functions_duration_seconds_total: Option<f64>,
        /// One summary per count name (`observe_counts`).
        #[serde(default)]
        pub counts: Vec<Count>,
        /// Records the threads issued: `records_aggregated + records_dropped`.
        pub records_issued: Option<u64>,
        /// Records the collector counted.
        pub records_aggregated: Option<u64>,
        /// Records lost to full buffers (`Overflow::Drop`).
        pub records_dropped: Option<u64>,
        /// Records made while no run was open.
        pub records_outside_run: Option<u64>,
        /// Events in the file's `events`.
        pub events_written: Option<u64>,
        /// Events left out (by `Config::events`, or a failed write).
        pub events_omitted: Option<u64>,
        /// The cap on events (`Events::First(n)`; 0 for `Events::None`);
        /// `None` (null) when they are not capped.
        pub event_cap: Option<u64>,
        /// Process samples taken.
        pub process_samples: Option<u64>,
        /// The threads that recorded, by id.
        #[serde(default)]
        pub threads: Vec<Thread>,
        /// The Prometheus job.
        pub job: Option<String>,
        /// The Prometheus grouping labels, in order.
        #[serde(default, with = "pairs")]
        #[cfg_attr(feature = "schema", schemars(with = "std::collections::BTreeMap<String, String>"))]
        pub grouping: Vec<(String, String)>,
        /// The process's id.
        pub pid: Option<u32>,
        /// The layout the file was written in ([`LAYOUT_VERSION`](crate::LAYOUT_VERSION)
        /// by this crate); `None` in the seed module's files.
        pub layout_version: Option<u64>,
        /// The runmetrics that wrote the file.
        pub runmetrics_version: Option<String>,
        /// False when runmetrics was built without recording (`enabled` off).
        pub recording_enabled: Option<bool>,
        /// True in a snapshot written while the run is open.
        pub in_progress: Option<bool>,
        /// When this file was written.
        #[serde(default, with = "timestamp::option")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::optional_timestamp"))]
        pub flushed_at: Option<Timestamp>,
        /// Writes of the run's file that failed before this one.
        pub write_failures: Option<u64>,
        /// The last of those failures' cause.
        pub last_write_error: Option<String>,
        /// What each phase and function did since the previous write.
        pub window: Option<Window>,
        /// The run this one continues after a rotation.
        pub previous_run_id: Option<String>,
        /// `first`, `all`, `every_nth` or `none` (`Config::events`).
        pub event_mode: Option<String>,
        /// `n` of `every_nth`; `None` (null) in the other modes.
        pub event_every_nth: Option<u64>,
        /// In a snapshot, the events sidecar beside it; `None` (null) otherwise.
        pub events_file: Option<String>,
        /// Appends to the events sidecar that failed.
        pub events_write_failures: Option<u64>,
        /// The scale the run's raw clock values were converted by.
        pub clock: Option<Clock>,
        /// The process's distinct names and their cap (`Config::max_names`).
        pub names: Option<Names>,
        /// Values recorded through the `metrics` facade's `histogram!`
        /// (feature `metrics`), one entry per name and label set, over the
        /// process's life so far; absent in files of processes without it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub histograms: Vec<MetricHistogram>,
        /// What the `metrics` facade refused or could not place (its key cap
        /// and the values it does not count); absent without the facade.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub metrics_facade: Option<MetricsFacade>,
    }
    flatten {
        /// Every other key: the program's `extra_meta` (`end_run`), or keys of
        /// a newer writer.
        pub extra: Map<String, Value>,
    }
}

impl Meta {
    /// Keys of [`Meta::KEYS`] a reader does not require: the `metrics`
    /// facade's (written only when it has something to say) and `names`
    /// (added within layout 2, absent from its earliest files).
    pub const OPTIONAL_KEYS: &'static [&'static str] = &["names", "histograms", "metrics_facade"];
}

/// The keys of `meta` runmetrics writes: `extra_meta` may not use them.
/// They are [`Meta`]'s fields, in the order written.
pub const RESERVED_META_KEYS: &[&str] = Meta::KEYS;

impl Meta {
    /// The phases, then the functions, each in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.phase_durations_seconds_total
            .iter()
            .chain(&self.function_durations_seconds_total)
    }
}

/// Phase or function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A `phase!` or `PhaseTimer` (`meta.phase_durations_seconds_total`).
    Phase,
    /// A `#[measure]` or `measure_fn` (`meta.function_durations_seconds_total`).
    Function,
}

impl Kind {
    /// `phase` or `function`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Phase => "phase",
            Kind::Function => "function",
        }
    }
}

keyed! {
    /// The durations of one phase or function: the figures an entry of
    /// `meta` carries beside its names (only the total in the seed's files).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Stats {
        /// The exact sum, in seconds.
        pub duration_seconds_total: f64,
        /// How many regions.
        pub count: Option<u64>,
        /// The shortest, exact.
        pub min_seconds: Option<f64>,
        /// The mean, exact.
        pub mean_seconds: Option<f64>,
        /// The median, from the histogram.
        pub p50_seconds: Option<f64>,
        /// The 90th percentile, from the histogram.
        pub p90_seconds: Option<f64>,
        /// The 99th percentile, from the histogram.
        pub p99_seconds: Option<f64>,
        /// The 99.9th percentile, from the histogram.
        pub p999_seconds: Option<f64>,
        /// The longest, exact.
        pub max_seconds: Option<f64>,
    }
}

/// One entry of `meta.phase_durations_seconds_total` (written with
/// `phase` for its name) or `meta.function_durations_seconds_total`
/// (`name`). The list it is in decides its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Which list it is in.
    pub kind: Kind,
    /// The module (may be empty).
    pub module: String,
    /// The phase's or function's name.
    pub name: String,
    /// Its durations.
    pub stats: Stats,
    /// What `#[measure(resources = true)]` captured (functions only).
    pub resources: Option<Resources>,
    /// Every duration's bucket, ascending; empty in the seed's files. For
    /// a sampled entry, the timed regions' only.
    pub histogram_ns: Vec<Bucket>,
    /// Present for an entry of sampled timing only (`sample = n`,
    /// `Config::time_one_in`): then `count` is exact, `duration_seconds_total`
    /// and `mean_seconds` are estimates, and the quantiles, min and max are
    /// the timed regions'.
    pub sampled: Option<Sampled>,
}

impl Entry {
    /// The keys an entry of this kind has in a file of layout 2 or later
    /// (`resources` is written only when there are some).
    pub fn keys(kind: Kind) -> impl Iterator<Item = &'static str> {
        let name = match kind {
            Kind::Phase => "phase",
            Kind::Function => "name",
        };
        ["module", name]
            .into_iter()
            .chain(Stats::KEYS.iter().copied())
            .chain(["histogram_ns"])
    }

    /// `module/name`, or the name alone when the module is empty.
    pub fn label(&self) -> String {
        if self.module.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.module, self.name)
        }
    }

    /// The sum of the histogram's counts; `None` past `u64::MAX` (which
    /// the reader refuses as corrupt).
    pub fn histogram_total(&self) -> Option<u64> {
        crate::histogram_total(&self.histogram_ns)
    }
}

keyed! {
    /// `sampled` of an entry whose regions were timed about one in
    /// `one_in`, every one counted. The estimator: total ≈ count × the
    /// timed regions' mean; its standard error count × s / √timed ×
    /// √(1 − timed / count), s the timed durations' standard deviation. A
    /// quantile's standard error is half the distance between the timed
    /// sample's quantiles at q ± √(q(1 − q) / timed). An error is `None`
    /// (null) with fewer than two regions timed.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Sampled {
        /// The `n`: about one region in `n` was timed.
        pub one_in: u32,
        /// Regions timed (the histogram's total).
        pub timed: u64,
        /// Their exact sum, in seconds.
        pub timed_seconds_total: f64,
        /// The standard error of `duration_seconds_total`, in seconds.
        #[serde(default)]
        pub duration_seconds_total_se: Option<f64>,
        /// The standard error of `p50_seconds`.
        #[serde(default)]
        pub p50_seconds_se: Option<f64>,
        /// The standard error of `p90_seconds`.
        #[serde(default)]
        pub p90_seconds_se: Option<f64>,
        /// The standard error of `p99_seconds`.
        #[serde(default)]
        pub p99_seconds_se: Option<f64>,
        /// The standard error of `p999_seconds`.
        #[serde(default)]
        pub p999_seconds_se: Option<f64>,
    }
}

keyed! {
    /// `resources` of a function entry: sums over the calls that captured them.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Resources {
        /// Calls that captured resources.
        pub calls: u64,
        /// Thread CPU time, in seconds.
        pub cpu_seconds_total: f64,
        /// The sum of the calls' RSS changes, in MiB.
        pub rss_delta_mib_total: f64,
        /// The largest RSS change of one call, in MiB.
        pub rss_delta_mib_max: f64,
    }
}

keyed! {
    /// One entry of `meta.counts`: a count name's values over the run.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Count {
        /// The count's name.
        pub name: String,
        /// The value observed last.
        pub last: i64,
        /// The smallest value observed.
        pub min: i64,
        /// The largest value observed.
        pub max: i64,
        /// How many times a value was observed.
        pub observations: u64,
    }
}

keyed! {
    /// One entry of `meta.histograms`: the values one `metrics::histogram!`
    /// name and label set recorded. Quantiles are a bucket's midpoint (within
    /// half a bucket, 1/256 of the value, of the true one); `count`, `sum`,
    /// `min` and `max` are exact. Only finite values are counted here (see
    /// [`MetricsFacade`]).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct MetricHistogram {
        /// The name as given to `histogram!`.
        pub name: String,
        /// Its labels, in the order given.
        #[serde(default)]
        pub labels: Map<String, Value>,
        /// The unit given by `describe_histogram!`, if any (`seconds`,
        /// `bytes`, ...).
        pub unit: Option<String>,
        /// Finite values recorded.
        pub count: u64,
        /// Their sum.
        pub sum: f64,
        /// The least and greatest (`None` when `count` is 0).
        pub min: Option<f64>,
        /// The greatest.
        pub max: Option<f64>,
        /// The median, from the buckets.
        pub p50: Option<f64>,
        /// The 90th percentile.
        pub p90: Option<f64>,
        /// The 99th percentile.
        pub p99: Option<f64>,
        /// The 99.9th percentile.
        pub p999: Option<f64>,
        /// The non-empty buckets in increasing order of value, each
        /// `[lower, count, width]`: its values lie in `[lower, lower + width)`
        /// (a negative bucket's in `(lower, lower + width]`). Buckets are 1/128
        /// of their magnitude's power of two wide; magnitudes under 2^-64
        /// (zero) share one bucket, those from 2^64 one per sign `f64::MAX` wide.
        #[serde(default)]
        pub histogram: Vec<[f64; 3]>,
    }
}

keyed! {
    /// `meta.metrics_facade`: the `metrics` facade's key cap and what it did
    /// not place, so that nothing it drops is lost silently.
    #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct MetricsFacade {
        /// Distinct keys (name and labels: histograms, counters and gauges).
        pub keys: u64,
        /// The most it keeps (`MAX_KEYS`).
        pub max_keys: u64,
        /// Registrations of a new key refused past `max_keys`; their values
        /// were dropped.
        pub keys_refused: u64,
        /// Values dropped because their key was refused.
        pub values_dropped: u64,
        /// NaN values given to `histogram!` (not counted in any entry).
        pub nan_values: u64,
        /// Infinite values given to `histogram!` (not in any entry's figures).
        pub infinite_values: u64,
    }
}

keyed! {
    /// One entry of `meta.threads`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Thread {
        /// The id events carry as `thread`.
        pub thread: u32,
        /// The thread's name, when it had one.
        pub name: Option<String>,
    }
}

keyed! {
    /// `meta.clock`: nanoseconds per raw clock tick, measured against the
    /// monotonic clock over the baseline from the process's first recorder
    /// to the run's start.
    #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Clock {
        /// Nanoseconds per tick.
        pub ns_per_tick: f64,
        /// How long the measurement ran, in seconds.
        pub baseline_seconds: f64,
    }
}

keyed! {
    /// `meta.names`: the distinct names the process has (phases, functions
    /// and counts, over all its runs), the most it takes, and how many
    /// lookups of a new name past that were refused: their regions and
    /// counts went to the entry named [`Names::OVER_CAP`] instead.
    #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Names {
        /// Distinct names so far (not counting the over-cap entry).
        pub distinct: u64,
        /// `Config::max_names`.
        pub max_names: u64,
        /// Lookups of a new name refused because `distinct` had reached
        /// `max_names`.
        pub refused: u64,
    }
}

impl Names {
    /// The name (module `runmetrics`) that regions and counts of names past
    /// `max_names` are recorded under.
    pub const OVER_CAP: &'static str = "(names over max_names)";
}

keyed! {
    /// `meta.window`: the last window, from the previous write of the file
    /// (or the start) to this one.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct Window {
        /// When it started.
        #[serde(with = "timestamp")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::timestamp"))]
        pub started_at: Timestamp,
        /// How long it lasted.
        pub seconds: f64,
        /// What each phase did in it.
        pub phases: Vec<WindowPhase>,
        /// What each function did in it.
        pub functions: Vec<WindowFunction>,
    }
}

/// A phase in [`Window::phases`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WindowPhase {
    /// The module.
    pub module: String,
    /// The phase.
    pub phase: String,
    /// What it did in the window.
    #[serde(flatten)]
    pub stats: WindowStats,
}

/// A function in [`Window::functions`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WindowFunction {
    /// The module.
    pub module: String,
    /// The function.
    pub name: String,
    /// What it did in the window.
    #[serde(flatten)]
    pub stats: WindowStats,
}

keyed! {
    /// A phase's or function's figures over one window.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct WindowStats {
        /// Regions that ended in the window.
        pub count: u64,
        /// Their sum, in seconds.
        pub duration_seconds_total: f64,
        /// Their mean.
        pub mean_seconds: f64,
        /// Their median.
        pub p50_seconds: f64,
        /// Their 90th percentile.
        pub p90_seconds: f64,
        /// Their 99th percentile.
        pub p99_seconds: f64,
    }
}

/// One element of the file's `events`, by its `event` key.
///
/// An event of a kind this crate does not know (a newer writer's), or one
/// that does not read as its kind, is [`Event::Other`], as it is in the
/// file: the reader never refuses a file for its events, so a reader that
/// skips the events (`RunFile::open`) and one that reads them agree on
/// every file. Written back, an event's `event` key comes first
/// (runmetrics' writer puts `timestamp` first, as the seed does; JSON
/// readers do not care).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `process_sample`.
    Sample(ProcessSample),
    /// `phase_timing`.
    Phase(PhaseTiming),
    /// `func_timing`.
    Function(FuncTiming),
    /// `counts`.
    Counts(CountsEvent),
    /// Anything else.
    Other(Value),
}

impl Event {
    /// Types `v` as its `event` key says, or keeps it as [`Event::Other`].
    pub fn from_value(v: Value) -> Event {
        fn typed<'a, T: Deserialize<'a>>(v: &'a Value, f: fn(T) -> Event) -> Option<Event> {
            T::deserialize(v).ok().map(f)
        }
        let event = match v.get("event").and_then(Value::as_str) {
            Some("process_sample") => typed(&v, Event::Sample),
            Some("phase_timing") => typed(&v, Event::Phase),
            Some("func_timing") => typed(&v, Event::Function),
            Some("counts") => typed(&v, Event::Counts),
            _ => None,
        };
        event.unwrap_or(Event::Other(v))
    }

    /// Nanoseconds after the run's start by the run's clock (`offset_ns`),
    /// when the event has it (the seed's events do not).
    pub fn offset_ns(&self) -> Option<u64> {
        match self {
            Event::Sample(e) => e.offset_ns,
            Event::Phase(e) => e.offset_ns,
            Event::Function(e) => e.offset_ns,
            Event::Counts(e) => e.offset_ns,
            Event::Other(_) => None,
        }
    }

    /// The wall-clock time of the event (a timing's end).
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self {
            Event::Sample(e) => Some(e.timestamp),
            Event::Phase(e) => Some(e.timestamp),
            Event::Function(e) => Some(e.timestamp),
            Event::Counts(e) => Some(e.timestamp),
            Event::Other(_) => None,
        }
    }

    /// Seconds after `started_at`: by `offset_ns` (exact), else by the
    /// timestamp.
    pub fn at_seconds(&self, started_at: Timestamp) -> Option<f64> {
        if let Some(ns) = self.offset_ns() {
            return Some(ns as f64 / 1e9);
        }
        Some((self.timestamp()? - started_at).num_nanoseconds()? as f64 / 1e9)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "event")]
        enum Tagged<'a> {
            #[serde(rename = "process_sample")]
            Sample(&'a ProcessSample),
            #[serde(rename = "phase_timing")]
            Phase(&'a PhaseTiming),
            #[serde(rename = "func_timing")]
            Function(&'a FuncTiming),
            #[serde(rename = "counts")]
            Counts(&'a CountsEvent),
        }
        match self {
            Event::Sample(e) => Tagged::Sample(e).serialize(s),
            Event::Phase(e) => Tagged::Phase(e).serialize(s),
            Event::Function(e) => Tagged::Function(e).serialize(s),
            Event::Counts(e) => Tagged::Counts(e).serialize(s),
            Event::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        Value::deserialize(d).map(Event::from_value)
    }
}

keyed! {
    /// A `process_sample` event: the process's CPU and memory.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct ProcessSample {
        /// When it was taken.
        #[serde(with = "timestamp")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::timestamp"))]
        pub timestamp: Timestamp,
        /// CPU use over the window ending here, in %.
        pub cpu_percent: f64,
        /// The resident set, in MiB.
        pub rss_mib: f64,
        /// The wall seconds `cpu_percent` covers (0 for the start sample).
        pub window_seconds: Option<f64>,
        /// Nanoseconds after the run's start.
        pub offset_ns: Option<u64>,
    }
}

keyed! {
    /// A `phase_timing` event: one phase region.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct PhaseTiming {
        /// When it ended.
        #[serde(with = "timestamp")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::timestamp"))]
        pub timestamp: Timestamp,
        /// The module.
        #[serde(default)]
        pub module: String,
        /// The phase.
        pub phase: String,
        /// How long it lasted.
        pub duration_seconds: f64,
        /// The recording thread (`meta.threads`).
        pub thread: Option<u32>,
        /// When it started, in seconds after the run's start.
        pub start_offset_seconds: Option<f64>,
        /// When it ended, in nanoseconds after the run's start.
        pub offset_ns: Option<u64>,
    }
}

keyed! {
    /// A `func_timing` event: one call of a measured function.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct FuncTiming {
        /// When it returned.
        #[serde(with = "timestamp")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::timestamp"))]
        pub timestamp: Timestamp,
        /// The module.
        #[serde(default)]
        pub module: String,
        /// The function.
        pub name: String,
        /// How long it lasted.
        pub duration_seconds: f64,
        /// The recording thread (`meta.threads`).
        pub thread: Option<u32>,
        /// When it started, in seconds after the run's start.
        pub start_offset_seconds: Option<f64>,
        /// Thread CPU time (`resources = true` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cpu_seconds: Option<f64>,
        /// Change of the RSS (`resources = true` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rss_delta_mib: Option<f64>,
        /// When it returned, in nanoseconds after the run's start.
        pub offset_ns: Option<u64>,
    }
}

keyed! {
    /// A `counts` event: one `observe_counts` call.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    pub struct CountsEvent {
        /// When it was made.
        #[serde(with = "timestamp")]
        #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::timestamp"))]
        pub timestamp: Timestamp,
        /// The recording thread.
        pub thread: Option<u32>,
        /// The values, by name, in the order given.
        #[serde(with = "pairs")]
        #[cfg_attr(feature = "schema", schemars(with = "std::collections::BTreeMap<String, i64>"))]
        pub counts: Vec<(String, i64)>,
        /// Nanoseconds after the run's start.
        pub offset_ns: Option<u64>,
    }
}

/// [`Timestamp`]s as the file writes them.
pub(crate) mod timestamp {
    use super::*;
    use chrono::SecondsFormat;

    pub(crate) fn text(at: &Timestamp) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, false)
    }

    pub(crate) fn serialize<S: Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(at))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}")))
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            at: &Option<Timestamp>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&text(at)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            #[derive(Deserialize)]
            struct At(#[serde(with = "super")] Timestamp);
            Ok(Option::<At>::deserialize(d)?.map(|At(at)| at))
        }
    }
}

/// A list of `(key, value)` as a JSON object, in order.
mod pairs {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[allow(clippy::ptr_arg)] // serde hands over the field as it is
    pub(crate) fn serialize<S: Serializer, V: Serialize>(
        pairs: &Vec<(String, V)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (k, v) in pairs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<(String, V)>, D::Error> {
        struct Pairs<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
            type Value = Vec<(String, V)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = map.next_entry()? {
                    out.push(kv);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Pairs(std::marker::PhantomData))
    }
}

/// The two entry lists, each entry written with its kind's name key.
mod entries {
    use super::*;

    #[derive(Serialize)]
    struct PhaseOut<'a> {
        module: &'a str,
        phase: &'a str,
        #[serde(flatten)]
        stats: &'a Stats,
        histogram_ns: &'a [Bucket],
        #[serde(skip_serializing_if = "Option::is_none")]
        sampled: &'a Option<Sampled>,
    }

    /// An entry of `meta.phase_durations_seconds_total`.
    #[derive(Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[cfg_attr(feature = "schema", schemars(rename = "PhaseEntry"))]
    pub(super) struct PhaseIn {
        #[serde(default)]
        module: String,
        phase: String,
        #[serde(flatten)]
        stats: Stats,
        #[serde(default)]
        histogram_ns: Vec<Bucket>,
        #[serde(default)]
        sampled: Option<Sampled>,
    }

    #[derive(Serialize)]
    struct FunctionOut<'a> {
        module: &'a str,
        name: &'a str,
        #[serde(flatten)]
        stats: &'a Stats,
        #[serde(skip_serializing_if = "Option::is_none")]
        resources: &'a Option<Resources>,
        histogram_ns: &'a [Bucket],
        #[serde(skip_serializing_if = "Option::is_none")]
        sampled: &'a Option<Sampled>,
    }

    /// An entry of `meta.function_durations_seconds_total`.
    #[derive(Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[cfg_attr(feature = "schema", schemars(rename = "FunctionEntry"))]
    pub(super) struct FunctionIn {
        #[serde(default)]
        module: String,
        name: String,
        #[serde(flatten)]
        stats: Stats,
        #[serde(default)]
        resources: Option<Resources>,
        #[serde(default)]
        histogram_ns: Vec<Bucket>,
        #[serde(default)]
        sampled: Option<Sampled>,
    }

    pub(crate) mod phases {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(list: &[Entry], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(list.iter().map(|e| PhaseOut {
                module: &e.module,
                phase: &e.name,
                stats: &e.stats,
                histogram_ns: &e.histogram_ns,
                sampled: &e.sampled,
            }))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
            Ok(Vec::<PhaseIn>::deserialize(d)?
                .into_iter()
                .map(|p| Entry {
                    kind: Kind::Phase,
                    module: p.module,
                    name: p.phase,
                    stats: p.stats,
                    resources: None,
                    histogram_ns: p.histogram_ns,
                    sampled: p.sampled,
                })
                .collect())
        }
    }

    pub(crate) mod functions {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(list: &[Entry], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(list.iter().map(|e| FunctionOut {
                module: &e.module,
                name: &e.name,
                stats: &e.stats,
                resources: &e.resources,
                histogram_ns: &e.histogram_ns,
                sampled: &e.sampled,
            }))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
            Ok(Vec::<FunctionIn>::deserialize(d)?
                .into_iter()
                .map(|f| Entry {
                    kind: Kind::Function,
                    module: f.module,
                    name: f.name,
                    stats: f.stats,
                    resources: f.resources,
                    histogram_ns: f.histogram_ns,
                    sampled: f.sampled,
                })
                .collect())
        }
    }
}
