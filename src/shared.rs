//! What the recording threads and the collector of one recorder share: the
//! run generation, the clock, the ring registry and the wake-up line.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::Sender;

use crate::config::Overflow;
use crate::local::ring::Ring;

/// How many recorders may exist at once in a process (the global one included).
pub(crate) const MAX_RECORDERS: usize = 16;

static SLOTS: Mutex<[bool; MAX_RECORDERS]> = Mutex::new([false; MAX_RECORDERS]);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Shared {
    /// Unique for the life of the process; 0 is never used.
    pub(crate) id: u64,
    /// Index of this recorder's producer state in every thread's local array.
    pub(crate) slot: usize,
    /// The open run's generation, or 0 when no run is open.
    generation: AtomicU32,
    pub(crate) clock: quanta::Clock,
    pub(crate) overflow: Overflow,
    pub(crate) ring_capacity: usize,
    /// A producer wakes the collector each time its head crosses a multiple of
    /// `wake_mask + 1` records (a quarter of the ring).
    pub(crate) wake_mask: u64,
    wake: Sender<()>,
    alive: AtomicBool,
    rings: Mutex<Vec<Arc<Ring>>>,
    /// Records made while the thread was being torn down, with no ring to take them.
    orphaned: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("generation", &self.generation())
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
            generation: AtomicU32::new(0),
            clock: quanta::Clock::new(),
            overflow,
            ring_capacity,
            wake_mask: (ring_capacity as u64 / 4).max(1) - 1,
            wake,
            alive: AtomicBool::new(true),
            rings: Mutex::new(Vec::new()),
            orphaned: AtomicU64::new(0),
        })
    }

    /// The open run's generation, 0 when none is open.
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn set_generation(&self, generation: u32) {
        self.generation.store(generation, Ordering::Release);
    }

    /// Nudges the collector; never blocks (a pending wake-up is enough).
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
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

impl Drop for Shared {
    fn drop(&mut self) {
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        slots[self.slot] = false;
    }
}
