//! The per-thread record buffer: a single-producer, single-consumer ring.
//!
//! The recording thread is the only writer of `head` and of the slots at
//! `head..tail + capacity`; the collector is the only writer of `tail` and the
//! only reader of the slots at `tail..head`. Publishing a record is a plain
//! release store of `head`, so the collector can take a parked thread's
//! unfinished batch at any moment without the producer's help.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use super::counts::CountTally;
use super::sync::{AtomicBool, AtomicU64, Ordering, UnsafeCell};
use super::tally::Tally;

/// One fixed-size record of 16 bytes (four to a cache line: the lines are
/// what moves between the recording core and the collector's).
///
/// | `site` | `a` | `b` |
/// |---|---|---|
/// | a phase or function | raw clock at the start | raw ticks to the end, or [`Record::LONG`] and an [`Record::EXTENSION`] follows with the raw end in `a` |
/// | a count name | raw clock at the observation | 0; an [`Record::EXTENSION`] follows with the value's bits in `a` |
/// | [`Record::RESOURCES`] | thread CPU ns of the call before | RSS change in KiB, as `i32` bits |
///
/// A record and its extension are published together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Record {
    pub(crate) a: u64,
    pub(crate) b: u32,
    pub(crate) site: u32,
}

impl Record {
    /// The `site` of a resources record, which belongs to the function record before it.
    pub(crate) const RESOURCES: u32 = u32::MAX;
    /// The `site` of the second half of a two-slot record.
    pub(crate) const EXTENSION: u32 = u32::MAX - 1;
    /// The highest site id a name can have.
    pub(crate) const MAX_SITE: u32 = crate::site::MAX_SITE;
    /// Set in `site` when the thread's tally already counted the region (or
    /// its count aggregates the count value): the record only carries its
    /// event (and resources).
    pub(crate) const TALLIED: u32 = 1 << 31;
    /// `b` of a region too long for 32 bits of ticks.
    pub(crate) const LONG: u32 = u32::MAX;

    /// Whether this record stands for a region or a count value of its own
    /// (the first slot of one), rather than riding along with the record
    /// before it (an extension or a resources record) or carrying the event
    /// of a region its thread's tally counted.
    #[inline]
    pub(crate) fn has_site(&self) -> bool {
        self.site <= Record::MAX_SITE
    }

    /// The site a region or count record names, with or without [`Record::TALLIED`].
    #[inline]
    pub(crate) fn site_id(&self) -> Option<u32> {
        (self.site < Record::EXTENSION).then_some(self.site & !Record::TALLIED)
    }

    /// How many regions or count values `records` hold.
    pub(crate) fn logical(records: &[Record]) -> u64 {
        records.iter().filter(|r| r.has_site()).count() as u64
    }

    /// The record (and extension) of a region from `start` to `end`.
    #[inline]
    pub(crate) fn region(site: u32, start: u64, end: u64) -> ([Record; 2], usize) {
        let ticks = end.saturating_sub(start);
        let first = Record {
            a: start,
            b: if ticks < Record::LONG as u64 {
                ticks as u32
            } else {
                Record::LONG
            },
            site,
        };
        let ext = Record {
            a: end,
            b: 0,
            site: Record::EXTENSION,
        };
        ([first, ext], if first.b == Record::LONG { 2 } else { 1 })
    }
}

/// What the producer side of a ring sees when it pushes.
pub(crate) enum Push {
    /// The records were written and published.
    Written,
    /// The ring has no room; nothing was written.
    Full,
}

pub(crate) struct Ring {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    /// Records the producer could not write because the ring was full.
    /// Written only by the producer (a load and a store, no read-modify-write).
    dropped: AtomicU64,
    /// How much of `dropped` the collector has accounted for (collector only).
    dropped_seen: AtomicU64,
    /// Set by the producer's thread-local destructor: no record will follow.
    closed: AtomicBool,
    mask: u64,
    slots: Box<[UnsafeCell<MaybeUninit<Record>>]>,
    /// The small process-wide id of the producing thread.
    pub(crate) thread: u32,
    /// The producing thread's name, if it had one.
    pub(crate) thread_name: Option<String>,
    /// The producing thread's own aggregates, which most regions go to
    /// instead of a slot.
    pub(crate) tally: Tally,
    /// The producing thread's count aggregates: count values never go
    /// through a slot (only their events do).
    pub(crate) counts: CountTally,
}

