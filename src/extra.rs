//! The seam through which an integration outside the recording path (the
//! `metrics` facade) adds entries to the run file and `/metrics` without the
//! collector or the sinks knowing what it is: one process-wide
//! [`ExtraSource`], set once, asked for a plain [`ExtraSnapshot`] whenever a
//! run file is written or `/metrics` encoded.

use std::collections::HashSet;
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

/// `extra`'s counts, to be written beside counts named `own` (every
/// `observe_counts` name of the process, so that the run file and
/// `/metrics` name a facade count alike, whichever names a run used), each
/// name once: a count whose name is taken (by `own`, or by an earlier one of
/// `extra`: a `metrics` counter and gauge of one key) gets the label
/// `source="metrics"` (then `"metrics.2"`, ...) added, as
/// `name{source="metrics"}` or `name{k="v",source="metrics"}`. One name
/// twice would be two `meta.counts` entries a reader cannot tell apart, and
/// two `_count_value` series Prometheus refuses the scrape for.
pub(crate) fn counts_beside<'a>(
    own: impl Iterator<Item = &'a str>,
    mut extra: Vec<Count>,
) -> Vec<Count> {
    if extra.is_empty() {
        return extra;
    }
    let own: HashSet<&str> = own.collect();
    let mut written: HashSet<String> = HashSet::with_capacity(extra.len());
    for c in &mut extra {
        let taken =
            |name: &str, written: &HashSet<String>| own.contains(name) || written.contains(name);
        if taken(&c.name, &written) {
            let given = std::mem::take(&mut c.name);
            let mut n = 1;
            loop {
                let source = match n {
                    1 => "metrics".to_owned(),
                    n => format!("metrics.{n}"),
                };
                c.name = with_source(&given, &source);
                if !taken(&c.name, &written) {
                    break;
                }
                n += 1;
            }
        }
        written.insert(c.name.clone());
    }
    extra
}

/// `name` (`name` or `name{k="v",...}`) with `source="<source>"` as its
/// last label.
fn with_source(name: &str, source: &str) -> String {
    match name.strip_suffix('}') {
        Some(labelled) if labelled.contains('{') => format!("{labelled},source=\"{source}\"}}"),
        _ => format!("{name}{{source=\"{source}\"}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(name: &str) -> Count {
        Count {
            name: name.to_owned(),
            last: 1,
            min: 1,
            max: 1,
            observations: 1,
        }
    }

    #[test]
    fn a_taken_name_gets_a_source_label_and_every_name_is_written_once() {
        let extra = vec![
            count("requests"),
            count("errors{path=\"/a\"}"),
            count("queue"),
            count("queue"),
            count("queue"),
            count("free"),
        ];
        let own = ["requests", "errors{path=\"/a\"}", "other"];
        let got: Vec<String> = counts_beside(own.into_iter(), extra)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            got,
            [
                "requests{source=\"metrics\"}",
                "errors{path=\"/a\",source=\"metrics\"}",
                "queue",
                "queue{source=\"metrics\"}",
                "queue{source=\"metrics.2\"}",
                "free",
            ]
        );
        let mut all: Vec<&str> = own.to_vec();
        all.extend(got.iter().map(String::as_str));
        let distinct: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
    }
}
