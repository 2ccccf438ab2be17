//! A forked child of a recording process: its timers record nothing, its
//! control calls say why, dropping a recorder there returns, and the
//! parent's run is untouched.
#![cfg(unix)]

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, EndRunError, FlushError, Overflow, Recorder, StartRunError};
use serde_json::Value;

/// What the child checks; its exit code says which check failed (0: none).
fn in_child(rec: &Recorder, other: Recorder) -> i32 {
    // A tiny buffer under Overflow::Block: with no collector, a timer that
    // still recorded would wait forever.
    for _ in 0..10_000 {
        let t = rec.phase("child", "fork");
        if t.is_recording() {
            return 1;
        }
    }
    if !matches!(rec.flush(), Err(FlushError::ForkedChild)) {
        return 2;
    }
    if !matches!(rec.end_run(Value::Null), Err(EndRunError::ForkedChild)) {
        return 3;
    }
    let dir = std::env::temp_dir();
    if !matches!(rec.start_run(&dir), Err(StartRunError::ForkedChild)) {
        return 4;
    }
    drop(other); // must not wait for the parent's collector
    0
}

#[test]
fn a_forked_child_leaves_the_parents_run_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new()
        .overflow(Overflow::Block)
        .buffer_records(64)
        .flush_interval(std::time::Duration::from_millis(20));
    let rec = Recorder::new(config).unwrap();
    let other = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    for _ in 0..10 {
        let _t = rec.phase("before", "fork");
    }
    // SAFETY: the child only runs `in_child` and leaves with `_exit`,
    // without returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = in_child(&rec, other);
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child made above; `status` is a valid pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child died: status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's check that failed"
    );

    for _ in 0..5 {
        let _t = rec.phase("after", "fork");
    }
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(phase_count(&file, "before"), 10);
    assert_eq!(phase_count(&file, "after"), 5);
    assert_eq!(phase_count(&file, "child"), 0);
    assert_eq!(file["meta"]["pid"], std::process::id());
    drop(other); // in the parent, an ordinary drop
}
