//! The contenders of the overhead comparison, shared by `benches/overhead.rs`
//! (criterion) and `examples/overhead.rs` (a quick table for any machine).
//!
//! Each contender times one empty region — start, end, hand the duration to
//! its recorder — `iters` times in a monomorphic loop and returns the elapsed
//! time, so a [`Pool`] can run it on several threads at once. Peers are set
//! up the way their documentation shows, with whatever makes them fastest
//! (cached handles, a local histogram) where that is ordinary use.

#![allow(dead_code)] // each includer uses its own part

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, LazyLock, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

/// What a contender is, for grouping in tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A baseline: what any timed region costs at the least.
    Floor,
    /// This crate.
    Runmetrics,
    /// What a Rust user would reach for instead.
    Peer,
}

/// One way of timing a region.
#[derive(Clone, Copy)]
pub struct Contender {
    pub name: &'static str,
    pub kind: Kind,
    pub run: fn(u64) -> Duration,
}

/// Every contender, floors first.
pub fn all() -> Vec<Contender> {
    use Kind::*;
    let c = |name, kind, run| Contender { name, kind, run };
    vec![
        c("empty loop", Floor, empty_loop),
        c("floor: TSC pair", Floor, tsc_pair),
        c("floor: Instant pair", Floor, instant_pair),
        c("floor: fenced TSC pair", Floor, fenced_tsc_pair),
        c("PhaseTimer::new", Runmetrics, phase_timer),
        c("#[measure]", Runmetrics, measure_attr),
        c("measure_fn", Runmetrics, measure_fn),
        c("phase!", Runmetrics, phase_macro),
        c("phase!(.., fenced)", Runmetrics, phase_macro_fenced),
        c("50 ns body, untimed", Floor, body_untimed),
        c("50 ns body in phase!", Runmetrics, body_phase),
        c(
            "50 ns body in phase!(.., fenced)",
            Runmetrics,
            body_phase_fenced,
        ),
        c("observe_counts (1 value)", Runmetrics, observe_counts),
        c("PhaseTimer::dynamic", Runmetrics, phase_dynamic),
        c("timer, no run open", Runmetrics, no_run_open),
        c("metrics histogram!", Peer, metrics_histogram),
        c("prometheus start_timer", Peer, prometheus_timer),
        c("prometheus LocalHistogram", Peer, prometheus_local),
        c("hotpath measure_block!", Peer, hotpath_block),
        c("fastrace LocalSpan", Peer, fastrace_local_span),
        c("tracing span", Peer, tracing_span),
        c("Instant + Mutex<HashMap>", Peer, mutex_map),
    ]
}

/// Lets the background work of the contender just measured finish (fastrace's
/// collector, hotpath's worker, our collector) so it does not slow the next.
pub fn settle() {
    fastrace::flush();
    thread::sleep(Duration::from_millis(200));
}

/// The thread counts to measure at: 1, 2 and the machine's parallelism.
pub fn thread_counts() -> Vec<usize> {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, 2, n];
    counts.sort_unstable();
    counts.dedup();
    counts
}

#[inline(always)]
fn timed(iters: u64, mut region: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        region();
    }
    start.elapsed()
}

static CLOCK: LazyLock<quanta::Clock> = LazyLock::new(quanta::Clock::new);

fn empty_loop(iters: u64) -> Duration {
    timed(iters, || black_box(()))
}

fn tsc_pair(iters: u64) -> Duration {
    let clock = &*CLOCK;
    timed(iters, || {
        let start = clock.raw();
        let end = clock.raw();
        black_box((start, end));
    })
}

/// `lfence; rdtsc; lfence` twice: what `Fenced` reads, bare.
fn fenced_tsc_pair(iters: u64) -> Duration {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    timed(iters, || {
        // SAFETY: `lfence` (SSE2) and `rdtsc` exist on every x86_64 processor.
        let (start, end) = unsafe {
            _mm_lfence();
            let start = _rdtsc();
            _mm_lfence();
            _mm_lfence();
            let end = _rdtsc();
            _mm_lfence();
            (start, end)
        };
        black_box((start, end));
    })
}

