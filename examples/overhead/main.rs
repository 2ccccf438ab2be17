//! Prints the cost of one timed region — runmetrics and its peers, per
//! thread count, as ns/region and as a ratio to two raw TSC reads measured in
//! the same run — in under a minute, so you can check your own machine.
//!
//! cargo run --release --example overhead [-- --svg docs/overhead.svg] [--only TEXT]
//!
//! `--only TEXT` measures the floors and the contenders whose name holds TEXT.
//!
//! The criterion bench (`cargo bench --bench overhead`) measures the same
//! contenders with confidence intervals; BENCHMARKS.md records its figures.

use std::time::{Duration, Instant};

#[path = "../../benches/contenders/mod.rs"]
mod contenders;
mod svg;

use contenders::{all, settle, thread_counts, Contender, Kind, Pool, Setup};

/// Time one measurement aims at, and how many are taken (the median counts).
const ROUND: Duration = Duration::from_millis(40);
const ROUNDS: usize = 7;

/// One cell of the table: ns per region at a thread count.
pub struct Cell {
    pub contender: Contender,
    pub threads: usize,
    pub ns: f64,
}

fn measure(pool: &Pool, contender: &Contender) -> f64 {
    // Calibrate: grow the iteration count until a run takes a tenth of a round.
    let mut iters = 1_000u64;
    loop {
        let took = pool.run(contender.run, iters);
        // A loop the optimizer removed (a disabled build) never takes time.
        if iters >= 1 << 32 {
            break;
        }
        if took >= ROUND / 10 {
            iters = (iters as f64 * ROUND.as_secs_f64() / took.as_secs_f64()).max(1.0) as u64;
            break;
        }
        iters *= 4;
    }
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|_| pool.run(contender.run, iters).as_nanos() as f64 / iters as f64)
        .collect();
    ns.sort_by(f64::total_cmp);
    ns[ROUNDS / 2]
}

fn main() {
    let (mut svg_path, mut only) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--svg", Some(path)) => svg_path = Some(path),
            ("--only", Some(text)) => only = Some(text),
            _ => {
                eprintln!(
                    "usage: cargo run --release --example overhead [-- --svg PATH] [--only TEXT]"
                );
                std::process::exit(2);
            }
        }
    }
    let contenders: Vec<Contender> = all()
        .into_iter()
        .filter(|c| c.kind == Kind::Floor || only.as_ref().is_none_or(|t| c.name.contains(t)))
        .collect();
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run with --release for meaningful figures");
    }
    let started = Instant::now();
    let setup = Setup::new();
    let counts = thread_counts();
    let mut cells = Vec::new();
    for &threads in &counts {
        let pool = Pool::new(threads);
        for &contender in &contenders {
            settle();
            let ns = measure(&pool, &contender);
            cells.push(Cell {
                contender,
                threads,
                ns,
            });
        }
    }
    let (issued, aggregated, dropped) = setup.finish();

    print_table(&contenders, &cells, &counts);
    println!();
    print_targets(&cells, &counts);
    println!(
        "\nrunmetrics records: issued {issued}, aggregated {aggregated}, dropped {dropped} \
         ({:.3} %); took {:.0?}",
        100.0 * dropped as f64 / issued.max(1) as f64,
        started.elapsed()
    );
    if let Some(path) = svg_path {
        match std::fs::write(&path, svg::plot(&cells, &counts)) {
            Ok(()) => println!("plot written to {path}"),
            Err(e) => {
                eprintln!("cannot write the plot to {path}: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn ns_of(cells: &[Cell], name: &str, threads: usize) -> f64 {
    cells
        .iter()
        .find(|c| c.contender.name == name && c.threads == threads)
        .map_or(f64::NAN, |c| c.ns)
}

fn print_table(contenders: &[Contender], cells: &[Cell], counts: &[usize]) {
    print!("{:<28}", "ns/region (× TSC pair)");
    for t in counts {
        print!(" {:>20}", format!("{t} thread(s)"));
    }
    println!();
    for contender in contenders {
        print!("{:<28}", contender.name);
        for &t in counts {
            let ns = ns_of(cells, contender.name, t);
            let floor = ns_of(cells, "floor: TSC pair", t);
            print!(" {:>20}", format!("{ns:8.2} ({:5.2}×)", ns / floor));
        }
        println!();
    }
}

/// The targets, judged on this run's figures.
fn print_targets(cells: &[Cell], counts: &[usize]) {
    let regions = ["PhaseTimer::new", "#[measure]", "measure_fn", "phase!"];
    for &t in counts {
        let floor = ns_of(cells, "floor: TSC pair", t);
        // Only the regions measured (`--only` may leave some out).
        let Some(worst) = regions
            .iter()
            .map(|r| ns_of(cells, r, t))
            .filter(|ns| ns.is_finite())
            .max_by(f64::total_cmp)
        else {
            continue;
        };
        let (peer, peer_ns) = cells
            .iter()
            .filter(|c| c.threads == t && c.contender.kind == Kind::Peer)
            .map(|c| (c.contender.name, c.ns))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or(("none", f64::NAN));
        println!(
            "{t} thread(s): slowest runmetrics region {:.2}× the TSC pair; fastest peer \
             ({peer}) is {:.1}× slower than it",
            worst / floor,
            peer_ns / worst
        );
    }
}
