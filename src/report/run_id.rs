//! Run ids: local time `%Y%m%d-%H%M%S`, a dash, six random lowercase hex digits.

use std::hash::{BuildHasher, Hasher};

/// A new run id, e.g. `20230801-120000-ab12cd`.
pub(crate) fn new_run_id() -> String {
    let now = chrono::Local::now();
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
    }
}
