//! `tracing` spans through `runmetrics::tracing_layer()`: busy time (the sum
//! of the entered intervals) and wall time (creation to close) against
//! `Instant` brackets, exact counts from two threads, and futures that cross
//! `.await`s and threads on a multi-threaded tokio runtime.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use runmetrics::{Config, Events, Recorder};
use serde_json::Value;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

fn recorder() -> Recorder {
    Recorder::new(
        Config::new()
            .events(Events::All)
            .sample_interval(Duration::from_secs(3600)),
    )
    .unwrap()
}

fn entry<'a>(file: &'a Value, phase: &str) -> &'a Value {
    file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == phase)
        .unwrap_or_else(|| panic!("no phase {phase}: {}", file["meta"]))
}

/// Each span's (busy, wall) seconds from the events, paired by their common
/// start (to a few ns of rounding: the spans must start further apart).
fn pairs(file: &Value, name: &str) -> Vec<(f64, f64)> {
    let wall_name = format!("{name} (wall)");
    let (mut busy, mut wall) = (Vec::new(), Vec::new());
    for e in file["events"].as_array().unwrap() {
        if e["event"] != "phase_timing" {
            continue;
        }
        let start = e["start_offset_seconds"].as_f64().unwrap();
        let d = e["duration_seconds"].as_f64().unwrap();
        if e["phase"] == name {
            busy.push((start, d));
        } else if e["phase"] == wall_name.as_str() {
            wall.push((start, d));
        }
    }
    busy.sort_by(|a, b| a.0.total_cmp(&b.0));
    wall.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(busy.len(), wall.len(), "a busy and a wall event per span");
    busy.iter()
        .zip(&wall)
        .map(|(b, w)| {
            assert!((b.0 - w.0).abs() < 1e-8, "unpaired: {b:?} {w:?}");
            (b.1, w.1)
        })
        .collect()
}

#[test]
fn busy_time_is_the_entered_intervals_and_wall_time_the_span() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let subscriber = tracing_subscriber::registry().with(rec.tracing_layer());
    let (mut busy_in, mut busy_out) = (Duration::ZERO, Duration::ZERO);
    let (wall_in, wall_out);
    rec.start_run(dir.path()).unwrap();
    {
        let _default = tracing::subscriber::set_default(subscriber);
        let outer = Instant::now();
        let span = tracing::info_span!("step");
        let inner = Instant::now();
        for _ in 0..2 {
            let a = Instant::now();
            let entered = span.enter();
            let b = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            let c = Instant::now();
            drop(entered);
            let d = Instant::now();
            busy_in += c - b;
            busy_out += d - a;
            // Not entered: wall time only.
            std::thread::sleep(Duration::from_millis(30));
        }
        wall_in = inner.elapsed();
        drop(span);
        wall_out = outer.elapsed();
    }
    let file = common::read_run_file(rec.end_run(serde_json::json!({})).unwrap());
    let busy = entry(&file, "step");
    let wall = entry(&file, "step (wall)");
    assert_eq!(busy["module"], "tracing_layer");
    assert_eq!(
        (busy["count"].as_u64(), wall["count"].as_u64()),
        (Some(1), Some(1))
    );
    let b = busy["duration_seconds_total"].as_f64().unwrap();
    let w = wall["duration_seconds_total"].as_f64().unwrap();
    // 1 µs for the file's rounding.
    assert!(
        b >= busy_in.as_secs_f64() - 1e-6 && b <= busy_out.as_secs_f64() + 1e-6,
        "busy {b} s, entered for {busy_in:?}..{busy_out:?}"
    );
    assert!(
        w >= wall_in.as_secs_f64() - 1e-6 && w <= wall_out.as_secs_f64() + 1e-6,
        "wall {w} s, the span lived {wall_in:?}..{wall_out:?}"
    );
}

