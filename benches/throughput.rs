//! What the collector sustains, what memory costs, and how long `end_run`
//! takes — measured, printed, and recorded in BENCHMARKS.md:
//!
//! 1. ingest: regions/s aggregated losslessly (`Overflow::Block`) by one
//!    producer, events off and on (every region an event, `Events::All`);
//! 2. one producer flat out for 10 s with events off and the default
//!    `Overflow::Drop`: how many records were dropped;
//! 3. two producers flat out: issued = aggregated + dropped;
//! 4. RSS growth over 10⁸ regions (100 phases × 10⁶) with events off, and
//!    over 10⁷ regions with events on (bounded by the event cap);
//! 5. the time `end_run` takes after those 100 phases × 10⁶ regions.
//!
//! cargo bench --bench throughput
//!
//! Under `cargo test` (no `--bench` argument) every size is divided by 1 000
//! so the targets compile and run; only the accounting is checked then.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use runmetrics::{Config, Events, Overflow, Recorder};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Bench {
    scale: u64,
    dir: std::path::PathBuf,
}

impl Bench {
    fn n(&self, full: u64) -> u64 {
        (full / self.scale).max(1)
    }

    fn meta(&self, path: &std::path::Path) -> serde_json::Value {
        let text = std::fs::read_to_string(path).expect("run file");
        let file: serde_json::Value = serde_json::from_str(&text).expect("run file is JSON");
        file["meta"].clone()
    }
}

fn counts(meta: &serde_json::Value) -> (u64, u64, u64) {
    let n = |k: &str| meta[k].as_u64().expect(k);
    (
        n("records_issued"),
        n("records_aggregated"),
        n("records_dropped"),
    )
}

/// Item 1: regions per second one producer gets aggregated with nothing lost;
/// with events on, every region is also an event streamed to the sidecar,
/// and RSS shows none of them is held.
fn ingest(b: &Bench, events: bool) {
    let regions = b.n(if events { 5_000_000 } else { 50_000_000 });
    let mode = if events { Events::All } else { Events::None };
    let rec = Recorder::new(Config::new().overflow(Overflow::Block).events(mode)).expect("rec");
    rec.start_run(&b.dir).expect("start_run");
    let rss_before = rss_bytes() as i64;
    let start = Instant::now();
    for _ in 0..regions {
        drop(black_box(rec.phase("ingest", "bench")));
    }
    let rss_grew = rss_bytes() as i64 - rss_before;
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let took = start.elapsed();
    let meta = b.meta(&path);
    let (issued, aggregated, dropped) = counts(&meta);
    assert_eq!((issued, aggregated, dropped), (regions, regions, 0));
    if events {
        assert_eq!(meta["events_omitted"], 0, "every event kept");
    }
    println!(
        "ingest, events {}: {regions} regions aggregated in {took:.2?}: {:.1} M regions/s, none lost; \
         RSS grew {:.2} MiB while recording",
        if events { "on " } else { "off" },
        regions as f64 / took.as_secs_f64() / 1e6,
        mib(rss_grew)
    );
}

/// One producer flat out (item 2) with a buffer of `buffer` records, default
/// overflow (drop), events off.
fn flat_out(b: &Bench, buffer: usize) {
    let config = Config::new().event_cap(0).buffer_records(buffer);
    let rec = Recorder::new(config).expect("rec");
    let run_for = Duration::from_secs(10) / b.scale as u32;
    rec.start_run(&b.dir).expect("start_run");
    let start = Instant::now();
    let mut regions = 0u64;
    while start.elapsed() < run_for {
        for _ in 0..1024 {
            drop(black_box(rec.phase("flat_out", "bench")));
        }
        regions += 1024;
    }
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let (issued, aggregated, dropped) = counts(&b.meta(&path));
    assert_eq!(issued, regions);
    assert_eq!(issued, aggregated + dropped);
    assert_eq!(
        dropped, 0,
        "regions are counted on their own thread: none may drop"
    );
    println!(
        "flat out for {run_for:.0?}, events off, {buffer}-record buffer: {regions} regions ({:.1} M/s), aggregated \
         {aggregated}, dropped {dropped} ({:.4} %)",
        regions as f64 / run_for.as_secs_f64() / 1e6,
        100.0 * dropped as f64 / issued.max(1) as f64
    );
}

