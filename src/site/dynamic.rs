//! Ids of names known only at run time (`PhaseTimer::dynamic`,
//! `Recorder::phase_dynamic`, `observe_counts`), per thread, by their text:
//! a `&str` need not be `'static`, so the same address can hold another
//! name later (a reused buffer), and the same name can come from many
//! addresses (`format!`); both find their own id.
//!
//! One open-addressed table per thread, keyed by one hash of the texts
//! (kind, module, name). An [`Entry`] is 32 bytes, two to a cache line,
//! and holds all that a lookup compares: the hash's high half, the name's
//! words and length, the kind, the index of its module in the thread's
//! list of modules (few, so their line stays in cache), and the id. So a
//! lookup is a hash, one line (more only when probing crosses one), a few
//! compares and the module's words; only a text over [`SHORT`] bytes is
//! also compared byte by byte, once its words matched. With thousands of
//! live names the cost is the line's miss: the table keeps no second
//! level (a cache in front, an entry behind a slot) whose lines would miss
//! too (BENCHMARKS.md, "Dynamic names by live names").
//!
//! A name's entry is made the first time this thread sees it (the only
//! allocation, with the table's doubling at half full); over-cap names are
//! kept nowhere (`super::over_cap`), so refused names cost no memory.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{intern, over_cap, Kind};

/// Entries of a thread's table at its first dynamic name (a power of two).
const FIRST_SLOTS: usize = 64;

/// Texts of at most this many bytes are wholly in their [`Words`].
const SHORT: usize = 16;

/// A text as the table compares it: its length and two words of it. Up
/// to [`SHORT`] bytes the words hold every byte (two overlapping loads of
/// 8, or of 4, or the first, middle and last byte), so equal `Words` are
/// equal texts and a lookup compares no bytes; a longer text's words are a
/// hash of it, and its bytes are compared too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Words {
    lo: u64,
    hi: u64,
    len: usize,
}

/// One name this thread has used, or an empty slot (`id` 0: ids start at
/// 1). Aligned to its size, so no entry straddles a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Entry {
    /// The high half of the key's hash.
    tag: u32,
    id: u32,
    /// The name's [`Words`]' two words.
    lo: u64,
    hi: u64,
    /// The name's length up to [`SHORT`]; past it, `SHORT + 1` plus the
    /// index of its text in [`Table::long`].
    len: u32,
    /// The module's index in [`Table::modules`] times 4, plus the kind.
    module: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32);

impl Entry {
    const EMPTY: Entry = Entry {
        tag: 0,
        id: 0,
        lo: 0,
        hi: 0,
        len: 0,
        module: 0,
    };
}

/// A module this thread has used: its words, and its text when over
/// [`SHORT`] bytes (else empty: no allocation).
struct Module {
    words: Words,
    long: Box<str>,
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

    fn is_short(&self) -> bool {
        self.words.len <= SHORT
    }
}

/// How a table's hash is made: [`key_hash`], or a worse one in tests.
type Hasher = fn(Kind, Words, Words) -> u64;

struct Table {
    /// A power of two long (empty before the first name), at most half
    /// full, so every probe ends.
    entries: Vec<Entry>,
    used: usize,
    /// Index: an entry's `module / 4`.
    modules: Vec<Module>,
    /// The index of each module in `modules`, by its text (learning only).
    module_index: HashMap<Box<str>, u32, foldhash::fast::FixedState>,
    /// The texts of names over [`SHORT`] bytes.
    long: Vec<Box<str>>,
}

thread_local! {
    static TABLE: RefCell<Table> = const { RefCell::new(Table::new()) };
}

/// The kind of an entry's low two `module` bits.
fn kind_of(bits: u32) -> Kind {
    match bits {
        0 => Kind::Phase,
        1 => Kind::Function,
        _ => Kind::Count,
    }
}

