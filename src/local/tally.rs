//! Per-thread aggregation: each recording thread counts its own regions in
//! log-linear buckets of raw ticks, per site, next to an exact sum, min and max.
//!
//! The recording thread is the only writer of the counters, and it writes
//! them with a plain load and store (no read-modify-write, no fence), so a
//! region costs a few stores to cache lines that stay in its own core. The
//! collector reads the counters whenever it likes (they only grow) and keeps
//! what it saw last in [`Seen`], so each look yields what changed since; it
//! also resets the min and max it has taken.
//!
//! Places are made lazily, by the recording thread: a site's first region
//! on a thread allocates its chunk and the rows for half to 16 times its
//! duration, and a later region of a power of two not seen before allocates
//! its row (1 KiB). So the thread allocates at most once per site and power
//! of two (42 rows at most per site), never for a region like the earlier ones.
//!
//! Buckets: values under 128 ticks have a bucket each; above, each power of
//! two is cut into 128 buckets, so a bucket is at most 1/128 of its values
//! wide (±0.4 % around its middle). Values from 2^48 ticks (about a day at
//! 3 GHz) share the top bucket; their sum, min and max stay exact.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::slot::slot;

const SUB_BITS: u32 = 7;
/// Buckets per row.
const SUB: usize = 1 << SUB_BITS;
/// Row 0 holds 0..128 ticks one by one; row r >= 1 holds [2^(r+6), 2^(r+7)).
const ROWS: usize = 42;
/// Sites per chunk, and chunks per tally: sites with larger ids always go
/// through the ring and the collector aggregates them.
const CHUNK: usize = 32;
const CHUNKS: usize = 2048;

type Row = [AtomicU64; SUB];

/// One site's counters on one thread.
struct SiteTally {
    /// The sum of the regions' ticks, each at least 1, so it moves with every
    /// region: written last, it tells the collector when to look.
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    /// Null until made; never freed before the tally.
    rows: [AtomicPtr<Row>; ROWS],
}

impl SiteTally {
    fn new() -> SiteTally {
        SiteTally {
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            rows: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }
    }

    #[inline]
    fn row(&self, row: usize) -> Option<&Row> {
        let ptr = self.rows[row].load(Ordering::Acquire);
        // SAFETY: a non-null row pointer comes from `Box::into_raw` in
        // `Tally::make_row`, is published with release once, and is freed
        // only when the tally drops, which no `&self` outlives.
        unsafe { ptr.as_ref() }
    }
}

type Chunk = [SiteTally; CHUNK];

/// One thread's counters for one recorder; owned by that thread's ring.
pub(crate) struct Tally {
    /// Null until made; never freed before the tally.
    chunks: [AtomicPtr<Chunk>; CHUNKS],
    /// What the collector saw last (collector only; never contended).
    seen: Mutex<Seen>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        for chunk in self.chunks.iter() {
            let chunk = chunk.load(Ordering::Acquire);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: made by `Box::into_raw` in `make_row`, freed only here.
            let chunk = unsafe { Box::from_raw(chunk) };
            for site in chunk.iter() {
                for row in &site.rows {
                    let row = row.load(Ordering::Acquire);
                    if !row.is_null() {
                        // SAFETY: as for the chunk.
                        drop(unsafe { Box::from_raw(row) });
                    }
                }
            }
        }
    }
}

/// The bucket of `ticks`: its row and its column.
#[inline]
fn bucket(ticks: u64) -> (usize, usize) {
    if ticks < SUB as u64 {
        return (0, ticks as usize);
    }
    let top = 63 - ticks.leading_zeros(); // >= SUB_BITS
    let row = (top - SUB_BITS + 1) as usize;
    if row >= ROWS {
        return (ROWS - 1, SUB - 1);
    }
    let column = (ticks >> (row - 1)) as usize - SUB;
    (row, column)
}

/// The lowest value of a bucket and its width, in ticks.
pub(crate) fn bucket_bounds(row: usize, column: usize) -> (u64, u64) {
    if row == 0 {
        (column as u64, 1)
    } else {
        (((SUB + column) as u64) << (row - 1), 1 << (row - 1))
    }
}

/// Stores a new box in `slot` unless it holds one. Only the owning thread
/// makes chunks and rows, so a plain check and a release store suffice.
fn make_once<T>(slot: &AtomicPtr<T>, new: impl FnOnce() -> Box<T>) {
    if slot.load(Ordering::Relaxed).is_null() {
        slot.store(Box::into_raw(new()), Ordering::Release);
    }
}

