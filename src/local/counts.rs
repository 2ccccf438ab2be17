//! Per-thread aggregation of `observe_counts` values: each recording thread
//! keeps, per count name, the number of values, the last one and its raw
//! time, and the min and max since the run began, so that count values,
//! like regions, never need room in the ring (only their events go through
//! it) and none is dropped however fast threads observe.
//!
//! The recording thread is the only writer of a name's [`Slot`], with a
//! sequence word around each update (odd while it writes, a seqlock): the
//! collector copies the slot and keeps the copy only if the word was even
//! and the same before and after. A copy it cannot take (the thread was
//! writing it each time it looked) leaves the look unsettled, and the next
//! look takes it. The collector writes only `taken`, the count of values it
//! has accounted for, which the thread never reads.
//!
//! Min and max are per run: each slot remembers the recorder's count epoch
//! (bumped by the collector when a run opens, rotations included) its min
//! and max began in, and the first value of a new epoch starts them again.
//!
//! Places are made lazily by the recording thread, like the tally's: a
//! name's first value allocates its chunk of 32 slots (and, for an id from
//! 65 536 on, a directory of chunks; the table of directories at the
//! thread's first count). std's atomics, also under loom: the model checks
//! the region tally, not this.

use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::ring::Record;

/// Slots per chunk, and chunk pointers per directory.
const CHUNK: usize = 32;
const CHUNKS: usize = 2048;
/// Ids per directory.
const PER_DIRECTORY: usize = CHUNK * CHUNKS;
/// Directories: enough for every id a name can have.
const DIRECTORIES: usize = Record::MAX_SITE as usize / PER_DIRECTORY + 1;

/// One count name's aggregate on one thread.
#[derive(Default)]
struct Slot {
    /// Odd while the thread writes the fields below.
    seq: AtomicU64,
    observations: AtomicU64,
    /// The last value (`i64` bits) and the raw clock when it was observed.
    last: AtomicU64,
    at: AtomicU64,
    /// The least and greatest value (`i64` bits) in `epoch`.
    min: AtomicU64,
    max: AtomicU64,
    epoch: AtomicU64,
    /// Observations the collector has accounted for (collector only).
    taken: AtomicU64,
}

type Chunk = [Slot; CHUNK];
type Directory = [AtomicPtr<Chunk>; CHUNKS];

/// A consistent copy of one name's slot, handed to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountDelta {
    pub(crate) site: u32,
    /// Values observed since the collector's last copy.
    pub(crate) new: u64,
    pub(crate) last: i64,
    /// Raw clock of `last`.
    pub(crate) at: u64,
    pub(crate) min: i64,
    pub(crate) max: i64,
    /// The count epoch `min` and `max` are of.
    pub(crate) epoch: u64,
}

/// One thread's count aggregates for one recorder; owned by its ring.
pub(crate) struct CountTally {
    /// `DIRECTORIES` directory pointers, null until the first count.
    table: AtomicPtr<AtomicPtr<Directory>>,
    /// One more than the greatest directory made: the collector reads no
    /// further.
    directories: AtomicUsize,
}

/// A boxed slice of `n` null pointers from zeroed memory: pages no id uses
/// are never touched.
fn nulls<T>(n: usize) -> Box<[AtomicPtr<T>]> {
    let zeroed = Box::<[AtomicPtr<T>]>::new_zeroed_slice(n);
    // SAFETY: an `AtomicPtr` is a pointer, and all zero bits are null.
    unsafe { zeroed.assume_init() }
}

impl CountTally {
    pub(crate) fn new() -> CountTally {
        CountTally {
            table: AtomicPtr::new(std::ptr::null_mut()),
            directories: AtomicUsize::new(0),
        }
    }

    fn table(&self) -> Option<&[AtomicPtr<Directory>]> {
        let table = self.table.load(Ordering::Acquire);
        // SAFETY: a non-null table is `DIRECTORIES` pointers made once by
        // `make_slot` from a boxed slice, freed only when the tally drops.
        (!table.is_null()).then(|| unsafe { &*std::ptr::slice_from_raw_parts(table, DIRECTORIES) })
    }

