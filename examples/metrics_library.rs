//! A library instrumented with the `metrics` facade, feeding runmetrics: its
//! `histogram!` values land in the run file's `meta.histograms` (with the
//! unit given by `describe_histogram!`), its `counter!` and `gauge!` in
//! `meta.counts` as `name{label="value"}`, and all of it on `/metrics`.
//!
//! cargo run --example metrics_library --features metrics

/// The library: knows only the `metrics` crate.
mod library {
    pub fn handle(route: &'static str, bytes: usize) {
        metrics::counter!("requests_total", "route" => route).increment(1);
        metrics::histogram!("response_bytes", "route" => route).record(bytes as f64);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    runmetrics::install_metrics()?;
    metrics::describe_histogram!("response_bytes", metrics::Unit::Bytes, "response size");
    let dir = std::env::temp_dir().join("runmetrics-metrics-library");
    runmetrics::init_metrics(runmetrics::Config::new().job("metrics_library"))?;
    runmetrics::start_run(&dir)?;
    for i in 0..10_000 {
        library::handle(if i % 3 == 0 { "/a" } else { "/b" }, 200 + (i * 37) % 5_000);
    }
    metrics::gauge!("queue_depth").set(4.0);
    let path = runmetrics::end_run(serde_json::Value::Null)?;
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    for h in file["meta"]["histograms"].as_array().into_iter().flatten() {
        println!(
            "{} {} ({}): count {} p50 {} p99 {}",
            h["name"], h["labels"], h["unit"], h["count"], h["p50"], h["p99"]
        );
    }
    println!("written to {}", path.display());
    Ok(())
}