/// A single-writer increment: a load and a store, which only the recording
/// thread does, so no update is lost and no locked instruction is needed.
#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            seen: Mutex::new(Seen::default()),
        }
    }

    #[inline]
    fn site(&self, site: u32) -> Option<&SiteTally> {
        let ptr = self
            .chunks
            .get(site as usize / CHUNK)?
            .load(Ordering::Acquire);
        // SAFETY: as for rows in `SiteTally::row`: made once by `make_row`,
        // freed only when the tally drops.
        let chunk = unsafe { ptr.as_ref() }?;
        Some(&chunk[site as usize % CHUNK])
    }

    /// Counts one region of `ticks` for `site`; `false` when the tally has no
    /// place for it yet ([`Tally::add_slow`] makes it). Only the owning
    /// thread may call this.
    /// A region of 0 ticks (a clock that went backwards) counts as 1.
    #[inline]
    pub(crate) fn add(&self, site: u32, ticks: u64) -> bool {
        let Some(s) = self.site(site) else {
            return false;
        };
        let ticks = ticks.max(1);
        let (row, column) = bucket(ticks);
        let Some(row) = s.row(row) else {
            return false;
        };
        bump(&row[column], 1);
        if ticks < s.min.load(Ordering::Relaxed) {
            s.min.store(ticks, Ordering::Relaxed);
        }
        if ticks > s.max.load(Ordering::Relaxed) {
            s.max.store(ticks, Ordering::Relaxed);
        }
        // Last, with release: a collector that sees the sum move sees the bucket.
        s.sum.store(
            s.sum.load(Ordering::Relaxed).wrapping_add(ticks),
            Ordering::Release,
        );
        true
    }

    /// [`Tally::add`] for a region that found no place: makes it and counts
    /// the region. A site's first region on this thread also makes the rows
    /// for half to 16 times its duration, so that a tight loop whose regions
    /// straddle a power of two does not come here again. Only the owning
    /// thread may call this; `false` only for a site beyond the tally.
    #[cold]
    #[inline(never)]
    pub(crate) fn add_slow(&self, site: u32, ticks: u64) -> bool {
        let (row, _) = bucket(ticks.max(1));
        let first = self
            .site(site)
            .is_none_or(|s| s.sum.load(Ordering::Relaxed) == 0);
        let rows = if first {
            row.saturating_sub(1)..(row + 4).min(ROWS)
        } else {
            row..row + 1
        };
        for row in rows {
            self.make_row(site, row);
        }
        self.add(site, ticks)
    }

    /// Only the owning thread may call this.
    fn make_row(&self, site: u32, row: usize) {
        let Some(chunk) = self.chunks.get(site as usize / CHUNK) else {
            return; // beyond the tally: that site always goes through the ring
        };
        make_once(chunk, || {
            Box::new(std::array::from_fn(|_| SiteTally::new()))
        });
        let s = self
            .site(site)
            .expect("runmetrics: the chunk was made just above");
        make_once(&s.rows[row], || {
            Box::new(std::array::from_fn(|_| AtomicU64::new(0)))
        });
    }

    /// Hands what changed since the last call, site by site, to `f`. Only
    /// the collector calls this.
    pub(crate) fn collect(&self, mut f: impl FnMut(&Delta)) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = &mut *seen;
        let mut delta = Delta::default();
        for (c, chunk) in self.chunks.iter().enumerate() {
            // SAFETY: as in `Tally::site`.
            let Some(chunk) = (unsafe { chunk.load(Ordering::Acquire).as_ref() }) else {
                continue;
            };
            for (i, s) in chunk.iter().enumerate() {
                let site = (c * CHUNK + i) as u32;
                // First, with acquire: every bucket counted in this sum is seen.
                let sum = s.sum.load(Ordering::Acquire);
                let last = seen.sites.get(site as usize).map_or(0, |l| l.sum);
                if sum == last {
                    continue;
                }
                let last = slot(&mut seen.sites, site as usize);
                delta.site = site;
                delta.buckets.clear();
                for r in 0..ROWS {
                    let Some(row) = s.row(r) else { continue };
                    let last_row = slot(&mut last.rows, r);
                    if last_row.is_empty() {
                        last_row.resize(SUB, 0);
                    }
                    for (column, (now, before)) in row.iter().zip(last_row.iter_mut()).enumerate() {
                        let now = now.load(Ordering::Relaxed);
                        if now != *before {
                            delta
                                .buckets
                                .push((bucket_bounds(r, column), now - *before));
                            *before = now;
                        }
                    }
                }
                delta.ticks = sum.wrapping_sub(last.sum);
                last.sum = sum;
                delta.min = s.min.swap(u64::MAX, Ordering::Relaxed);
                delta.max = s.max.swap(0, Ordering::Relaxed);
                // No bucket moved when the regions were counted at the last
                // look and only their sum arrived since.
                f(&delta);
            }
        }
    }
}

