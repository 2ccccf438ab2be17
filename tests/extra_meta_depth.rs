//! `extra_meta` nested deeper than runmetrics writes is refused on the
//! caller's thread with `EndRunError::ExtraMetaTooDeep`, however deep (a
//! million levels on a thread with a 2 MiB stack), and the run stays open;
//! at the limit it is written, and the file reads back with serde_json's
//! default reader.

mod common;
use common::{entry_names, read_run_file};
use runmetrics::{Config, EndRunError, Recorder};
use serde_json::{Map, Value};

/// An object (level 1) whose deepest array is at level `levels` (at least
/// 2), built without recursion: `json!` would serialise its argument,
/// recursively.
fn nested(levels: usize) -> Value {
    let mut v = Value::Array(Vec::new());
    for _ in 2..levels {
        v = Value::Array(vec![v]);
    }
    let mut top = Map::new();
    top.insert("deep".to_owned(), v);
    Value::Object(top)
}

/// The limit `end_run` reports when it refuses `levels`.
fn refused(rec: &Recorder, levels: usize) -> usize {
    match rec.end_run(nested(levels)) {
        Err(e @ EndRunError::ExtraMetaTooDeep { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("flatten") && message.contains("string"),
                "the message says how to fix it: {message}"
            );
            match e {
                EndRunError::ExtraMetaTooDeep { limit } => {
                    assert!(message.contains(&limit.to_string()), "{message}");
                    limit
                }
                _ => unreachable!(),
            }
        }
        other => panic!("{levels} levels: expected ExtraMetaTooDeep, got {other:?}"),
    }
}

/// Runs `f` on a thread with a 2 MiB stack (the size Rust gives a spawned
/// thread), so a recursion over the levels would overflow it.
fn on_a_normal_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn twenty_thousand_and_a_million_levels_are_refused_and_the_run_stays_open() {
    on_a_normal_thread(|| {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::new(Config::new()).unwrap();
        rec.start_run(dir.path()).unwrap();
        {
            let _t = rec.phase("before", "depth");
        }
        let limit = refused(&rec, 20_000);
        assert_eq!(refused(&rec, 1_000_000), limit);
        // Not an object, and too deep: refused without recursion too.
        let mut array = Value::Array(Vec::new());
        for _ in 0..1_000_000 {
            array = Value::Array(vec![array]);
        }
        assert!(
            matches!(
                rec.end_run(array),
                Err(EndRunError::ExtraMetaTooDeep { .. })
            ),
            "a deep array"
        );
        let path = rec.end_run(Value::Null).expect("the run stayed open");
        let file = read_run_file(&path);
        assert_eq!(
            entry_names(&file, "phase_durations_seconds_total", "phase"),
            ["before"]
        );
        assert!(file["meta"].get("deep").is_none());
    });
}

#[test]
fn extra_meta_at_the_limit_is_written_and_one_level_more_is_not() {
    on_a_normal_thread(|| {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::new(Config::new()).unwrap();
        rec.start_run(dir.path()).unwrap();
        let limit = refused(&rec, 20_000);
        assert!((16..=100).contains(&limit), "a documented limit: {limit}");
        assert_eq!(refused(&rec, limit + 1), limit);
        let path = rec.end_run(nested(limit)).unwrap();
        // serde_json's default reader (128 levels) reads it back.
        let file = read_run_file(&path);
        let mut v = &file["meta"]["deep"];
        let mut levels = 1;
        while let Some(inner) = v.as_array() {
            levels += 1;
            match inner.first() {
                Some(next) => v = next,
                None => break,
            }
        }
        assert_eq!(levels, limit, "the value is written whole");
    });
}
