//! The recording path allocates nothing once a thread has its buffer and
//! has seen its names, except a 1 KiB row of its tally the first time a
//! region of a site lasts a power of two of ticks it never lasted before
//! (at most 42 per site and thread; a preempted region can do it): checked
//! with a counting global allocator on the recording thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;
use runmetrics::{Config, Recorder};

/// The most rows a site's tally can gain on one thread.
const ROWS_PER_SITE: u64 = 42;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller upholds GlobalAlloc's contract; we pass it on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[runmetrics::measure("measured", module = "alloc")]
fn measured(x: u64) -> u64 {
    x + 1
}

fn every_recording_call(rec: &Recorder) {
    let _p = rec.phase("phase", "alloc");
    let _f = rec.function("function", "alloc");
    rec.measure_fn("closure", "alloc", || std::hint::black_box(1));
    let _g = runmetrics::PhaseTimer::new("global", "alloc");
    let _m = runmetrics::phase!("macro", "alloc");
    let _h = runmetrics::phase!("fenced", "alloc", fenced);
    let _k = runmetrics::FunctionTimer::fenced("fenced", "alloc");
    std::hint::black_box(measured(1));
    rec.observe_counts(&[("count", 1)]);
}

#[test]
fn recording_allocates_nothing_after_the_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let global_dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().overflow(runmetrics::Overflow::Block)).unwrap();
    rec.start_run(dir.path()).unwrap();
    runmetrics::start_run(global_dir.path()).unwrap();
    // The first pass makes this thread's buffers and name-cache entries.
    every_recording_call(&rec);
    let n = allocations_during(|| {
        for _ in 0..100_000 {
            every_recording_call(&rec);
        }
    });
    assert!(
        n <= ROWS_PER_SITE * 8,
        "the recording path allocated {n} times in 900 000 regions and 100 000 counts"
    );
    // More 'static names than the per-thread cache has slots: misses must
    // not allocate (or lock) once every name is known.
    let names: Vec<&'static str> = (0..200)
        .map(|i| &*Box::leak(format!("name_{i}").into_boxed_str()))
        .collect();
    let cycle = |rec: &Recorder| {
        for name in &names {
            let _t = rec.phase(name, "many");
        }
    };
    cycle(&rec);
    let n = allocations_during(|| {
        for _ in 0..100 {
            cycle(&rec);
        }
    });
    assert!(
        n <= ROWS_PER_SITE * 200,
        "many names: the recording path allocated {n} times in 20 000 regions"
    );
    rec.end_run(serde_json::Value::Null).unwrap();
    let path = runmetrics::end_run(serde_json::Value::Null).unwrap();
    let file = common::read_run_file(path);
    assert_eq!(
        file["meta"]["records_issued"],
        5 * 100_001,
        "global, macro, #[measure] and the two fenced regions"
    );
}
