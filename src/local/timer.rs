//! The guards: [`PhaseTimer`] and [`FunctionTimer`]. Both are a [`Region`]: a
//! start value taken on creation and a record pushed on drop.

use std::marker::PhantomData;

use super::ring::Record;
use super::thread::{observe, observe_one, prefetch, push, region, region_ended, sample};
use crate::config::ENABLED;
use crate::os as resources;
use crate::shared::{global_shared, Shared, GATE_EVENTS, GATE_SAMPLED};
use crate::site::{count_id, dynamic_id, static_id, Kind, Site};

/// How a timer reads the clock: [`Unfenced`] (the default) or [`Fenced`]. A
/// type parameter of [`PhaseTimer`] and [`FunctionTimer`], so each kind of
/// timer is its own monomorphic code and the default pays nothing for the
/// other. Sealed: these two are the only kinds.
pub trait ClockRead: sealed::Sealed {}

/// Reads the time-stamp counter as it comes (`rdtsc`): the cheapest read. The
/// processor may overlap it with the instructions around it, so a region of a
/// few tens of nanoseconds is measured short (BENCHMARKS.md, "Fenced reads").
#[derive(Debug, Clone, Copy)]
pub struct Unfenced;

/// Reads the time-stamp counter in program order (`lfence; rdtsc; lfence`):
/// every instruction before the read has finished and none after it has
/// started. For regions of under a microsecond or so whose mean must be
/// right; costs more per region than [`Unfenced`] (BENCHMARKS.md). Where the
/// clock is not the TSC (no invariant TSC, or not x86_64) it reads quanta's
/// clock as [`Unfenced`] does.
#[derive(Debug, Clone, Copy)]
pub struct Fenced;

impl ClockRead for Unfenced {}
impl ClockRead for Fenced {}

mod sealed {
    pub trait Sealed {
        /// Whether the reads are fenced: a constant, so each timer's code
        /// has only its own read.
        const FENCED: bool;
    }

    impl Sealed for super::Unfenced {
        const FENCED: bool = false;
    }

    impl Sealed for super::Fenced {
        const FENCED: bool = true;
    }
}

/// Reads `shared`'s raw clock the way `R` does.
#[inline(always)]
fn read<R: ClockRead>(shared: &Shared) -> u64 {
    if R::FENCED {
        shared.clock.raw_fenced()
    } else {
        shared.clock.raw()
    }
}

/// A timed region: inactive (and free) when no run was open at its start.
/// It belongs to the run open at its start: one that started before the open
/// run's start goes through the ring, and the collector counts it outside.
struct Region<'r, R: ClockRead> {
    shared: Option<&'r Shared>,
    start: u64,
    /// The recorder's gate at the start (`Shared::gate`; not 0 while
    /// `shared` is set): the end compares it with the gate then.
    gate: u64,
    site: u32,
    read: PhantomData<R>,
}

