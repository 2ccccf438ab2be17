//! Helpers shared by the CLI's tests: the binary, fixtures, and runs made
//! from them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `runmetrics` binary run with `args`, in the CLI crate's directory.
pub fn runmetrics(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runmetrics"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the runmetrics binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `base` with its first phase's durations (figures and histogram buckets,
/// kept on the 64-per-power-of-two bounds) scaled by `scale`.
pub fn scaled(base: &Value, scale: f64) -> Value {
    let mut run = base.clone();
    let g = &mut run["meta"]["phase_durations_seconds_total"][0];
    for k in [
        "duration_seconds_total",
        "min_seconds",
        "mean_seconds",
        "p50_seconds",
        "p90_seconds",
        "p99_seconds",
        "p999_seconds",
        "max_seconds",
    ] {
        g[k] = Value::from(g[k].as_f64().unwrap() * scale);
    }
    for bucket in g["histogram_ns"].as_array_mut().unwrap() {
        let lower = bucket[0].as_f64().unwrap() * scale;
        // Back to a bucket's lower bound: 64 per power of two.
        let shift = 63 - (lower as u64).leading_zeros() - 6;
        bucket[0] = Value::from(((lower as u64) >> shift) << shift);
    }
    run
}
