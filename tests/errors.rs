//! Every error case of the handle API: each is a typed error that names the
//! cause and the fix, and none loses recorded data.

mod common;
use common::{entry_names, read_run_file};
use runmetrics::{Config, EndRunError, NewRecorderError, Recorder, StartRunError};
use serde_json::{json, Value};

#[test]
fn start_run_while_a_run_is_open_names_the_open_run() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    let run_id = rec.start_run(dir.path()).unwrap();
    match rec.start_run(dir.path()) {
        Err(e @ StartRunError::RunAlreadyOpen { .. }) => {
            assert!(e.to_string().contains(&run_id), "{e}");
            assert!(e.to_string().contains("end_run"), "{e}");
        }
        other => panic!("expected RunAlreadyOpen, got {other:?}"),
    }
    rec.end_run(Value::Null).unwrap();
}

#[test]
fn end_run_without_a_run_is_an_error() {
    let rec = Recorder::new(Config::new()).unwrap();
    let e = rec.end_run(Value::Null).unwrap_err();
    assert!(matches!(e, EndRunError::NoOpenRun), "{e:?}");
    assert!(e.to_string().contains("start_run"), "{e}");
}

#[test]
fn extra_meta_must_be_an_object_without_reserved_keys_and_the_run_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    {
        let _t = rec.phase("kept", "e");
    }
    for (bad, found) in [
        (json!([1]), "an array"),
        (json!("x"), "a string"),
        (json!(3), "a number"),
        (json!(true), "a bool"),
    ] {
        match rec.end_run(bad) {
            Err(e @ EndRunError::ExtraMetaNotObject { .. }) => {
                assert!(e.to_string().contains(found), "{e}")
            }
            other => panic!("expected ExtraMetaNotObject, got {other:?}"),
        }
    }
    for key in ["run_id", "cpu_percent_max", "records_dropped", "events"] {
        let r = rec.end_run(json!({ key: 1 }));
        if key == "events" {
            // `events` is a top-level key of the file, not of meta: allowed.
            let path = r.unwrap();
            let file = read_run_file(path);
            assert_eq!(file["meta"]["events"], 1);
            assert_eq!(
                file["meta"]["phase_durations_seconds_total"][0]["count"], 1,
                "nothing lost across the failed calls"
            );
            return;
        }
        match r {
            Err(e @ EndRunError::ReservedKey { .. }) => assert!(e.to_string().contains(key), "{e}"),
            other => panic!("expected ReservedKey for {key}, got {other:?}"),
        }
        assert!(rec.is_run_open());
    }
}

#[test]
fn a_failed_write_leaves_the_run_open_and_a_retry_keeps_everything() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("logs");
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(&dir).unwrap();
    {
        let _t = rec.phase("before_failure", "e");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let e = rec.end_run(Value::Null).unwrap_err();
    assert!(matches!(e, EndRunError::WriteRunFile { .. }), "{e:?}");
    assert!(e.to_string().contains("end_run again"), "{e}");
    assert!(rec.is_run_open());
    {
        let _t = rec.phase("after_failure", "e");
    }
    std::fs::create_dir_all(&dir).unwrap();
    let path = rec.end_run(Value::Null).unwrap();
    let file = read_run_file(path);
    let phases = entry_names(&file, "phase_durations_seconds_total", "phase");
    assert_eq!(phases, ["before_failure", "after_failure"]);
}

#[test]
fn a_log_dir_that_cannot_be_made_is_an_error_from_start_run() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("a_file");
    std::fs::write(&file, b"not a directory").unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    match rec.start_run(file.join("logs")) {
        Err(e @ StartRunError::CreateLogDir { .. }) => {
            assert!(e.to_string().contains("a_file"), "{e}");
        }
        other => panic!("expected CreateLogDir, got {other:?}"),
    }
    assert!(!rec.is_run_open());
}

#[cfg(unix)]
#[test]
fn an_unwritable_log_dir_is_an_error_from_start_run() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let ro = parent.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits; /proc refuses new files even to root.
    let target = if std::fs::write(ro.join("probe"), b"x").is_ok() {
        std::path::PathBuf::from("/proc")
    } else {
        ro.clone()
    };
    let rec = Recorder::new(Config::new()).unwrap();
    match rec.start_run(&target) {
        Err(e @ StartRunError::LogDirNotWritable { .. }) => {
            assert!(e.to_string().contains("not writable"), "{e}");
        }
        other => panic!(
            "expected LogDirNotWritable for {}, got {other:?}",
            target.display()
        ),
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn invalid_config_is_refused_by_name() {
    let e = Recorder::new(Config::new().buffer_records(100)).unwrap_err();
    assert!(matches!(e, NewRecorderError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("buffer_records"), "{e}");
}