impl<'r, R: ClockRead> Region<'r, R> {
    const OFF: Region<'static, R> = Region {
        shared: None,
        start: 0,
        gate: 0,
        site: 0,
        read: PhantomData,
    };

    /// Starts a region; `shared` and `site` are only called when recording is
    /// compiled in (feature `enabled`), so a disabled build keeps nothing of it.
    #[inline(always)]
    fn begin(
        shared: impl FnOnce() -> Option<&'r Shared>,
        site: impl FnOnce() -> u32,
    ) -> Region<'r, R> {
        Region::begin_one_in(shared, site, |shared, gate| {
            if gate & GATE_SAMPLED != 0 {
                shared.time_one_in
            } else {
                1
            }
        })
    }

    /// [`Region::begin`] of a name looked up by its text, which, when the
    /// name was not in the thread's cache of names and the thread uses
    /// many (`dynamic_id` says), also starts loading the lines the
    /// region's end counts in ([`prefetch`]):
    /// among thousands of names they are rarely cached either, and each
    /// waited for the one before (BENCHMARKS.md, "Dynamic names by live
    /// names").
    #[inline(always)]
    fn begin_dynamic(
        shared: impl FnOnce() -> Option<&'r Shared>,
        kind: Kind,
        name: &str,
        module: &str,
    ) -> Region<'r, R> {
        let shared = if ENABLED { shared() } else { None };
        Region::begin(
            || shared,
            #[inline(always)]
            || {
                dynamic_id(kind, name, module, |site| {
                    if let Some(shared) = shared {
                        prefetch(shared, site);
                    }
                })
            },
        )
    }

    /// [`Region::begin`] with sampled timing of about one region in
    /// `one_in(shared, gate)`: a region not to be timed is counted at once (as
    /// untimed) and is [`Region::OFF`], so nothing reads the clock for it.
    #[inline(always)]
    fn begin_one_in(
        shared: impl FnOnce() -> Option<&'r Shared>,
        site: impl FnOnce() -> u32,
        one_in: impl FnOnce(&Shared, u64) -> u32,
    ) -> Region<'r, R> {
        if !ENABLED {
            return Region::OFF;
        }
        let Some(shared) = shared() else {
            return Region::OFF;
        };
        // Whether a run is open, and under which gate: one load.
        let gate = shared.gate();
        if gate == 0 {
            return Region::OFF;
        }
        let site = site();
        let n = one_in(shared, gate);
        if n > 1 {
            if !sample(shared, site, n) {
                return Region::OFF;
            }
            // A timed region of a sampled site comes after regions that read
            // no clock. The first TSC read after a few microseconds without
            // one reads the region longer by 2-8 % at ~100 ns (its
            // microcode's tail lands in the region), while an exact loop's
            // start follows the last region's end: one read first, thrown
            // away, gives the start the exact loop's (BENCHMARKS.md,
            // "Sampled timing"). One read in `n` regions.
            std::hint::black_box(shared.clock.raw());
        }
        Region {
            shared: Some(shared),
            start: read::<R>(shared),
            gate,
            site,
            read: PhantomData,
        }
    }

    /// Ends the region with `resources`; it records nothing more when dropped.
    fn finish(&mut self, resources: impl FnOnce() -> Record) {
        if let Some(shared) = self.shared.take() {
            let end = read::<R>(shared);
            region(shared, self.site, self.start, end, Some(resources()));
        }
    }
}

impl<R: ClockRead> Drop for Region<'_, R> {
    // Always: a clock read and a call, with the region in registers.
    #[inline(always)]
    fn drop(&mut self) {
        if !ENABLED {
            return;
        }
        let Some(shared) = self.shared else { return };
        region_ended(shared, self.gate, self.site, self.start, read::<R>(shared));
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
///
/// `R` is how it reads the clock: [`Unfenced`] unless made with
/// [`PhaseTimer::fenced`] or `phase!(.., fenced)`.
#[must_use = "the phase ends when this guard is dropped"]
pub struct PhaseTimer<'r, R: ClockRead = Unfenced> {
    region: Region<'r, R>,
}

impl PhaseTimer<'static> {
    /// Starts timing `phase` of `module` on the global recorder.
    #[inline]
    pub fn new(phase: &'static str, module: &'static str) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin(global_shared, || static_id(Kind::Phase, phase, module)),
        }
    }

    /// Like [`PhaseTimer::new`] for names made at run time; looks the names
    /// up by their text on every call (a per-thread cache: a short hash and
    /// a compare), so prefer `'static` names in loops.
    pub fn dynamic(phase: &str, module: &str) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin_dynamic(global_shared, Kind::Phase, phase, module),
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

