//! Ids of names known only at run time (`PhaseTimer::dynamic`,
//! `Recorder::phase_dynamic`, `observe_counts`), per thread, by their text:
//! a `&str` need not be `'static`, so the same address can hold another
//! name later (a reused buffer), and the same name can come from many
//! addresses (`format!`); both find their own id.
//!
//! Two levels, both keyed by one hash of the texts (kind, module, name):
//! a direct-mapped cache of [`CACHE`] entries for names and modules of at
//! most [`SHORT`] bytes, whose entries hold the texts themselves as two
//! words each (a const thread-local of plain cells: a hit is a hash, one
//! load and a few compares), and behind it one open-addressed table of
//! every name the thread has used, compared byte by byte past [`SHORT`].
//! A name's table entry is made the first time this thread sees it (the
//! only allocation, with the table's doubling at half full); over-cap names
//! are kept in neither (`super::over_cap`), so refused names cost no memory.

use std::cell::{Cell, RefCell};

use super::{intern, over_cap, Kind};

/// Slots of a thread's table at its first dynamic name (a power of two).
const FIRST_SLOTS: usize = 64;

/// Texts of at most this many bytes are wholly in their [`Words`].
const SHORT: usize = 16;

/// Entries of the direct-mapped cache (a power of two).
const CACHE: usize = 256;

/// From this many names in a thread's table, a name not in the cache is
/// one of more than its core keeps the counters of close by (a site's are
/// about five lines: 512 names' are three times a 48 KiB first-level
/// cache), so [`dynamic_id`] tells its caller to fetch them early.
const MANY_NAMES: usize = 512;

/// A cache entry: a name and module of at most [`SHORT`] bytes each, as
/// their words, with their kind and id.
#[derive(Clone, Copy)]
struct Cached {
    name: (u64, u64),
    module: (u64, u64),
    /// The lengths; `u8::MAX` (no short text has it) when empty.
    name_len: u8,
    module_len: u8,
    kind: Kind,
    id: u32,
}

impl Cached {
    const EMPTY: Cached = Cached {
        name: (0, 0),
        module: (0, 0),
        name_len: u8::MAX,
        module_len: 0,
        kind: Kind::Phase,
        id: 0,
    };
}

/// A text as the table compares it: its length and two words of it. Up
/// to [`SHORT`] bytes the words hold every byte (two overlapping loads of
/// 8, or of 4, or the first, middle and last byte), so equal `Words` are
/// equal texts and a lookup compares no bytes; a longer text's words are a
/// hash of it, and its bytes are compared too.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Words {
    lo: u64,
    hi: u64,
    len: usize,
}

/// One name this thread has used.
struct Known {
    /// `key_hash` of the three: kept for the table's doubling.
    hash: u64,
    name: Words,
    module: Words,
    kind: Kind,
    id: u32,
    /// The texts over [`SHORT`] bytes (else empty: no allocation).
    long_name: Box<str>,
    long_module: Box<str>,
}

impl Known {
    #[inline(always)]
    fn is(&self, kind: Kind, name: &Key<'_>, module: &Key<'_>) -> bool {
        self.name == name.words
            && self.module == module.words
            && self.kind == kind
            && (name.words.len <= SHORT || *self.long_name == *name.text)
            && (module.words.len <= SHORT || *self.long_module == *module.text)
    }
}

/// A text being looked up: its words and the text itself.
struct Key<'a> {
    words: Words,
    text: &'a str,
}

impl Key<'_> {
    #[inline(always)]
    fn new(text: &str) -> Key<'_> {
        Key {
            words: words(text.as_bytes()),
            text,
        }
    }

    /// The text to keep: none up to [`SHORT`] bytes.
    fn long(&self) -> Box<str> {
        if self.words.len <= SHORT {
            Box::default()
        } else {
            self.text.into()
        }
    }
}

/// A slot of the table: the high half of an entry's hash, and its index in
/// `Table::known` plus one (0: empty).
#[derive(Clone, Copy, Default)]
struct Slot {
    tag: u32,
    entry: u32,
}

struct Table {
    /// A power of two long, at most half full, so every probe ends.
    slots: Box<[Slot]>,
    known: Vec<Known>,
}

thread_local! {
    static CACHED: [Cell<Cached>; CACHE] = const { [const { Cell::new(Cached::EMPTY) }; CACHE] };
    static TABLE: RefCell<Table> = RefCell::new(Table {
        slots: vec![Slot::default(); FIRST_SLOTS].into_boxed_slice(),
        known: Vec::new(),
    });
}