// SAFETY: the slots are only touched under the single-producer/single-consumer
// protocol described in the module docs: a slot is written by the producer only
// while it lies outside `tail..head`, and read by the consumer only while it lies
// inside; `head` is published with release and read with acquire (and `tail` the
// other way round), so every read of a slot happens after its write completed.
unsafe impl Sync for Ring {}
// SAFETY: `Record` is plain data; the ring owns its slots.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `capacity` records; `capacity` is a power of two.
    pub(crate) fn new(capacity: usize, thread: u32, thread_name: Option<String>) -> Ring {
        debug_assert!(capacity.is_power_of_two());
        let slots = (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Ring {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
            dropped_seen: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            mask: capacity as u64 - 1,
            slots,
            thread,
            thread_name,
            tally: Tally::new(),
            counts: CountTally::new(),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The consumer's position, for the producer's room check.
    #[inline]
    pub(crate) fn tail(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }

    /// Writes `records` at `head` and publishes them together, if there is room.
    ///
    /// # Safety
    /// Only the ring's producer thread may call this, with `head` equal to the
    /// number of records it has published so far.
    pub(crate) unsafe fn push(&self, head: u64, records: &[Record]) -> Push {
        if head + records.len() as u64 - self.tail() > self.capacity() {
            return Push::Full;
        }
        // SAFETY: room checked just above; the caller's guarantees pass on.
        unsafe { self.write(head, records) };
        Push::Written
    }

    /// Writes `records` at `head` and publishes them together, without
    /// looking at `tail`.
    ///
    /// # Safety
    /// Only the ring's producer thread may call this, with `head` equal to the
    /// number of records it has published so far, and with room for
    /// `records` known from an earlier look at `tail` (it only moves forward):
    /// `head + records.len() - tail <= capacity`.
    #[inline]
    pub(crate) unsafe fn write(&self, head: u64, records: &[Record]) {
        debug_assert!(head + records.len() as u64 - self.tail() <= self.capacity());
        for (i, record) in records.iter().enumerate() {
            let index = ((head + i as u64) & self.mask) as usize;
            debug_assert!(index < self.slots.len());
            // SAFETY: `index` is masked into bounds (asserted above).
            let slot = unsafe { self.slots.get_unchecked(index) };
            // SAFETY: the slot lies outside `tail..head` (the caller's room
            // guarantee), so the consumer does not read it, and the caller
            // guarantees we are the only producer.
            slot.with_mut(|slot| unsafe { (*slot).write(*record) });
        }
        self.head
            .store(head + records.len() as u64, Ordering::Release);
    }

    /// Counts `n` records the producer had to drop.
    pub(crate) fn count_dropped(&self, n: u64) {
        // Single writer: a load and a store are enough and cheaper than fetch_add.
        let d = self.dropped.load(Ordering::Relaxed);
        self.dropped.store(d + n, Ordering::Relaxed);
    }

    /// Drops not yet accounted for; only the collector calls this.
    pub(crate) fn take_new_dropped(&self) -> u64 {
        let now = self.dropped.load(Ordering::Relaxed);
        let seen = self.dropped_seen.swap(now, Ordering::Relaxed);
        now - seen
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Hands every published record to `f`, in order, and frees their slots.
    /// Only the collector calls this.
    pub(crate) fn drain(&self, mut f: impl FnMut(&[Record])) -> u64 {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut pos = tail;
        let mut chunk = [Record {
            a: 0,
            b: 0,
            site: 0,
        }; 64];
        while pos < head {
            let n = ((head - pos) as usize).min(chunk.len());
            for (i, out) in chunk[..n].iter_mut().enumerate() {
                let index = ((pos + i as u64) & self.mask) as usize;
                // SAFETY: the slot lies inside `tail..head`: the producer
                // published it (acquire above) and will not write it again until
                // we move `tail` past it below.
                *out = self.slots[index].with(|slot| unsafe { (*slot).assume_init() });
            }
            f(&chunk[..n]);
            pos += n as u64;
        }
        self.tail.store(head, Ordering::Release);
        head - tail
    }

    /// How many records were published so far.
    pub(crate) fn published(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// How many records the collector has taken so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }
}

// With std's atomics only: under `cfg(loom)` a ring can only be made
// inside a model (`loom_tests` below).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 16);
    }

    #[test]
    fn long_regions_take_an_extension() {
        let (r, n) = Record::region(3, 10, 25);
        assert_eq!((n, r[0].b), (1, 15));
        let (r, n) = Record::region(3, 10, 10 + (1 << 40));
        assert_eq!(
            (n, r[0].b, r[1].a, r[1].site),
            (2, Record::LONG, 10 + (1 << 40), Record::EXTENSION)
        );
        // A clock that went backwards (a timer moved across cores) is a zero.
        assert_eq!(Record::region(3, 10, 5).0[0].b, 0);
    }

    fn rec(i: u64) -> Record {
        Record {
            a: i,
            b: 1,
            site: 1,
        }
    }

    #[test]
    fn full_ring_refuses_until_drained() {
        let ring = Ring::new(4, 0, None);
        for i in 0..4 {
            assert!(matches!(unsafe { ring.push(i, &[rec(i)]) }, Push::Written));
        }
        assert!(matches!(unsafe { ring.push(4, &[rec(4)]) }, Push::Full));
        let mut seen = Vec::new();
        assert_eq!(ring.drain(|r| seen.extend_from_slice(r)), 4);
        assert_eq!(seen, (0..4).map(rec).collect::<Vec<_>>());
        assert!(matches!(
            unsafe { ring.push(4, &[rec(4), rec(5)]) },
            Push::Written
        ));
    }

    #[test]
    fn pair_is_all_or_nothing() {
        let ring = Ring::new(2, 0, None);
        assert!(matches!(unsafe { ring.push(0, &[rec(0)]) }, Push::Written));
        assert!(matches!(
            unsafe { ring.push(1, &[rec(1), rec(2)]) },
            Push::Full
        ));
        assert_eq!(ring.published(), 1);
    }

    #[test]
    fn concurrent_producer_and_consumer_see_every_record_once() {
        let ring = std::sync::Arc::new(Ring::new(64, 0, None));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut head = 0;
                while head < 100_000 {
                    if let Push::Written = unsafe { ring.push(head, &[rec(head)]) } {
                        head += 1;
                    }
                }
            })
        };
        let mut next = 0;
        while next < 100_000 {
            ring.drain(|rs| {
                for r in rs {
                    assert_eq!(r.a, next);
                    next += 1;
                }
            });
        }
        producer.join().unwrap();
    }
}

