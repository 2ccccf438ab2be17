//! The guards: [`PhaseTimer`] and [`FunctionTimer`]. Both are a [`Region`]: a
//! start value taken on creation and a record pushed on drop.

use super::ring::Record;
use super::thread::{push, region};
use crate::os as resources;
use crate::recorder::{global_shared, Recorder};
use crate::shared::Shared;
use crate::site::{dynamic_id, static_id, Kind, Site};

/// Whether recording is compiled in: the `enabled` feature (on by default).
/// Off, every timer is inactive from its creation and the optimizer removes
/// it whole: the off switch for builds that must pay nothing.
pub(crate) const ENABLED: bool = cfg!(feature = "enabled");

/// A timed region: inactive (and free) when no run was open at its start.
/// It belongs to the run open at its start: one that started before the open
/// run's start goes through the ring, and the collector counts it outside.
struct Region<'r> {
    shared: Option<&'r Shared>,
    start: u64,
    site: u32,
}

impl<'r> Region<'r> {
    const OFF: Region<'static> = Region {
        shared: None,
        start: 0,
        site: 0,
    };

    /// Starts a region; `shared` and `site` are only called when recording is
    /// compiled in (feature `enabled`), so a disabled build keeps nothing of it.
    #[inline]
    fn begin(
        shared: impl FnOnce() -> Option<&'r Shared>,
        site: impl FnOnce() -> u32,
    ) -> Region<'r> {
        if !ENABLED {
            return Region::OFF;
        }
        let Some(shared) = shared() else {
            return Region::OFF;
        };
        if !shared.run_open() {
            return Region::OFF;
        }
        let site = site();
        Region {
            shared: Some(shared),
            start: shared.clock.raw(),
            site,
        }
    }

    /// Ends the region with `resources`; it records nothing more when dropped.
    fn finish(&mut self, resources: impl FnOnce() -> Record) {
        if let Some(shared) = self.shared.take() {
            let end = shared.clock.raw();
            region(shared, self.site, self.start, end, Some(resources()));
        }
    }
}

impl Drop for Region<'_> {
    #[inline]
    fn drop(&mut self) {
        if !ENABLED {
            return;
        }
        let Some(shared) = self.shared else { return };
        region(shared, self.site, self.start, shared.clock.raw(), None);
    }
}

/// Times a phase of the code from its creation until it is dropped.
///
/// The record goes to the run that was open when the timer was created. With
/// no run open the timer does nothing and costs a load and a branch.
///
/// ```
/// # let dir = tempdir();
/// runmetrics::start_run(&dir)?;
/// {
///     let _t = runmetrics::PhaseTimer::new("grounding", "pipeline");
///     // ... the phase's work ...
/// } // the phase ends here
/// runmetrics::end_run(serde_json::Value::Null)?;
/// # fn tempdir() -> std::path::PathBuf { std::env::temp_dir().join(format!("rm-doc-{}", std::process::id())) }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the phase ends when this guard is dropped"]
pub struct PhaseTimer<'r> {
    region: Region<'r>,
}

impl PhaseTimer<'static> {
    /// Starts timing `phase` of `module` on the global recorder.
    #[inline]
    pub fn new(phase: &'static str, module: &'static str) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin(global_shared, || static_id(Kind::Phase, phase, module)),
        }
    }

    /// Like [`PhaseTimer::new`] for names made at run time; hashes the names
    /// on every call (tens of nanoseconds), so prefer `'static` names in loops.
    pub fn dynamic(phase: &str, module: &str) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin(global_shared, || dynamic_id(Kind::Phase, phase, module)),
        }
    }

    /// The [`phase!`](crate::phase) macro's entry: the id is cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at(site: &'static Site) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin(global_shared, || site.id()),
        }
    }
}

impl<'r> PhaseTimer<'r> {
    pub(crate) fn on(recorder: &'r Recorder, id: impl FnOnce() -> u32) -> PhaseTimer<'r> {
        PhaseTimer {
            region: Region::begin(|| Some(recorder.shared()), id),
        }
    }

    /// Ends the phase now (the same as dropping the guard).
    #[inline]
    pub fn end(self) {}

    /// Whether this timer will produce a record (a run was open at its start).
    pub fn is_recording(&self) -> bool {
        self.region.shared.is_some()
    }
}

impl std::fmt::Debug for PhaseTimer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseTimer")
            .field("site", &self.region.site)
            .field("recording", &self.is_recording())
            .finish()
    }
}

