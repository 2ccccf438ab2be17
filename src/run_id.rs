//! Run ids: local time `%Y%m%d-%H%M%S`, a dash, six random lowercase hex
//! digits; and the names of a run's files (`<run_id>.json`, its events
//! sidecar).

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

/// A new run id, e.g. `20230801-120000-ab12cd`.
pub(crate) fn new_run_id() -> String {
    let now = crate::wall_clock::now();
    // std's RandomState is seeded from the OS once per process and then
    // stepped per instance: random enough for six hex digits, and no dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.timestamp_nanos_opt().unwrap_or_default() as u128);
    h.write_u32(std::process::id());
    format!(
        "{}-{:06x}",
        now.format("%Y%m%d-%H%M%S"),
        h.finish() & 0xff_ffff
    )
}

/// A new run id whose file `<dir>/<run_id>.json` does not exist yet, and that path.
pub(crate) fn free_run_path(dir: &Path) -> (String, PathBuf) {
    loop {
        let run_id = new_run_id();
        let path = dir.join(format!("{run_id}.json"));
        if !path.exists() && !sidecar_path(&path).exists() {
            return (run_id, path);
        }
    }
}

/// The events sidecar of the run file at `run_path`.
pub(crate) fn sidecar_path(run_path: &Path) -> PathBuf {
    run_path.with_extension("events.jsonl")
}

/// Whether `name` is a run file's name: `<run_id>.json`, nothing else.
pub(crate) fn is_run_file_name(name: &str) -> bool {
    let Some(id) = name.strip_suffix(".json") else {
        return false;
    };
    let b = id.as_bytes();
    b.len() == 22
        && b[8] == b'-'
        && b[15] == b'-'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && b[16..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_has_the_seed_shape() {
        let id = new_run_id();
        let (stamp, hex) = id.rsplit_once('-').unwrap();
        assert_eq!(stamp.len(), 15, "{id}");
        assert_eq!(&stamp[8..9], "-");
        assert!(stamp[..8]
            .chars()
            .chain(stamp[9..].chars())
            .all(|c| c.is_ascii_digit()));
        assert_eq!(hex.len(), 6);
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(new_run_id(), new_run_id());
        assert!(is_run_file_name(&format!("{id}.json")));
    }

    #[test]
    fn only_run_files_are_run_files() {
        for name in [
            "20261125-071023-b50ea2.json.tmp",
            ".20261125-071023-b50ea2.json.77.tmp",
            "20261125-071023-B50EA2.json",
            "20261125_071023-b50ea2.json",
            "notes.json",
            "20261125-071023-b50ea2.events.jsonl",
        ] {
            assert!(!is_run_file_name(name), "{name}");
        }
    }
}
