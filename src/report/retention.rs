//! Retention: old run files in a run's `log_dir` removed, oldest first, so a
//! service that starts runs for weeks keeps a bounded directory.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Sidecar;
use crate::config::Retention;
use crate::run_id::is_run_file_name;

impl Retention {
    fn is_set(&self) -> bool {
        self.keep_runs.is_some() || self.max_bytes.is_some()
    }

    /// Removes the oldest run files of `dir` (by modification time) until at
    /// most `keep_runs` are left and they take at most `max_bytes`. A run's
    /// events sidecar (left by a run that never ended) counts with it and
    /// goes with it, and so does a compaction of it a kill left behind. The `open` run's files always stay and count toward
    /// both; other files in `dir` are never touched. Returns how many run
    /// files were removed.
    pub(crate) fn prune(&self, dir: &Path, open: &Path) -> usize {
        if !self.is_set() {
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut runs: Vec<(SystemTime, PathBuf, u64)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                if !is_run_file_name(&e.file_name().to_string_lossy()) {
                    return None;
                }
                let meta = e.metadata().ok()?;
                let path = e.path();
                let sidecar = std::fs::metadata(Sidecar::path_for(&path)).map_or(0, |m| m.len());
                Some((meta.modified().ok()?, path, meta.len() + sidecar))
            })
            .collect();
        // Newest first; the open run first of all.
        runs.sort_by_key(|(modified, path, _)| (path != open, std::cmp::Reverse(*modified)));
        let (mut kept, mut bytes, mut removed) = (0usize, 0u64, 0);
        let mut removing = false;
        for (_, path, len) in runs {
            let fits = self.keep_runs.is_none_or(|n| kept < n)
                && self.max_bytes.is_none_or(|max| bytes + len <= max);
            removing |= !fits && path != open;
            if removing && path != open {
                if std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                    let sidecar = Sidecar::path_for(&path);
                    let _ = std::fs::remove_file(Sidecar::compaction_path(&sidecar));
                    let _ = std::fs::remove_file(sidecar);
                }
            } else {
                kept += 1;
                bytes += len;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run_file(dir: &Path, n: u32, len: usize, age_s: u64) -> PathBuf {
        let path = dir.join(format!("20260101-0000{n:02}-abcdef.json"));
        std::fs::write(&path, vec![b' '; len]).unwrap();
        let at = SystemTime::now() - Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
        path
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_oldest_go_first_and_the_open_run_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The open run is the oldest file and the largest: it stays anyway.
        let open = run_file(d, 0, 500, 50);
        for n in 1..=5 {
            run_file(d, n, 100, 50 - u64::from(n) * 5);
        }
        std::fs::write(d.join("notes.json"), "{}").unwrap();
        // The oldest closed run never ended: its sidecar goes with it, and
        // the compaction of it that a kill left.
        let sidecar = Sidecar::path_for(&d.join("20260101-000001-abcdef.json"));
        std::fs::write(&sidecar, "x").unwrap();
        std::fs::write(Sidecar::compaction_path(&sidecar), "x").unwrap();
        let keep = Retention {
            keep_runs: Some(4),
            max_bytes: None,
        };
        assert_eq!(keep.prune(d, &open), 2);
        assert_eq!(
            names(d),
            [
                "20260101-000000-abcdef.json",
                "20260101-000003-abcdef.json",
                "20260101-000004-abcdef.json",
                "20260101-000005-abcdef.json",
                "notes.json"
            ]
        );
        let bytes = Retention {
            keep_runs: None,
            max_bytes: Some(700),
        };
        assert_eq!(bytes.prune(d, &open), 1, "500 + 100 + 100 fit in 700");
        assert!(open.exists());
        assert!(d.join("20260101-000005-abcdef.json").exists());
        assert_eq!(Retention::default().prune(d, &open), 0);
    }
}