#[test]
fn every_span_of_two_threads_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    rec.start_run(dir.path()).unwrap();
    const SPANS: u64 = 20_000;
    std::thread::scope(|s| {
        for _ in 0..2 {
            let layer = rec.tracing_layer();
            s.spawn(move || {
                let subscriber = tracing_subscriber::registry().with(layer);
                tracing::subscriber::with_default(subscriber, || {
                    for i in 0..SPANS {
                        let span = tracing::info_span!("tick", i);
                        let _e = span.enter();
                        std::hint::black_box(i);
                    }
                });
            });
        }
    });
    let file = common::read_run_file(rec.end_run(serde_json::json!({})).unwrap());
    assert_eq!(entry(&file, "tick")["count"], 2 * SPANS);
    assert_eq!(entry(&file, "tick (wall)")["count"], 2 * SPANS);
    assert_eq!(file["meta"]["records_dropped"], 0);
}

#[test]
fn spans_across_awaits_and_threads_count_only_their_polls_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let subscriber = tracing_subscriber::registry().with(rec.tracing_layer());
    let dispatch = tracing::Dispatch::new(subscriber);
    rec.start_run(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .on_thread_start({
            let dispatch = dispatch.clone();
            move || {
                // Each worker records into the same subscriber.
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            }
        })
        .build()
        .unwrap();
    const TASKS: usize = 64;
    // Time in polls, bracketed inside the span's enter/exit (`inner`) and
    // outside them (`outer`): the span's busy time lies between the two.
    let inner = Arc::new(AtomicU64::new(0));
    let outer = Arc::new(AtomicU64::new(0));
    tracing::dispatcher::with_default(&dispatch, || {
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let work = async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let spin = Instant::now();
                    while spin.elapsed() < Duration::from_millis(1) {}
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                let span = tracing::info_span!("request");
                let task = PollTime::new(
                    PollTime::new(work, inner.clone()).instrument(span),
                    outer.clone(),
                );
                tasks.push(tokio::spawn(task));
                // Spans made a timer tick apart: their events pair by start.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    });
    drop(runtime);
    let file = common::read_run_file(rec.end_run(serde_json::json!({})).unwrap());
    assert_eq!(entry(&file, "request")["count"], TASKS as u64);
    let spans = pairs(&file, "request");
    assert_eq!(spans.len(), TASKS);
    for &(busy, wall) in &spans {
        // The spin is busy; the two sleeps and the spin make the wall time.
        assert!(busy >= 0.001 - 1e-6, "busy {busy} s < the 1 ms spin");
        assert!(wall >= 0.021 - 1e-6, "wall {wall} s < the sleeps and spin");
        assert!(busy <= wall, "busy {busy} s > wall {wall} s");
    }
    // Busy is the polls, not the sleeps: a preempted poll may run long (and
    // overlap a sleep it just armed), so the oracle is the polls' own time.
    let busy: f64 = spans.iter().map(|s| s.0).sum();
    let inner = inner.load(Ordering::Relaxed) as f64 * 1e-9;
    let outer = outer.load(Ordering::Relaxed) as f64 * 1e-9;
    assert!(
        busy >= inner * 0.99 && busy <= outer * 1.01 + 1e-6,
        "busy {busy} s outside the polls' [{inner}, {outer}] s"
    );
}

/// A future that adds the time spent in its polls, by `Instant`, to `total`
/// (ns).
struct PollTime<F> {
    inner: Pin<Box<F>>,
    total: Arc<AtomicU64>,
}

impl<F> PollTime<F> {
    fn new(inner: F, total: Arc<AtomicU64>) -> Self {
        PollTime {
            inner: Box::pin(inner),
            total,
        }
    }
}

impl<F: Future> Future for PollTime<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        let out = self.inner.as_mut().poll(cx);
        let ns = start.elapsed().as_nanos() as u64;
        self.total.fetch_add(ns, Ordering::Relaxed);
        out
    }
}

