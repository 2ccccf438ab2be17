//! `RunFile::events` streams: a run file of ~40 MB of events is iterated
//! with the process's RSS (read from /proc) growing by a few MiB, and
//! every event comes out, in order, as written (the test's own counter and
//! sum are the oracle). Alone in its binary, so no other test's memory
//! counts.

use std::io::Write;

use runmetrics_format::{Event, RunFile};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn iterating_events_holds_one_at_a_time() {
    const EVENTS: u64 = 250_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write!(
        out,
        r#"{{"meta": {{"run_id": "r", "started_at": "2026-11-25T07:10:23+00:00"}}, "events": ["#
    )
    .unwrap();
    for i in 0..EVENTS {
        let sep = if i == 0 { "" } else { ",\n" };
        write!(
            out,
            r#"{sep}{{"timestamp": "2026-11-25T07:10:24.000001+00:00", "event": "phase_timing", "module": "pipeline", "phase": "step_with_a_long_enough_name_{}", "duration_seconds": {}, "offset_ns": {i}, "thread": 1, "padding": "{}"}}"#,
            i % 7,
            i as f64 * 1e-6,
            "x".repeat(40)
        )
        .unwrap();
    }
    write!(out, "]}}").unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 35_000_000, "{size}");

    let run = RunFile::open(&path).unwrap();
    let before = rss_kib();
    let mut peak = before;
    let (mut n, mut sum) = (0u64, 0f64);
    for e in run.events().unwrap() {
        let Event::Phase(p) = e.unwrap() else {
            panic!("not a phase event")
        };
        assert_eq!(p.phase, format!("step_with_a_long_enough_name_{}", n % 7));
        sum += p.duration_seconds;
        n += 1;
        if n % 10_000 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    assert_eq!(n, EVENTS);
    let want: f64 = (0..EVENTS).map(|i| i as f64 * 1e-6).sum();
    assert!((sum - want).abs() < 1e-6, "{sum} {want}");
    let grown_mib = (peak - before) as f64 / 1024.0;
    println!(
        "{size} bytes of events iterated; RSS {before} KiB, peak {peak} KiB (+{grown_mib:.1} MiB)"
    );
    assert!(
        grown_mib < 8.0,
        "RSS grew {grown_mib:.1} MiB over a {size}-byte file"
    );
}