    /// The slot of `site`, if made.
    #[inline]
    fn slot(&self, site: u32) -> Option<&Slot> {
        let site = site as usize;
        let directory = self.table()?.get(site / PER_DIRECTORY)?;
        // SAFETY: made once by `make_slot` with `Box::into_raw`, freed only
        // when the tally drops; likewise the chunk.
        let directory = unsafe { directory.load(Ordering::Acquire).as_ref() }?;
        let chunk = directory[site % PER_DIRECTORY / CHUNK].load(Ordering::Acquire);
        // SAFETY: as above.
        let chunk = unsafe { chunk.as_ref() }?;
        Some(&chunk[site % CHUNK])
    }

    /// Makes `site`'s slot (its chunk, directory, the table) unless made.
    /// Only the owning thread may call this; `None` for an id no name has.
    #[cold]
    #[inline(never)]
    fn make_slot(&self, site: u32) -> Option<&Slot> {
        if site > Record::MAX_SITE {
            return None;
        }
        let site_ = site as usize;
        if self.table.load(Ordering::Relaxed).is_null() {
            let table = Box::into_raw(nulls::<Directory>(DIRECTORIES));
            self.table.store(table.cast(), Ordering::Release);
        }
        let table = self.table()?;
        let d = site_ / PER_DIRECTORY;
        if table[d].load(Ordering::Relaxed).is_null() {
            let directory: Box<Directory> = nulls(CHUNKS)
                .try_into()
                .unwrap_or_else(|_| unreachable!("runmetrics: CHUNKS pointers make a directory"));
            table[d].store(Box::into_raw(directory), Ordering::Release);
        }
        if self.directories.load(Ordering::Relaxed) <= d {
            // Release: a collector that reads the length sees the directory.
            self.directories.store(d + 1, Ordering::Release);
        }
        // SAFETY: made just above or earlier by this thread.
        let directory = unsafe { &*table[d].load(Ordering::Relaxed) };
        let chunk = &directory[site_ % PER_DIRECTORY / CHUNK];
        if chunk.load(Ordering::Relaxed).is_null() {
            let new: Box<Chunk> = Box::new(std::array::from_fn(|_| Slot::default()));
            chunk.store(Box::into_raw(new), Ordering::Release);
        }
        self.slot(site)
    }

