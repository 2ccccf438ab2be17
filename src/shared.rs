//! What the recording threads and the collector of one recorder share: the
//! gate (whether a run is open and takes events), the clock, the ring
//! registry and the wake-up line.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crossbeam_channel::Sender;

use crate::config::Overflow;
use crate::local::ring::Ring;

/// How many recorders may exist at once in a process (the global one included).
pub(crate) const MAX_RECORDERS: usize = 16;

static SLOTS: Mutex<[bool; MAX_RECORDERS]> = Mutex::new([false; MAX_RECORDERS]);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Every live recorder's `Shared` by slot, for the fork handler.
static LIVE: [AtomicPtr<Shared>; MAX_RECORDERS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_RECORDERS];
/// The global recorder's `Shared`, for the timers of the free functions. Set
/// once, by `recorder.rs` just before it stores the global recorder, which
/// is never dropped; here, below the facade, so the recording side finds it
/// without knowing `Recorder`.
static GLOBAL: OnceLock<Arc<Shared>> = OnceLock::new();
/// `GLOBAL`'s `Shared`, for the timers: one load where the `OnceLock` is two
/// and a compare. Null until set; then never changed or freed.
static GLOBAL_PTR: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

/// The global recorder's shared state, if it exists (never creates it).
#[inline]
pub(crate) fn global_shared() -> Option<&'static Shared> {
    // SAFETY: a non-null pointer is the `Arc` in `GLOBAL`, which is never
    // taken out or dropped, so it lives as long as the process; acquire
    // pairs with the release that published it after it was made.
    unsafe { GLOBAL_PTR.load(Ordering::Acquire).as_ref() }
}

/// Makes `shared` the global recorder's; only the first call counts.
pub(crate) fn set_global_shared(shared: Arc<Shared>) {
    let _ = GLOBAL.set(shared);
    if let Some(shared) = GLOBAL.get() {
        GLOBAL_PTR.store(Arc::as_ptr(shared).cast_mut(), Ordering::Release);
    }
}

/// Process-wide source of [`Shared::gate`] epochs: one more per change of
/// any recorder's gate, so that no two gate values of any two recorders or
/// runs are ever equal (2^58 changes before it wraps).
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// [`Shared::gate`]'s bit set while the open run takes events: a region
/// then sends its event, so it never takes the fast end.
pub(crate) const GATE_EVENTS: u64 = 1;
/// [`Shared::gate`]'s bit set when `Config::time_one_in` samples every
/// region (constant per recorder).
pub(crate) const GATE_SAMPLED: u64 = 1 << 1;
/// Where [`Shared::gate`] keeps the recorder's slot (4 bits: `MAX_RECORDERS`).
pub(crate) const GATE_SLOT_SHIFT: u32 = 2;
const GATE_SLOT_MASK: u64 = (MAX_RECORDERS as u64 - 1) << GATE_SLOT_SHIFT;
const GATE_EPOCH_SHIFT: u32 = 6;
const _: () = assert!(MAX_RECORDERS as u64 - 1 <= GATE_SLOT_MASK >> GATE_SLOT_SHIFT);
const _: () = assert!(GATE_SLOT_MASK < 1 << GATE_EPOCH_SHIFT);

/// The slot a gate value (non-zero) names.
#[inline(always)]
pub(crate) fn gate_slot(gate: u64) -> usize {
    ((gate & GATE_SLOT_MASK) >> GATE_SLOT_SHIFT) as usize
}

