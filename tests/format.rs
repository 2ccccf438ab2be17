//! The run file against `runmetrics-format`, the crate that owns its
//! layout: what the writer writes reads into the format's types with
//! nothing defaulted, left over or changed, and `meta`'s keys are the
//! format's `RESERVED_META_KEYS`.

mod common;

use common::{every_kind_run, read_run_file};
use runmetrics::Config;
use runmetrics_format::{Event, Meta, RunFile, RESERVED_META_KEYS};
use serde_json::{json, Value};

/// A run with every kind of entry and event, ended (`ended`) or flushed.
fn run(dir: &std::path::Path, ended: bool) -> std::path::PathBuf {
    let config = Config::new().job("al_inference").grouping("env", "dev");
    every_kind_run(config, dir, ended.then(|| json!({"facts_final": 150})))
}

#[test]
fn the_meta_keys_written_are_the_reserved_ones_then_extra_meta() {
    for ended in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let file = read_run_file(run(dir.path(), ended));
        let keys: Vec<&str> = file["meta"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let extra: &[&str] = if ended { &["facts_final"] } else { &[] };
        // The facade's keys only in a process that installed it.
        let written: Vec<&str> = RESERVED_META_KEYS
            .iter()
            .copied()
            .filter(|k| !["histograms", "metrics_facade"].contains(k))
            .collect();
        assert_eq!(keys, [&written[..], extra].concat(), "ended: {ended}");
    }
}

#[test]
fn a_written_run_reads_into_the_types_losing_nothing() {
    for ended in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = run(dir.path(), ended);
        let file = read_run_file(&path);
        let read = RunFile::open(&path).unwrap();
        let events: Vec<Event> = read.events().unwrap().map(Result::unwrap).collect();
        // Typed and written back, `meta` is what the file holds: no key
        // of the writer's is unknown to the types, none is defaulted.
        assert_eq!(serde_json::to_value(&read.meta).unwrap(), file["meta"]);
        let extra: Vec<&String> = read.meta.extra.keys().collect();
        assert_eq!(extra.len(), usize::from(ended), "{extra:?}");
        let strict: Meta = serde_json::from_value(file["meta"].clone()).unwrap();
        assert_eq!(strict, read.meta);
        // Every event reads as its kind, and back as it was.
        let written = file["events"].as_array().unwrap();
        assert_eq!(events.len(), written.len());
        let mut kinds = std::collections::BTreeSet::new();
        for (e, w) in events.iter().zip(written) {
            assert!(!matches!(e, Event::Other(_)), "not typed: {w}");
            assert_eq!(&serde_json::to_value(e).unwrap(), w);
            kinds.insert(w["event"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["counts", "func_timing", "phase_timing", "process_sample"]
        );
        let resources = read
            .entries()
            .find(|e| e.name == "load_model")
            .and_then(|e| e.resources);
        assert_eq!(resources.map(|r| r.calls), Some(1));
    }
}

#[test]
fn the_layout_version_written_is_the_formats() {
    let dir = tempfile::tempdir().unwrap();
    let file = read_run_file(run(dir.path(), true));
    assert_eq!(
        file["meta"]["layout_version"],
        Value::from(runmetrics_format::LAYOUT_VERSION)
    );
}
