//! The seam through which an integration outside the recording path (the
//! `metrics` facade) adds entries to the run file and `/metrics` without the
//! collector or the sinks knowing what it is: one process-wide
//! [`ExtraSource`], set once, asked for a plain [`ExtraSnapshot`] whenever a
//! run file is written or `/metrics` encoded.

use std::sync::OnceLock;

use runmetrics_format::{Count, MetricHistogram, MetricsFacade};

/// What an integration adds, as plain data.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExtraSnapshot {
    /// `meta.histograms`.
    pub(crate) histograms: Vec<MetricHistogram>,
    /// Appended to `meta.counts`.
    pub(crate) counts: Vec<Count>,
    /// `meta.metrics_facade`.
    pub(crate) facade: Option<MetricsFacade>,
}

/// An integration that yields extra entries.
pub(crate) trait ExtraSource: Send + Sync {
    /// Its entries now.
    fn snapshot(&self) -> ExtraSnapshot;
}

static SOURCE: OnceLock<&'static dyn ExtraSource> = OnceLock::new();

/// Sets the process's source; `false` if one was set already.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn set(source: &'static dyn ExtraSource) -> bool {
    SOURCE.set(source).is_ok()
}

/// The source's entries, or none if no source was set.
pub(crate) fn snapshot() -> Option<ExtraSnapshot> {
    SOURCE.get().map(|s| s.snapshot())
}
