//! The duration histograms in the text format, written straight from the
//! [`MetricsSnapshot`]'s series: byte for byte what the `prometheus` crate's
//! `TextEncoder` writes for the same families (the tests in `mod.rs` hold it
//! to that), without a protobuf message, a label string or a formatted
//! number allocated per line. Each series' labels are escaped once and its
//! bucket bounds formatted once per publish, not once per line.

use std::fmt::Write as _;

use super::{DurationFamily, DurationSeries, MetricsSnapshot, DURATION_FAMILIES};

/// Appends `v` with `\`, newline and (in a label value, `quoted`) `"`
/// escaped, as the `prometheus` crate's text encoder escapes them.
pub(crate) fn escape_into(out: &mut String, v: &str, quoted: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quoted && c == '"');
    let mut rest = v;
    while let Some(at) = rest.find(special) {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or_default();
        out.push('\\');
        out.push(if c == '\n' { 'n' } else { c });
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
}

/// Appends a count as the encoder writes it: the `u64` as an `f64`'s
/// `Display` (which for a value below 2^53 is its digits).
fn count(out: &mut String, n: u64) {
    if n < 1 << 53 {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut v = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // ASCII digits.
        out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
    } else {
        let _ = write!(out, "{}", n as f64);
    }
}

/// Appends the families of the duration histograms (phases, then
/// functions; a family without series is left out), each metric named
/// `<ns>_<base>`.
pub(crate) fn durations(out: &mut String, snapshot: &MetricsSnapshot, ns: &str) {
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
    let mut labels = String::new();
    for family in &DURATION_FAMILIES {
        let mut series = snapshot
            .durations
            .iter()
            .filter(|d| d.function == family.function)
            .peekable();
        if series.peek().is_none() {
            continue;
        }
        let name = format!("{ns}_{}", family.base);
        header(out, &name, family);
        for d in series {
            labels.clear();
            labels.push_str("{module=\"");
            escape_into(&mut labels, &d.module, true);
            labels.push_str("\",");
            labels.push_str(family.label);
            labels.push_str("=\"");
            escape_into(&mut labels, &d.name, true);
            labels.push('"');
            histogram(out, &name, &labels, &bounds, inf_seen, d);
        }
    }
}

fn header(out: &mut String, name: &str, family: &DurationFamily) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_into(out, family.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push_str(" histogram\n");
}

/// One series: a line per bound (and `+Inf`), then `_sum` and `_count`.
/// `labels` is its label set, opened and not closed.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[String],
    inf_seen: bool,
    d: &DurationSeries,
) {
    let line = |out: &mut String, le: &str, n: u64| {
        out.push_str(name);
        out.push_str("_bucket");
        out.push_str(labels);
        out.push_str(",le=\"");
        out.push_str(le);
        out.push_str("\"} ");
        count(out, n);
        out.push('\n');
    };
    for (le, &n) in bounds.iter().zip(&d.buckets) {
        line(out, le, n);
    }
    if !inf_seen {
        line(out, "+Inf", d.count);
    }
    out.push_str(name);
    out.push_str("_sum");
    out.push_str(labels);
    let _ = writeln!(out, "}} {}", d.sum_seconds);
    out.push_str(name);
    out.push_str("_count");
    out.push_str(labels);
    out.push_str("} ");
    count(out, d.count);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_the_encoders() {
        let mut out = String::new();
        escape_into(&mut out, "a\\b\n\"c\"ü", true);
        assert_eq!(out, r#"a\\b\n\"c\"ü"#);
        out.clear();
        escape_into(&mut out, "a\\b\n\"c\"", false);
        assert_eq!(out, "a\\\\b\\n\"c\"");
    }

    #[test]
    fn counts_print_as_the_encoders_floats() {
        for n in [0u64, 7, 1 << 53, (1 << 53) + 1, u64::MAX] {
            let mut out = String::new();
            count(&mut out, n);
            assert_eq!(out, (n as f64).to_string(), "{n}");
        }
    }
}