/// About 50 ns of dependent arithmetic on the reference machine (a chain of
/// multiply-adds, so it cannot be overlapped with itself).
#[inline(always)]
fn body(mut x: u64) -> u64 {
    for _ in 0..black_box(40) {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7);
    }
    x
}

fn body_untimed(iters: u64) -> Duration {
    let mut x = 1;
    let elapsed = timed(iters, || x = body(x));
    black_box(x);
    elapsed
}

fn body_phase(iters: u64) -> Duration {
    let mut x = 1;
    let elapsed = timed(iters, || {
        let _t = runmetrics::phase!("body", "bench");
        x = body(x);
    });
    black_box(x);
    elapsed
}

fn body_phase_fenced(iters: u64) -> Duration {
    let mut x = 1;
    let elapsed = timed(iters, || {
        let _t = runmetrics::phase!("body fenced", "bench", fenced);
        x = body(x);
    });
    black_box(x);
    elapsed
}

fn instant_pair(iters: u64) -> Duration {
    timed(iters, || {
        let start = Instant::now();
        let end = Instant::now();
        black_box((start, end));
    })
}

fn phase_timer(iters: u64) -> Duration {
    timed(iters, || {
        drop(black_box(runmetrics::PhaseTimer::new("phase", "bench")))
    })
}

#[runmetrics::measure("measured", module = "bench")]
fn measured() {}

fn measure_attr(iters: u64) -> Duration {
    timed(iters, measured)
}

fn measure_fn(iters: u64) -> Duration {
    timed(iters, || {
        runmetrics::measure_fn("closure", "bench", || black_box(()))
    })
}

fn phase_macro(iters: u64) -> Duration {
    timed(iters, || {
        drop(black_box(runmetrics::phase!("macro", "bench")))
    })
}

fn phase_macro_fenced(iters: u64) -> Duration {
    timed(iters, || {
        drop(black_box(runmetrics::phase!(
            "macro fenced",
            "bench",
            fenced
        )))
    })
}

fn observe_counts(iters: u64) -> Duration {
    timed(iters, || runmetrics::observe_counts(black_box(&[("n", 1)])))
}

fn phase_dynamic(iters: u64) -> Duration {
    timed(iters, || {
        drop(black_box(runmetrics::PhaseTimer::dynamic(
            black_box("dynamic"),
            "bench",
        )))
    })
}

/// A recorder that never opens a run.
static IDLE: LazyLock<runmetrics::Recorder> =
    LazyLock::new(|| runmetrics::Recorder::new(runmetrics::Config::new()).expect("recorder"));

fn no_run_open(iters: u64) -> Duration {
    let idle = &*IDLE;
    timed(iters, || drop(black_box(idle.phase("idle", "bench"))))
}

static METRICS: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();

fn metrics_histogram(iters: u64) -> Duration {
    // The handle is looked up once, as the metrics docs advise for hot loops.
    let histogram = metrics::histogram!("region_seconds");
    let took = timed(iters, || {
        let start = Instant::now();
        histogram.record(start.elapsed());
    });
    // Drains the recorded samples (what a scrape would do), untimed.
    if let Some(handle) = METRICS.get() {
        handle.run_upkeep();
    }
    took
}

static HISTOGRAM: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
        "region_seconds",
        "One region.",
    ))
    .expect("histogram")
});

fn prometheus_timer(iters: u64) -> Duration {
    let histogram = &*HISTOGRAM;
    timed(iters, || histogram.start_timer().observe_duration())
}

fn prometheus_local(iters: u64) -> Duration {
    let start = Instant::now();
    let local = HISTOGRAM.local();
    for _ in 0..iters {
        // Timed by hand: `LocalHistogram::start_timer` clones the shared
        // histogram handle (an atomic refcount) per call, which is slower.
        let began = Instant::now();
        local.observe(began.elapsed().as_secs_f64());
    }
    local.flush();
    start.elapsed()
}

fn hotpath_block(iters: u64) -> Duration {
    timed(iters, || hotpath::measure_block!("region", black_box(())))
}

/// Spans per root: a trace per 10 000 regions, like a request with many
/// small steps, so the spans of one trace stay bounded in memory.
const SPANS_PER_TRACE: u64 = 10_000;

