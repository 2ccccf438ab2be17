//! An event's line, written straight into the buffer: byte for byte what
//! `serde_json` writes for the event's `EventOut` (`layout.rs`; the tests
//! hold it to that), without a `String` per timestamp or the serializer's
//! per-byte escaping of keys and plain names. Numbers go through
//! `serde_json`'s own formatter, a string that needs escaping through
//! `serde_json` itself; a timestamp reuses its second's text.

use std::cell::RefCell;

use chrono::{DateTime, FixedOffset, Timelike};
use serde_json::ser::{CompactFormatter, Formatter};

use super::layout::timestamp;
use crate::wall_clock::after;

/// Whether `s` goes into JSON as it is (nothing to escape).
fn plain(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends `s` as a JSON string.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Into a Vec, only a failing writer fails.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends `v` as `serde_json` writes an `f64` (`null` when not finite).
pub(crate) fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

pub(crate) fn unsigned(out: &mut Vec<u8>, v: u64) {
    let _ = CompactFormatter.write_u64(out, v);
}

pub(crate) fn signed(out: &mut Vec<u8>, v: i64) {
    let _ = CompactFormatter.write_i64(out, v);
}

/// The run's timestamps (`start` plus ns, RFC 3339 with microseconds, in
/// `start`'s offset): the text before the fraction and after it stay the
/// same within a second, so only the microseconds are written per event.
pub(crate) struct Timestamps {
    start: DateTime<FixedOffset>,
    /// `start`'s nanoseconds within its second.
    start_nanos: u64,
    /// The second (counted from `start`'s) whose text is kept: the text
    /// before the `.` and after the six digits.
    kept: RefCell<Option<(u64, String, String)>>,
}

/// Past this many ns from the start, or with a leap second at the start,
/// every timestamp is made whole (chrono's way).
const CACHED_UP_TO_NS: u64 = 1 << 62;

impl Timestamps {
    pub(crate) fn new(start: DateTime<FixedOffset>) -> Timestamps {
        Timestamps {
            start,
            start_nanos: u64::from(start.nanosecond()),
            kept: RefCell::new(None),
        }
    }

    /// Appends the timestamp `ns` after the start, quoted.
    pub(crate) fn write(&self, out: &mut Vec<u8>, ns: u64) {
        if self.start_nanos >= 1_000_000_000 || ns >= CACHED_UP_TO_NS {
            string(out, &timestamp(after(self.start, ns)));
            return;
        }
        let since = self.start_nanos + ns;
        let (second, micros) = (since / 1_000_000_000, since % 1_000_000_000 / 1_000);
        let mut kept = self.kept.borrow_mut();
        let (_, before, behind) = match &mut *kept {
            Some(k) if k.0 == second => k,
            k => {
                let text = timestamp(after(self.start, ns));
                let Some(dot) = text.find('.') else {
                    drop(kept);
                    string(out, &text);
                    return;
                };
                let behind = text.get(dot + 7..).unwrap_or_default().to_owned();
                k.insert((second, text[..dot].to_owned(), behind))
            }
        };
        out.push(b'"');
        out.extend_from_slice(before.as_bytes());
        out.push(b'.');
        let mut digits = [b'0'; 6];
        let mut v = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&digits);
        out.extend_from_slice(behind.as_bytes());
        out.push(b'"');
    }
}