    /// Counts `value` of `site`, observed at raw time `at`, in the count
    /// epoch `epoch`. Only the owning thread may call this. Never locks;
    /// allocates only a name's first time on this thread; `false` only for
    /// an id no name can have (or none to allocate: never).
    #[inline]
    pub(crate) fn observe(&self, site: u32, value: i64, at: u64, epoch: u64) -> bool {
        let Some(s) = self.slot(site).or_else(|| self.make_slot(site)) else {
            return false;
        };
        let seq = s.seq.load(Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // The odd word before any field: a reader that sees a field's new
        // value sees the odd word after it (its acquire fence).
        fence(Ordering::Release);
        let v = value as u64;
        // One load: only this thread writes it.
        let n = s.observations.load(Ordering::Relaxed);
        if s.epoch.load(Ordering::Relaxed) != epoch || n == 0 {
            s.min.store(v, Ordering::Relaxed);
            s.max.store(v, Ordering::Relaxed);
            s.epoch.store(epoch, Ordering::Relaxed);
        } else {
            if value < s.min.load(Ordering::Relaxed) as i64 {
                s.min.store(v, Ordering::Relaxed);
            }
            if value > s.max.load(Ordering::Relaxed) as i64 {
                s.max.store(v, Ordering::Relaxed);
            }
        }
        s.last.store(v, Ordering::Relaxed);
        s.at.store(at, Ordering::Relaxed);
        s.observations.store(n + 1, Ordering::Relaxed);
        // Release: a reader that sees the even word sees every field.
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
        true
    }

    /// Hands each name with values not yet accounted for to `f`, and marks
    /// them accounted for. Only the collector calls this. Returns whether
    /// every name's slot could be copied (else the next call takes the
    /// rest).
    pub(crate) fn collect(&self, mut f: impl FnMut(&CountDelta)) -> bool {
        let Some(table) = self.table() else {
            return true;
        };
        let mut settled = true;
        let directories = self.directories.load(Ordering::Acquire).min(DIRECTORIES);
        for (d, directory) in table[..directories].iter().enumerate() {
            // SAFETY: as in `CountTally::slot`.
            let Some(directory) = (unsafe { directory.load(Ordering::Acquire).as_ref() }) else {
                continue;
            };
            for (c, chunk) in directory.iter().enumerate() {
                // SAFETY: as in `CountTally::slot`.
                let Some(chunk) = (unsafe { chunk.load(Ordering::Acquire).as_ref() }) else {
                    continue;
                };
                for (i, s) in chunk.iter().enumerate() {
                    let site = (d * PER_DIRECTORY + c * CHUNK + i) as u32;
                    settled &= collect_slot(site, s, &mut f);
                }
            }
        }
        settled
    }
}

/// Tries a few times to copy one slot; whether it was copied (or had
/// nothing new).
fn collect_slot(site: u32, s: &Slot, f: &mut impl FnMut(&CountDelta)) -> bool {
    let taken = s.taken.load(Ordering::Relaxed);
    for _ in 0..8 {
        let before = s.seq.load(Ordering::Acquire);
        let observations = s.observations.load(Ordering::Relaxed);
        if observations == taken {
            return true;
        }
        let delta = CountDelta {
            site,
            new: observations.wrapping_sub(taken),
            last: s.last.load(Ordering::Relaxed) as i64,
            at: s.at.load(Ordering::Relaxed),
            min: s.min.load(Ordering::Relaxed) as i64,
            max: s.max.load(Ordering::Relaxed) as i64,
            epoch: s.epoch.load(Ordering::Relaxed),
        };
        // The fields before the second look at the word.
        fence(Ordering::Acquire);
        if before.is_multiple_of(2) && s.seq.load(Ordering::Relaxed) == before {
            s.taken.store(observations, Ordering::Relaxed);
            f(&delta);
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

impl Drop for CountTally {
    fn drop(&mut self) {
        let table = self.table.load(Ordering::Acquire);
        if table.is_null() {
            return;
        }
        // SAFETY: made in `make_slot` from a boxed slice of `DIRECTORIES`
        // pointers by `Box::into_raw`, freed only here.
        let table =
            unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(table, DIRECTORIES)) };
        for directory in table.iter() {
            let directory = directory.load(Ordering::Acquire);
            if directory.is_null() {
                continue;
            }
            // SAFETY: made by `Box::into_raw` in `make_slot`, freed only here.
            let directory = unsafe { Box::from_raw(directory) };
            for chunk in directory.iter() {
                let chunk = chunk.load(Ordering::Acquire);
                if !chunk.is_null() {
                    // SAFETY: as for the directory.
                    drop(unsafe { Box::from_raw(chunk) });
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn collect(t: &CountTally) -> Vec<CountDelta> {
        let mut v = Vec::new();
        assert!(t.collect(|d| v.push(*d)));
        v
    }

    #[test]
    fn keeps_count_last_min_and_max_per_epoch() {
        let t = CountTally::new();
        assert!(collect(&t).is_empty());
        for (i, v) in [5, -3, 9, 2].into_iter().enumerate() {
            assert!(t.observe(7, v, 100 + i as u64, 1));
        }
        assert!(t.observe(70_000, 42, 50, 1), "a far id");
        let d = |site, new, last, at, min, max, epoch| CountDelta {
            site,
            new,
            last,
            at,
            min,
            max,
            epoch,
        };
        assert_eq!(
            collect(&t),
            vec![d(7, 4, 2, 103, -3, 9, 1), d(70_000, 1, 42, 50, 42, 42, 1)]
        );
        assert!(collect(&t).is_empty(), "nothing new");
        assert!(t.observe(7, 100, 200, 2), "a new run");
        assert_eq!(collect(&t), vec![d(7, 1, 100, 200, 100, 100, 2)]);
        assert!(!t.observe(u32::MAX, 1, 1, 2), "an id no name has");
    }

    #[test]
    fn a_concurrent_reader_takes_every_value_once_and_consistent() {
        let t = std::sync::Arc::new(CountTally::new());
        const N: u64 = 200_000;
        let producer = {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 1..=N {
                    // Value and time go together: the reader checks the pair.
                    assert!(t.observe(3, i as i64, i * 10, 1));
                }
            })
        };
        let (mut total, mut last_at) = (0, 0);
        loop {
            let done = producer.is_finished();
            let _ = t.collect(|d| {
                assert_eq!(d.at, d.last as u64 * 10, "a torn copy");
                assert!(d.at > last_at);
                assert_eq!((d.min, d.max), (1, d.last), "min and max of 1..=last");
                total += d.new;
                last_at = d.at;
            });
            if done {
                break;
            }
        }
        producer.join().unwrap();
        let _ = t.collect(|d| total += d.new);
        assert_eq!(total, N);
    }
}
