//! Sampled timing with fenced reads, in every form: `phase!(.., sample = n,
//! fenced)`, `PhaseTimer::fenced_sampled`, `#[measure(sample = n, fenced =
//! true)]`, and `Config::time_one_in` over the fenced timers. Every region
//! is counted against the loop's own counter, about one in n timed, and the
//! timed ones are exactly the events. (The estimate against `Instant` is in
//! tests/fenced.rs, which means something only optimized.)

use std::hint::black_box;

mod common;
use common::read_run_file;
use runmetrics::{Config, Events, PhaseTimer};
use serde_json::Value;

/// The recorder's own rate, for sites with none of their own.
const CONFIG_ONE_IN: u64 = 32;
/// The sites' own rate, which takes precedence.
const SITE_ONE_IN: u64 = 16;

#[runmetrics::measure("measure site", module = "fs", sample = 16, fenced = true)]
fn measured_site(x: u64) -> u64 {
    black_box(x)
}

#[runmetrics::measure("measure config", module = "fs", fenced = true)]
fn measured_config(x: u64) -> u64 {
    black_box(x)
}

/// The entry named `name` of `meta[list]`, whose name is under `key`.
fn entry<'a>(file: &'a Value, list: &str, key: &str, name: &str) -> &'a Value {
    file["meta"][list]
        .as_array()
        .unwrap_or_else(|| panic!("meta.{list} is a list"))
        .iter()
        .find(|e| e[key] == name)
        .unwrap_or_else(|| panic!("no {name:?} in meta.{list}"))
}

#[test]
fn fenced_sites_sample_by_their_own_rate_or_the_recorders() {
    // The global recorder: the only test in this process.
    runmetrics::init_metrics(
        Config::new()
            .time_one_in(CONFIG_ONE_IN as u32)
            .events(Events::All),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    runmetrics::start_run(dir.path()).unwrap();
    let mut loops = 0u64;
    for i in 0..30_000u64 {
        {
            let _a = runmetrics::phase!("macro site", "fs", sample = 16, fenced);
            let _b = runmetrics::phase!("macro site, its module", sample = 16, fenced);
            let _c = PhaseTimer::fenced_sampled("timer site", "fs", SITE_ONE_IN as u32);
            black_box(measured_site(i));
            let _d = runmetrics::phase!("macro config", "fs", fenced);
            let _e = PhaseTimer::fenced("timer config", "fs");
            black_box(measured_config(i));
            runmetrics::measure_fn_fenced("measure_fn config", "fs", || black_box(i));
        }
        loops += 1;
    }
    let file = read_run_file(runmetrics::end_run(Value::Null).unwrap());
    assert_eq!(
        file["meta"]["events_omitted"], 0,
        "every timed region's event is kept"
    );
    let phases = "phase_durations_seconds_total";
    let functions = "function_durations_seconds_total";
    for (list, key, event, name, one_in) in [
        (phases, "phase", "phase_timing", "macro site", SITE_ONE_IN),
        (
            phases,
            "phase",
            "phase_timing",
            "macro site, its module",
            SITE_ONE_IN,
        ),
        (phases, "phase", "phase_timing", "timer site", SITE_ONE_IN),
        (
            functions,
            "name",
            "func_timing",
            "measure site",
            SITE_ONE_IN,
        ),
        (
            phases,
            "phase",
            "phase_timing",
            "macro config",
            CONFIG_ONE_IN,
        ),
        (
            phases,
            "phase",
            "phase_timing",
            "timer config",
            CONFIG_ONE_IN,
        ),
        (
            functions,
            "name",
            "func_timing",
            "measure config",
            CONFIG_ONE_IN,
        ),
        (
            functions,
            "name",
            "func_timing",
            "measure_fn config",
            CONFIG_ONE_IN,
        ),
    ] {
        let e = entry(&file, list, key, name);
        assert_eq!(
            e["count"].as_u64(),
            Some(loops),
            "every region counted: {e}"
        );
        assert_eq!(e["sampled"]["one_in"], one_in, "{e}");
        let timed = e["sampled"]["timed"].as_u64().expect("timed");
        // Each region timed with probability about 1 / one_in: 8 standard
        // deviations (and a stride's worth) is far outside.
        let expected = loops as f64 / one_in as f64;
        assert!(
            (timed as f64 - expected).abs() < 8.0 * expected.sqrt() + one_in as f64,
            "{name}: {timed} timed of {loops}, {expected} expected"
        );
        // The events are an independent count of the regions timed.
        let events = file["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == event && v[key] == name)
            .count() as u64;
        assert_eq!(events, timed, "{name}: one event per timed region");
        if name == "macro site, its module" {
            assert_eq!(e["module"], module_path!(), "{e}");
        }
    }
}
