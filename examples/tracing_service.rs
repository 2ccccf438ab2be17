//! A small tokio service already instrumented with `tracing` spans, recorded
//! by runmetrics through `tracing_layer()`: each request span becomes the
//! phase `request` (busy time: the polls) and `request (wall)` (creation to
//! close), across `.await`s and worker threads, with no change to the code.
//!
//! cargo run --release --features tracing --example tracing_service

use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing_subscriber::prelude::*;

async fn handle(id: u64) -> u64 {
    // Waiting on a "database": wall time, not busy time.
    tokio::time::sleep(Duration::from_millis(2 + id % 5)).await;
    let sum = tracing::info_span!("parse").in_scope(|| {
        (0..20_000 + id).fold(0u64, |a, x| a.wrapping_add(std::hint::black_box(x * x)))
    });
    tokio::task::yield_now().await;
    sum
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("runmetrics-tracing-service");
    tracing_subscriber::registry()
        .with(runmetrics::tracing_layer())
        .init();
    runmetrics::init_metrics(runmetrics::Config::new().job("tracing_service"))?;
    runmetrics::start_run(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let started = Instant::now();
    let total = runtime.block_on(async {
        let tasks: Vec<_> = (0..2_000u64)
            .map(|id| tokio::spawn(handle(id).instrument(tracing::info_span!("request"))))
            .collect();
        let mut total = 0u64;
        for t in tasks {
            total = total.wrapping_add(t.await.expect("the task"));
        }
        total
    });
    let path = runmetrics::end_run(serde_json::json!({ "checksum": total }))?;
    println!(
        "2000 requests in {:?}; run file: {}",
        started.elapsed(),
        path.display()
    );
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    for e in file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "{:>16} count {:>5}  total {:>9.6} s  p50 {:>9.6} s  p99 {:>9.6} s",
            e["phase"].as_str().unwrap_or("?"),
            e["count"],
            e["duration_seconds_total"].as_f64().unwrap_or(0.0),
            e["p50_seconds"].as_f64().unwrap_or(0.0),
            e["p99_seconds"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
