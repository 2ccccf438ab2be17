//! A full disk, and a log_dir made read-only, mid-run: recording goes on, the
//! failed write is returned and counted, and once the disk takes writes
//! again the next snapshot succeeds. The disk is a real 512 KiB tmpfs the
//! test mounts (and binds read-only over the log_dir), so it needs root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{phase_count, read_run_file};
use runmetrics::{Config, FlushError, Recorder};
use serde_json::Value;

/// A small tmpfs mounted on a temporary directory; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (and says why) when this process cannot mount; fails instead
    /// under `scripts/test` (RUNMETRICS_REQUIRE_SERVERS=1).
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            other => {
                let msg = format!(
                    "cannot mount a small tmpfs ({other:?}): this test needs root \
                     (scripts/test runs as root in CI)"
                );
                if std::env::var_os("RUNMETRICS_REQUIRE_SERVERS").is_some() {
                    panic!("{msg}");
                }
                eprintln!("NOT RUN: {msg}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Makes `dir` read-only by mounting a read-only bind of it over itself, as
/// an administrator would; files already open for writing there (the events
/// sidecar) stay writable, as they do after a `chmod`. Undone when dropped.
struct ReadOnly<'a>(&'a Path);

impl ReadOnly<'_> {
    fn make(dir: &Path) -> ReadOnly<'_> {
        for args in [&["--bind"][..], &["-o", "remount,bind,ro"]] {
            let status = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .unwrap();
            assert!(status.success(), "mount {args:?}");
        }
        ReadOnly(dir)
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn record(rec: &Recorder, phase: &'static str, n: u32) {
    for _ in 0..n {
        let _t = rec.phase(phase, "disk");
    }
}

/// `flush` fails with the OS error `errno`, and `end_run` leaves the run open.
fn writes_fail_with(rec: &Recorder, errno: i32) {
    let e = rec.flush().unwrap_err();
    let FlushError::WriteRunFile { source, .. } = &e else {
        panic!("expected WriteRunFile, got {e:?}");
    };
    assert_eq!(source.raw_os_error(), Some(errno), "{source}");
    let e = rec.end_run(Value::Null).unwrap_err();
    assert!(e.to_string().contains("still open"), "{e}");
}

/// Every event of the final file's run is listed or counted as omitted:
/// `regions` regions plus the process samples.
fn every_event_accounted(end: &Value, regions: u64) {
    let meta = &end["meta"];
    let events = end["events"].as_array().unwrap().len() as u64;
    let samples = meta["process_samples"].as_u64().unwrap();
    assert_eq!(meta["events_written"], events);
    assert_eq!(
        events + meta["events_omitted"].as_u64().unwrap(),
        regions + samples,
        "every event is listed or counted as omitted"
    );
}

/// Fills the disk to the last byte; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_loses_nothing_and_the_next_snapshot_succeeds() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let logs = disk.path().join("logs");
    let rec = Recorder::new(Config::new().event_cap(100)).unwrap();
    rec.start_run(&logs).unwrap();
    record(&rec, "before", 10);
    rec.flush().unwrap();

    let filler = fill(disk.path());
    record(&rec, "while_full", 20);
    writes_fail_with(&rec, 28); // ENOSPC
    let leftovers: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    std::fs::remove_file(filler).unwrap();
    record(&rec, "after", 5);
    let snapshot = read_run_file(rec.flush().unwrap());
    assert_eq!(snapshot["meta"]["write_failures"], 2);
    let cause = snapshot["meta"]["last_write_error"].as_str().unwrap();
    assert!(cause.contains("No space left"), "{cause}");
    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    let counts: Vec<u64> = ["before", "while_full", "after"]
        .iter()
        .map(|p| phase_count(&end, p))
        .collect();
    assert_eq!(counts, [10, 20, 5], "nothing recorded was lost");
    // Events the full disk kept out of the sidecar are counted, not lost silently.
    let failures = &end["meta"]["events_write_failures"];
    assert!(failures.as_u64().unwrap() >= 1, "{failures}");
    every_event_accounted(&end, 35);
}

#[test]
fn a_read_only_log_dir_loses_nothing_and_the_next_snapshot_succeeds() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let logs = disk.path().join("logs");
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(&logs).unwrap();
    record(&rec, "before", 10);
    rec.flush().unwrap();

    let ro = ReadOnly::make(&logs);
    record(&rec, "while_ro", 20);
    writes_fail_with(&rec, 30); // EROFS

    drop(ro);
    let end = read_run_file(rec.end_run(Value::Null).unwrap());
    let counts: Vec<u64> = ["before", "while_ro"]
        .iter()
        .map(|p| phase_count(&end, p))
        .collect();
    assert_eq!(counts, [10, 20], "nothing recorded was lost");
    let meta = &end["meta"];
    assert_eq!(meta["write_failures"], 2);
    assert!(
        meta["last_write_error"]
            .as_str()
            .unwrap()
            .contains("Read-only"),
        "{meta}"
    );
    every_event_accounted(&end, 30);
}
