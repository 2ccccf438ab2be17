//! The run-file sink: turns a snapshot of a run (open or ended) into
//! `<log_dir>/<run_id>.json` and writes it atomically. Only this module knows
//! the JSON layout.

mod event_json;
mod layout;
mod retention;
mod sidecar;

use std::path::{Path, PathBuf};

pub(crate) use layout::EventText;
pub(crate) use runmetrics_format::RESERVED_META_KEYS;
pub(crate) use sidecar::Sidecar;

use crate::collector::sink::{Event, RunView, Sink, View, Write};
use crate::config::Config;
use crate::site::SiteInfo;

/// The run-file sink: streams the open run's final events to its sidecar,
/// writes the run's file when the collector asks (snapshots, rotations,
/// `end_run`), then prunes the directory as `Config::retention` says.
#[derive(Default)]
pub(crate) struct RunFileSink {
    /// The open run's file and its sidecar.
    sidecar: Option<(PathBuf, Sidecar)>,
}

impl RunFileSink {
    /// The sidecar of the run file at `path` (a new run's, empty, after a
    /// rotation).
    fn sidecar(&mut self, path: &Path) -> &mut Sidecar {
        if self.sidecar.as_ref().is_some_and(|(p, _)| p != path) {
            self.sidecar = None;
        }
        &mut self
            .sidecar
            .get_or_insert_with(|| (path.to_owned(), Sidecar::new(path)))
            .1
    }
}

impl Sink for RunFileSink {
    fn events(
        &mut self,
        run: &RunView<'_>,
        sites: &[SiteInfo],
        events: &[Event],
    ) -> Option<std::io::Result<()>> {
        let text = EventText::new(sites, run.started_at);
        let sidecar = self.sidecar(run.path);
        Some(sidecar.append(events, &text).map_err(|e| {
            let file = sidecar.file_name();
            std::io::Error::new(e.kind(), format!("{file}: {e}"))
        }))
    }

    fn write(&mut self, view: &View<'_>, what: Write<'_>) -> Option<std::io::Result<()>> {
        let run = view.run.as_ref()?;
        let sidecar = &*self.sidecar(run.path);
        let snapshot = RunSnapshot {
            run,
            sidecar,
            sites: view.sites,
            ended: what.ended,
            written_ns: run.now_ns,
            config: view.config,
            extra_meta: what.extra_meta,
        };
        let written = write_run_file(&snapshot, run.path);
        if written.is_ok() {
            if let Some(dir) = run.path.parent() {
                view.config.retention().prune(dir, run.path);
            }
        }
        Some(written)
    }

    fn run_closed(&mut self, run: &RunView<'_>, _sites: &[SiteInfo]) {
        // Its final file lists every event.
        if let Some((path, mut sidecar)) = self.sidecar.take() {
            if path == run.path {
                sidecar.remove();
            }
        }
    }
}

/// Everything the run file is made from, borrowed from the collector.
pub(crate) struct RunSnapshot<'a> {
    pub(crate) run: &'a RunView<'a>,
    /// The events already streamed out of the collector.
    pub(crate) sidecar: &'a Sidecar,
    pub(crate) sites: &'a [SiteInfo],
    /// Whether the run has ended; a snapshot of an open run otherwise.
    pub(crate) ended: bool,
    /// When this file is written, in ns since the run's start by the TSC
    /// (so a wall-clock jump cannot move it before the start).
    pub(crate) written_ns: u64,
    pub(crate) config: &'a Config,
    pub(crate) extra_meta: &'a serde_json::Map<String, serde_json::Value>,
}

/// Writes the run file so that a reader never sees half of it: a temporary
/// file in the same directory, flushed to disk, then renamed over the target.
pub(crate) fn write_run_file(snapshot: &RunSnapshot<'_>, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        layout::write(&mut out, snapshot)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable where the platform allows it.
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