pub(crate) struct Shared {
    /// Unique for the life of the process; 0 is never used.
    pub(crate) id: u64,
    /// Index of this recorder's producer state in every thread's local array.
    pub(crate) slot: usize,
    /// Whether a run is open, whether it takes events, and which run and
    /// recorder, in one word, so that a region checks all of it with one
    /// load at its start and one at its end: 0 while no run is open, else a
    /// process-wide unique epoch, this recorder's slot, [`GATE_SAMPLED`] and
    /// [`GATE_EVENTS`] (set while the run takes events: regions then send
    /// theirs). The only record of those two flags ([`Shared::run_open`],
    /// [`Shared::events_open`]). A new epoch with every change of either
    /// or of `run_start`, so a region whose start and end see the same
    /// value began and ended in one stretch of one run with nothing
    /// changed. Written only by the collector (and the fork handler).
    gate: AtomicU64,
    /// The raw clock at the open run's start: a region that started earlier
    /// is not counted in the tally (it belongs to an earlier run).
    run_start: AtomicU64,
    /// One more with every run opened (rotations too): the threads' count
    /// aggregates start their min and max again in a new one.
    count_epoch: AtomicU64,
    pub(crate) clock: crate::ticks::Clock,
    pub(crate) overflow: Overflow,
    pub(crate) ring_capacity: usize,
    /// `Config::time_one_in`: 1, or sampled timing of every region.
    pub(crate) time_one_in: u32,
    wake: Sender<()>,
    /// A `sample_process_gauges` call waits for the collector's next pass.
    sample_requested: AtomicBool,
    alive: AtomicBool,
    rings: Mutex<Vec<Arc<Ring>>>,
    /// Records made while the thread was being torn down, with no ring to take them.
    orphaned: AtomicU64,
    /// The process that made the recorder: a forked child is another.
    pid: u32,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("run_open", &self.run_open())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Takes a free recorder slot; `None` when all are taken.
    pub(crate) fn new(
        overflow: Overflow,
        ring_capacity: usize,
        wake: Sender<()>,
    ) -> Option<Shared> {
        let slot = {
            let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = slots.iter().position(|taken| !taken)?;
            slots[slot] = true;
            slot
        };
        Some(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            slot,
            gate: AtomicU64::new(0),
            run_start: AtomicU64::new(0),
            count_epoch: AtomicU64::new(0),
            clock: crate::ticks::Clock::new(),
            overflow,
            ring_capacity,
            time_one_in: 1,
            wake,
            sample_requested: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            rings: Mutex::new(Vec::new()),
            orphaned: AtomicU64::new(0),
            pid: std::process::id(),
        })
    }

    /// With sampled timing of every region, one in about `n` timed
    /// (`Config::time_one_in`, validated).
    pub(crate) fn with_time_one_in(mut self, n: u32) -> Shared {
        self.time_one_in = n;
        self
    }

    /// The open run's gate (see [`Shared::gate`]'s field): 0 while no run
    /// is open.
    #[inline(always)]
    pub(crate) fn gate(&self) -> u64 {
        self.gate.load(Ordering::Relaxed)
    }

    /// A new gate value: 0 (no run open), or a new epoch with `events`.
    fn store_gate(&self, open: bool, events: bool) {
        let gate = if open {
            let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
            let events = if events { GATE_EVENTS } else { 0 };
            let sampled = if self.time_one_in > 1 {
                GATE_SAMPLED
            } else {
                0
            };
            epoch << GATE_EPOCH_SHIFT | (self.slot as u64) << GATE_SLOT_SHIFT | sampled | events
        } else {
            0
        };
        // Release, paired with the Acquire fence in `region_gated` (the
        // hot loads are Relaxed): a region that finds the gate changed at
        // its end sees the run's start stored before it.
        self.gate.store(gate, Ordering::Release);
    }

    /// Lets a forked child of this process find the recorder, so that it can
    /// switch it off there (see [`in_forked_child`]). Call once it is in its `Arc`.
    pub(crate) fn register_live(self: &Arc<Shared>) {
        #[cfg(unix)]
        {
            static HANDLER: std::sync::Once = std::sync::Once::new();
            HANDLER.call_once(|| crate::os::in_forked_child(in_forked_child));
        }
        LIVE[self.slot].store(Arc::as_ptr(self).cast_mut(), Ordering::Release);
    }

    /// Whether this is a forked child of the process that made the recorder:
    /// its collector thread stayed with the parent.
    pub(crate) fn forked(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Whether a run is open: timers started now produce records.
    #[inline]
    pub(crate) fn run_open(&self) -> bool {
        self.gate() != 0
    }

    /// Opens the run in the gate (`open`), taking events or not, or closes
    /// it (then `events` is ignored: no run takes events).
    pub(crate) fn set_run_open(&self, open: bool, events: bool) {
        self.store_gate(open, events);
    }

    /// Whether a region ending now should send its event (never while no
    /// run is open).
    #[inline]
    pub(crate) fn events_open(&self) -> bool {
        self.gate() & GATE_EVENTS != 0
    }

    /// Whether the open run takes events from now on; nothing while no run
    /// is open (the run opens with [`Shared::set_run_open`]'s).
    pub(crate) fn set_events_open(&self, open: bool) {
        // Only the collector writes the gate: a plain look suffices.
        if self.run_open() && self.events_open() != open {
            self.store_gate(true, open);
        }
    }

    /// The raw clock at the open run's start.
    #[inline]
    pub(crate) fn run_start(&self) -> u64 {
        self.run_start.load(Ordering::Relaxed)
    }

    /// The count epoch of the open run (see `local::counts`).
    #[inline]
    pub(crate) fn count_epoch(&self) -> u64 {
        self.count_epoch.load(Ordering::Relaxed)
    }

    /// Starts a new count epoch, for a run being opened; returns it.
    pub(crate) fn next_count_epoch(&self) -> u64 {
        self.count_epoch.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sets the run's start; before the run is marked open (else the gate
    /// takes a new epoch, so no region spans the change).
    pub(crate) fn set_run_start(&self, t0: u64) {
        self.run_start.store(t0, Ordering::Release);
        if self.run_open() {
            self.store_gate(true, self.events_open());
        }
    }

    /// Nudges the collector; never blocks (a pending wake-up is enough).
    /// Producers call it only when their ring is half full: waking a
    /// sleeping thread is a system call.
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Asks the collector for a process sample at its next pass and wakes
    /// it; never waits. A request made while one is pending joins it: the
    /// one sample answers both.
    pub(crate) fn request_sample(&self) {
        if !self.sample_requested.swap(true, Ordering::AcqRel) {
            // Whoever raised the flag wakes the collector, after raising it.
            self.wake();
        }
    }

    /// Takes the pending sample request, if any (the collector, each pass).
    pub(crate) fn take_sample_request(&self) -> bool {
        self.sample_requested.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn collector_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    pub(crate) fn set_collector_gone(&self) {
        self.alive.store(false, Ordering::Release);
    }

    pub(crate) fn register_ring(&self, ring: Arc<Ring>) {
        self.lock_rings().push(ring);
    }

    pub(crate) fn lock_rings(&self) -> MutexGuard<'_, Vec<Arc<Ring>>> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn count_orphaned(&self, n: u64) {
        self.orphaned.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn orphaned(&self) -> u64 {
        self.orphaned.load(Ordering::Relaxed)
    }
}

/// Runs in a forked child, before anything else: the collectors stayed
/// in the parent, so the child's timers must record nothing (no run is open)
/// and a producer under `Overflow::Block` must not wait for a collector.
/// The parent's run and files are the parent's alone.
#[cfg(unix)]
extern "C" fn in_forked_child() {
    for live in &LIVE {
        let shared = live.load(Ordering::Acquire);
        // SAFETY: a non-null pointer is a live recorder's `Shared`: its Drop
        // nulls it first, and in the child no other thread runs to free it.
        if let Some(shared) = unsafe { shared.as_ref() } {
            shared.gate.store(0, Ordering::Release);
            shared.alive.store(false, Ordering::Release);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        LIVE[self.slot].store(std::ptr::null_mut(), Ordering::Release);
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        slots[self.slot] = false;
    }
}