/// The ring's protocol under loom, which runs each model once per
/// interleaving of the producer and the collector it can tell apart (all of
/// them unless `LOOM_MAX_PREEMPTIONS` bounds the preemptions), on loom's
/// atomics, which give a load any value the memory model allows. The slots
/// are loom's `UnsafeCell`, so a slot read while the producer may still be
/// writing it (or written while the collector may be reading it) fails the
/// model. Run with `RUSTFLAGS="--cfg loom"` and `RUST_BACKTRACE=0` (a
/// backtrace overflows loom's small thread stacks and hangs the failing
/// test); see `scripts/test`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Slots per ring: four, so that the records below wrap it and fill it.
    const CAPACITY: usize = 4;
    /// Every interleaving, or those with at most `LOOM_MAX_PREEMPTIONS`
    /// preemptions when it is set.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        loom::model::Builder::new().check(f);
    }

    /// What one thread pushes, one push per entry, as `local::thread` and
    /// `local::timer` build them: a short region; a long region with its
    /// extension and the resources record of its function call (three slots
    /// published together); a count value (its name and time, then its
    /// value); another short region. Seven slots in all, in a ring of four:
    /// unless the collector drains in between, some are dropped.
    fn batches() -> Vec<Vec<Record>> {
        let short = |i: u64| {
            let (r, n) = Record::region(1, i, i + 5);
            r[..n].to_vec()
        };
        let ([first, ext], n) = Record::region(2, 2, 2 + (1 << 40));
        assert_eq!(n, 2);
        let resources = Record {
            a: 7,
            b: 3,
            site: Record::RESOURCES,
        };
        let count = [
            Record {
                a: 3,
                b: 0,
                site: 3,
            },
            Record {
                a: (-4i64) as u64,
                b: 0,
                site: Record::EXTENSION,
            },
        ];
        vec![
            short(1),
            vec![first, ext, resources],
            count.to_vec(),
            short(4),
        ]
    }

    /// The producer's side as `local::thread` drives a ring under
    /// `Overflow::Drop`: below its cached `limit` it writes without looking
    /// at `tail`; past it, it looks, writes or drops (counting the records),
    /// and sets the limit again: half a ring past `tail`, or the whole ring
    /// when already half a ring behind. The first push looks at the ring.
    struct Producer {
        head: u64,
        limit: u64,
    }

    impl Producer {
        /// Whether `records` went into the ring (else they were dropped).
        fn record(&mut self, ring: &Ring, records: &[Record]) -> bool {
            let next = self.head + records.len() as u64;
            if next <= self.limit {
                // SAFETY: the only producer, `head` is its count, and `limit`
                // never exceeds the room seen at the last look at `tail`.
                unsafe { ring.write(self.head, records) };
                self.head = next;
                return true;
            }
            // SAFETY: the only producer, and `head` is its count.
            let written = match unsafe { ring.push(self.head, records) } {
                Push::Written => {
                    self.head = next;
                    true
                }
                Push::Full => {
                    ring.count_dropped(Record::logical(records));
                    false
                }
            };
            let tail = ring.tail();
            let half = ring.capacity() / 2;
            self.limit = if self.head - tail < half {
                tail + half
            } else {
                tail + ring.capacity()
            };
            written
        }
    }

    /// What the collector took from the ring.
    #[derive(Default)]
    struct Taken {
        /// The records of each drain, in order.
        drains: Vec<Vec<Record>>,
        dropped: u64,
        /// The ring left the registry: a pass saw it closed before draining.
        removed: bool,
    }

    impl Taken {
        /// One collector pass over the ring, as `Collector::drain` makes it:
        /// read `closed`, drain, take the new drops; a ring seen closed
        /// before its drain, and fully drained, leaves the registry.
        fn pass(&mut self, ring: &Ring) {
            assert!(!self.removed, "a removed ring is not drained again");
            let closed = ring.is_closed();
            let mut records = Vec::new();
            let n = ring.drain(|r| records.extend_from_slice(r));
            assert_eq!(n, records.len() as u64);
            self.drains.push(records);
            self.dropped += ring.take_new_dropped();
            if closed {
                assert_eq!(
                    ring.published(),
                    ring.consumed(),
                    "a ring seen closed before its drain has nothing left after it"
                );
                self.removed = true;
            }
        }
    }

    /// One producer pushing [`batches`] (dropping what does not fit) and
    /// closing its ring, against a collector making two passes meanwhile,
    /// then, once the producer is done, passes until the ring leaves the
    /// registry. Every record kept is seen exactly once, in order, each
    /// push's records in the same drain; drops plus records seen make the
    /// regions and values pushed; nothing is left in a removed ring.
    #[test]
    fn every_record_is_seen_once_or_counted_dropped() {
        model(|| {
            let ring = Arc::new(Ring::new(CAPACITY, 0, None));
            let producer = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    let mut p = Producer { head: 0, limit: 0 };
                    let kept: Vec<bool> = batches().iter().map(|b| p.record(&ring, b)).collect();
                    ring.close();
                    kept
                })
            };
            let mut taken = Taken::default();
            for _ in 0..2 {
                if !taken.removed {
                    taken.pass(&ring);
                }
            }
            let kept = producer.join().unwrap();
            if !taken.removed {
                // After the join the pass sees the ring closed.
                taken.pass(&ring);
                assert!(taken.removed);
            }
            // Nothing was published or dropped after the ring left.
            assert_eq!(ring.published(), ring.consumed());
            assert_eq!(ring.take_new_dropped(), 0);

            let batches = batches();
            let mut expected = batches
                .iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(b, _)| b);
            for drain in &taken.drains {
                let mut rest = &drain[..];
                while !rest.is_empty() {
                    let batch = expected
                        .next()
                        .expect("a record seen twice or never pushed");
                    assert!(batch.len() <= rest.len(), "a push split across drains");
                    assert_eq!(&rest[..batch.len()], &batch[..], "records out of order");
                    rest = &rest[batch.len()..];
                }
            }
            assert!(expected.next().is_none(), "a kept record never seen");
            let pushed: u64 = batches.iter().map(|b| Record::logical(b)).sum();
            let seen: u64 = taken.drains.iter().map(|d| Record::logical(d)).sum();
            let dropped: u64 = batches
                .iter()
                .zip(&kept)
                .filter(|(_, k)| !**k)
                .map(|(b, _)| Record::logical(b))
                .sum();
            assert_eq!(taken.dropped, dropped);
            assert_eq!(seen + taken.dropped, pushed);
        });
    }
}