impl Table {
    /// The id of `(kind, module, name)` if this thread has it.
    #[inline(always)]
    fn find(&self, hash: u64, kind: Kind, name: &Key<'_>, module: &Key<'_>) -> Option<u32> {
        let mask = self.slots.len().wrapping_sub(1);
        let tag = (hash >> 32) as u32;
        let mut i = hash as usize & mask;
        loop {
            let slot = *self.slots.get(i)?;
            if slot.entry == 0 {
                return None;
            }
            if slot.tag == tag {
                let k = self.known.get(slot.entry as usize - 1)?;
                if k.is(kind, name, module) {
                    return Some(k.id);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Places entry `entry` (an index into `known`) of `hash`.
    fn place(slots: &mut [Slot], hash: u64, entry: usize) {
        let mask = slots.len() - 1;
        let mut i = hash as usize & mask;
        while slots[i].entry != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = Slot {
            tag: (hash >> 32) as u32,
            // At most `MAX_NAMES_LIMIT` + 3 entries per kind: fits.
            entry: (entry + 1) as u32,
        };
    }

    fn insert(&mut self, known: Known) {
        if (self.known.len() + 1) * 2 > self.slots.len() {
            let mut slots = vec![Slot::default(); self.slots.len() * 2].into_boxed_slice();
            for (i, k) in self.known.iter().enumerate() {
                Table::place(&mut slots, k.hash, i);
            }
            self.slots = slots;
        }
        Table::place(&mut self.slots, known.hash, self.known.len());
        self.known.push(known);
    }
}

/// The id of a name known only at run time: looked up by its text in this
/// thread's table, made (the registry's lock, an allocation) only the first
/// time this thread sees it. Calls `uncached` with the id when the name was
/// not in the thread's cache and the thread uses [`MANY_NAMES`] or more:
/// it is then one of many names taken in turn, and what its id leads to is
/// likely far from the core too. Other lookups pay nothing for it.
#[inline]
pub(crate) fn dynamic_id(kind: Kind, name: &str, module: &str, uncached: impl FnOnce(u32)) -> u32 {
    lookup(kind, name, module, uncached)
}

/// [`dynamic_id`] of a count name (module `""`, so its words and their
/// share of the hash are constants).
#[inline]
pub(crate) fn count_id(name: &str) -> u32 {
    lookup(Kind::Count, name, "", |_| {})
}

#[inline(always)]
fn lookup(kind: Kind, name: &str, module: &str, uncached: impl FnOnce(u32)) -> u32 {
    let (name, module) = (Key::new(name), Key::new(module));
    let hash = key_hash(kind, name.words, module.words);
    let short = name.words.len <= SHORT && module.words.len <= SHORT;
    let entry = hash as usize % CACHE;
    if short {
        let hit = CACHED.try_with(|cache| {
            let c = cache[entry].get();
            let same = c.name == (name.words.lo, name.words.hi)
                && c.module == (module.words.lo, module.words.hi)
                && usize::from(c.name_len) == name.words.len
                && usize::from(c.module_len) == module.words.len
                && c.kind == kind;
            same.then_some(c.id)
        });
        if let Ok(Some(id)) = hit {
            return id;
        }
    }
    let (id, many) = TABLE
        .try_with(|table| {
            let Ok(mut table) = table.try_borrow_mut() else {
                return (intern(kind, module.text, name.text), false);
            };
            let many = table.known.len() >= MANY_NAMES;
            match table.find(hash, kind, &name, &module) {
                Some(id) => (id, many),
                None => (learn(&mut table, hash, kind, &name, &module), many),
            }
        })
        .unwrap_or_else(|_| (intern(kind, module.text, name.text), false));
    if short && !over_cap(kind, id) {
        let _ = CACHED.try_with(|cache| {
            cache[entry].set(Cached {
                name: (name.words.lo, name.words.hi),
                module: (module.words.lo, module.words.hi),
                // At most `SHORT` each.
                name_len: name.words.len as u8,
                module_len: module.words.len as u8,
                kind,
                id,
            })
        });
    }
    if many {
        uncached(id);
    }
    id
}

/// A name new to this thread: its id from the registry, kept unless over
/// the cap.
#[cold]
#[inline(never)]
fn learn(table: &mut Table, hash: u64, kind: Kind, name: &Key<'_>, module: &Key<'_>) -> u32 {
    let id = intern(kind, module.text, name.text);
    if !over_cap(kind, id) {
        table.insert(Known {
            hash,
            name: name.words,
            module: module.words,
            kind,
            id,
            long_name: name.long(),
            long_module: module.long(),
        });
    }
    id
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// The 64 × 64 → 128-bit product's halves, xored (foldhash's mixer).
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

#[inline(always)]
fn half(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(
        b[at..at + 4].try_into().unwrap_or_default(),
    ))
}

/// `b`'s [`Words`].
#[inline(always)]
fn words(b: &[u8]) -> Words {
    let len = b.len();
    let (lo, hi) = if len > SHORT {
        long_words(b)
    } else if len >= 8 {
        (word(b, 0), word(b, len - 8))
    } else if len >= 4 {
        (half(b, 0), half(b, len - 4))
    } else if len > 0 {
        (
            u64::from(b[0]) << 16 | u64::from(b[len / 2]) << 8 | u64::from(b[len - 1]),
            0,
        )
    } else {
        (0, 0)
    };
    Words { lo, hi, len }
}

/// Over [`SHORT`] bytes: every 16 folded in, the last 16 given back.
#[inline(never)]
fn long_words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    let mut acc = 0u64;
    let mut at = 0;
    while at + 16 < n {
        acc = fold(word(b, at) ^ acc ^ K1, word(b, at + 8) ^ K2);
        at += 16;
    }
    (word(b, n - 16) ^ acc, word(b, n - 8))
}

/// The table's key: name, module and kind, in one folded multiply (the
/// module's words only mixed in, a constant for `""`). Not keyed: a hash
/// that collides costs a probe, never a wrong id (`Known::is` compares the
/// texts).
#[inline(always)]
fn key_hash(kind: Kind, name: Words, module: Words) -> u64 {
    let m = module.lo.wrapping_mul(K1)
        ^ module.hi.rotate_left(29)
        ^ (module.len as u64).wrapping_mul(K2);
    fold(
        name.lo ^ K1 ^ kind as u64,
        name.hi ^ K2 ^ (name.len as u64).rotate_left(40) ^ m,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_takes_every_byte() {
        // Each length from 0 to 40, each byte changed in turn: another hash
        // (a collision would cost only a probe, but would show a byte left out).
        for n in 0..=40usize {
            let base: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            let w = words(&base);
            for i in 0..n {
                let mut other = base.clone();
                other[i] ^= 0x20;
                let o = words(&other);
                let h = |w| key_hash(Kind::Count, w, words(b""));
                assert_ne!(h(o), h(w), "length {n}, byte {i}");
                if n <= SHORT {
                    assert!(o != w, "length {n}, byte {i}: the words hold every byte");
                }
            }
            if n > 0 {
                let shorter = words(&base[..n - 1]);
                let h = |w| key_hash(Kind::Count, w, words(b""));
                assert_ne!(h(shorter), h(w), "length {n} against {}", n - 1);
            }
        }
    }

    #[test]
    fn a_table_finds_what_it_holds_through_growth_and_collisions() {
        let mut t = Table {
            slots: vec![Slot::default(); FIRST_SLOTS].into_boxed_slice(),
            known: Vec::new(),
        };
        // Every entry with one of four hashes (and tags): probing and the
        // texts tell them apart. Long names alike in their words too.
        let names: Vec<String> = (0..500)
            .map(|i| match i % 2 {
                0 => format!("n{i}"),
                _ => format!("a_long_name_{i:04}_with_the_same_ends"),
            })
            .collect();
        let (none, m) = (Key::new(""), Key::new("m"));
        for (i, name) in names.iter().enumerate() {
            let (hash, name) = ((i % 4) as u64, Key::new(name));
            assert_eq!(t.find(hash, Kind::Count, &name, &none), None);
            t.insert(Known {
                hash,
                name: name.words,
                module: none.words,
                kind: Kind::Count,
                id: i as u32 + 1,
                long_name: name.long(),
                long_module: none.long(),
            });
        }
        assert!(t.slots.len() >= 1000);
        for (i, name) in names.iter().enumerate() {
            let (hash, name) = ((i % 4) as u64, Key::new(name));
            assert_eq!(t.find(hash, Kind::Count, &name, &none), Some(i as u32 + 1));
            assert_eq!(
                t.find(hash, Kind::Phase, &name, &none),
                None,
                "another kind"
            );
            assert_eq!(t.find(hash, Kind::Count, &name, &m), None, "another module");
        }
        // A long name whose words are another's: found only by its bytes.
        let long = Key::new(&names[1]);
        let mut forged = Key::new("a_long_name_0001_with_the_same_endz");
        forged.words = long.words;
        assert_eq!(t.find(1, Kind::Count, &forged, &none), None);
    }
}
