//! `n` regions of one kind in a loop, for instruction counts under
//! callgrind: run it with two values of `n` and divide the difference.
//!
//! `cargo run --release --example region_cost -- phase 1000` (kinds: `phase`,
//! `fenced`, `tsc`, `fenced_tsc`).

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "phase".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("runmetrics-region-cost-{}", std::process::id()));
    runmetrics::start_run(&dir).expect("start_run");
    match kind.as_str() {
        "phase" => (0..n).for_each(|_| drop(black_box(runmetrics::phase!("p")))),
        "fenced" => (0..n).for_each(|_| drop(black_box(runmetrics::phase!("p", fenced)))),
        "tsc" => (0..n).for_each(|_| {
            // SAFETY: `rdtsc` exists on every x86_64 processor.
            let a = unsafe { core::arch::x86_64::_rdtsc() };
            // SAFETY: as above.
            black_box(unsafe { core::arch::x86_64::_rdtsc() } - a);
        }),
        other => panic!("unknown kind {other}"),
    }
    runmetrics::end_run(serde_json::Value::Null).expect("end_run");
    let _ = std::fs::remove_dir_all(&dir);
}
