//! Names: every (kind, module, name) gets a small id once, and records carry
//! only the id. Call sites of the macros keep their id in a `static`
//! [`Site`]; `&'static str` names go through a small per-thread cache keyed by
//! address; dynamic names through a per-thread table keyed by content
//! (`dynamic.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

mod dynamic;
pub(crate) use dynamic::{count_id, dynamic_id};

/// The highest id a site can have: below the marks a ring record keeps in
/// its `site` (`local::ring::Record::TALLIED`, `EXTENSION`, `RESOURCES`).
pub(crate) const MAX_SITE: u32 = (1 << 31) - 3;

/// What a site times or counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Phase,
    Function,
    Count,
}

/// A name as the collector and the reports see it.
#[derive(Clone, Debug)]
pub(crate) struct SiteInfo {
    pub(crate) kind: Kind,
    pub(crate) module: Arc<str>,
    pub(crate) name: Arc<str>,
}

/// `Config::max_names` by default: distinct names (of all kinds, over the
/// process's life) before new ones are refused.
pub(crate) const DEFAULT_MAX_NAMES: u32 = 1 << 18;
/// The most `Config::max_names` takes: far below [`MAX_SITE`], and already
/// tens of GiB of aggregates.
pub(crate) const MAX_NAMES_LIMIT: u32 = 1 << 24;
/// The module of the over-cap entries (`runmetrics_format::Names::OVER_CAP`).
pub(crate) const OVER_CAP_MODULE: &str = "runmetrics";

struct Registry {
    ids: HashMap<(Kind, Arc<str>, Arc<str>), u32>,
    /// Index `id - 1`.
    sites: Vec<SiteInfo>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static MAX_NAMES: AtomicU32 = AtomicU32::new(DEFAULT_MAX_NAMES);
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Per [`Kind`], the id of its over-cap entry (0 = none yet).
static OVER_CAP: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

/// Sets the process's cap on distinct names (`Config::max_names`, already
/// checked to be in `1..=MAX_NAMES_LIMIT`).
pub(crate) fn set_max_names(names: u32) {
    MAX_NAMES.store(names.clamp(1, MAX_NAMES_LIMIT), Ordering::Relaxed);
}

/// Distinct names so far (not counting the over-cap entries), the cap, and
/// the lookups of a new name it refused.
pub(crate) fn name_figures() -> (u64, u64, u64) {
    let guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let sites = guard.as_ref().map_or(0, |r| r.sites.len());
    let over = OVER_CAP
        .iter()
        .filter(|id| id.load(Ordering::Relaxed) != 0)
        .count();
    (
        (sites - over) as u64,
        u64::from(MAX_NAMES.load(Ordering::Relaxed)),
        REFUSED.load(Ordering::Relaxed),
    )
}

/// Whether `id` is `kind`'s over-cap entry: such an id is never cached per
/// thread, so the refused names cost no memory.
fn over_cap(kind: Kind, id: u32) -> bool {
    OVER_CAP[kind as usize].load(Ordering::Relaxed) == id
}

/// The id of `(kind, module, name)`, made on first use. Ids start at 1.
/// Past `max_names` distinct names, a new name gets its kind's over-cap
/// entry (its regions are not lost, only pooled) and is counted refused.
pub(crate) fn intern(kind: Kind, module: &str, name: &str) -> u32 {
    let mut guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let registry = guard.get_or_insert_with(|| Registry {
        ids: HashMap::new(),
        sites: Vec::new(),
    });
    let key = (kind, Arc::<str>::from(module), Arc::<str>::from(name));
    if let Some(&id) = registry.ids.get(&key) {
        return id;
    }
    let over = OVER_CAP
        .iter()
        .filter(|id| id.load(Ordering::Relaxed) != 0)
        .count();
    if registry.sites.len() - over >= MAX_NAMES.load(Ordering::Relaxed) as usize {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        let slot = &OVER_CAP[kind as usize];
        return match slot.load(Ordering::Relaxed) {
            0 => {
                let key = (
                    kind,
                    Arc::<str>::from(OVER_CAP_MODULE),
                    Arc::<str>::from(runmetrics_format::Names::OVER_CAP),
                );
                let id = add(registry, key);
                slot.store(id, Ordering::Relaxed);
                id
            }
            id => id,
        };
    }
    add(registry, key)
}

fn add(registry: &mut Registry, key: (Kind, Arc<str>, Arc<str>)) -> u32 {
    // At most MAX_NAMES_LIMIT + 3 sites, far below MAX_SITE.
    let id = (registry.sites.len() + 1) as u32;
    debug_assert!(id <= MAX_SITE);
    registry.sites.push(SiteInfo {
        kind: key.0,
        module: key.1.clone(),
        name: key.2.clone(),
    });
    registry.ids.insert(key, id);
    id
}

/// Appends to `into` every site with an id above `into.len()`.
pub(crate) fn copy_new_sites(into: &mut Vec<SiteInfo>) {
    let guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(registry) = guard.as_ref() {
        into.extend_from_slice(&registry.sites[into.len().min(registry.sites.len())..]);
    }
}

/// The site of `id` in `sites` (what [`copy_new_sites`] fills: id 1 first);
/// `None` for 0 and for an id not copied yet.
pub(crate) fn by_id(sites: &[SiteInfo], id: usize) -> Option<&SiteInfo> {
    sites.get(id.checked_sub(1)?)
}

/// One call site of [`phase!`](crate::phase) or [`#[measure]`](crate::measure):
/// its names, and its id once it has one.
///
/// Made by the macros as a `static`; not meant to be written by hand.
#[doc(hidden)]
#[derive(Debug)]
pub struct Site {
    kind: Kind,
    name: &'static str,
    module: &'static str,
    id: AtomicU32,
}

impl Site {
    /// A phase call site.
    pub const fn phase(name: &'static str, module: &'static str) -> Site {
        Site {
            kind: Kind::Phase,
            name,
            module,
            id: AtomicU32::new(0),
        }
    }

