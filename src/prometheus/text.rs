//! The duration histograms in the text format, written straight from the
//! [`MetricsSnapshot`]'s series: byte for byte what the `prometheus` crate's
//! `TextEncoder` writes for the same families (the tests in `mod.rs` hold it
//! to that), without a protobuf message, a label string or a formatted
//! number allocated per line. Each series' labels are escaped once and its
//! bucket bounds formatted once per publish, not once per line.

use std::io::Write as _;

use serde_json::ser::{CompactFormatter, Formatter};

use super::{DurationFamily, DurationSeries, MetricsSnapshot, DURATION_FAMILIES};

/// Appends `v` with `\`, newline and (in a label value, `quoted`) `"`
/// escaped, as the `prometheus` crate's text encoder escapes them.
pub(crate) fn escape_into(out: &mut Vec<u8>, v: &str, quoted: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quoted && b == b'"');
    let mut rest = v.as_bytes();
    while let Some(at) = rest.iter().position(|&b| special(b)) {
        out.extend_from_slice(&rest[..at]);
        out.push(b'\\');
        out.push(if rest[at] == b'\n' { b'n' } else { rest[at] });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// Appends a count as the encoder writes it: the `u64` as an `f64`'s
/// `Display` (which for a value below 2^53 is its digits).
fn count(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 53 {
        // Into a Vec, only a failing writer fails.
        let _ = CompactFormatter.write_u64(out, n);
    } else {
        let _ = write!(out, "{}", n as f64);
    }
}

/// Appends the families of the duration histograms (phases, then
/// functions; a family without series is left out), each metric named
/// `<ns>_<base>`.
pub(crate) fn durations(out: &mut Vec<u8>, snapshot: &MetricsSnapshot, ns: &str) {
    // Each bound as the encoder prints it (`f64`'s `Display`), once.
    let bounds: Vec<String> = snapshot
        .bucket_bounds
        .iter()
        .map(|b| b.to_string())
        .collect();
    let inf_seen = snapshot
        .bucket_bounds
        .iter()
        .any(|b| b.is_sign_positive() && b.is_infinite());
    let mut labels = Vec::new();
    for family in &DURATION_FAMILIES {
        let mut series = family.series(snapshot).peekable();
        if series.peek().is_none() {
            continue;
        }
        let name = format!("{ns}_{}", family.base);
        header(out, &name, family);
        for d in series {
            labels.clear();
            labels.extend_from_slice(b"{module=\"");
            escape_into(&mut labels, &d.module, true);
            labels.extend_from_slice(b"\",");
            labels.extend_from_slice(family.label.as_bytes());
            labels.extend_from_slice(b"=\"");
            escape_into(&mut labels, &d.name, true);
            labels.push(b'"');
            histogram(out, &name, &labels, &bounds, inf_seen, d);
        }
    }
}

fn header(out: &mut Vec<u8>, name: &str, family: &DurationFamily) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    escape_into(out, family.help, false);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" histogram\n");
}

/// One series: a line per bound (and `+Inf`), then `_sum` and `_count`.
/// `labels` is its label set, opened and not closed.
fn histogram(
    out: &mut Vec<u8>,
    name: &str,
    labels: &[u8],
    bounds: &[String],
    inf_seen: bool,
    d: &DurationSeries,
) {
    // What every bucket line starts with, once per series.
    let mut head = Vec::with_capacity(name.len() + labels.len() + 16);
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b"_bucket");
    head.extend_from_slice(labels);
    head.extend_from_slice(b",le=\"");
    let line = |out: &mut Vec<u8>, le: &str, n: u64| {
        out.extend_from_slice(&head);
        out.extend_from_slice(le.as_bytes());
        out.extend_from_slice(b"\"} ");
        count(out, n);
        out.push(b'\n');
    };
    for (le, &n) in bounds.iter().zip(&d.buckets) {
        line(out, le, n);
    }
    if !inf_seen {
        line(out, "+Inf", d.count);
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"_sum");
    out.extend_from_slice(labels);
    let _ = writeln!(out, "}} {}", d.sum_seconds);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"_count");
    out.extend_from_slice(labels);
    out.extend_from_slice(b"} ");
    count(out, d.count);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_the_encoders() {
        let mut out = Vec::new();
        escape_into(&mut out, "a\\b\n\"c\"ü", true);
        assert_eq!(out, r#"a\\b\n\"c\"ü"#.as_bytes());
        out.clear();
        escape_into(&mut out, "a\\b\n\"c\"", false);
        assert_eq!(out, "a\\\\b\\n\"c\"".as_bytes());
    }

    #[test]
    fn counts_print_as_the_encoders_floats() {
        for n in [0u64, 7, 1 << 53, (1 << 53) + 1, u64::MAX] {
            let mut out = Vec::new();
            count(&mut out, n);
            assert_eq!(out, (n as f64).to_string().as_bytes(), "{n}");
        }
    }
}