impl PhaseTimer<'static> {
    /// Like [`PhaseTimer::new`] with sampled timing: every region is
    /// counted exactly, but the clock is read for about one in `one_in`
    /// (from 1 to 32 768; clamped), strides drawn at random per thread.
    /// The run file's entry then says `"sampled": {"one_in": .., "timed":
    /// ..}` and gives the estimated total with its standard error. For
    /// loops where even two clock reads cost too much; takes precedence
    /// over [`Config::time_one_in`](crate::Config::time_one_in).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("rm-doc-sampled-{}", std::process::id()));
    /// runmetrics::start_run(&dir)?;
    /// for i in 0..1_000u64 {
    ///     let _t = runmetrics::PhaseTimer::sampled("decode", "codec", 64);
    ///     std::hint::black_box(i * 3);
    /// }
    /// runmetrics::end_run(serde_json::Value::Null)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn sampled(phase: &'static str, module: &'static str, one_in: u32) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin_one_in(
                global_shared,
                || static_id(Kind::Phase, phase, module),
                |_, _| one_in,
            ),
        }
    }

    /// The `phase!(.., sample = n)` entry: the id is cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at_sampled(site: &'static Site, one_in: u32) -> PhaseTimer<'static> {
        PhaseTimer {
            region: Region::begin_one_in(global_shared, || site.id(), |_, _| one_in),
        }
    }
}

impl PhaseTimer<'static, Fenced> {
    /// Like [`PhaseTimer::new`], reading the clock [`Fenced`]: for phases of
    /// tens or hundreds of nanoseconds, which unfenced reads measure short.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("rm-doc-fenced-{}", std::process::id()));
    /// runmetrics::start_run(&dir)?;
    /// {
    ///     let _t = runmetrics::PhaseTimer::fenced("lookup", "index");
    ///     // ... a few tens of nanoseconds of work ...
    /// }
    /// runmetrics::end_run(serde_json::Value::Null)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn fenced(phase: &'static str, module: &'static str) -> PhaseTimer<'static, Fenced> {
        PhaseTimer {
            region: Region::begin(global_shared, || static_id(Kind::Phase, phase, module)),
        }
    }

    /// The `phase!(.., fenced)` entry: the id is cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at_fenced(site: &'static Site) -> PhaseTimer<'static, Fenced> {
        PhaseTimer {
            region: Region::begin(global_shared, || site.id()),
        }
    }

    /// [`PhaseTimer::sampled`] reading the clock [`Fenced`]: every region
    /// counted exactly, about one in `one_in` timed, each timed one in
    /// program order. For loops of regions of tens of nanoseconds, where
    /// unfenced reads measure short and two fenced reads per region cost
    /// too much; takes precedence over
    /// [`Config::time_one_in`](crate::Config::time_one_in).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("rm-doc-fenced-sampled-{}", std::process::id()));
    /// runmetrics::start_run(&dir)?;
    /// for i in 0..1_000u64 {
    ///     let _t = runmetrics::PhaseTimer::fenced_sampled("lookup", "index", 64);
    ///     std::hint::black_box(i * 3);
    /// }
    /// runmetrics::end_run(serde_json::Value::Null)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn fenced_sampled(
        phase: &'static str,
        module: &'static str,
        one_in: u32,
    ) -> PhaseTimer<'static, Fenced> {
        PhaseTimer {
            region: Region::begin_one_in(
                global_shared,
                || static_id(Kind::Phase, phase, module),
                |_, _| one_in,
            ),
        }
    }

    /// The `phase!(.., sample = n, fenced)` entry: the id is cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at_fenced_sampled(site: &'static Site, one_in: u32) -> PhaseTimer<'static, Fenced> {
        PhaseTimer {
            region: Region::begin_one_in(global_shared, || site.id(), |_, _| one_in),
        }
    }
}

