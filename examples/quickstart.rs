//! The seed's example: one run with two phases, a measured function, counts
//! and a process sample; writes `metrics_logs/<run_id>.json` and prints a
//! per-phase table.
//!
//! cargo run --release --example quickstart

use std::time::Duration;

use serde_json::{json, Value};

#[runmetrics::measure("infer_step", module = "inference")]
fn infer_step(i: u64) -> u64 {
    // Stand-in for one inference step: a little arithmetic.
    (0..2_000 + i % 500).fold(i, |acc, x| {
        acc.wrapping_mul(6364136223846793005).wrapping_add(x)
    })
}

fn do_grounding() {
    std::thread::sleep(Duration::from_millis(20));
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    runmetrics::init_metrics(
        runmetrics::Config::new()
            .job("al_inference")
            .grouping("env", "dev"),
    )?;
    let run_id = runmetrics::start_run("metrics_logs")?;
    println!("run {run_id}");

    for _ in 0..5 {
        let _t = runmetrics::PhaseTimer::new("grounding", "pipeline");
        do_grounding();
    }
    let mut acc = 0;
    {
        let _t = runmetrics::PhaseTimer::new("execute", "pipeline");
        for i in 0..20_000 {
            acc ^= infer_step(i);
        }
    }
    std::hint::black_box(acc);
    runmetrics::observe_counts(&[("grounded_rules", 10), ("facts_count", 200)]);
    runmetrics::sample_process_gauges();

    let path = runmetrics::end_run(json!({"facts_final": 100, "rules_total": 50}))?;
    print_table(&path)?;
    println!("\nrun file: {}", path.display());
    Ok(())
}

/// Reads the run file back and prints its phases and functions.
fn print_table(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let meta = &file["meta"];
    println!(
        "\n{:<28} {:>8} {:>12} {:>12} {:>12}",
        "module/phase", "count", "total", "p50", "p99"
    );
    let rows = meta["phase_durations_seconds_total"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e, "phase"))
        .chain(
            meta["function_durations_seconds_total"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| (e, "name")),
        );
    for (e, key) in rows {
        println!(
            "{:<28} {:>8} {:>12} {:>12} {:>12}",
            format!(
                "{}/{}",
                e["module"].as_str().unwrap_or(""),
                e[key].as_str().unwrap_or("")
            ),
            e["count"].as_u64().unwrap_or(0),
            human(e["duration_seconds_total"].as_f64()),
            human(e["p50_seconds"].as_f64()),
            human(e["p99_seconds"].as_f64()),
        );
    }
    println!(
        "\ncpu max {:.1}%  mean {:.1}%  rss max {:.1} MiB  records {} (dropped {})",
        meta["cpu_percent_max"].as_f64().unwrap_or(0.0),
        meta["cpu_percent_mean"].as_f64().unwrap_or(0.0),
        meta["rss_max_mib"].as_f64().unwrap_or(0.0),
        meta["records_issued"],
        meta["records_dropped"],
    );
    Ok(())
}

fn human(seconds: Option<f64>) -> String {
    match seconds.unwrap_or(0.0) {
        s if s >= 1.0 => format!("{s:.3} s"),
        s if s >= 1e-3 => format!("{:.3} ms", s * 1e3),
        s if s >= 1e-6 => format!("{:.3} µs", s * 1e6),
        s => format!("{:.0} ns", s * 1e9),
    }
}
