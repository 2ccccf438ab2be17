//! A dynamic-name region by the number of live names (issue 16, item 3:
//! "at 10 000 live names within 1.5× its cost at 10"): K distinct names
//! made beforehand, then a loop of dynamic-name regions
//! (`Recorder::phase_dynamic`, events off: the steady state past the
//! events cap) taking the K names in turn, in a fixed pseudo-random order
//! (not their order in memory), at K = 10, 100, 1 000, 10 000 and 100 000.
//!
//! Against, in the same child process: the bare TSC pair, and two floors,
//! the same loop incrementing each name's `u64` in a `HashMap<&str, u64>`
//! of the K names (std's SipHash, and foldhash): what touching K distinct
//! places costs anyway. Figures: ns per region (the least of several rounds,
//! each kind in turn in every round), × the pair, and × the same figure at
//! 10 names. Each size runs in a child of its own (this binary again), so
//! no size inherits another's names or tables; a child checks, against its
//! own loop's counts, that the run file has every name's regions, exactly.
//!
//! `--before EXE` runs a build of this bench from before a change too,
//! child for child in turn with this one's, so that both are timed under the
//! same load. `--svg PATH` draws the curves (docs/dynamic_names.svg).
//! `--callgrind` counts, per region, instructions and first-level and
//! last-level data misses (`valgrind --tool=callgrind`, the last level
//! simulated as one core's 2 MiB L2), as the difference between two children
//! of 1 and 3 times as many regions (stable on a busy machine).
//!
//! cargo bench --bench dynamic_names [-- --before OLD_EXE] [--svg docs/dynamic_names.svg]
//! cargo bench --bench dynamic_names -- --callgrind [--before OLD_EXE]
//!
//! `RUNMETRICS_DYN_SIZES=10,10000` picks the sizes;
//! `RUNMETRICS_DYN_POLL_MS=1000` the collector's `poll_interval` (how often
//! it reads the tallies, taking their lines from the recording core).
//!
//! Under `cargo test` (no `--bench` argument): 10, 100 and 1 000 names, a
//! few thousand regions each.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use runmetrics::{Config, Events, Recorder};

mod plot;
use plot::Panel;

const CHILD: &str = "RUNMETRICS_DYN_CHILD";
const MODULE: &str = "dynamic_names";
/// Passes over the names before anything is measured: the first makes each
/// name's id and tally place, the second the rows its regions need.
const WARM_PASSES: usize = 2;

/// What a loop does per name.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Two raw TSC reads.
    Pair,
    /// `*map.get_mut(name) += 1` in std's `HashMap` (SipHash).
    Floor,
    /// The same with foldhash.
    FoldFloor,
    /// A dynamic-name region.
    Dynamic,
}

const KINDS: [Kind; 4] = [Kind::Pair, Kind::Floor, Kind::FoldFloor, Kind::Dynamic];

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Pair => "pair",
            Kind::Floor => "floor",
            Kind::FoldFloor => "fold",
            Kind::Dynamic => "dyn",
        }
    }
}

/// The K names and the order the loops take them in.
struct Names {
    names: Vec<String>,
    order: Vec<u32>,
}

/// `k` names of 11 to 15 bytes (the usual short dynamic name), and a
/// fixed pseudo-random permutation of them (Fisher–Yates on xorshift):
/// the same order in every child and build.
fn names(k: usize) -> Names {
    let names = (0..k).map(|i| format!("dyn_name_{i}")).collect();
    let mut order: Vec<u32> = (0..k as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..k).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    Names { names, order }
}

/// One child's state: the names, the recorder with its run open, the maps.
struct Loops<'n> {
    n: &'n Names,
    rec: Recorder,
    dir: std::path::PathBuf,
    clock: quanta::Clock,
    std_map: HashMap<&'n str, u64>,
    fold_map: HashMap<&'n str, u64, foldhash::fast::RandomState>,
}

