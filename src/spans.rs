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
//! then). A span created with no run open records nothing and costs one load
//! and a branch more than the registry alone. The span's own timing lives in
//! the registry's extensions of that span; the tallies take it without a
//! lock, as from a timer.

use std::cell::RefCell;
use std::collections::HashMap;
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
}

/// A layer for the global recorder (made by `init_metrics`, or with the
/// defaults at the first `start_run`).
pub fn layer() -> TracingLayer {
    TracingLayer { shared: None }
}

impl Recorder {
    /// A layer that records closed spans as phases of this recorder's runs.
    /// It keeps what the recorder shares with its threads alive, not the
    /// recorder: once the recorder is dropped, spans record nothing.
    pub fn tracing_layer(&self) -> TracingLayer {
        TracingLayer {
            shared: Some(self.shared_handle()),
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

/// One span's timing, in the registry's extensions of the span.
struct Timing {
    busy_site: u32,
    wall_site: u32,
    created: u64,
    /// Raw clock at the outermost enter now open.
    entered_at: u64,
    /// Enters not yet exited (a span entered on two threads at once, or
    /// re-entered, counts its time once).
    depth: u32,
    busy: u64,
}

thread_local! {
    /// `<name> (wall)` ids by callsite metadata address: no lock and no
    /// allocation once this thread knows the callsite.
    static WALL_SITES: RefCell<HashMap<usize, u32, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

fn wall_site(meta: &'static Metadata<'static>) -> u32 {
    let key = meta as *const Metadata<'static> as usize;
    let make = || {
        intern(
            Kind::Phase,
            meta.target(),
            &format!("{} (wall)", meta.name()),
        )
    };
    WALL_SITES
        .try_with(|m| *m.borrow_mut().entry(key).or_insert_with(make))
        .unwrap_or_else(|_| make())
}

impl TracingLayer {
    fn shared(&self) -> Option<&Shared> {
        match &self.shared {
            Some(s) => Some(s),
            None => global_shared(),
        }
    }
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
        let Some(span) = ctx.span(id) else { return };
        let meta = attrs.metadata();
        let timing = Timing {
            busy_site: static_id(Kind::Phase, meta.name(), meta.target()),
            wall_site: wall_site(meta),
            created: shared.clock.raw(),
            entered_at: 0,
            depth: 0,
            busy: 0,
        };
        span.extensions_mut().insert(timing);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(t) = ext.get_mut::<Timing>() else {
            return;
        };
        if t.depth == 0 {
            if let Some(shared) = self.shared() {
                t.entered_at = shared.clock.raw();
            }
        }
        t.depth += 1;
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(t) = ext.get_mut::<Timing>() else {
            return;
        };
        t.depth = t.depth.saturating_sub(1);
        if t.depth == 0 {
            if let Some(shared) = self.shared() {
                t.busy = t
                    .busy
                    .saturating_add(shared.clock.raw().saturating_sub(t.entered_at));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(t) = span.extensions_mut().remove::<Timing>() else {
            return;
        };
        let Some(shared) = self.shared() else { return };
        let end = shared.clock.raw();
        region(shared, t.busy_site, t.created, t.created + t.busy, None);
        region(shared, t.wall_site, t.created, end, None);
    }
}