/// What one site's counters gained between two looks.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub(crate) site: u32,
    /// Each bucket that grew: its lowest value and width in ticks, and by how many.
    pub(crate) buckets: Vec<((u64, u64), u64)>,
    /// The exact sum of the new regions' ticks.
    pub(crate) ticks: u64,
    /// The least and greatest region since the last look, exact unless a
    /// region ended during the look (then it may be `u64::MAX` and `0`);
    /// [`Delta::min_max`] bounds them by the buckets.
    min: u64,
    max: u64,
}

impl Delta {
    /// How many regions.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// The least and greatest region in ticks, kept within the lowest and
    /// highest bucket that grew; `None` when none did.
    pub(crate) fn min_max(&self) -> Option<(u64, u64)> {
        let ((low, low_width), _) = *self.buckets.first()?;
        let ((high, high_width), _) = *self.buckets.last()?;
        Some((
            self.min.clamp(low, low + low_width - 1),
            self.max.clamp(high, high + high_width - 1),
        ))
    }
}

/// The collector's copy of a tally's counters as it last read them.
#[derive(Default)]
struct Seen {
    sites: Vec<SeenSite>,
}

#[derive(Default)]
struct SeenSite {
    sum: u64,
    rows: Vec<Vec<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut next = 0;
        for row in 0..ROWS {
            for column in 0..SUB {
                let (low, width) = bucket_bounds(row, column);
                assert_eq!(low, next, "row {row} column {column}");
                assert_eq!(bucket(low), (row, column));
                assert_eq!(bucket(low + width - 1), (row, column));
                assert!(width == 1 || width * 128 <= low, "at most 1/128 wide");
                next = low + width;
            }
        }
        assert_eq!(next, 1 << 48);
        assert_eq!(bucket(u64::MAX), (ROWS - 1, SUB - 1));
    }

    #[test]
    fn counts_what_has_room_and_reports_each_change_once() {
        let tally = Tally::new();
        assert!(!tally.add(5, 1_000), "no room before the first region");
        assert!(tally.add_slow(5, 1_000), "the first region makes its room");
        for ticks in [1_001, 1_003] {
            assert!(tally.add(5, ticks));
        }
        assert!(tally.add(5, 600), "rows near the first region have room");
        assert!(!tally.add(5, 10), "another row has no room yet");
        assert!(tally.add_slow(5, 10), "until a region needs it");
        assert!(tally.add(5, 10));
        assert!(!tally.add_slow(u32::MAX, 10), "a site beyond the tally");
        let mut deltas = Vec::new();
        tally.collect(|d| deltas.push((d.site, d.count(), d.ticks, d.min_max())));
        assert_eq!(deltas, vec![(5, 6, 3_624, Some((10, 1_003)))]);
        deltas.clear();
        tally.collect(|d| deltas.push((d.site, d.count(), d.ticks, d.min_max())));
        assert!(deltas.is_empty(), "nothing new");
        assert!(tally.add(5, 1_002));
        tally.collect(|d| deltas.push((d.site, d.count(), d.ticks, d.min_max())));
        assert_eq!(deltas, vec![(5, 1, 1_002, Some((1_002, 1_002)))]);
    }

    #[test]
    fn a_concurrent_reader_sees_every_region_once() {
        let tally = std::sync::Arc::new(Tally::new());
        assert!(tally.add_slow(1, 40));
        const N: u64 = 1_000_000;
        let producer = {
            let tally = tally.clone();
            std::thread::spawn(move || {
                for _ in 0..N {
                    assert!(tally.add(1, 40));
                }
            })
        };
        let (mut count, mut ticks) = (0, 0);
        while !producer.is_finished() {
            tally.collect(|d| {
                count += d.count();
                ticks += d.ticks;
            });
        }
        producer.join().unwrap();
        tally.collect(|d| {
            count += d.count();
            ticks += d.ticks;
        });
        assert_eq!((count, ticks), (N + 1, 40 * (N + 1)));
    }
}
