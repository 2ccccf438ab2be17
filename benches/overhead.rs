//! The cost of one timed region — runmetrics and the peers a Rust user would
//! pick instead — per thread at 1, 2 and `available_parallelism` threads, all
//! in one run next to the floors (two raw TSC reads, an `Instant` pair, an
//! empty loop). BENCHMARKS.md records the ratios.
//!
//! cargo bench --bench overhead
//!
//! Built without the `enabled` feature (`--no-default-features`), the
//! runmetrics rows show what the off switch leaves: the empty loop.

use criterion::{criterion_group, criterion_main, Criterion};

mod contenders;
use contenders::{all, settle, thread_counts, Pool, Setup};

fn region(c: &mut Criterion) {
    let setup = Setup::new();
    for threads in thread_counts() {
        let pool = Pool::new(threads);
        let mut group = c.benchmark_group(format!("region/{threads} thread(s)"));
        for contender in all() {
            settle();
            group.bench_function(contender.name, |b| {
                b.iter_custom(|iters| pool.run(contender.run, iters))
            });
        }
        group.finish();
    }
    let (issued, aggregated, dropped) = setup.finish();
    eprintln!("runmetrics records: issued {issued}, aggregated {aggregated}, dropped {dropped}");
}

criterion_group!(benches, region);
criterion_main!(benches);
