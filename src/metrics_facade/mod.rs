//! The `metrics` facade in (feature `metrics`): [`MetricsRecorder`], a
//! `metrics` 0.24 `Recorder`, so that a library using `histogram!`,
//! `counter!` and `gauge!` feeds the run file and `/metrics`.
//!
//! One process-wide registry (the facade's recorder is process-wide too):
//! keys (name and labels) up to [`MAX_KEYS`]; past it a new key's handle
//! drops its values, counted in `meta.metrics_facade`. Each thread caches
//! the handles it looked up, so a `histogram!(..).record(v)` takes no lock
//! once its thread has seen the key: a hash lookup and a few relaxed
//! atomics (see `histogram.rs`). The collector never names this module: it
//! is an [`ExtraSource`](crate::extra::ExtraSource).
//!
//! Figures are over the process's life since the recorder was installed,
//! in every run file and on `/metrics` alike.

#[allow(unsafe_code)]
mod histogram;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Key, KeyName, Metadata, SharedString, Unit};
use runmetrics_format::{Count, MetricsFacade};

use crate::extra::{ExtraSnapshot, ExtraSource};
use histogram::Histogram;

/// The most distinct keys (histograms, counters and gauges together) the
/// facade keeps; a new key past it is refused and its values dropped (and
/// counted).
pub const MAX_KEYS: usize = 4096;

/// `metrics`' `Key` hashes itself with one `write_u64` of its precomputed
/// hash: pass it through.
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHash>>;

/// A counter: its running total and how many times it moved.
#[derive(Default)]
struct CounterCell {
    total: AtomicU64,
    first: AtomicU64,
    observations: AtomicU64,
}

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        let total = self
            .total
            .fetch_add(value, Ordering::Relaxed)
            .wrapping_add(value);
        if self.observations.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first.store(total, Ordering::Relaxed);
        }
    }
    fn absolute(&self, value: u64) {
        let total = self.total.fetch_max(value, Ordering::Relaxed).max(value);
        if self.observations.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first.store(total, Ordering::Relaxed);
        }
    }
}

/// A gauge: its value (`f64` bits), least and greatest, changes.
struct GaugeCell {
    value: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    observations: AtomicU64,
}

impl GaugeCell {
    fn new() -> GaugeCell {
        GaugeCell {
            value: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            observations: AtomicU64::new(0),
        }
    }

    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut old = self.value.load(Ordering::Relaxed);
        let new = loop {
            let new = f(f64::from_bits(old));
            match self.value.compare_exchange_weak(
                old,
                new.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break new,
                Err(now) => old = now,
            }
        };
        extreme(&self.min, new, |a, b| a < b);
        extreme(&self.max, new, |a, b| a > b);
        self.observations.fetch_add(1, Ordering::Relaxed);
    }
}

