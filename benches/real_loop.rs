//! What a timed region adds to a loop that does work: bodies of about 10, 50
//! and 200 ns of dependent arithmetic (a chain of multiply-rotates, each
//! step needing the one before, so nothing can be hoisted or overlapped with
//! itself), run bare, with a bare TSC pair around the body, and inside each
//! runmetrics timer and each peer of `benches/contenders`. For each, the ns
//! per iteration over the bare body, and that added cost as a ratio to what
//! the bare TSC pair adds in the same run. BENCHMARKS.md records the figures.
//!
//! cargo bench --bench real_loop [-- --only TEXT] [-- --rounds N]
//!
//! Each contender runs in a block of its own, after the last one's
//! background work settled: 31 rounds of the bare body, the bare pair and
//! the contender, each the least of 5 runs of about 0.4 ms (so a run the
//! scheduler preempted is left out). Its added cost, and the pair's, are
//! the median over rounds of the time less the bare body's of the same
//! round, so drift slower than a round (another build starting, the host
//! changing the clock speed) cancels out, and the ratio is to the pair of
//! its own block. Under `cargo test` (no `--bench` argument) it runs
//! a few thousand iterations of each, as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

mod contenders;
use contenders::Setup;

/// One contender: `iters` iterations of a body, each timed its way; the
/// loop's elapsed time.
type Run = fn(u64) -> Duration;

/// The body: `STEPS` dependent multiply-rotates (about 1.5 ns each here).
#[inline(always)]
fn body<const STEPS: u32>(mut x: u64) -> u64 {
    for _ in 0..STEPS {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7);
    }
    x
}

/// Times `iters` iterations of `each`, which takes and returns the chain's
/// value, with `Instant` around the whole loop.
#[inline(always)]
fn looped(iters: u64, mut each: impl FnMut(u64) -> u64) -> Duration {
    let mut x = black_box(1);
    let start = Instant::now();
    for _ in 0..iters {
        x = each(x);
    }
    let took = start.elapsed();
    black_box(x);
    took
}

static CLOCK: std::sync::LazyLock<quanta::Clock> = std::sync::LazyLock::new(quanta::Clock::new);

fn bare<const S: u32>(iters: u64) -> Duration {
    looped(iters, body::<S>)
}

/// Two raw TSC reads around the body, their difference summed: the least
/// any timed region can do.
fn tsc_pair<const S: u32>(iters: u64) -> Duration {
    let clock = &*CLOCK;
    let mut total = 0u64;
    let took = looped(iters, |x| {
        let start = clock.raw();
        let x = body::<S>(x);
        total = total.wrapping_add(clock.raw().wrapping_sub(start));
        x
    });
    black_box(total);
    took
}

fn phase_macro<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let _t = runmetrics::phase!("loop phase!", "real_loop");
        body::<S>(x)
    })
}

/// Sampled timing: every region counted, about one in 64 timed.
fn phase_sampled<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let _t = runmetrics::phase!("loop phase! sample = 64", "real_loop", sample = 64);
        body::<S>(x)
    })
}

/// Fenced reads, every region timed: the cost the sampled fenced timer saves.
fn phase_fenced<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let _t = runmetrics::phase!("loop phase! fenced", "real_loop", fenced);
        body::<S>(x)
    })
}

/// Sampled timing with fenced reads: about one in 64 timed, in program order.
fn phase_fenced_sampled<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let _t = runmetrics::phase!(
            "loop phase! sample = 64, fenced",
            "real_loop",
            sample = 64,
            fenced
        );
        body::<S>(x)
    })
}

fn phase_timer_sampled<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let _t = runmetrics::PhaseTimer::sampled("loop PhaseTimer::sampled", "real_loop", 64);
        body::<S>(x)
    })
}

fn phase_timer<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let _t = runmetrics::PhaseTimer::new("loop PhaseTimer::new", "real_loop");
        body::<S>(x)
    })
}

#[runmetrics::measure("loop measure 10", module = "real_loop")]
fn measured_10(x: u64) -> u64 {
    body::<STEPS_10>(x)
}

#[runmetrics::measure("loop measure 50", module = "real_loop")]
fn measured_50(x: u64) -> u64 {
    body::<STEPS_50>(x)
}

#[runmetrics::measure("loop measure 200", module = "real_loop")]
fn measured_200(x: u64) -> u64 {
    body::<STEPS_200>(x)
}

fn measure_attr<const S: u32>(iters: u64) -> Duration {
    let f = match S {
        STEPS_10 => measured_10,
        STEPS_50 => measured_50,
        _ => measured_200,
    };
    looped(iters, f)
}

