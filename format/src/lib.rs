//! The runmetrics run file: one JSON file per run, `<log_dir>/<run_id>.json`,
//! `{"meta": {...}, "events": [...]}`, in the layout of the Python `metrics`
//! module runmetrics comes from, with runmetrics' keys after the seed's.
//!
//! This crate owns the format: the owned [`Serialize`](serde::Serialize) +
//! [`Deserialize`](serde::Deserialize) types of `meta` ([`Meta`], its
//! [`Entry`]s, [`Count`]s, [`Window`], [`Thread`]s, [`Clock`]) and of the
//! events ([`Event`], tagged on `event`); [`LAYOUT_VERSION`]; what a
//! histogram bucket covers ([`Bucket`], [`v1_bucket_width`]) and the one
//! rule by which quantiles are read from buckets ([`quantile_seconds`]);
//! the keys of `meta` runmetrics writes ([`RESERVED_META_KEYS`], the fields
//! of [`Meta`]); and the reader ([`RunFile`]). The `runmetrics` library
//! writes its files with these types and the `runmetrics` command reads
//! them with this reader.
//!
//! # Reading a run
//!
//! [`RunFile::open`] reads `meta` and skips the events; [`RunFile::events`]
//! iterates them, each read from the file as the iterator is advanced, so
//! a run of millions of events is read in the memory of one.
//!
//! ```
//! use runmetrics_format::{Event, RunFile};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("run.json");
//! # std::fs::write(&path, r#"{
//! #   "meta": {"run_id": "20230801-120000-ab12cd",
//! #            "started_at": "2023-08-01T12:00:00+08:00",
//! #            "ended_at": "2023-08-01T12:00:10+08:00",
//! #            "phase_durations_seconds_total": [
//! #              {"module": "pipeline", "phase": "grounding", "duration_seconds_total": 2.53}],
//! #            "function_durations_seconds_total": [
//! #              {"module": "inference", "name": "main_infer", "duration_seconds_total": 8.02}],
//! #            "facts_final": 150},
//! #   "events": [
//! #     {"timestamp": "2023-08-01T12:00:02+08:00", "event": "phase_timing",
//! #      "module": "pipeline", "phase": "grounding", "duration_seconds": 2.53}]
//! # }"#).unwrap();
//! // A file of the seed module (a runmetrics file reads the same way).
//! let run = RunFile::open(&path)?;
//! assert_eq!(run.meta.run_id, "20230801-120000-ab12cd");
//! assert_eq!(run.seconds(), 10.0);
//! let labels: Vec<String> = run.entries().map(|e| e.label()).collect();
//! assert_eq!(labels, ["pipeline/grounding", "inference/main_infer"]);
//! // The events, one at a time.
//! let mut phase_seconds = 0.0;
//! for event in run.events()? {
//!     if let Event::Phase(p) = event? {
//!         phase_seconds += p.duration_seconds;
//!     }
//! }
//! assert_eq!(phase_seconds, 2.53);
//! // What the seed lacks is `None`; the program's own keys are `extra`.
//! assert_eq!(run.meta.records_dropped, None);
//! assert_eq!(run.meta.extra["facts_final"], 150);
//! # Ok::<(), runmetrics_format::ReadError>(())
//! ```
//!
//! # Layouts
//!
//! Layout 2 (this crate's [`LAYOUT_VERSION`]) writes each `histogram_ns`
//! bucket as `[lower_ns, count, width_ns]`; layout 1 wrote `[lower_ns,
//! count]` with widths implied ([`v1_bucket_width`]); the seed's files have
//! no histograms and no `layout_version`. All three read. A file of a
//! newer layout is refused ([`ReadError::NewerLayout`]) rather than misread;
//! one of layout 2 must have every key runmetrics writes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod events;
mod histogram;
mod read;
#[cfg(feature = "schema")]
mod schema;
mod types;

pub use events::Events;
pub use histogram::{histogram_total, quantile_seconds, v1_bucket_width, Bucket};
pub use read::{ReadError, RunFile, MAX_DEPTH, WRITTEN_DEPTH};
#[cfg(feature = "schema")]
pub use schema::schema;
pub use types::{
    Clock, Count, CountsEvent, Entry, Event, FuncTiming, Kind, Meta, MetricHistogram,
    MetricsFacade, Names, PhaseTiming, ProcessSample, Resources, Sampled, Stats, Thread, Timestamp,
    Window, WindowFunction, WindowPhase, WindowStats, RESERVED_META_KEYS,
};

/// The version of the layout, written as `meta.layout_version`. Raised only
/// when a reader of the old layout would misread the new one.
///
/// Version 2: a `histogram_ns` bucket is `[lower ns, count, width ns]`, the
/// buckets the threads counted in (version 1: `[lower ns, count]`, 64
/// buckets per power of two of nanoseconds, widths implied).
pub const LAYOUT_VERSION: u64 = 2;
