//! `kill -9` of a recording process at random moments: every time, the run
//! file it leaves parses and has the layout, and its counts never go
//! backwards from one snapshot to the next.
//!
//! A test without the harness: the same binary is the recording child when
//! `RUNMETRICS_KILL9_CHILD` names its log directory.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use runmetrics::{Config, Recorder};
use serde_json::Value;

const CHILD: &str = "RUNMETRICS_KILL9_CHILD";
const FLUSH: Duration = Duration::from_millis(50);

fn main() {
    match std::env::var_os(CHILD) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    }
}

/// Records on two threads until killed.
fn child(dir: &Path) {
    let rec = Recorder::new(Config::new().flush_interval(FLUSH).event_cap(2_000)).unwrap();
    rec.start_run(dir).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut n: i64 = 0;
                loop {
                    {
                        let _t = rec.phase("work", "kill9");
                        std::hint::black_box((0..200).sum::<u64>());
                    }
                    n += 1;
                    if n % 1_000 == 0 {
                        rec.observe_counts(&[("done", n)]);
                    }
                }
            });
        }
    });
}

/// What one look at the run file found.
struct Look {
    work: u64,
    issued: u64,
}

/// The newest run file in `dir` (temporary files start with a dot).
fn run_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// Parses the file and checks the layout; panics with the reason.
fn check(path: &Path) -> Look {
    let text = std::fs::read_to_string(path).unwrap();
    let file: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{text}", path.display()));
    let meta = file["meta"].as_object().expect("meta is an object");
    let seed = common::SEED_META_KEYS;
    let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(&keys[..seed.len()], &seed, "seed keys in order");
    assert_eq!(meta["in_progress"], true, "a killed run is never ended");
    assert_eq!(meta["ended_at"], Value::Null);
    let (issued, aggregated, dropped) = (
        meta["records_issued"].as_u64().unwrap(),
        meta["records_aggregated"].as_u64().unwrap(),
        meta["records_dropped"].as_u64().unwrap(),
    );
    assert_eq!(issued, aggregated + dropped, "the accounting identity");
    let events = file["events"].as_array().expect("events is a list");
    for e in events {
        assert!(e["event"].is_string() && e["timestamp"].is_string(), "{e}");
    }
    let work = meta["phase_durations_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "work")
        .map_or(0, |p| p["count"].as_u64().unwrap());
    Look { work, issued }
}

/// The events sidecar a killed run leaves beside its file: every line but
/// a last one cut short by the kill is one whole event. Returns its lines.
fn check_sidecar(run_file: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(run_file.with_extension("events.jsonl")) else {
        return 0;
    };
    let whole = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in whole.lines() {
        let e: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a sidecar line does not parse: {e}\n{line}"));
        assert!(e["offset_ns"].is_u64(), "{line}");
    }
    whole.lines().count()
}

fn parent() {
    let iterations: u32 = std::env::var("RUNMETRICS_KILL9_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    println!("kill9: {iterations} kills, seed {seed:#x}");
    let mut rng = seed | 1;
    let mut random = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let exe = std::env::current_exe().unwrap();
    let (mut with_file, mut snapshots_seen, mut sidecar_lines) = (0, 0, 0);
    for i in 0..iterations {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(&exe)
            .env(CHILD, dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let kill_at = Instant::now() + Duration::from_millis(20 + random(400));
        let (mut work, mut issued) = (0, 0);
        let mut look = |path: &Path| {
            let l = check(path);
            assert!(
                l.work >= work && l.issued >= issued,
                "kill {i}: counts went backwards: work {} -> {}, issued {} -> {}",
                work,
                l.work,
                issued,
                l.issued
            );
            (work, issued) = (l.work, l.issued);
        };
        while Instant::now() < kill_at {
            if let Some(path) = run_file(dir.path()) {
                look(&path);
                snapshots_seen += 1;
            }
            std::thread::sleep(Duration::from_millis(7));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(path) = run_file(dir.path()) {
            look(&path);
            sidecar_lines += check_sidecar(&path);
            with_file += 1;
        }
    }
    println!("kill9: {with_file} of {iterations} kills left a run file; {snapshots_seen} snapshots read while recording; {sidecar_lines} events in the sidecars left");
    assert!(sidecar_lines > 0, "the killed runs left their events");
    // A child killed before its start_run wrote the first snapshot leaves
    // no file; most live long enough to leave several.
    assert!(
        with_file * 10 >= iterations * 8,
        "only {with_file} of {iterations} kills left a run file"
    );
    println!("kill9: ok");
}