fn measure_fn<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        runmetrics::measure_fn("loop measure_fn", "real_loop", || body::<S>(x))
    })
}

fn observe_counts<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let x = body::<S>(x);
        runmetrics::observe_counts(&[("loop count", (x & 0xff) as i64)]);
        x
    })
}

fn metrics_histogram<const S: u32>(iters: u64) -> Duration {
    let histogram = metrics::histogram!("loop_region_seconds");
    looped(iters, |x| {
        let start = Instant::now();
        let x = body::<S>(x);
        histogram.record(start.elapsed());
        x
    })
}

static HISTOGRAM: std::sync::LazyLock<prometheus::Histogram> = std::sync::LazyLock::new(|| {
    prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
        "loop_region_seconds",
        "One region.",
    ))
    .expect("histogram")
});

fn prometheus_timer<const S: u32>(iters: u64) -> Duration {
    let histogram = &*HISTOGRAM;
    looped(iters, |x| {
        let timer = histogram.start_timer();
        let x = body::<S>(x);
        timer.observe_duration();
        x
    })
}

fn prometheus_local<const S: u32>(iters: u64) -> Duration {
    let local = HISTOGRAM.local();
    let took = looped(iters, |x| {
        let began = Instant::now();
        let x = body::<S>(x);
        local.observe(began.elapsed().as_secs_f64());
        x
    });
    local.flush();
    took
}

fn hotpath_block<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        hotpath::measure_block!("loop region", body::<S>(x))
    })
}

fn fastrace_local_span<const S: u32>(iters: u64) -> Duration {
    use fastrace::prelude::*;
    // A trace per 10 000 regions, as in `benches/contenders`.
    let mut x = black_box(1);
    let start = Instant::now();
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(10_000);
        let root = Span::root("trace", SpanContext::random());
        let _parent = root.set_local_parent();
        for _ in 0..n {
            let _span = LocalSpan::enter_with_local_parent("loop region");
            x = body::<S>(x);
        }
        done += n;
    }
    let took = start.elapsed();
    black_box(x);
    took
}

fn tracing_span<const S: u32>(iters: u64) -> Duration {
    looped(iters, |x| {
        let span = tracing::info_span!("loop region");
        let _entered = span.enter();
        body::<S>(x)
    })
}

/// Steps per body: about 10, 50 and 200 ns on the reference machine
/// (BENCHMARKS.md gives the bare body's measured time with each table).
const STEPS_10: u32 = 7;
const STEPS_50: u32 = 33;
const STEPS_200: u32 = 132;

/// The contenders of one body size, the bare body and the pair first.
fn cases<const S: u32>() -> Vec<(&'static str, Run)> {
    vec![
        ("bare body", bare::<S>),
        ("TSC pair", tsc_pair::<S>),
        ("phase!", phase_macro::<S>),
        ("phase! sample = 64", phase_sampled::<S>),
        ("PhaseTimer::sampled(.., 64)", phase_timer_sampled::<S>),
        ("phase! fenced", phase_fenced::<S>),
        ("phase! sample = 64, fenced", phase_fenced_sampled::<S>),
        ("PhaseTimer::new", phase_timer::<S>),
        ("#[measure]", measure_attr::<S>),
        ("measure_fn", measure_fn::<S>),
        ("observe_counts (1 value)", observe_counts::<S>),
        ("metrics histogram!", metrics_histogram::<S>),
        ("prometheus start_timer", prometheus_timer::<S>),
        ("prometheus LocalHistogram", prometheus_local::<S>),
        ("hotpath measure_block!", hotpath_block::<S>),
        ("fastrace LocalSpan", fastrace_local_span::<S>),
        ("tracing span", tracing_span::<S>),
    ]
}

const RUNMETRICS: [&str; 4] = ["phase!", "PhaseTimer::new", "#[measure]", "measure_fn"];
/// Sampled timing's rows; target: at most 0.3 × the pair's added cost.
const SAMPLED: [&str; 3] = [
    "phase! sample = 64",
    "PhaseTimer::sampled(.., 64)",
    "phase! sample = 64, fenced",
];
const PEERS: [&str; 6] = [
    "metrics histogram!",
    "prometheus start_timer",
    "prometheus LocalHistogram",
    "hotpath measure_block!",
    "fastrace LocalSpan",
    "tracing span",
];

/// Runs per contender per round, of which the least counts.
const REPEATS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One contender's block of rounds: its median time per iteration, and the
/// medians of its and the pair's added ns (each less the bare body's time
/// of the same round).
struct Block {
    ns: f64,
    added: f64,
    pair_added: f64,
    bare: f64,
}