/// Item 3: two producers flat out: the accounting identity.
fn two_producers(b: &Bench) {
    let rec = Recorder::new(Config::new().event_cap(0)).expect("rec");
    let per_thread = b.n(100_000_000);
    rec.start_run(&b.dir).expect("start_run");
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    drop(black_box(rec.phase("two", "bench")));
                }
            });
        }
    });
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let (issued, aggregated, dropped) = counts(&b.meta(&path));
    assert_eq!(issued, 2 * per_thread);
    assert_eq!(issued, aggregated + dropped);
    assert_eq!(
        dropped, 0,
        "regions are counted on their own thread: none may drop"
    );
    println!(
        "2 producers flat out, events off: issued {issued} = aggregated {aggregated} + dropped \
         {dropped} ({:.2} %)",
        100.0 * dropped as f64 / issued as f64
    );
}

/// Items 4 and 5: 100 phases × 10⁶ regions with events off: RSS growth and the
/// time `end_run` takes; then 10⁷ regions with events on.
fn memory_and_end_run(b: &Bench) {
    let names: Vec<&'static str> = (0..100)
        .map(|i| &*Box::leak(format!("phase_{i:03}").into_boxed_str()))
        .collect();
    let rec = Recorder::new(Config::new().overflow(Overflow::Block).event_cap(0)).expect("rec");
    // Warm up: the thread's buffer and every name's histogram exist.
    rec.start_run(&b.dir).expect("start_run");
    for name in &names {
        drop(rec.phase(name, "bench"));
    }
    rec.end_run(serde_json::Value::Null).expect("end_run");

    rec.start_run(&b.dir).expect("start_run");
    let before = rss_bytes();
    let per_phase = b.n(1_000_000);
    for name in &names {
        for _ in 0..per_phase {
            drop(black_box(rec.phase(name, "bench")));
        }
    }
    let grown = rss_bytes() as i64 - before as i64;
    let start = Instant::now();
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let end_run = start.elapsed();
    let meta = b.meta(&path);
    let (issued, aggregated, _) = counts(&meta);
    assert_eq!((issued, aggregated), (100 * per_phase, 100 * per_phase));
    println!(
        "100 phases x {per_phase} regions, events off: RSS grew {:.2} MiB; end_run took {end_run:.2?}",
        mib(grown)
    );

    let rec = Recorder::new(Config::new().overflow(Overflow::Block)).expect("rec");
    rec.start_run(&b.dir).expect("start_run");
    drop(rec.phase("events", "bench"));
    let before = rss_bytes();
    let regions = b.n(10_000_000);
    for _ in 0..regions {
        drop(black_box(rec.phase("events", "bench")));
    }
    let path = rec.end_run(serde_json::Value::Null).expect("end_run");
    let grown = rss_bytes() as i64 - before as i64;
    let meta = b.meta(&path);
    println!(
        "{regions} regions, events on (cap {}): {} events kept, {} omitted; RSS grew {:.2} MiB",
        meta["event_cap"],
        meta["events_written"],
        meta["events_omitted"],
        mib(grown)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let b = Bench {
        scale: if full { 1 } else { 1_000 },
        dir: std::env::temp_dir().join(format!("runmetrics-throughput-{}", std::process::id())),
    };
    if !full {
        println!(
            "(test mode: sizes divided by 1 000; `cargo bench --bench throughput` for figures)"
        );
    }
    ingest(&b, false);
    ingest(&b, true);
    flat_out(&b, 65_536); // the default
    flat_out(&b, 1 << 20);
    two_producers(&b);
    memory_and_end_run(&b);
    let _ = std::fs::remove_dir_all(&b.dir);
}