impl Table {
    const fn new() -> Table {
        Table {
            entries: Vec::new(),
            used: 0,
            modules: Vec::new(),
            module_index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0)),
            long: Vec::new(),
        }
    }

    /// The id of `(kind, module, name)` if this thread has it.
    #[inline(always)]
    fn find(&self, hash: u64, kind: Kind, name: &Key<'_>, module: &Key<'_>) -> Option<u32> {
        let mask = self.entries.len().wrapping_sub(1);
        let tag = (hash >> 32) as u32;
        let mut i = hash as usize & mask;
        loop {
            let e = self.entries.get(i)?;
            if e.id == 0 {
                return None;
            }
            if e.tag == tag
                && e.lo == name.words.lo
                && e.hi == name.words.hi
                && e.module & 3 == kind as u32
                && self.name_is(e, name)
                && self.module_is(e, module)
            {
                return Some(e.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `e`'s name, whose words are `name`'s, is `name`.
    #[inline(always)]
    fn name_is(&self, e: &Entry, name: &Key<'_>) -> bool {
        if name.is_short() {
            return e.len as usize == name.words.len;
        }
        (e.len as usize)
            .checked_sub(SHORT + 1)
            .and_then(|i| self.long.get(i))
            .is_some_and(|text| **text == *name.text)
    }

    #[inline(always)]
    fn module_is(&self, e: &Entry, module: &Key<'_>) -> bool {
        self.modules.get((e.module >> 2) as usize).is_some_and(|m| {
            m.words == module.words && (module.is_short() || *m.long == *module.text)
        })
    }

    /// Keeps `id` for `(kind, module, name)` of `hash` (made by `hasher`,
    /// which also places the entries again when the table doubles).
    fn add(
        &mut self,
        hash: u64,
        kind: Kind,
        name: &Key<'_>,
        module: &Key<'_>,
        id: u32,
        hasher: Hasher,
    ) {
        let Some(module) = self.module_of(module) else {
            return;
        };
        let len = if name.is_short() {
            name.words.len
        } else {
            self.long.push(name.text.into());
            SHORT + self.long.len()
        };
        // At most `MAX_NAMES_LIMIT` + 3 names and modules per kind: both fit.
        let (Ok(len), Ok(module)) = (u32::try_from(len), u32::try_from(module << 2)) else {
            return;
        };
        if (self.used + 1) * 2 > self.entries.len() {
            self.double(hasher);
        }
        let entry = Entry {
            tag: (hash >> 32) as u32,
            id,
            lo: name.words.lo,
            hi: name.words.hi,
            len,
            module: module | kind as u32,
        };
        Table::place(&mut self.entries, hash, entry);
        self.used += 1;
    }

    /// The index of `module` in `modules`, added unless there.
    fn module_of(&mut self, module: &Key<'_>) -> Option<usize> {
        if let Some(&i) = self.module_index.get(module.text) {
            return Some(i as usize);
        }
        let i = u32::try_from(self.modules.len())
            .ok()
            .filter(|&i| i < 1 << 30)?;
        self.modules.push(Module {
            words: module.words,
            long: if module.is_short() {
                Box::default()
            } else {
                module.text.into()
            },
        });
        self.module_index.insert(module.text.into(), i);
        Some(i as usize)
    }

    /// Twice the entries (at least [`FIRST_SLOTS`]), each placed again by
    /// its hash, remade from what it keeps.
    fn double(&mut self, hasher: Hasher) {
        let size = (self.entries.len() * 2).max(FIRST_SLOTS);
        let old = std::mem::replace(&mut self.entries, vec![Entry::EMPTY; size]);
        for e in old.iter().filter(|e| e.id != 0) {
            let len = match (e.len as usize).checked_sub(SHORT + 1) {
                None => Some(e.len as usize),
                Some(i) => self.long.get(i).map(|t| t.len()),
            };
            let module = self.modules.get((e.module >> 2) as usize);
            if let (Some(len), Some(m)) = (len, module) {
                let name = Words {
                    lo: e.lo,
                    hi: e.hi,
                    len,
                };
                let hash = hasher(kind_of(e.module & 3), name, m.words);
                Table::place(&mut self.entries, hash, *e);
            }
        }
    }

    /// Places `entry` of `hash` in the first empty slot from its own.
    fn place(entries: &mut [Entry], hash: u64, entry: Entry) {
        let mask = entries.len() - 1;
        let mut i = hash as usize & mask;
        while entries[i].id != 0 {
            i = (i + 1) & mask;
        }
        entries[i] = entry;
    }
}

/// The id of a name known only at run time: looked up by its text in this
/// thread's table, made (the registry's lock, an allocation) only the first
/// time this thread sees it.
#[inline]
pub(crate) fn dynamic_id(kind: Kind, name: &str, module: &str) -> u32 {
    lookup(kind, name, module)
}

/// [`dynamic_id`] of a count name (module `""`, so its words and their
/// share of the hash are constants).
#[inline]
pub(crate) fn count_id(name: &str) -> u32 {
    lookup(Kind::Count, name, "")
}

#[inline(always)]
fn lookup(kind: Kind, name: &str, module: &str) -> u32 {
    let (name, module) = (Key::new(name), Key::new(module));
    let hash = key_hash(kind, name.words, module.words);
    TABLE
        .try_with(|table| {
            let Ok(mut table) = table.try_borrow_mut() else {
                return intern(kind, module.text, name.text);
            };
            match table.find(hash, kind, &name, &module) {
                Some(id) => id,
                None => learn(&mut table, hash, kind, &name, &module),
            }
        })
        .unwrap_or_else(|_| intern(kind, module.text, name.text))
}

/// A name new to this thread: its id from the registry, kept unless over
/// the cap.
#[cold]
#[inline(never)]
fn learn(table: &mut Table, hash: u64, kind: Kind, name: &Key<'_>, module: &Key<'_>) -> u32 {
    let id = intern(kind, module.text, name.text);
    if !over_cap(kind, id) {
        table.add(hash, kind, name, module, id, key_hash);
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
/// that collides costs a probe, never a wrong id (the words, the kind, the
/// module and the long texts are compared).
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

    /// Names short and long, alike in their words, over modules short,
    /// long and empty, of every kind: `n` keys.
    fn keys(n: usize) -> Vec<(Kind, String, String)> {
        let modules = [
            "",
            "m",
            "a::long::module::path::here",
            "a::long::module::path::herf",
        ];
        (0..n)
            .map(|i| {
                let name = match i % 3 {
                    0 => format!("n{i}"),
                    1 => format!("a_long_name_{i:05}_with_the_same_ends"),
                    _ => format!("{i:016}"),
                };
                let kind = [Kind::Phase, Kind::Function, Kind::Count][i % 3 / 2 + i % 2];
                (kind, modules[i / 7 % 4].to_owned(), name)
            })
            .collect()
    }

    /// A table of `keys` under `hasher`, checked against a `HashMap` of the
    /// same keys to the same ids: each found with its own id, through every
    /// doubling, and nothing found under another kind, module or name.
    fn check_against_a_map(hasher: Hasher, n: usize) {
        let mut t = Table::new();
        let mut oracle: HashMap<(Kind, String, String), u32> = HashMap::new();
        let all = keys(n);
        for (i, (kind, module, name)) in all.iter().enumerate() {
            let (k, m) = (Key::new(name), Key::new(module));
            let hash = hasher(*kind, k.words, m.words);
            assert_eq!(
                t.find(hash, *kind, &k, &m),
                None,
                "{name} before it is added"
            );
            let id = i as u32 * 7 + 1;
            t.add(hash, *kind, &k, &m, id, hasher);
            oracle.insert((*kind, module.clone(), name.clone()), id);
        }
        assert!(t.entries.len() >= 2 * n);
        for ((kind, module, name), &id) in &oracle {
            let (k, m) = (Key::new(name), Key::new(module));
            assert_eq!(
                t.find(hasher(*kind, k.words, m.words), *kind, &k, &m),
                Some(id)
            );
            for other in [Kind::Phase, Kind::Function, Kind::Count] {
                let want = oracle.get(&(other, module.clone(), name.clone())).copied();
                let found = t.find(hasher(other, k.words, m.words), other, &k, &m);
                assert_eq!(found, want, "{name} as {other:?}");
            }
            let z = Key::new("zzz");
            let want = oracle.get(&(*kind, "zzz".into(), name.clone())).copied();
            assert_eq!(t.find(hasher(*kind, k.words, z.words), *kind, &k, &z), want);
        }
    }

    #[test]
    fn a_table_agrees_with_a_map_through_doubling() {
        check_against_a_map(key_hash, 3_000);
    }

    #[test]
    fn a_table_agrees_with_a_map_when_every_hash_collides() {
        // Every key in one probe run (the same tag and slot): only the
        // compares tell them apart.
        check_against_a_map(|_, _, _| 0, 600);
        // Four hashes, tags alike.
        check_against_a_map(|_, n, _| n.len as u64 % 4, 600);
    }

    #[test]
    fn a_long_name_whose_words_are_another_s_is_found_only_by_its_bytes() {
        let mut t = Table::new();
        let (none, m) = (Key::new(""), Key::new("a::long::module::path::here"));
        let held = Key::new("a_long_name_0001_with_the_same_ends");
        t.add(1, Kind::Count, &held, &m, 5, key_hash);
        assert_eq!(t.find(1, Kind::Count, &held, &m), Some(5));
        let mut forged = Key::new("a_long_name_0001_with_the_same_endz");
        forged.words = held.words;
        assert_eq!(t.find(1, Kind::Count, &forged, &m), None);
        let mut forged_module = Key::new("a::long::module::path::herf");
        forged_module.words = m.words;
        assert_eq!(t.find(1, Kind::Count, &held, &forged_module), None);
        assert_eq!(t.find(1, Kind::Count, &held, &none), None);
    }

    #[test]
    fn dynamic_ids_are_the_registry_s_through_growth() {
        // The registry is the oracle: one id per (kind, module, name).
        let all = keys(5_000);
        for _ in 0..2 {
            for (kind, module, name) in &all {
                let id = dynamic_id(*kind, &format!("dyn_test_{name}"), module);
                assert_eq!(id, intern(*kind, module, &format!("dyn_test_{name}")));
            }
        }
    }
}
