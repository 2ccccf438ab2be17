//! The seam between the collector and its sinks: the [`Sink`] trait and
//! the plain, borrowed [`View`] of the recorder's figures that the collector
//! hands every sink. A sink reads the view and nothing else of the
//! collector (`tests/layers.rs` holds the sinks to this module); the
//! collector knows sinks only as `dyn Sink`, built by the recorder.
//!
//! A new sink is one file implementing [`Sink`] (every method has a
//! default that does nothing) and one line where the recorder builds its
//! sinks (`recorder::build_sinks`).

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, FixedOffset};

pub(crate) use super::aggregate::{
    CountStats, DurationStats, Durations, ResourceTotals, SampledStats, WindowStats,
};
// Used by the sinks that some builds leave out (the exposition's): no
// `cfg` here, so unused in builds without them.
#[allow(unused_imports)]
pub(crate) use super::deadline;
pub(crate) use super::events::{Event, EventLog};
#[allow(unused_imports)]
pub(crate) use super::histogram::{ns_range, Histogram};
pub(crate) use super::run::ProcessStats;
use crate::config::Config;
use crate::error::EndRunError;
use crate::site::SiteInfo;
use crate::ticks::Scale;

/// What the collector shows a sink: every name it knows, the recorder's
/// settings and, while one is open, the run.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    /// Names by id (`site::by_id`).
    pub(crate) sites: &'a [SiteInfo],
    pub(crate) config: &'a Config,
    pub(crate) run: Option<RunView<'a>>,
}

/// One run as the collector holds it, borrowed: per-site aggregates (in
/// ticks, with the run's `scale` to convert them), the event log, the
/// process samples and the record accounting.
#[derive(Clone, Copy)]
pub(crate) struct RunView<'a> {
    pub(crate) run_id: &'a str,
    /// Where its run file goes.
    pub(crate) path: &'a Path,
    /// The wall clock at the start, in its offset from UTC then.
    pub(crate) started_at: DateTime<FixedOffset>,
    /// Converts every raw value of the run.
    pub(crate) scale: Scale,
    /// Ns since the start (by the TSC) at which this view was taken.
    pub(crate) now_ns: u64,
    /// Durations per site id (in ticks).
    pub(crate) durations: &'a [Option<Durations>],
    /// The durations as the last run file written had them, from
    /// `window_start_ns` on.
    pub(crate) window_base: &'a [Option<Durations>],
    pub(crate) window_start_ns: u64,
    /// Count values per site id.
    pub(crate) counts: &'a [Option<CountStats>],
    pub(crate) events: &'a EventLog,
    /// Events the file does not list (left out, lost, never sent).
    pub(crate) events_omitted: u64,
    pub(crate) aggregated: u64,
    pub(crate) dropped: u64,
    pub(crate) outside_run: u64,
    pub(crate) process: &'a ProcessStats,
    pub(crate) threads: &'a BTreeMap<u32, Option<String>>,
    pub(crate) write_failures: u64,
    pub(crate) last_write_error: Option<&'a str>,
    pub(crate) previous_run_id: Option<&'a str>,
}

impl RunView<'_> {
    /// What `site` recorded since the run file was last written.
    pub(crate) fn window(&self, site: usize) -> WindowStats {
        match self.durations.get(site) {
            Some(Some(d)) => d.since(
                self.window_base.get(site).and_then(Option::as_ref),
                &self.scale,
            ),
            _ => WindowStats::default(),
        }
    }
}

/// Which file a [`Sink::write`] makes.
#[derive(Clone, Copy)]
pub(crate) struct Write<'a> {
    /// The run's final file; a snapshot of the open run otherwise.
    pub(crate) ended: bool,
    pub(crate) extra_meta: &'a serde_json::Map<String, serde_json::Value>,
}

/// `end_run`'s answer, once the run's file is written. A sink that has more
/// to do first (the final push) takes it and answers when done; otherwise
/// the collector answers at once with the file's path.
pub(crate) type EndAnswer = Box<dyn FnOnce(Result<PathBuf, EndRunError>) + Send>;

/// A request the API sends one kind of sink (`Recorder::push`), which the
/// sink recognises by its type (`downcast_mut`). One that no sink takes is
/// dropped, and its `Drop` answers the caller.
pub(crate) type Request = Box<dyn Any + Send>;

/// A consumer of the collector's figures. Every call comes on the collector
/// thread and must not wait for anything outside the process (hand slow work
/// to a thread of the sink's own); every method but [`Sink::write`] is best
/// effort, its failures counted by the sink and shown where it shows them.
pub(crate) trait Sink: Send {
    /// When this sink next wants [`Sink::due`] (`None`: never). The
    /// collector sleeps until the earliest of its own and its sinks'
    /// deadlines.
    fn next_due(&self) -> Option<Instant> {
        None
    }

    /// Called after every wake-up once `next_due` has passed.
    fn due(&mut self, _view: &View<'_>, _now: Instant) {}

    /// A run opened, its first sample taken, or the one open ended and left
    /// the collector: what the sink shows should change now.
    fn refresh(&mut self, _view: &View<'_>) {}

    /// A process sample: the CPU of the window that just ended (`None` when
    /// none did) and the RSS.
    fn sampled(&mut self, _cpu_percent: Option<f64>, _rss_bytes: u64) {}

    /// Writes `view`'s run file (only a sink that writes one: `None`
    /// otherwise). Synchronous: its error goes to `flush`'s or `end_run`'s
    /// caller and is counted in the run.
    fn write(&mut self, _view: &View<'_>, _what: Write<'_>) -> Option<std::io::Result<()>> {
        None
    }

    /// Kept events of the open run that are final, in time order (those
    /// still held come in `RunView::events`): a sink that streams them
    /// stores them now (`None`: it does not). A failure loses them, counted.
    fn events(
        &mut self,
        _run: &RunView<'_>,
        _sites: &[SiteInfo],
        _events: &[Event],
    ) -> Option<std::io::Result<()>> {
        None
    }

    /// The run whose final file was written leaves the collector (ended or
    /// rotated): last look at its figures.
    fn run_closed(&mut self, _run: &RunView<'_>, _sites: &[SiteInfo]) {}

    /// `end_run` wrote the file at `path` and closed the run: a sink may
    /// take `answer` to answer it later.
    fn run_ended(&mut self, _view: &View<'_>, _path: &Path, _answer: &mut Option<EndAnswer>) {}

    /// A request from the API: the sink it is for takes its content.
    fn request(&mut self, _view: &View<'_>, _request: &mut Request) {}
}
