//! `tracing` spans in: a `tracing-subscriber` [`Layer`] that records each
//! closed span as phase regions on the same per-thread tallies as
//! [`phase!`](crate::phase) (feature `tracing`).
//!
//! A span gives two figures, each its own phase entry in module = the span's
//! target:
//! - **`<name>`: busy time**, the sum of the intervals the span was entered
//!   (polled, for a future under `Instrument`), wherever they ran;
//! - **`<name> (wall)`: wall time**, from the span's creation to its close.
//!
//! Both are counted on the thread that closes the span, at its close, as a
//! region that starts at the span's creation (so it belongs to the run open
//! then). A span created with no run open records nothing and costs a few
//! loads more than the registry alone. The span's own timing lives in the
//! layer's table of atomic slots (no allocation, no lock), or, when the
//! slots its id may take are all held by other live spans, in the
//! registry's extensions of that span; the tallies take it without a lock,
//! as from a timer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use std::sync::Arc;

use tracing_core::span::{Attributes, Id};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::ENABLED;
use crate::local::thread::region;
use crate::recorder::Recorder;
use crate::shared::{global_shared, Shared};
use crate::site::{intern, static_id, Kind};
use crate::ticks::Clock;

/// Records closed spans as phases of a recorder's open run: the global
/// recorder's ([`layer`]) or a given one's ([`Recorder::tracing_layer`]).
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let subscriber = tracing_subscriber::registry().with(runmetrics::tracing_layer());
/// tracing::subscriber::with_default(subscriber, || {
///     # let dir = std::env::temp_dir().join(format!("rm-spans-doc-{}", std::process::id()));
///     runmetrics::start_run(&dir).unwrap();
///     tracing::info_span!("decode").in_scope(|| { /* ... */ });
///     runmetrics::end_run(serde_json::Value::Null).unwrap();
/// });
/// ```
pub struct TracingLayer {
    /// `None`: the global recorder.
    shared: Option<Arc<Shared>>,
    table: Table,
}

/// A layer for the global recorder (made by `init_metrics`, or with the
/// defaults at the first `start_run`).
pub fn layer() -> TracingLayer {
    TracingLayer {
        shared: None,
        table: Table::new(),
    }
}

impl Recorder {
    /// A layer that records closed spans as phases of this recorder's runs.
    /// It keeps what the recorder shares with its threads alive, not the
    /// recorder: once the recorder is dropped, spans record nothing.
    pub fn tracing_layer(&self) -> TracingLayer {
        TracingLayer {
            shared: Some(self.shared_handle()),
            table: Table::new(),
        }
    }
}

impl std::fmt::Debug for TracingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingLayer")
            .field("global", &self.shared.is_none())
            .finish()
    }
}

/// Slots in a layer's span table (a power of two): 4 096 × 40 bytes.
const TABLE_SLOTS: usize = 4096;
/// Slots a span id may take: the ones after its hash, so a lookup reads at
/// most this many ids and never follows a chain.
const PROBES: usize = 4;

/// One live span's timing. In the layer's table, or, when the span's
/// probes are all taken, in the registry's extensions of the span (a
/// `Spilled`); the same atomics either way, so the two paths agree.
#[derive(Default)]
struct Slot {
    /// The span's id; 0: free (an `Id` is never 0).
    id: AtomicU64,
    /// `busy_site | wall_site << 32`.
    sites: AtomicU64,
    created: AtomicU64,
    /// Enters not yet exited, on every thread: a span entered on two
    /// threads at once, or re-entered, counts its time once.
    depth: AtomicU32,
    /// Wrapping: minus the tick of each enter that opened an entered
    /// interval (depth 0 to 1), plus the tick of each exit that closed one.
    /// With depth back at 0 it is the sum of the entered intervals.
    busy: AtomicU64,
}

impl Slot {
    fn fill(&self, sites: u64, created: u64) {
        self.sites.store(sites, Relaxed);
        self.created.store(created, Relaxed);
        self.depth.store(0, Relaxed);
        self.busy.store(0, Relaxed);
    }

    fn enter(&self, clock: &Clock) {
        if self.depth.fetch_add(1, Relaxed) == 0 {
            self.busy.fetch_sub(clock.raw(), Relaxed);
        }
    }

    fn exit(&self, clock: &Clock) {
        let now = clock.raw();
        if self.depth.fetch_sub(1, Relaxed) == 1 {
            self.busy.fetch_add(now, Relaxed);
        }
    }

    /// `(sites, created, busy ticks)` at a close at `end`: a span closed
    /// while entered counts as exited at `end`, and no busy time exceeds the
    /// wall time (an unbalanced exit cannot make it).
    fn take(&self, end: u64) -> (u64, u64, u64) {
        let created = self.created.load(Relaxed);
        let mut busy = self.busy.load(Relaxed);
        if self.depth.load(Relaxed) as i32 > 0 {
            busy = busy.wrapping_add(end);
        }
        let wall = end.saturating_sub(created);
        (self.sites.load(Relaxed), created, busy.min(wall))
    }
}

/// A span whose table slots were all taken: its [`Slot`] in the registry's
/// extensions.
struct Spilled(Slot);