/// Times one call of a function; made by [`#[measure]`](crate::measure) and
/// [`measure_fn`](crate::measure_fn), or by hand.
#[must_use = "the call's timing ends when this guard is dropped"]
pub struct FunctionTimer<'r> {
    region: Region<'r>,
    /// Thread CPU ns and RSS bytes at the start, when resources are captured.
    resources: Option<(u64, u64)>,
}

impl FunctionTimer<'static> {
    /// Starts timing a call of `name` in `module` on the global recorder.
    #[inline]
    pub fn new(name: &'static str, module: &'static str) -> FunctionTimer<'static> {
        FunctionTimer {
            region: Region::begin(global_shared, || static_id(Kind::Function, name, module)),
            resources: None,
        }
    }

    /// Like [`FunctionTimer::new`] for names made at run time (hashed per call).
    pub fn dynamic(name: &str, module: &str) -> FunctionTimer<'static> {
        FunctionTimer {
            region: Region::begin(global_shared, || dynamic_id(Kind::Function, name, module)),
            resources: None,
        }
    }

    /// The `#[measure]` entry: the id is cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at(site: &'static Site) -> FunctionTimer<'static> {
        FunctionTimer {
            region: Region::begin(global_shared, || site.id()),
            resources: None,
        }
    }

    /// The `#[measure(resources = true)]` entry.
    #[doc(hidden)]
    pub fn at_with_resources(site: &'static Site) -> FunctionTimer<'static> {
        FunctionTimer::at(site).with_resources()
    }
}

impl<'r> FunctionTimer<'r> {
    pub(crate) fn on(recorder: &'r Recorder, id: impl FnOnce() -> u32) -> FunctionTimer<'r> {
        FunctionTimer {
            region: Region::begin(|| Some(recorder.shared()), id),
            resources: None,
        }
    }

    /// Also captures the thread's CPU time and the change in resident memory
    /// over the call (costs microseconds; reported per call and per function).
    pub fn with_resources(mut self) -> FunctionTimer<'r> {
        if self.region.shared.is_some() {
            self.resources = Some((resources::thread_cpu_ns(), resources::rss_bytes()));
            // Start the clock after the capture so it is not timed.
            if let Some(shared) = self.region.shared {
                self.region.start = shared.clock.raw();
            }
        }
        self
    }

    /// Ends the call's timing now (the same as dropping the guard).
    #[inline]
    pub fn end(self) {}

    /// Whether this timer will produce a record (a run was open at its start).
    pub fn is_recording(&self) -> bool {
        self.region.shared.is_some()
    }
}

impl Drop for FunctionTimer<'_> {
    #[inline]
    fn drop(&mut self) {
        if !ENABLED {
            return;
        }
        let Some((cpu0, rss0)) = self.resources else {
            return; // `region` pushes its own record when it drops.
        };
        self.region.finish(|| {
            let cpu = resources::thread_cpu_ns().saturating_sub(cpu0);
            let rss_kib = (resources::rss_bytes() as i64 - rss0 as i64) / 1024;
            Record {
                a: cpu,
                b: rss_kib.clamp(i32::MIN as i64, i32::MAX as i64) as i32 as u32,
                site: Record::RESOURCES,
            }
        });
    }
}

impl std::fmt::Debug for FunctionTimer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionTimer")
            .field("site", &self.region.site)
            .field("recording", &self.is_recording())
            .field("resources", &self.resources.is_some())
            .finish()
    }
}

/// Pushes one `counts` observation: two records per value (the name and the
/// time, then the value), all sharing one timestamp.
pub(crate) fn observe_counts<'r>(
    shared: impl FnOnce() -> Option<&'r Shared>,
    counts: &[(&str, i64)],
) {
    if !ENABLED {
        return;
    }
    let Some(shared) = shared() else { return };
    if !shared.run_open() || counts.is_empty() {
        return;
    }
    let at = shared.clock.raw();
    let mut batch = [Record {
        a: 0,
        b: 0,
        site: 0,
    }; 16];
    for chunk in counts.chunks(batch.len() / 2) {
        for (out, (name, value)) in batch.chunks_exact_mut(2).zip(chunk) {
            out[0] = Record {
                a: at,
                b: 0,
                site: dynamic_id(Kind::Count, name, ""),
            };
            out[1] = Record {
                a: *value as u64,
                b: 0,
                site: Record::EXTENSION,
            };
        }
        push(shared, &batch[..chunk.len() * 2]);
    }
}
