//! A tight inference loop: several worker threads, each timing millions of
//! small regions (a step, and phases inside it), then the run's table and
//! its accounting. Shows what the recorder costs when the regions are tiny.
//!
//! cargo run --release --example inference_loop [threads] [steps_per_thread]
//!
//! By default it runs one worker fewer than there are cores, leaving one for
//! the collector. Regions are counted on their own thread and never dropped;
//! with every core busy recording, the collector can fall behind on events
//! and count values, which are then dropped (and counted) unless
//! `Overflow::Block` is set.

use std::time::Instant;

use serde_json::{json, Value};

#[runmetrics::measure("infer_step", module = "inference")]
fn infer_step(state: u64) -> u64 {
    let a = {
        let _t = runmetrics::phase!("match", "inference");
        state.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7)
    };
    let _t = runmetrics::phase!("fire", "inference");
    (0..8).fold(a, |acc, x| acc ^ (acc >> 3).wrapping_add(x))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads: usize = args.next().map_or(Ok((cores - 1).max(1)), |a| a.parse())?;
    let steps: u64 = args.next().map_or(Ok(2_000_000), |a| a.parse())?;

    runmetrics::init_metrics(runmetrics::Config::new().job("inference_loop"))?;
    runmetrics::start_run("metrics_logs")?;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            std::thread::Builder::new()
                .name(format!("worker-{t}"))
                .spawn_scoped(s, move || {
                    let mut state = t as u64;
                    for _ in 0..steps {
                        state = infer_step(state);
                    }
                    std::hint::black_box(state);
                })
                .expect("spawn worker");
        }
    });
    let wall = started.elapsed();
    let regions = threads as u64 * steps * 3;
    let path = runmetrics::end_run(json!({"worker_threads": threads, "steps_per_thread": steps}))?;

    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let meta = &file["meta"];
    println!(
        "{regions} regions on {threads} threads in {:.3} s: {:.1} M regions/s",
        wall.as_secs_f64(),
        regions as f64 / wall.as_secs_f64() / 1e6
    );
    for e in meta["phase_durations_seconds_total"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            meta["function_durations_seconds_total"]
                .as_array()
                .into_iter()
                .flatten(),
        )
    {
        let name = e
            .get("phase")
            .or_else(|| e.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        println!(
            "  {:<12} count {:>10}  p50 {:>6.0} ns  p99 {:>6.0} ns",
            name,
            e["count"].as_u64().unwrap_or(0),
            e["p50_seconds"].as_f64().unwrap_or(0.0) * 1e9,
            e["p99_seconds"].as_f64().unwrap_or(0.0) * 1e9,
        );
    }
    println!(
        "records issued {} aggregated {} dropped {}; events written {} omitted {}",
        meta["records_issued"],
        meta["records_aggregated"],
        meta["records_dropped"],
        meta["events_written"],
        meta["events_omitted"],
    );
    if meta["records_dropped"].as_u64().unwrap_or(0) > 0 {
        println!(
            "count values were dropped: the collector could not keep up ({cores} cores, \
             {threads} recording threads); leave it a core, or use \
             Config::overflow(Overflow::Block)"
        );
    }
    println!("run file: {}", path.display());
    Ok(())
}
