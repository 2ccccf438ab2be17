//! The criterion adapter at work: a benchmark whose routine records two
//! phases, written to `target/runmetrics/new/infer_step.json` (the run
//! before moves to `base/`). Compare two `cargo bench` runs phase by phase:
//!
//! cargo bench --features criterion --bench criterion_phases
//! # change the code, then again
//! cargo bench --features criterion --bench criterion_phases
//! cargo run -p runmetrics-cli -- compare --each target/runmetrics/base target/runmetrics/new

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn tokenize(n: u64) -> u64 {
    (0..n).fold(0, |a, x| a ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn infer(c: &mut Criterion) {
    runmetrics::CriterionRuns::new()
        .bench_function(c, "infer_step", |b| {
            b.iter(|| {
                let t = {
                    let _p = runmetrics::phase!("tokenize", "bench");
                    tokenize(black_box(64))
                };
                let _p = runmetrics::phase!("forward", "bench");
                black_box(tokenize(black_box(t % 256 + 256)))
            })
        })
        .expect("runmetrics run file");
}

criterion_group!(benches, infer);
criterion_main!(benches);