/// Runs `n` iterations `REPEATS` times; the least, in ns per iteration. A
/// run the scheduler preempted (other builds share the cores) is left out.
fn least(run: Run, n: u64) -> f64 {
    (0..REPEATS)
        .map(|_| run(n).as_nanos() as f64 / n as f64)
        .fold(f64::INFINITY, f64::min)
}

/// Iterations that take about `round`.
fn calibrate(run: Run, round: Duration) -> u64 {
    let mut n = 1_000u64;
    loop {
        let took = run(n);
        if took >= round / 8 || n >= 1 << 34 {
            return (n as f64 * round.as_secs_f64() / took.as_secs_f64().max(1e-9)).max(1.0) as u64;
        }
        n *= 4;
    }
}

/// `rounds` rounds of the bare body, the pair and `run`, in that order.
fn block(bare: Run, pair: Run, run: Run, rounds: usize, round: Duration) -> Block {
    let n: Vec<u64> = [bare, pair, run]
        .iter()
        .map(|&r| calibrate(r, round))
        .collect();
    let (mut ns, mut added, mut pair_added, mut bare_ns) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let b = least(bare, n[0]);
        let p = least(pair, n[1]);
        let t = least(run, n[2]);
        bare_ns.push(b);
        ns.push(t);
        added.push(t - b);
        pair_added.push(p - b);
    }
    Block {
        ns: median(ns),
        added: median(added),
        pair_added: median(pair_added),
        bare: median(bare_ns),
    }
}

/// Measures one body size; prints its table and the targets' verdict.
fn measure(
    label: &str,
    all: Vec<(&'static str, Run)>,
    only: Option<&str>,
    rounds: usize,
    round: Duration,
) {
    let (bare, pair) = (all[0].1, all[1].1);
    println!("{label}:");
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>11} {:>9}",
        "", "bare ns", "ns/iter", "added ns", "pair added", "× pair's"
    );
    let mut results = Vec::new();
    for &(name, run) in &all[1..] {
        if name != "TSC pair" && !only.is_none_or(|t| name.contains(t)) {
            continue;
        }
        // Lets the last contender's background work (fastrace's and our
        // collector, hotpath's worker) finish before this one's block.
        if rounds > 1 {
            contenders::settle();
        }
        let b = block(bare, pair, run, rounds, round);
        println!(
            "  {name:<28} {:>9.2} {:>9.2} {:>9.2} {:>11.2} {:>9.2}",
            b.bare,
            b.ns,
            b.added,
            b.pair_added,
            b.added / b.pair_added
        );
        results.push((name, b));
    }
    let of = |name: &str| results.iter().find(|(n, _)| *n == name).map(|(_, b)| b);
    let worst = RUNMETRICS
        .iter()
        .filter_map(|r| of(r))
        .max_by(|a, b| (a.added / a.pair_added).total_cmp(&(b.added / b.pair_added)));
    let fastest_peer = PEERS
        .iter()
        .filter_map(|p| Some((p, of(p)?)))
        .min_by(|a, b| a.1.added.total_cmp(&b.1.added));
    for name in SAMPLED {
        if let Some(b) = of(name) {
            println!(
                "  {name} adds {:.2} ns, {:.2}× the pair's {:.2} ns (target: at most 0.3×)",
                b.added,
                b.added / b.pair_added,
                b.pair_added
            );
        }
    }
    if let (Some(worst), Some((peer, peer_b))) = (worst, fastest_peer) {
        println!(
            "  slowest runmetrics region adds {:.2}× the pair's; the fastest peer ({peer}) adds {:.1}× what it adds",
            worst.added / worst.pair_added,
            peer_b.added / worst.added
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut args = std::env::args().skip(1);
    let (mut only, mut rounds) = (None, if full { 31 } else { 1 });
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => only = args.next(),
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(rounds),
            _ => {}
        }
    }
    let round = if full {
        Duration::from_micros(400)
    } else {
        println!("(test mode: a smoke run; `cargo bench --bench real_loop` for figures)");
        Duration::from_micros(200)
    };
    let setup = Setup::new();
    let only = only.as_deref();
    measure("~10 ns body", cases::<STEPS_10>(), only, rounds, round);
    measure("~50 ns body", cases::<STEPS_50>(), only, rounds, round);
    measure("~200 ns body", cases::<STEPS_200>(), only, rounds, round);
    let (issued, aggregated, dropped) = setup.finish();
    println!("runmetrics records: issued {issued}, aggregated {aggregated}, dropped {dropped}");
    estimate_against_exact(
        if full { 40 } else { 2 },
        if full { 500_000 } else { 5_000 },
    );
    warm_read(
        if full { 20 } else { 1 },
        if full { 200_000 } else { 2_000 },
    );
}

