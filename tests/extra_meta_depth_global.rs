//! The global recorder's `end_run` with `extra_meta` a million levels deep,
//! on a thread with a 2 MiB stack: before any recorder exists (the value is
//! dropped unused) and with a run open (refused). The only test in this
//! file: it uses the global recorder.

use runmetrics::EndRunError;
use serde_json::{Map, Value};

/// An object whose deepest array is a million levels down, built without
/// recursion.
fn deep() -> Value {
    let mut v = Value::Array(Vec::new());
    for _ in 0..1_000_000 {
        v = Value::Array(vec![v]);
    }
    let mut top = Map::new();
    top.insert("deep".to_owned(), v);
    Value::Object(top)
}

#[test]
fn a_million_levels_never_overflow_the_global_end_run() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let e = runmetrics::end_run(deep()).unwrap_err();
            assert!(matches!(e, EndRunError::NoOpenRun), "{e:?}");
            let dir = tempfile::tempdir().unwrap();
            runmetrics::start_run(dir.path()).unwrap();
            let e = runmetrics::end_run(deep()).unwrap_err();
            assert!(matches!(e, EndRunError::ExtraMetaTooDeep { .. }), "{e:?}");
            runmetrics::end_run(Value::Null).expect("the run stayed open");
        })
        .unwrap()
        .join()
        .unwrap();
}