/// The layer's own span store, indexed by a hash of the span id: no
/// allocation and no lock per span. The registry reuses an id only after
/// every layer's `on_close` for it has returned, so at most one live span
/// has an id, and a slot freed at a close (`Release`) is seen free by the
/// next claim (`Acquire`).
struct Table {
    slots: Box<[Slot]>,
    /// Spans now in extensions: while 0, a span not in the table has no
    /// timing (it was made with no run open) and costs no registry lookup.
    spilled: AtomicUsize,
}

impl Table {
    fn new() -> Table {
        Table {
            slots: (0..TABLE_SLOTS).map(|_| Slot::default()).collect(),
            spilled: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn probes(&self, id: u64) -> impl Iterator<Item = &Slot> {
        let h = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        (0..PROBES).map(move |i| &self.slots[(h + i) & (TABLE_SLOTS - 1)])
    }

    /// Claims a free slot for `id`, or `None` when its probes are taken.
    fn claim(&self, id: u64) -> Option<&Slot> {
        self.probes(id).find(|s| {
            s.id.load(Relaxed) == 0 && s.id.compare_exchange(0, id, Acquire, Relaxed).is_ok()
        })
    }

    #[inline]
    fn find(&self, id: u64) -> Option<&Slot> {
        self.probes(id).find(|s| s.id.load(Relaxed) == id)
    }
}

thread_local! {
    /// `(metadata address, sites)` by a hash of the address: a span's two
    /// site ids with a load and a compare once this thread knows the
    /// callsite.
    static SITES: [Cell<(usize, u64)>; SITE_CACHE] =
        const { [const { Cell::new((0, 0)) }; SITE_CACHE] };
    /// `<name> (wall)` ids by callsite metadata address: no lock and no
    /// allocation once this thread knows the callsite.
    static WALL_SITES: RefCell<HashMap<usize, u32, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

/// Entries in [`SITES`] (a power of two).
const SITE_CACHE: usize = 64;

/// `busy_site | wall_site << 32` for a callsite.
#[inline]
fn sites(meta: &'static Metadata<'static>) -> u64 {
    let key = meta as *const Metadata<'static> as usize;
    let slot = (key >> 4) & (SITE_CACHE - 1);
    SITES
        .try_with(|cache| {
            let (k, v) = cache[slot].get();
            if k == key {
                return v;
            }
            let v = sites_miss(meta);
            cache[slot].set((key, v));
            v
        })
        .unwrap_or_else(|_| sites_miss(meta))
}

#[cold]
fn sites_miss(meta: &'static Metadata<'static>) -> u64 {
    let busy = static_id(Kind::Phase, meta.name(), meta.target());
    let key = meta as *const Metadata<'static> as usize;
    let make = || {
        intern(
            Kind::Phase,
            meta.target(),
            &format!("{} (wall)", meta.name()),
        )
    };
    let wall = WALL_SITES
        .try_with(|m| *m.borrow_mut().entry(key).or_insert_with(make))
        .unwrap_or_else(|_| make());
    u64::from(busy) | u64::from(wall) << 32
}

impl TracingLayer {
    #[inline]
    fn shared(&self) -> Option<&Shared> {
        match &self.shared {
            Some(s) => Some(s),
            None => global_shared(),
        }
    }

    /// The span's timing, wherever it is; `f` runs on it. `None`: the span
    /// has none (made with no run open).
    #[inline]
    fn with_slot<S, R>(
        &self,
        id: &Id,
        ctx: &Context<'_, S>,
        f: impl FnOnce(&Slot) -> R,
    ) -> Option<R>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(slot) = self.table.find(id.into_u64()) {
            return Some(f(slot));
        }
        if self.table.spilled.load(Relaxed) == 0 {
            return None;
        }
        spilled(id, ctx, f)
    }
}

#[cold]
fn spilled<S, R>(id: &Id, ctx: &Context<'_, S>, f: impl FnOnce(&Slot) -> R) -> Option<R>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.span(id)?;
    let ext = span.extensions();
    ext.get::<Spilled>().map(|s| f(&s.0))
}

impl<S> Layer<S> for TracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !ENABLED {
            return;
        }
        let Some(shared) = self.shared().filter(|s| s.run_open()) else {
            return;
        };
        let sites = sites(attrs.metadata());
        let created = shared.clock.raw();
        if let Some(slot) = self.table.claim(id.into_u64()) {
            slot.fill(sites, created);
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let slot = Slot::default();
        slot.fill(sites, created);
        span.extensions_mut().insert(Spilled(slot));
        self.table.spilled.fetch_add(1, Relaxed);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(shared) = self.shared() else { return };
        self.with_slot(id, &ctx, |slot| slot.enter(&shared.clock));
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(shared) = self.shared() else { return };
        self.with_slot(id, &ctx, |slot| slot.exit(&shared.clock));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let shared = self.shared();
        let end = shared.map_or(0, |s| s.clock.raw());
        let taken = match self.table.find(id.into_u64()) {
            Some(slot) => {
                let taken = slot.take(end);
                slot.id.store(0, Release);
                taken
            }
            None if self.table.spilled.load(Relaxed) == 0 => return,
            None => {
                let Some(span) = ctx.span(&id) else { return };
                let Some(s) = span.extensions_mut().remove::<Spilled>() else {
                    return;
                };
                self.table.spilled.fetch_sub(1, Relaxed);
                s.0.take(end)
            }
        };
        let Some(shared) = shared else { return };
        let (sites, created, busy) = taken;
        region(shared, sites as u32, created, created + busy, None);
        region(shared, (sites >> 32) as u32, created, end, None);
    }
}