impl<'r> PhaseTimer<'r> {
    pub(crate) fn on(shared: &'r Shared, id: impl FnOnce() -> u32) -> PhaseTimer<'r> {
        PhaseTimer {
            region: Region::begin(|| Some(shared), id),
        }
    }

    /// [`PhaseTimer::on`] of a name looked up by its text.
    pub(crate) fn on_dynamic(shared: &'r Shared, phase: &str, module: &str) -> PhaseTimer<'r> {
        PhaseTimer {
            region: Region::begin_dynamic(|| Some(shared), Kind::Phase, phase, module),
        }
    }
}

impl<R: ClockRead> PhaseTimer<'_, R> {
    /// Ends the phase now (the same as dropping the guard).
    #[inline]
    pub fn end(self) {}

    /// Whether this timer will produce a record (a run was open at its start).
    pub fn is_recording(&self) -> bool {
        self.region.shared.is_some()
    }
}

impl<R: ClockRead> std::fmt::Debug for PhaseTimer<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseTimer")
            .field("site", &self.region.site)
            .field("recording", &self.is_recording())
            .finish()
    }
}

/// Times one call of a function; made by [`#[measure]`](crate::measure) and
/// [`measure_fn`](crate::measure_fn), or by hand.
///
/// `R` is how it reads the clock: [`Unfenced`] unless made with
/// [`FunctionTimer::fenced`] or `#[measure(fenced = true)]`.
#[must_use = "the call's timing ends when this guard is dropped"]
pub struct FunctionTimer<'r, R: ClockRead = Unfenced> {
    region: Region<'r, R>,
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

    /// Like [`FunctionTimer::new`] for names made at run time (looked up by
    /// their text per call).
    pub fn dynamic(name: &str, module: &str) -> FunctionTimer<'static> {
        FunctionTimer {
            region: Region::begin_dynamic(global_shared, Kind::Function, name, module),
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
}

impl FunctionTimer<'static> {
    /// The `#[measure(sample = n)]` entry: sampled timing (see
    /// [`PhaseTimer::sampled`]), the id cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at_sampled(site: &'static Site, one_in: u32) -> FunctionTimer<'static> {
        FunctionTimer {
            region: Region::begin_one_in(global_shared, || site.id(), |_, _| one_in),
            resources: None,
        }
    }
}

impl FunctionTimer<'static, Fenced> {
    /// Like [`FunctionTimer::new`], reading the clock [`Fenced`]: for calls of
    /// tens or hundreds of nanoseconds, which unfenced reads measure short.
    ///
    /// ```
    /// let t = runmetrics::FunctionTimer::fenced("lookup", "index");
    /// t.end();
    /// ```
    #[inline]
    pub fn fenced(name: &'static str, module: &'static str) -> FunctionTimer<'static, Fenced> {
        FunctionTimer {
            region: Region::begin(global_shared, || static_id(Kind::Function, name, module)),
            resources: None,
        }
    }

    /// The `#[measure(fenced = true)]` entry: the id is cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at_fenced(site: &'static Site) -> FunctionTimer<'static, Fenced> {
        FunctionTimer {
            region: Region::begin(global_shared, || site.id()),
            resources: None,
        }
    }

    /// The `#[measure(sample = n, fenced = true)]` entry: sampled timing
    /// (see [`PhaseTimer::fenced_sampled`]), the id cached in `site`.
    #[doc(hidden)]
    #[inline]
    pub fn at_fenced_sampled(site: &'static Site, one_in: u32) -> FunctionTimer<'static, Fenced> {
        FunctionTimer {
            region: Region::begin_one_in(global_shared, || site.id(), |_, _| one_in),
            resources: None,
        }
    }
}