    /// A function call site.
    pub const fn function(name: &'static str, module: &'static str) -> Site {
        Site {
            kind: Kind::Function,
            name,
            module,
            id: AtomicU32::new(0),
        }
    }

    #[inline]
    pub(crate) fn id(&self) -> u32 {
        match self.id.load(Ordering::Relaxed) {
            0 => self.register(),
            id => id,
        }
    }

    #[cold]
    fn register(&self) -> u32 {
        let id = intern(self.kind, self.module, self.name);
        self.id.store(id, Ordering::Relaxed);
        id
    }
}

/// One entry of the per-thread cache for `&'static str` names: the
/// addresses of the name and module, their [`shape`], and the id. An unused
/// entry's `name` is 0, which no `&str`'s address is, so it matches nothing.
#[derive(Clone, Copy)]
struct Entry {
    name: usize,
    module: usize,
    shape: u32,
    id: u32,
}

const CACHE_SIZE: usize = 64;

/// The per-thread overflow map's hasher: foldhash, several times faster than std's
/// SipHash on short names, and seeded per process.
type Fast = foldhash::fast::RandomState;

thread_local! {
    static STATIC_NAMES: [Cell<Entry>; CACHE_SIZE] = const {
        [const { Cell::new(Entry { name: 0, module: 0, shape: 0, id: 0 }) }; CACHE_SIZE]
    };
    /// Behind the direct-mapped cache: every `'static` name this thread has
    /// used, so two names sharing a cache slot never take the registry lock.
    static STATIC_OVERFLOW: RefCell<HashMap<StaticKey, u32, Fast>> = RefCell::new(HashMap::default());
}

type StaticKey = ((usize, usize), (usize, usize), Kind);

fn raw(s: &'static str) -> (usize, usize) {
    (s.as_ptr() as usize, s.len())
}

/// The lengths of a name and a module and the kind, in 32 bits (a
/// constant at a call site with literal names, compared as an immediate):
/// with the two addresses, what a cache entry compares. `None` for a text
/// of [`LONG_NAME`] bytes or more, which is never cached (its lookups take
/// the per-thread map: no lock, just slower).
#[inline(always)]
fn shape(kind: Kind, name: &str, module: &str) -> Option<u32> {
    (name.len() < LONG_NAME && module.len() < LONG_NAME)
        .then_some((name.len() as u32) << 17 | (module.len() as u32) << 2 | kind as u32)
}

/// The shortest name or module [`shape`] leaves out of the cache: 15 bits
/// of length each, beside the kind's 2.
const LONG_NAME: usize = 1 << 15;
const _: () = assert!(Kind::Count as u32 <= 3);

/// The id of a name given as `&'static str`: a `'static` string's address and
/// length identify it for the life of the process, so the fast path compares
/// three words (the addresses, and the lengths with the kind, constants at a
/// call site with literal names) and never hashes the text.
#[inline]
pub(crate) fn static_id(kind: Kind, name: &'static str, module: &'static str) -> u32 {
    let key = (raw(name), raw(module), kind);
    let Some(shape) = shape(kind, name, module) else {
        return static_miss(key, move || intern(kind, module, name));
    };
    let (n, m) = (key.0 .0, key.1 .0);
    let slot = ((n >> 3) ^ (m >> 7) ^ (kind as usize)) % CACHE_SIZE;
    STATIC_NAMES
        .try_with(|cache| {
            let e = cache[slot].get();
            if e.name == n && e.module == m && e.shape == shape {
                return e.id;
            }
            // `move`: the kind is not stored for the closure at every call.
            let id = static_miss(key, move || intern(kind, module, name));
            if !over_cap(kind, id) {
                cache[slot].set(Entry {
                    name: n,
                    module: m,
                    shape,
                    id,
                });
            }
            id
        })
        .unwrap_or_else(|_| intern(kind, module, name))
}

/// A miss in the direct-mapped cache: a hash lookup on this thread's map
/// (no lock, no allocation once the name is known), the registry only the
/// first time.
#[cold]
fn static_miss(key: StaticKey, intern: impl Fn() -> u32) -> u32 {
    STATIC_OVERFLOW
        .try_with(|map| {
            if let Some(&id) = map.borrow().get(&key) {
                return id;
            }
            let id = intern();
            if !over_cap(key.2, id) {
                map.borrow_mut().insert(key, id);
            }
            id
        })
        .unwrap_or_else(|_| intern())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_names_same_id_across_paths() {
        let a = static_id(Kind::Phase, "site_test_a", "m");
        let b = dynamic_id(Kind::Phase, &String::from("site_test_a"), "m", |_| {});
        static SITE: Site = Site::phase("site_test_a", "m");
        assert_eq!(a, b);
        assert_eq!(a, SITE.id());
    }

    #[test]
    fn kinds_and_modules_are_distinct() {
        let p = static_id(Kind::Phase, "site_test_b", "m");
        let f = static_id(Kind::Function, "site_test_b", "m");
        let q = static_id(Kind::Phase, "site_test_b", "other");
        assert_ne!(p, f);
        assert_ne!(p, q);
        assert_eq!(static_id(Kind::Function, "site_test_b", "m"), f);
    }

    #[test]
    fn names_at_one_address_differ_by_length() {
        // One address, three names (two of them prefixes), in both places;
        // the oracle is `intern`, by text.
        const TEXT: &str = "site_test_cde";
        let id = |name: &'static str, module: &'static str| {
            let id = static_id(Kind::Phase, name, module);
            assert_eq!(id, intern(Kind::Phase, module, name), "{name} {module}");
            id
        };
        for _ in 0..2 {
            let ids = [
                id(TEXT, "m"),
                id(&TEXT[..12], "m"),
                id(&TEXT[..11], "m"),
                id("m", TEXT),
                id("m", &TEXT[..12]),
            ];
            let mut distinct = ids.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        }
        // The same text at another address: the same name.
        let copy: &'static str = String::from(TEXT).leak();
        assert_eq!(id(copy, "m"), id(TEXT, "m"));
        // Names too long for the cache: found all the same, each its own.
        let long: &'static str = "x".repeat(LONG_NAME + 1).leak();
        for _ in 0..2 {
            assert_ne!(id(long, "m"), id(&long[..LONG_NAME], "m"));
            assert_ne!(id("m", long), id(long, "m"));
        }
    }
}
