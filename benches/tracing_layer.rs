//! A `tracing` span (created, entered, exited, closed) through the registry
//! alone, through the registry with a layer that does nothing, with
//! `runmetrics::tracing_layer()` (a run
//! open: every span recorded), and through the registry with
//! `tracing-timing`'s layer, in the same run. BENCHMARKS.md has the ratios.
//!
//! cargo bench --features tracing --bench tracing_layer
//!
//! With `SPANS_ONLY=registry|noop|runmetrics|timing` it only makes `SPANS_N`
//! (100 000) spans through that subscriber and exits: for `valgrind
//! --tool=callgrind`, whose instruction counts a loaded machine does not
//! move (BENCHMARKS.md takes the difference of two `SPANS_N`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use runmetrics::{Config, Recorder};
use tracing_subscriber::prelude::*;

/// A layer that does nothing: the floor of any layer over the registry. The
/// registry alone never frees a closed span's slot (only a `Layered` over it
/// does, at close), so it is a floor that no program with a layer has.
struct Noop;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Noop {}

fn one_span(i: u64) {
    let span = tracing::info_span!("work");
    let _e = span.enter();
    black_box(i);
}

fn spans(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("runmetrics-spans-{}", std::process::id()));
    let rec = Recorder::new(Config::new().event_cap(0)).expect("recorder");
    let mut g = c.benchmark_group("span");
    let mut i = 0u64;
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        g.bench_function("registry alone", |b| {
            b.iter(|| {
                i += 1;
                one_span(i)
            })
        });
    });
    let noop = tracing_subscriber::registry().with(Noop);
    tracing::subscriber::with_default(noop, || {
        g.bench_function("registry + no-op layer", |b| {
            b.iter(|| {
                i += 1;
                one_span(i)
            })
        });
    });
    rec.start_run(&dir).expect("start_run");
    let with_runmetrics = tracing_subscriber::registry().with(rec.tracing_layer());
    tracing::subscriber::with_default(with_runmetrics, || {
        g.bench_function("registry + runmetrics", |b| {
            b.iter(|| {
                i += 1;
                one_span(i)
            })
        });
    });
    let timing = tracing_timing::Builder::default()
        .layer(|| tracing_timing::Histogram::new_with_max(1_000_000_000, 2).unwrap());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(timing), || {
        g.bench_function("registry + tracing-timing", |b| {
            b.iter(|| {
                i += 1;
                one_span(i)
            })
        });
    });
    g.finish();
    rec.end_run(serde_json::Value::Null).expect("end_run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `SPANS_ONLY`'s loop: `n` spans through subscriber `which`.
fn spans_only(which: &str, n: u64) {
    let dir = std::env::temp_dir().join(format!("runmetrics-spans-{}", std::process::id()));
    let rec = Recorder::new(Config::new().event_cap(0)).expect("recorder");
    rec.start_run(&dir).expect("start_run");
    let run = |f: &dyn Fn()| f();
    match which {
        "registry" => tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            run(&|| (0..n).for_each(one_span))
        }),
        "noop" => {
            let s = tracing_subscriber::registry().with(Noop);
            tracing::subscriber::with_default(s, || run(&|| (0..n).for_each(one_span)))
        }
        "runmetrics" => {
            let s = tracing_subscriber::registry().with(rec.tracing_layer());
            tracing::subscriber::with_default(s, || run(&|| (0..n).for_each(one_span)))
        }
        "timing" => {
            let timing = tracing_timing::Builder::default()
                .layer(|| tracing_timing::Histogram::new_with_max(1_000_000_000, 2).unwrap());
            let s = tracing_subscriber::registry().with(timing);
            tracing::subscriber::with_default(s, || run(&|| (0..n).for_each(one_span)))
        }
        other => panic!("SPANS_ONLY={other}: registry, noop, runmetrics or timing"),
    }
    rec.end_run(serde_json::Value::Null).expect("end_run");
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = spans
}

fn main() {
    if let Ok(which) = std::env::var("SPANS_ONLY") {
        let n = std::env::var("SPANS_N").map_or(100_000, |n| n.parse().expect("SPANS_N"));
        spans_only(&which, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