impl<'r> FunctionTimer<'r> {
    pub(crate) fn on(shared: &'r Shared, id: impl FnOnce() -> u32) -> FunctionTimer<'r> {
        FunctionTimer {
            region: Region::begin(|| Some(shared), id),
            resources: None,
        }
    }

    /// [`FunctionTimer::on`] of a name looked up by its text.
    pub(crate) fn on_dynamic(shared: &'r Shared, name: &str, module: &str) -> FunctionTimer<'r> {
        FunctionTimer {
            region: Region::begin_dynamic(|| Some(shared), Kind::Function, name, module),
            resources: None,
        }
    }
}

impl<'r, R: ClockRead> FunctionTimer<'r, R> {
    /// Also captures the thread's CPU time and the change in resident memory
    /// over the call (costs microseconds; reported per call and per function).
    pub fn with_resources(mut self) -> FunctionTimer<'r, R> {
        if self.region.shared.is_some() {
            self.resources = Some((resources::thread_cpu_ns(), resources::rss_bytes()));
            // Start the clock after the capture so it is not timed.
            if let Some(shared) = self.region.shared {
                self.region.start = read::<R>(shared);
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

impl<R: ClockRead> FunctionTimer<'_, R> {
    /// The end of a call timed [`with_resources`](FunctionTimer::with_resources):
    /// its region with the resources record. Out of line, so that the
    /// usual timer's drop stays a check, a clock read and a call.
    #[inline(never)]
    fn finish_with_resources(&mut self, (cpu0, rss0): (u64, u64)) {
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

impl<R: ClockRead> Drop for FunctionTimer<'_, R> {
    // Always, like `Region`'s: inlined only where the caller chose (a plain
    // `#[inline]`), the drop glue was a call of 35 instructions per region
    // with the region spilled to the stack (`examples/region_cost.rs`).
    #[inline(always)]
    fn drop(&mut self) {
        if !ENABLED {
            return;
        }
        if let Some(start) = self.resources {
            self.finish_with_resources(start);
        }
        // Else `region` pushes its own record when it drops.
    }
}

impl<R: ClockRead> std::fmt::Debug for FunctionTimer<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionTimer")
            .field("site", &self.region.site)
            .field("recording", &self.is_recording())
            .field("resources", &self.resources.is_some())
            .finish()
    }
}

/// One `counts` observation, all its values sharing one timestamp: each
/// value counted in the thread's count aggregates, and while the run takes
/// events, two records per value (the name and the time, then the value).
pub(crate) fn observe_counts<'r>(
    shared: impl FnOnce() -> Option<&'r Shared>,
    counts: &[(&str, i64)],
) {
    if !ENABLED {
        return;
    }
    let Some(shared) = shared() else { return };
    // Whether a run is open and takes events: one load.
    let gate = shared.gate();
    if gate == 0 {
        return;
    }
    let events = gate & GATE_EVENTS != 0;
    let at = shared.clock.raw();
    if let [(name, value)] = counts {
        // One value, the usual call: no batch to fill, counted inline.
        let id = count_id(name);
        observe_one(shared, id, *value, at);
        if events {
            count_events(shared, std::iter::once((id, *value)), at);
        }
        return;
    }
    for chunk in counts.chunks(COUNTS_CHUNK) {
        let mut ids = [0u32; COUNTS_CHUNK];
        for (id, (name, _)) in ids.iter_mut().zip(chunk) {
            *id = count_id(name);
        }
        let values = ids.iter().zip(chunk).map(|(&id, &(_, value))| (id, value));
        observe(shared, values.clone(), at);
        if events {
            count_events(shared, values, at);
        }
    }
}

/// Values per batch of events (two records each).
const COUNTS_CHUNK: usize = 8;

/// The events of up to `COUNTS_CHUNK` count values, in one push.
#[inline(never)]
fn count_events(shared: &Shared, values: impl Iterator<Item = (u32, i64)>, at: u64) {
    let mut batch = [Record {
        a: 0,
        b: 0,
        site: 0,
    }; 2 * COUNTS_CHUNK];
    let mut n = 0;
    for (out, (id, value)) in batch.chunks_exact_mut(2).zip(values) {
        out[0] = Record {
            a: at,
            b: 0,
            site: id | Record::TALLIED,
        };
        out[1] = Record {
            a: value as u64,
            b: 0,
            site: Record::EXTENSION,
        };
        n += 2;
    }
    push(shared, &batch[..n]);
}