impl<'n> Loops<'n> {
    fn new(n: &'n Names) -> Loops<'n> {
        let dir = std::env::temp_dir().join(format!("runmetrics-dyn-{}", std::process::id()));
        let mut config = Config::new().events(Events::None);
        // RUNMETRICS_DYN_POLL_MS: how often the collector reads the
        // tallies (10 ms by default), which takes their lines from the
        // recording core.
        if let Some(ms) = std::env::var("RUNMETRICS_DYN_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config = config.poll_interval(std::time::Duration::from_millis(ms));
        }
        let rec = Recorder::new(config).expect("recorder");
        rec.start_run(&dir).expect("start_run");
        let std_map = n.names.iter().map(|s| (s.as_str(), 0)).collect();
        let fold_map = n.names.iter().map(|s| (s.as_str(), 0)).collect();
        let mut loops = Loops {
            n,
            rec,
            dir,
            clock: quanta::Clock::new(),
            std_map,
            fold_map,
        };
        for kind in KINDS {
            loops.run(kind, WARM_PASSES);
        }
        loops
    }

    /// `passes` passes of `kind` over the names in their order.
    fn run(&mut self, kind: Kind, passes: usize) {
        let (names, order) = (&self.n.names, &self.n.order);
        for _ in 0..passes {
            match kind {
                Kind::Pair => {
                    for _ in order {
                        let a = self.clock.raw();
                        black_box((a, self.clock.raw()));
                    }
                }
                Kind::Floor => {
                    for &j in order {
                        if let Some(v) = self.std_map.get_mut(black_box(names[j as usize].as_str()))
                        {
                            *v += 1;
                        }
                    }
                }
                Kind::FoldFloor => {
                    for &j in order {
                        if let Some(v) =
                            self.fold_map.get_mut(black_box(names[j as usize].as_str()))
                        {
                            *v += 1;
                        }
                    }
                }
                Kind::Dynamic => {
                    for &j in order {
                        drop(black_box(
                            self.rec
                                .phase_dynamic(black_box(&names[j as usize]), MODULE),
                        ));
                    }
                }
            }
        }
    }

    /// Ends the run and checks that every name has exactly its regions
    /// (`passes` passes' worth) in the file, and the maps their increments.
    fn check(self, passes: usize) {
        let path = self.rec.end_run(serde_json::Value::Null).expect("end_run");
        let text = std::fs::read_to_string(&path).expect("the run file");
        let file: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let entries = file["meta"]["phase_durations_seconds_total"]
            .as_array()
            .expect("the phases");
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for e in entries.iter().filter(|e| e["module"] == MODULE) {
            let name = e["phase"].as_str().expect("a name");
            counts.insert(name, e["count"].as_u64().expect("a count"));
        }
        let want = passes as u64;
        for name in &self.n.names {
            assert_eq!(counts.get(name.as_str()), Some(&want), "regions of {name}");
            assert_eq!(self.std_map[name.as_str()], want);
            assert_eq!(self.fold_map[name.as_str()], want);
        }
        assert_eq!(counts.len(), self.n.names.len(), "no other name");
        drop(self.rec);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Passes so that a round is at least `regions` regions (and one pass).
fn passes_for(k: usize, regions: usize) -> usize {
    regions.div_ceil(k).max(1)
}

/// A timing child: `rounds` rounds of every kind in turn, `passes` passes
/// each; prints the least ns per name of each kind.
fn time_child(k: usize, passes: usize, rounds: usize) {
    let n = names(k);
    let mut loops = Loops::new(&n);
    let mut best = [f64::INFINITY; KINDS.len()];
    for _ in 0..rounds {
        for (i, kind) in KINDS.into_iter().enumerate() {
            let start = Instant::now();
            loops.run(kind, passes);
            let ns = start.elapsed().as_nanos() as f64 / (passes * k) as f64;
            best[i] = best[i].min(ns);
        }
    }
    loops.check(WARM_PASSES + rounds * passes);
    let line: Vec<String> = KINDS
        .iter()
        .zip(best)
        .map(|(kind, ns)| format!("{}_ns={ns:.3}", kind.key()))
        .collect();
    println!("{}", line.join(" "));
}

/// A callgrind child: the warm passes of every kind, then `passes` passes
/// of `kind`, and out (no `end_run`: the two children compared differ only
/// in the passes).
fn callgrind_child(k: usize, kind: Kind, passes: usize) {
    let n = names(k);
    let mut loops = Loops::new(&n);
    loops.run(kind, passes);
    std::process::exit(0);
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
}

/// Runs `exe` as a child with `spec`, under callgrind when `out` names its
/// output file; gives its standard output.
fn run_child(exe: &std::path::Path, spec: &str, callgrind: Option<&std::path::Path>) -> String {
    let mut child = match callgrind {
        Some(out) => {
            let mut c = std::process::Command::new("valgrind");
            c.args([
                "--tool=callgrind",
                "--cache-sim=yes",
                "--separate-threads=yes",
                "--D1=49152,12,64",
                "--LL=2097152,16,64",
            ])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    let out = child.env(CHILD, spec).output().expect("run the child");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "child {spec} of {} failed: {line}{}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

/// Instructions, D1 misses and LL misses (data, reads and writes) of the
/// main thread in callgrind's output files `path-NN` (one per thread: the
/// collector's work, which grows with the names and the time, is apart).
fn cache_counts(path: &std::path::Path) -> [f64; 3] {
    let main = format!("{}-01", path.display());
    let text = std::fs::read_to_string(&main).expect("callgrind's output");
    let _ = std::fs::remove_file(path);
    for n in 1..=8 {
        let _ = std::fs::remove_file(format!("{}-{n:02}", path.display()));
    }
    let events: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))
        .expect("an events line")
        .split_whitespace()
        .collect();
    let summary: Vec<f64> = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .expect("a totals line")
        .split_whitespace()
        .map(|v| v.parse().expect("a count"))
        .collect();
    let of = |names: &[&str]| -> f64 {
        names
            .iter()
            .map(|n| {
                events
                    .iter()
                    .position(|e| e == n)
                    .map_or(0.0, |i| summary[i])
            })
            .sum()
    };
    [of(&["Ir"]), of(&["D1mr", "D1mw"]), of(&["DLmr", "DLmw"])]
}

/// `--callgrind`: per region of each kind, at each size, for this build
/// and the `--before` one.
fn callgrind(sizes: &[usize], exes: &[(&str, std::path::PathBuf)]) {
    let out = std::env::temp_dir().join(format!("runmetrics-dyn-{}.cg", std::process::id()));
    println!("per region (callgrind; D1 48 KiB, LL simulated as a 2 MiB L2):");
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9}",
        "names", "kind", "instr", "D1 miss", "LL miss"
    );
    for &k in sizes {
        let passes = passes_for(k, 100_000);
        for kind in KINDS {
            for (label, exe) in exes {
                if kind != Kind::Dynamic && *label != "after" {
                    continue;
                }
                let at = |p: usize| {
                    run_child(exe, &format!("cg,{k},{},{p}", kind.key()), Some(&out));
                    cache_counts(&out)
                };
                let (a, b) = (at(passes), at(3 * passes));
                let per = |i: usize| (b[i] - a[i]) / (2 * passes * k) as f64;
                let what = match kind {
                    Kind::Dynamic => format!("{} {label}", kind.key()),
                    _ => kind.key().to_owned(),
                };
                println!(
                    "{k:>8} {what:>10} {:>9.1} {:>9.3} {:>9.3}",
                    per(0),
                    per(1),
                    per(2)
                );
            }
        }
    }
}

/// One size's figures: the least of each over the children.
#[derive(Clone, Copy)]
struct Figures {
    names: f64,
    pair: f64,
    floor: f64,
    fold: f64,
    after: f64,
    before: Option<f64>,
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let parts: Vec<&str> = spec.split(',').collect();
        let num = |i: usize| -> usize { parts[i].parse().expect("a number") };
        match parts[0] {
            "time" => time_child(num(1), num(2), num(3)),
            _ => {
                let kind = KINDS
                    .into_iter()
                    .find(|k| k.key() == parts[2])
                    .expect("a kind");
                callgrind_child(num(1), kind, num(3));
            }
        }
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let sizes: Vec<usize> = match std::env::var("RUNMETRICS_DYN_SIZES") {
        Ok(v) => v.split(',').map(|n| n.parse().expect("a number")).collect(),
        Err(_) if full => vec![10, 100, 1_000, 10_000, 100_000],
        Err(_) => {
            println!(
                "(test mode: up to 1 000 names; `cargo bench --bench dynamic_names` for figures)"
            );
            vec![10, 100, 1_000]
        }
    };
    let mut exes = vec![("after", std::env::current_exe().expect("this binary"))];
    if let Some(before) = arg("--before") {
        exes.push(("before", before.into()));
    }
    if std::env::args().any(|a| a == "--callgrind") {
        callgrind(&sizes, &exes);
        return;
    }
    // Children per build and size, alternating builds; rounds per child.
    let (children, rounds, regions) = if full { (3, 5, 400_000) } else { (1, 1, 2_000) };
    let mut all: Vec<Figures> = Vec::new();
    println!(
        "ns per region (least of {children} children × {rounds} rounds); × pair; × the same at {} names",
        sizes[0]
    );
    println!(
        "{:>7} {:>7} {:>8} {:>6} {:>8} {:>6} {:>8} {:>6} {:>6} {:>8} {:>6} {:>6}",
        "names",
        "pair",
        "floor",
        "×10",
        "fold fl",
        "×10",
        "before",
        "×pair",
        "×10",
        "after",
        "×pair",
        "×10"
    );
    for &k in &sizes {
        let spec = format!("time,{k},{},{rounds}", passes_for(k, regions));
        let mut best: Vec<[f64; KINDS.len()]> = vec![[f64::INFINITY; KINDS.len()]; exes.len()];
        for _ in 0..children {
            for (e, (_, exe)) in exes.iter().enumerate() {
                let line = run_child(exe, &spec, None);
                for (i, kind) in KINDS.iter().enumerate() {
                    best[e][i] = best[e][i].min(field(&line, &format!("{}_ns", kind.key())));
                }
            }
        }
        // The floors and the pair: the least over both builds' children.
        let least = |i: usize| best.iter().map(|b| b[i]).fold(f64::INFINITY, f64::min);
        let f = Figures {
            names: k as f64,
            pair: least(0),
            floor: least(1),
            fold: least(2),
            after: best[0][3],
            before: best.get(1).map(|b| b[3]),
        };
        all.push(f);
        let first = all[0];
        let (before, before_pair, before_10) = match (f.before, first.before) {
            (Some(b), Some(b0)) => (
                format!("{b:.2}"),
                format!("{:.2}", b / f.pair),
                format!("{:.2}", b / b0),
            ),
            _ => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{k:>7} {:>7.2} {:>8.2} {:>6.2} {:>8.2} {:>6.2} {before:>8} {before_pair:>6} {before_10:>6} {:>8.2} {:>6.2} {:>6.2}",
            f.pair,
            f.floor,
            f.floor / first.floor,
            f.fold,
            f.fold / first.fold,
            f.after,
            f.after / f.pair,
            f.after / first.after,
        );
    }
    if let Some(path) = arg("--svg") {
        std::fs::write(&path, svg(&all)).expect("write the SVG");
        println!("plot written to {path}");
    }
}

/// The bound: at 10 000 names, at most this × the cost at 10.
const TARGET: f64 = 1.5;

/// A curve to draw: its label, its colour, and its figure at a size.
type Line = (&'static str, &'static str, fn(&Figures) -> Option<f64>);

/// Two panels, names on a log scale: ns per region (before, after, the
/// floors, the pair), and each over its own figure at the first size, with
/// the target.
fn svg(all: &[Figures]) -> String {
    let curve = |f: fn(&Figures) -> Option<f64>| -> Vec<(f64, f64)> {
        all.iter().filter_map(|p| Some((p.names, f(p)?))).collect()
    };
    let over_first = |c: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        let first = c.first().map_or(1.0, |p| p.1);
        c.into_iter().map(|(n, v)| (n, v / first)).collect()
    };
    let lines: [Line; 5] = [
        ("before", "#d62728", |p| p.before),
        ("after", "#2ca02c", |p| Some(p.after)),
        ("HashMap floor (SipHash)", "#1f77b4", |p| Some(p.floor)),
        ("HashMap floor (foldhash)", "#9467bd", |p| Some(p.fold)),
        ("TSC pair", "#7f7f7f", |p| Some(p.pair)),
    ];
    let ns: Vec<_> = lines
        .iter()
        .map(|&(l, c, f)| (l, c, curve(f)))
        .filter(|c| !c.2.is_empty())
        .collect();
    let rel: Vec<_> = lines[..4]
        .iter()
        .map(|&(l, c, f)| (l, c, over_first(curve(f))))
        .filter(|c| !c.2.is_empty())
        .collect();
    let panels: [Panel; 2] = [
        (
            "ns per region",
            "a dynamic-name region, every name in turn",
            ns,
            None,
        ),
        (
            "× at 10 names",
            "the same over its cost at 10 names",
            rel,
            Some(TARGET),
        ),
    ];
    plot::svg(&panels, "live names")
}
