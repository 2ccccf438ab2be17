//! The recording thread's side: its thread-local ring handles, registration of
//! a new ring with a recorder, and `region` and `push`, which every timer and
//! count ends in.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::ring::{Push, Record, Ring};
use crate::config::Overflow;
use crate::shared::{gate_slot, Shared, GATE_EVENTS, MAX_RECORDERS};

/// This thread's producer state for one recorder slot.
struct Producer {
    ring: Cell<*const Ring>,
    /// Id of the recorder the ring belongs to (a slot can be reused).
    owner: Cell<u64>,
    /// A gate value of the owner (see `Shared::gate`'s field) seen with
    /// events off when `ring` and `owner` were last checked, or 0: while
    /// the owner's gate still has this value, a region that began under it
    /// takes the fast end ([`region_ended`]) with no other check. Gate
    /// values are unique in the process, so an equal one is the owner's;
    /// set to 0 wherever `ring` or `owner` change.
    gate: Cell<u64>,
    head: Cell<u64>,
    /// The fast path may write while `head + n <= limit`: the least of the
    /// room seen at the last look at the ring's tail and the next point at
    /// which to wake the collector. Past it, `push_slow` looks again.
    limit: Cell<u64>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Producer = Producer {
    ring: Cell::new(std::ptr::null()),
    owner: Cell::new(0),
    gate: Cell::new(0),
    head: Cell::new(0),
    limit: Cell::new(0),
};

thread_local! {
    // No destructor, const-initialised: the fastest kind of thread-local, and
    // accessible even while other thread-locals are being destroyed.
    static PRODUCERS: [Producer; MAX_RECORDERS] = const { [EMPTY; MAX_RECORDERS] };
    static THREAD_ID: Cell<u32> = const { Cell::new(u32::MAX) };
    // Keeps this thread's rings alive and closes them when the thread exits.
    static RINGS: RingsGuard = const { RingsGuard(RefCell::new(Vec::new())) };
}

/// This thread's rings, with the recorder slot each was made for.
struct RingsGuard(RefCell<Vec<(usize, Arc<Ring>)>>);

impl Drop for RingsGuard {
    fn drop(&mut self) {
        let _ = PRODUCERS.try_with(|producers| {
            for p in producers {
                p.gate.set(0);
                p.ring.set(std::ptr::null());
                p.owner.set(0);
            }
        });
        for (_, ring) in self.0.borrow().iter() {
            ring.close();
        }
    }
}

/// The small process-wide id of the calling thread, assigned on first use.
pub(crate) fn thread_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    THREAD_ID
        .try_with(|id| {
            if id.get() == u32::MAX {
                id.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            id.get()
        })
        .unwrap_or(u32::MAX)
}

/// Counts a region from `start` to `end` of `site` in the calling thread's
/// tally for `shared`, and hands the ring only what must go through it: the
/// region's event while the run still takes events, and its `resources`
/// record. A region that started before the open run goes whole through
/// the ring; every site id has a place in the tally.
///
/// Never locks once the thread has its ring, and allocates only a tally row
/// for a duration of a power of two the site never had; never panics.
///
/// Inline, the usual region only: one with no event to send and no
/// resources, whose site and bucket have their places; the rest in
/// [`region_rest`], a call.
#[inline(always)]
pub(crate) fn region(shared: &Shared, site: u32, start: u64, end: u64, resources: Option<Record>) {
    if resources.is_none() && !shared.events_open() && start >= shared.run_start() {
        let ticks = end.saturating_sub(start);
        if with_ring(shared, |_, ring| ring.tally.add(site, ticks)) == Some(true) {
            return;
        }
    }
    region_rest(shared, site, start, end, resources);
}

/// Starts loading the lines where the end of a region of `site` counts, in
/// the calling thread's tally for `shared` ([`super::tally::Tally::prefetch`]):
/// for a name looked up by its text, whose counters, among thousands of
/// names, are rarely in the core's caches. Changes nothing: a few loads and
/// a prefetch, in a call of its own so that the lookups that need none (a
/// name in the thread's cache) stay small enough to be inlined.
#[inline(never)]
pub(crate) fn prefetch(shared: &Shared, site: u32) {
    let _ = with_ring(shared, |_, ring| ring.tally.prefetch(site));
}

/// Sampled timing (about one region of `site` in `one_in` timed): whether
/// the region starting now is to be timed. One that is not is counted
/// here, exactly, as an untimed region of the open run; one that is, is
/// counted by [`region`] when it ends. Inline: a lookup, a load and a store
/// for a region not timed.
///
/// Never locks once the thread has its ring, allocates only the site's
/// place on its first region, never panics.
#[inline(always)]
pub(crate) fn sample(shared: &Shared, site: u32, one_in: u32) -> bool {
    match with_ring(shared, |_, ring| ring.tally.skip(site, one_in)) {
        Some(Some(skip)) => !skip,
        _ => sample_rest(shared, site, one_in),
    }
}

/// [`sample`] for a site with no place yet, a far id, or the thread's
/// first region.
#[cold]
#[inline(never)]
fn sample_rest(shared: &Shared, site: u32, one_in: u32) -> bool {
    let skip = || with_ring(shared, |_, ring| ring.tally.skip_slow(site, one_in));
    let skip = skip().or_else(|| register(shared).then(skip).flatten());
    match skip {
        Some(Some(skip)) => !skip,
        // An id no site has: timed, and `region` counts what it can.
        Some(None) => true,
        None => {
            // The thread is being torn down: there is no tally to count in.
            shared.count_orphaned(1);
            false
        }
    }
}

/// The end of a timer's region (no resources) that began under `gate`
/// (the recorder's gate then, not 0): a clock read and this call, with the
/// region in registers, is what a timer's drop inlines.
///
/// The usual region is two loads and two compares from its tally: the
/// recorder's gate still `gate` (the same run, nothing changed since the
/// region began, events off), and this thread's producer for the slot
/// checked under that same gate (its ring is the recorder's). Anything
/// else, a changed gate, the first region under a gate, a region the tally
/// does not take inline, goes to [`region_gated`], which counts it as
/// [`region`] does. The start needs no look at the run's start: a region
/// whose start saw the open run's gate began in that run.
///
/// Not inlined: inlined, it made a timer's drop glue too big for the
/// compiler to inline where a crate has many timers (`benches/real_loop.rs`:
/// the glue and the start were calls, about 20 instructions and 5 % more
/// time per region at the ~50 ns body); as a call, the drop is a read and
/// this call at every site. A loop with a single timer pays the call (5 to
/// 25 instructions more by callgrind there).
#[inline(never)]
pub(crate) fn region_ended(shared: &Shared, gate: u64, site: u32, start: u64, end: u64) {
    let counted = PRODUCERS
        .try_with(|producers| {
            // `% MAX_RECORDERS` (a mask): no bounds check.
            let p = &producers[gate_slot(gate) % MAX_RECORDERS];
            if p.gate.get() != gate || shared.gate() != gate {
                return false;
            }
            // SAFETY: `p.gate` equals a gate of the recorder only while
            // `p.ring` is non-null and owned by it (checked when it was set,
            // reset to 0 before either changes), and a ring is kept alive by
            // `RINGS` of this very thread, which nulls it before dropping it.
            let ring = unsafe { &*p.ring.get() };
            // A clock gone backwards wraps to a huge count of ticks, which
            // `add` refuses like a long region.
            ring.tally.add(site, end.wrapping_sub(start))
        })
        .unwrap_or(false);
    if !counted {
        region_gated(shared, gate, site, start, end);
    }
}

/// [`region_ended`]'s other cases: counts the region as [`region`] does,
/// then, while the gate is still `gate` with events off and the thread's
/// ring is the recorder's, marks the producer checked under `gate`, so that
/// the next regions take the fast end. Not `#[cold]`: while the run takes
/// events (by default its first 100 000) every region comes here.
#[inline(never)]
fn region_gated(shared: &Shared, gate: u64, site: u32, start: u64, end: u64) {
    // The gate was loaded Relaxed; if it changed, this pairs with its
    // Release store, so the run start `region_rest` compares with is the
    // new run's, not an older one.
    std::sync::atomic::fence(Ordering::Acquire);
    region_rest(shared, site, start, end, None);
    if gate & GATE_EVENTS != 0 || shared.gate() != gate {
        return;
    }
    let _ = PRODUCERS.try_with(|producers| {
        let p = &producers[shared.slot % MAX_RECORDERS];
        if !p.ring.get().is_null() && p.owner.get() == shared.id {
            p.gate.set(gate);
        }
    });
}

/// [`region`] for any region: one whose event is still wanted, with
/// resources, started before the run, needing a tally place, or the
/// thread's first. When [`region`]'s inline part did not count the region
/// it changed nothing, so this counts it once.
#[inline(never)]
fn region_rest(shared: &Shared, site: u32, start: u64, end: u64, resources: Option<Record>) {
    let done = with_ring(shared, |p, ring| {
        let ticks = end.saturating_sub(start);
        let tallied = start >= shared.run_start()
            && (ring.tally.add(site, ticks) || ring.tally.add_slow(site, ticks));
        if tallied && resources.is_none() && !shared.events_open() {
            return;
        }
        let flag = if tallied { Record::TALLIED } else { 0 };
        let (records, n) = region_records(site | flag, start, end, resources);
        publish(shared, p, ring, &records[..n]);
    });
    if done.is_none() {
        region_cold(shared, site, start, end, resources);
    }
}

/// The thread's first region for this recorder (or the thread is exiting).
#[cold]
#[inline(never)]
fn region_cold(shared: &Shared, site: u32, start: u64, end: u64, resources: Option<Record>) {
    if register(shared) {
        region_rest(shared, site, start, end, resources);
    } else {
        // The thread is being torn down: there is no ring or tally to count in.
        shared.count_orphaned(1);
    }
}

/// A region's record (with its extension when long), then `resources`.
#[inline]
fn region_records(
    site: u32,
    start: u64,
    end: u64,
    resources: Option<Record>,
) -> ([Record; 3], usize) {
    let ([first, ext], n) = Record::region(site, start, end);
    match resources {
        None => ([first, ext, ext], n),
        Some(r) if n == 1 => ([first, r, r], 2),
        Some(r) => ([first, ext, r], 3),
    }
}

/// Counts `values` (count ids and values), observed at raw time `at`, in the
/// calling thread's count aggregates for `shared`.
///
/// Never locks once the thread has its ring, and allocates only the first
/// time the thread observes a name; never panics.
pub(crate) fn observe(shared: &Shared, values: impl Iterator<Item = (u32, i64)> + Clone, at: u64) {
    let epoch = shared.count_epoch();
    let counted = with_ring(shared, |_, ring| {
        let refused = values
            .clone()
            .filter(|&(id, value)| !ring.counts.observe(id, value, at, epoch))
            .count();
        // Every id a name can have has a place; should one not, its value
        // is lost, and counted so.
        if refused > 0 {
            ring.count_dropped(refused as u64);
        }
    });
    if counted.is_none() {
        if register(shared) {
            observe(shared, values, at);
        } else {
            // The thread is being torn down: there is no ring to count in.
            shared.count_orphaned(values.count() as u64);
        }
    }
}

/// [`observe`] of one value (`observe_counts`' usual call), inline: the
/// thread's aggregate of `id` updated in place, with no batch to go
/// through; the rest (the thread's first count, an id with no place) in
/// [`observe`], which counts it once (a refused value changes nothing).
#[inline(always)]
pub(crate) fn observe_one(shared: &Shared, id: u32, value: i64, at: u64) {
    let epoch = shared.count_epoch();
    if with_ring(shared, |_, ring| ring.counts.observe(id, value, at, epoch)) != Some(true) {
        observe(shared, std::iter::once((id, value)), at);
    }
}

/// Hands `records` (a batch of counts) to the calling thread's ring for `shared`.
///
/// Never allocates or locks once the thread has its ring; never panics.
#[inline]
pub(crate) fn push(shared: &Shared, records: &[Record]) {
    if with_ring(shared, |p, ring| publish(shared, p, ring, records)).is_none() {
        push_cold(shared, records);
    }
}

/// Runs `f` on this thread's producer state and ring for `shared`; `None`
/// when the thread has no ring for it yet (or is exiting).
#[inline(always)]
fn with_ring<T>(shared: &Shared, f: impl FnOnce(&Producer, &Ring) -> T) -> Option<T> {
    PRODUCERS
        .try_with(|producers| {
            // `% MAX_RECORDERS` (a mask; a slot is below it) instead of a
            // bounds check on every region.
            let p = &producers[shared.slot % MAX_RECORDERS];
            let ring = p.ring.get();
            if ring.is_null() || p.owner.get() != shared.id {
                return None;
            }
            // SAFETY: a non-null `ring` owned by this recorder is kept alive by
            // `RINGS` of this very thread, which nulls it before dropping the Arc.
            Some(f(p, unsafe { &*ring }))
        })
        .ok()
        .flatten()
}

/// Writes `records` to this thread's `ring`: the fast path while under the limit.
#[inline]
fn publish(shared: &Shared, p: &Producer, ring: &Ring, records: &[Record]) {
    let head = p.head.get();
    let next = head + records.len() as u64;
    if next <= p.limit.get() {
        // SAFETY: this thread is the ring's only producer, `head` is its
        // count, and `limit` never exceeds the room seen at the last look.
        unsafe { ring.write(head, records) };
        p.head.set(next);
    } else {
        push_slow(shared, p, ring, records);
    }
}

/// Past the limit: look at the ring's tail again, wake the collector if it
/// is half a ring behind, and write if there is room.
#[cold]
#[inline(never)]
fn push_slow(shared: &Shared, p: &Producer, ring: &Ring, records: &[Record]) {
    let head = p.head.get();
    let tail = ring.tail();
    let half = ring.capacity() / 2;
    let behind = head - tail >= half;
    if behind {
        // Only now: waking a sleeping collector is a system call.
        shared.wake();
    }
    // SAFETY: as in `push`: this thread is the only producer.
    match unsafe { ring.push(head, records) } {
        Push::Written => p.head.set(head + records.len() as u64),
        Push::Full => full(shared, p, ring, records),
    }
    // Come back when the collector may be half a ring behind, or the ring full.
    let tail = ring.tail();
    let limit = if p.head.get() - tail < half {
        tail + half
    } else {
        tail + ring.capacity()
    };
    p.limit.set(limit);
}

#[cold]
fn full(shared: &Shared, p: &Producer, ring: &Ring, records: &[Record]) {
    shared.wake();
    if shared.overflow == Overflow::Block {
        let mut spins = 0u32;
        while shared.collector_alive() {
            let head = p.head.get();
            // SAFETY: as in `push`: this thread is the only producer.
            if let Push::Written = unsafe { ring.push(head, records) } {
                p.head.set(head + records.len() as u64);
                return;
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                shared.wake();
            }
            if spins < 1_000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }
    ring.count_dropped(Record::logical(records));
}

/// First record of this thread for this recorder (or the thread is exiting).
#[cold]
#[inline(never)]
fn push_cold(shared: &Shared, records: &[Record]) {
    if register(shared) {
        push(shared, records);
    } else {
        // The thread is being torn down: there is no ring to write to.
        shared.count_orphaned(Record::logical(records));
    }
}

fn register(shared: &Shared) -> bool {
    let thread = thread_id();
    let name = std::thread::current().name().map(str::to_owned);
    let ring = Arc::new(Ring::new(shared.ring_capacity, thread, name));
    let kept = RINGS.try_with(|rings| {
        let mut rings = rings.0.borrow_mut();
        // A ring of an earlier recorder in this slot is done with: close it.
        rings.retain(|(slot, old)| {
            let stale = *slot == shared.slot;
            if stale {
                old.close();
            }
            !stale
        });
        rings.push((shared.slot, ring.clone()));
    });
    if kept.is_err() {
        return false;
    }
    let ok = PRODUCERS.try_with(|producers| {
        let p = &producers[shared.slot];
        p.gate.set(0);
        p.ring.set(Arc::as_ptr(&ring));
        p.owner.set(shared.id);
        p.head.set(0);
        p.limit.set(0); // the first push looks at the ring
    });
    if ok.is_err() {
        return false;
    }
    shared.register_ring(ring);
    true
}