fn extreme(cell: &AtomicU64, v: f64, better: impl Fn(f64, f64) -> bool) {
    let mut old = cell.load(Ordering::Relaxed);
    while better(v, f64::from_bits(old)) {
        match cell.compare_exchange_weak(old, v.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => old = now,
        }
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

/// What a refused key's handles do: count what they drop.
struct Refused;

impl CounterFn for Refused {
    fn increment(&self, _: u64) {
        REGISTRY.dropped.fetch_add(1, Ordering::Relaxed);
    }
    fn absolute(&self, _: u64) {
        REGISTRY.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl GaugeFn for Refused {
    fn increment(&self, _: f64) {
        REGISTRY.dropped.fetch_add(1, Ordering::Relaxed);
    }
    fn decrement(&self, _: f64) {
        REGISTRY.dropped.fetch_add(1, Ordering::Relaxed);
    }
    fn set(&self, _: f64) {
        REGISTRY.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl metrics::HistogramFn for Refused {
    fn record(&self, _: f64) {
        REGISTRY.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl metrics::HistogramFn for Histogram {
    #[inline]
    fn record(&self, value: f64) {
        Histogram::record(self, value);
    }
}

/// The keys and their cells.
#[derive(Default)]
struct Keys {
    histograms: KeyMap<Arc<Histogram>>,
    counters: KeyMap<Arc<CounterCell>>,
    gauges: KeyMap<Arc<GaugeCell>>,
    units: HashMap<String, Unit>,
}

impl Keys {
    fn counters(&mut self) -> (&mut KeyMap<Arc<CounterCell>>, usize) {
        let n = self.len();
        (&mut self.counters, n)
    }

    fn gauges(&mut self) -> (&mut KeyMap<Arc<GaugeCell>>, usize) {
        let n = self.len();
        (&mut self.gauges, n)
    }

    fn histograms(&mut self) -> (&mut KeyMap<Arc<Histogram>>, usize) {
        let n = self.len();
        (&mut self.histograms, n)
    }

    fn len(&self) -> usize {
        self.histograms.len() + self.counters.len() + self.gauges.len()
    }
}

struct Registry {
    keys: Mutex<Option<Keys>>,
    refused: AtomicU64,
    dropped: AtomicU64,
}

static REGISTRY: Registry = Registry {
    keys: Mutex::new(None),
    refused: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
};

impl Registry {
    fn with<T>(&self, f: impl FnOnce(&mut Keys) -> T) -> T {
        let mut guard = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.get_or_insert_with(Keys::default))
    }

    /// `key`'s cell in the map `pick` chooses, made if under the cap.
    fn find<V: Clone>(
        &self,
        key: &Key,
        pick: impl FnOnce(&mut Keys) -> (&mut KeyMap<V>, usize),
        make: impl FnOnce() -> V,
    ) -> Option<V> {
        self.with(|keys| {
            let (map, len) = pick(keys);
            if let Some(v) = map.get(key) {
                return Some(v.clone());
            }
            if len >= MAX_KEYS {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let v = make();
            map.insert(key.clone(), v.clone());
            Some(v)
        })
    }
}

thread_local! {
    /// The histograms this thread looked up: no lock once seen.
    static HISTOGRAMS: RefCell<KeyMap<Arc<Histogram>>> = RefCell::new(KeyMap::default());
    /// The counters and gauges this thread looked up.
    static COUNTERS: RefCell<KeyMap<Arc<CounterCell>>> = RefCell::new(KeyMap::default());
    static GAUGES: RefCell<KeyMap<Arc<GaugeCell>>> = RefCell::new(KeyMap::default());
}

/// `key`'s cell from this thread's `cache`, else from the registry (and
/// then cached); `None` if the key is refused.
fn cached<V>(
    cache: &'static std::thread::LocalKey<RefCell<KeyMap<Arc<V>>>>,
    key: &Key,
    pick: impl FnOnce(&mut Keys) -> (&mut KeyMap<Arc<V>>, usize),
    make: impl FnOnce() -> V,
) -> Option<Arc<V>> {
    if let Some(v) = cache
        .try_with(|c| c.borrow().get(key).cloned())
        .ok()
        .flatten()
    {
        return Some(v);
    }
    let v = REGISTRY.find(key, pick, || Arc::new(make()))?;
    let _ = cache.try_with(|c| c.borrow_mut().insert(key.clone(), v.clone()));
    Some(v)
}

/// `metrics`' `Recorder` over runmetrics (feature `metrics`): install it with
/// [`install_metrics`] (or `metrics::set_global_recorder(runmetrics::metrics_recorder())`).
///
/// ```
/// runmetrics::install_metrics().expect("no other metrics recorder");
/// metrics::histogram!("request_bytes", "route" => "/a").record(512.0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsRecorder {
    _private: (),
}

/// The facade's recorder; installing it also makes its values part of every
/// run file and `/metrics`.
pub fn metrics_recorder() -> MetricsRecorder {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        static SOURCE: Source = Source;
        crate::extra::set(&SOURCE);
    });
    MetricsRecorder { _private: () }
}

/// Installs [`metrics_recorder`] as the `metrics` crate's global recorder.
pub fn install_metrics() -> Result<(), crate::InstallMetricsError> {
    metrics::set_global_recorder(metrics_recorder())
        .map_err(|_| crate::InstallMetricsError::AlreadySet)
}

impl metrics::Recorder for MetricsRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        if let Some(unit) = unit {
            REGISTRY.with(|k| {
                if k.units.len() < MAX_KEYS || k.units.contains_key(key.as_str()) {
                    k.units.insert(key.as_str().to_owned(), unit);
                }
            });
        }
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match cached(&COUNTERS, key, Keys::counters, CounterCell::default) {
            Some(c) => Counter::from_arc(c),
            None => Counter::from_arc(Arc::new(Refused)),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match cached(&GAUGES, key, Keys::gauges, GaugeCell::new) {
            Some(g) => Gauge::from_arc(g),
            None => Gauge::from_arc(Arc::new(Refused)),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> metrics::Histogram {
        match cached(&HISTOGRAMS, key, Keys::histograms, Histogram::new) {
            Some(h) => metrics::Histogram::from_arc(h),
            None => metrics::Histogram::from_arc(Arc::new(Refused)),
        }
    }
}

/// `name{k="v",...}`: a key as one count name (a label's `"` and `\` escaped
/// with `\`, as Prometheus writes them).
pub(crate) fn folded(key: &Key) -> String {
    let mut s = key.name().to_owned();
    let mut labels = key.labels().peekable();
    if labels.peek().is_some() {
        s.push('{');
        for (i, l) in labels.enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(l.key());
            s.push_str("=\"");
            for c in l.value().chars() {
                if c == '"' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
        }
        s.push('}');
    }
    s
}

/// A count's `i64`: rounded, saturating (NaN as 0).
fn to_i64(v: f64) -> i64 {
    v.round() as i64
}

struct Source;

impl ExtraSource for Source {
    fn snapshot(&self) -> ExtraSnapshot {
        REGISTRY.with(|k| {
            let (mut nan, mut inf) = (0, 0);
            let mut histograms: Vec<_> = k
                .histograms
                .iter()
                .map(|(key, h)| {
                    let (n, i) = h.refused();
                    nan += n;
                    inf += i;
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().into()))
                        .collect();
                    let unit = k.units.get(key.name()).map(|u| u.as_str().to_owned());
                    h.entry(key.name().to_owned(), labels, unit)
                })
                .collect();
            histograms.sort_by_cached_key(|h| {
                (
                    h.name.clone(),
                    serde_json::Value::Object(h.labels.clone()).to_string(),
                )
            });
            let mut counts: Vec<Count> = k
                .counters
                .iter()
                .map(|(key, c)| {
                    let total = c.total.load(Ordering::Relaxed).min(i64::MAX as u64) as i64;
                    Count {
                        name: folded(key),
                        last: total,
                        min: (c.first.load(Ordering::Relaxed).min(i64::MAX as u64) as i64)
                            .min(total),
                        max: total,
                        observations: c.observations.load(Ordering::Relaxed),
                    }
                })
                .chain(k.gauges.iter().map(|(key, g)| {
                    let n = g.observations.load(Ordering::Relaxed);
                    let get = |a: &AtomicU64| to_i64(f64::from_bits(a.load(Ordering::Relaxed)));
                    let last = get(&g.value);
                    Count {
                        name: folded(key),
                        last,
                        min: if n > 0 { get(&g.min) } else { last },
                        max: if n > 0 { get(&g.max) } else { last },
                        observations: n,
                    }
                }))
                .collect();
            counts.sort_by(|a, b| a.name.cmp(&b.name));
            ExtraSnapshot {
                histograms,
                counts,
                facade: Some(MetricsFacade {
                    keys: k.len() as u64,
                    max_keys: MAX_KEYS as u64,
                    keys_refused: REGISTRY.refused.load(Ordering::Relaxed),
                    values_dropped: REGISTRY.dropped.load(Ordering::Relaxed),
                    nan_values: nan,
                    infinite_values: inf,
                }),
            }
        })
    }
}