fn fastrace_local_span(iters: u64) -> Duration {
    use fastrace::prelude::*;
    let start = Instant::now();
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(SPANS_PER_TRACE);
        let root = Span::root("trace", SpanContext::random());
        let _parent = root.set_local_parent();
        for _ in 0..n {
            let _span = LocalSpan::enter_with_local_parent("region");
        }
        done += n;
    }
    start.elapsed()
}

fn tracing_span(iters: u64) -> Duration {
    timed(iters, || {
        let span = tracing::info_span!("region");
        let _entered = span.enter();
    })
}

static MAP: LazyLock<Mutex<HashMap<&'static str, Vec<u64>>>> = LazyLock::new(Default::default);

fn mutex_map(iters: u64) -> Duration {
    let took = timed(iters, || {
        let start = Instant::now();
        let ns = start.elapsed().as_nanos() as u64;
        MAP.lock()
            .expect("map")
            .entry("region")
            .or_default()
            .push(ns);
    });
    MAP.lock().expect("map").clear(); // untimed: keeps memory bounded
    took
}

/// Everything the contenders need installed once per process: the global
/// runmetrics recorder with an open run, and each peer's recorder.
pub struct Setup {
    log_dir: PathBuf,
    _hotpath: hotpath::HotpathGuard,
}

struct Discard;

impl fastrace::collector::Reporter for Discard {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

impl Setup {
    pub fn new() -> Setup {
        let log_dir =
            std::env::temp_dir().join(format!("runmetrics-overhead-{}", std::process::id()));
        runmetrics::init_metrics(runmetrics::Config::new()).expect("init_metrics");
        runmetrics::start_run(&log_dir).expect("start_run");

        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let _ = METRICS.set(recorder.handle());
        metrics::set_global_recorder(recorder).expect("metrics recorder");

        tracing::subscriber::set_global_default(tracing_subscriber::registry())
            .expect("tracing subscriber");
        fastrace::set_reporter(Discard, fastrace::collector::Config::default());
        // No HTTP server on hotpath's default port; the report goes to a file.
        std::env::set_var("HOTPATH_METRICS_SERVER_OFF", "1");
        let hotpath = hotpath::HotpathGuardBuilder::new("overhead")
            .output_path(log_dir.join("hotpath-report.txt"))
            .build();
        Setup {
            log_dir,
            _hotpath: hotpath,
        }
    }

    /// Ends the run; returns (issued, aggregated, dropped) records.
    pub fn finish(self) -> (u64, u64, u64) {
        let path = runmetrics::end_run(serde_json::Value::Null).expect("end_run");
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("run file"))
                .expect("run file is JSON");
        let m = &file["meta"];
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        let counts = (
            n("records_issued"),
            n("records_aggregated"),
            n("records_dropped"),
        );
        fastrace::flush();
        drop(self._hotpath);
        let _ = std::fs::remove_dir_all(&self.log_dir);
        counts
    }
}

/// A contender's loop and how many regions it should time.
type Job = (fn(u64) -> Duration, u64);

/// Threads that run one contender at a time, all at once, and stay alive
/// between runs (so per-thread buffers are set up once, as in a real program).
pub struct Pool {
    jobs: Vec<Sender<Job>>,
    done: Receiver<Duration>,
}

impl Pool {
    pub fn new(threads: usize) -> Pool {
        let (done_tx, done) = unbounded();
        let barrier = Arc::new(Barrier::new(threads));
        let jobs = (0..threads)
            .map(|i| {
                let (tx, rx) = unbounded::<Job>();
                let (done_tx, barrier) = (done_tx.clone(), barrier.clone());
                thread::Builder::new()
                    .name(format!("overhead-{threads}-{i}"))
                    .spawn(move || {
                        for (run, iters) in rx {
                            barrier.wait();
                            let _ = done_tx.send(run(iters));
                        }
                    })
                    .expect("spawn");
                tx
            })
            .collect();
        Pool { jobs, done }
    }

    /// Runs `run(iters)` on every thread at once; the mean time per thread.
    pub fn run(&self, run: fn(u64) -> Duration, iters: u64) -> Duration {
        for job in &self.jobs {
            job.send((run, iters)).expect("pool thread");
        }
        let total: Duration = (0..self.jobs.len())
            .map(|_| self.done.recv().expect("pool thread"))
            .sum();
        total / self.jobs.len() as u32
    }
}