/// More live spans than the layer's own table holds (4 096 slots): those
/// whose slots are taken keep their timing in the registry's extensions, so
/// every span is still counted once, and its busy time is its entered
/// interval, between `Instant` brackets inside and outside enter and exit.
#[test]
fn spans_beyond_the_layers_table_are_counted_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let subscriber = tracing_subscriber::registry().with(rec.tracing_layer());
    rec.start_run(dir.path()).unwrap();
    const LIVE: usize = 10_000;
    let (mut inner, mut outer) = (Duration::ZERO, Duration::ZERO);
    tracing::subscriber::with_default(subscriber, || {
        let spans: Vec<_> = (0..LIVE).map(|i| tracing::info_span!("held", i)).collect();
        for span in &spans {
            let a = Instant::now();
            let entered = span.enter();
            let b = Instant::now();
            while b.elapsed() < Duration::from_micros(2) {}
            let c = Instant::now();
            drop(entered);
            let d = Instant::now();
            inner += c - b;
            outer += d - a;
        }
    });
    let file = common::read_run_file(rec.end_run(serde_json::json!({})).unwrap());
    let busy = entry(&file, "held");
    assert_eq!(busy["count"], LIVE as u64);
    assert_eq!(entry(&file, "held (wall)")["count"], LIVE as u64);
    let total = busy["duration_seconds_total"].as_f64().unwrap();
    assert!(
        total >= inner.as_secs_f64() * 0.99 && total <= outer.as_secs_f64() * 1.01,
        "busy {total} s outside [{inner:?}, {outer:?}]"
    );
}

/// A span entered on two threads at once (and re-entered on one) counts the
/// time it was entered anywhere once: its busy time is the union of the
/// intervals, not their sum.
#[test]
fn a_span_entered_on_two_threads_at_once_counts_its_time_once() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(rec.tracing_layer()));
    rec.start_run(dir.path()).unwrap();
    let span = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("shared"));
    let barrier = std::sync::Barrier::new(2);
    // Thread A: entered 0..40 ms (re-entered inside); thread B: 15..60 ms.
    // Each gives (before enter, after enter, before exit, after exit).
    let enter_for = |wait: u64, hold: u64, again: bool| {
        tracing::dispatcher::with_default(&dispatch, || {
            barrier.wait();
            std::thread::sleep(Duration::from_millis(wait));
            let a = Instant::now();
            let outer = span.enter();
            let b = Instant::now();
            let inner = again.then(|| span.enter());
            std::thread::sleep(Duration::from_millis(hold));
            let c = Instant::now();
            drop(inner);
            drop(outer);
            (a, b, c, Instant::now())
        })
    };
    let (x, y) = std::thread::scope(|s| {
        let a = s.spawn(|| enter_for(0, 40, true));
        let b = s.spawn(|| enter_for(15, 45, false));
        (a.join().unwrap(), b.join().unwrap())
    });
    // The length of the union of two intervals.
    let union = |p: (Instant, Instant), q: (Instant, Instant)| {
        let (first, second) = if p.0 <= q.0 { (p, q) } else { (q, p) };
        if second.0 <= first.1 {
            first.1.max(second.1) - first.0
        } else {
            (first.1 - first.0) + (second.1 - second.0)
        }
    };
    let union_in = union((x.1, x.2), (y.1, y.2));
    let union_out = union((x.0, x.3), (y.0, y.3));
    tracing::dispatcher::with_default(&dispatch, || drop(span));
    let file = common::read_run_file(rec.end_run(serde_json::json!({})).unwrap());
    let busy = entry(&file, "shared");
    assert_eq!(busy["count"], 1);
    let b = busy["duration_seconds_total"].as_f64().unwrap();
    assert!(
        b >= union_in.as_secs_f64() - 1e-6 && b <= union_out.as_secs_f64() + 1e-6,
        "busy {b} s, the union of the entered intervals {union_in:?}..{union_out:?} \
         (their sum would be about 85 ms)"
    );
}