/// The cause of the residual `estimate_against_exact` once showed, without
/// runmetrics: bare fenced TSC pairs around the pinned ~50 ns body, timing
/// every iteration (exact), about one in 64 (a random stride, as sampled
/// timing draws), and one in 64 with an unfenced read thrown away just
/// before the pair (what `Region::begin_one_in` does). Each one's mean
/// pair under 4 096 ticks, and its difference from the exact one's.
fn warm_read(blocks: u64, per_block: u64) {
    #[cfg(target_arch = "x86_64")]
    {
        #[inline(always)]
        fn fenced(clock: &quanta::Clock) -> u64 {
            use core::arch::x86_64::_mm_lfence;
            // SAFETY: `lfence` is part of SSE2, which every x86_64 processor
            // has; it has no preconditions.
            unsafe { _mm_lfence() };
            let t = clock.raw();
            // SAFETY: as above.
            unsafe { _mm_lfence() };
            t
        }
        /// Pairs of up to 4 095 ticks, by ticks.
        struct Pairs(Vec<u64>);
        impl Pairs {
            fn add(&mut self, ticks: u64) {
                if let Some(c) = self.0.get_mut(ticks as usize) {
                    *c += 1;
                }
            }
            fn mean(&self) -> f64 {
                let (sum, n) = self
                    .0
                    .iter()
                    .enumerate()
                    .fold((0, 0), |(sum, n), (t, &c)| (sum + t as u64 * c, n + c));
                sum as f64 / n as f64
            }
        }
        let clock = &*CLOCK;
        let (mut x, mut rng, mut skip) = (black_box(1u64), 0x9E37_79B9_7F4A_7C15u64, 0u64);
        let mut pairs: [Pairs; 3] = std::array::from_fn(|_| Pairs(vec![0; 4096]));
        let pinned = |x: u64| black_box(body::<STEPS_50>(black_box(x)));
        for _ in 0..blocks {
            let [exact, sampled, warmed] = &mut pairs;
            for _ in 0..per_block / 16 {
                let start = fenced(clock);
                x = pinned(x);
                exact.add(fenced(clock) - start);
            }
            for (warm, pairs) in [(false, sampled), (true, warmed)] {
                for _ in 0..per_block {
                    if skip > 0 {
                        skip -= 1;
                        x = pinned(x);
                        continue;
                    }
                    if warm {
                        black_box(clock.raw());
                    }
                    let start = fenced(clock);
                    x = pinned(x);
                    pairs.add(fenced(clock) - start);
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    skip = ((rng >> 32) * 127) >> 32;
                }
            }
        }
        black_box(x);
        let exact = pairs[0].mean();
        println!("bare fenced TSC pairs around the ~50 ns body, mean under 4 096 ticks:");
        println!("  exact {exact:.1} ticks");
        for (label, pairs) in [("1 in 64", &pairs[1]), ("1 in 64, a read first", &pairs[2])] {
            let mean = pairs.mean();
            println!(
                "  {label} {mean:.1} ticks ({:+.2} %)",
                (mean / exact - 1.0) * 100.0
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (blocks, per_block);
}

/// The ~50 ns body timed exactly and sampled (`sample = 64`), unfenced
/// (`phase!`) and fenced (`phase!(.., fenced)`), in alternate blocks of
/// `per_block` iterations, `blocks` of each, in one run, with a block of the
/// bare body between: each sampled entry's estimated total against the
/// exact one's of the same reads, with its standard error, its count
/// against the loop's, and `Instant` around each side's blocks.
fn estimate_against_exact(blocks: u64, per_block: u64) {
    let dir = std::env::temp_dir().join(format!("runmetrics-real-loop-{}", std::process::id()));
    runmetrics::start_run(&dir).expect("start_run");
    let mut x = black_box(1);
    // Instant around each loop's blocks, summed: what each loop took in all,
    // the estimate's independent bracket.
    let mut wall = [0.0f64; 5];
    /// `per_block` iterations of `each`, inline, added to `wall`.
    #[inline(always)]
    fn timed(per_block: u64, wall: &mut f64, x: &mut u64, each: impl Fn(u64) -> u64) {
        let t = Instant::now();
        for _ in 0..per_block {
            *x = each(*x);
        }
        *wall += t.elapsed().as_secs_f64();
    }
    /// The body between two `black_box`es: work on registers alone may be
    /// moved out of a region by the compiler (the clock reads order memory
    /// accesses, not arithmetic), which then times an empty region.
    #[inline(always)]
    fn pinned(x: u64) -> u64 {
        black_box(body::<STEPS_50>(black_box(x)))
    }
    for _ in 0..blocks {
        let [exact, sampled, fenced, fenced_sampled, bare] = &mut wall;
        timed(per_block, exact, &mut x, |x| {
            let _t = runmetrics::phase!("accuracy exact", "real_loop");
            pinned(x)
        });
        timed(per_block, sampled, &mut x, |x| {
            let _t = runmetrics::phase!("accuracy sampled", "real_loop", sample = 64);
            pinned(x)
        });
        timed(per_block, fenced, &mut x, |x| {
            let _t = runmetrics::phase!("accuracy fenced exact", "real_loop", fenced);
            pinned(x)
        });
        timed(per_block, fenced_sampled, &mut x, |x| {
            let _t =
                runmetrics::phase!("accuracy fenced sampled", "real_loop", sample = 64, fenced);
            pinned(x)
        });
        timed(per_block, bare, &mut x, pinned);
    }
    black_box(x);
    let path = runmetrics::end_run(serde_json::Value::Null).expect("end_run");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("run file"))
            .expect("run file is JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let entry = |name: &str| {
        file["meta"]["phase_durations_seconds_total"]
            .as_array()
            .expect("phases")
            .iter()
            .find(|e| e["phase"] == name)
            .cloned()
            .expect("the phase's entry")
    };
    let n = blocks * per_block;
    let ns = |seconds: f64| seconds * 1e9 / n as f64;
    println!(
        "~50 ns body, sample = 64 against exact, {n} regions each; Instant around the bare body's blocks: {:.2} ns a region",
        ns(wall[4])
    );
    for (label, exact, sampled, wall_exact, wall_sampled) in [
        (
            "unfenced",
            "accuracy exact",
            "accuracy sampled",
            wall[0],
            wall[1],
        ),
        (
            "fenced",
            "accuracy fenced exact",
            "accuracy fenced sampled",
            wall[2],
            wall[3],
        ),
    ] {
        let (exact, sampled) = (entry(exact), entry(sampled));
        let total = |e: &serde_json::Value| e["duration_seconds_total"].as_f64().unwrap_or(0.0);
        let se = sampled["sampled"]["duration_seconds_total_se"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let off = total(&sampled) / total(&exact) - 1.0;
        println!(
            "  {label}: estimated total {:.6} s (se {:.6} s, {:.2} %), exact {:.6} s: {:+.2} % \
             ({:+.1} se; target: within 2 %); count {} of {n}, {} timed",
            total(&sampled),
            se,
            se / total(&sampled) * 100.0,
            total(&exact),
            off * 100.0,
            (total(&sampled) - total(&exact)) / se,
            sampled["count"],
            sampled["sampled"]["timed"],
        );
        println!(
            "    a region: estimated {:.2} ns, exact {:.2} ns; Instant a loop's iteration: sampled {:.2} ns, exact {:.2} ns",
            ns(total(&sampled)),
            ns(total(&exact)),
            ns(wall_sampled),
            ns(wall_exact),
        );
        // Robust to the few regions a preemption lengthened (which make the
        // standard error large on a loaded machine): the medians, and the
        // mean of the regions under 1 µs, from each entry's histogram.
        let p50 = |e: &serde_json::Value| e["p50_seconds"].as_f64().unwrap_or(f64::NAN) * 1e9;
        let under_1us = |e: &serde_json::Value| {
            let (mut sum, mut n, mut all) = (0.0, 0.0, 0.0);
            for b in e["histogram_ns"].as_array().into_iter().flatten() {
                let (ns, count) = (b[0].as_f64().unwrap_or(0.0), b[1].as_f64().unwrap_or(0.0));
                all += count;
                if ns < 1_000.0 {
                    sum += ns * count;
                    n += count;
                }
            }
            (sum / n, 1.0 - n / all)
        };
        let ((ue, xe), (us, xs)) = (under_1us(&exact), under_1us(&sampled));
        println!(
            "    median: sampled {:.1} ns, exact {:.1} ns; mean under 1 µs: sampled {us:.2} ns, exact {ue:.2} ns, {:+.2} % \
             (over 1 µs: {:.4} % of the sampled, {:.4} % of the exact)",
            p50(&sampled),
            p50(&exact),
            (us / ue - 1.0) * 100.0,
            xs * 100.0,
            xe * 100.0,
        );
    }
}
