//! The protobuf exposition (`io.prometheus.client.MetricFamily`, delimited)
//! with Prometheus native histograms: what a scraper started with
//! `--enable-feature=native-histograms` asks for first.
//!
//! The `prometheus` crate's `protobuf` feature (0.14) has no native
//! histogram fields and would pull in `protobuf` 3, so the few messages
//! needed are written here by hand: varints, zigzag, length-delimited
//! fields, each message encoded into a buffer and its length put in front.
//! Field numbers are those of `metrics.proto` (client_model); tags and wire
//! types are the constants below.
//!
//! Each duration histogram carries both encodings in one message: the
//! classic cumulative buckets (as the text has) and the native sparse
//! buckets of schema [`SCHEMA`]. A native bucket `i` holds the values in
//! `(2^((i-1)/2^SCHEMA), 2^(i/2^SCHEMA)]` seconds, so each is
//! `2^(1/64) - 1` ≈ 1.09 % wide. A tally bucket goes, whole, into the native
//! bucket holding the value the run file gives a quantile falling in it
//! (its highest duration, kept within the exact min and max), so
//! `histogram_quantile` over the native series lies in the same native
//! bucket as the file's quantile: within 1.09 % of it, whatever
//! interpolation the server does inside the bucket. Schema 5 (2.2 % wide)
//! could miss 2 %; the tally's own buckets are 0.4–0.8 % wide, so a finer
//! schema would gain little and cost more series buckets.

use prometheus::proto::{Metric, MetricFamily, MetricType};

use super::{DurationSeries, MetricsSnapshot, DURATION_FAMILIES};

/// The content type of [`encode`]'s output.
pub(crate) const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Native histogram schema: 2^6 = 64 buckets per power of two.
pub(crate) const SCHEMA: i32 = 6;

/// The zero bucket's width, seconds (client_golang's default): a duration
/// under it (a region under a nanosecond) counts in the zero bucket. Never
/// 0, so Prometheus reads even an empty histogram as native.
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39; // 2^-128

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// The native bucket of `seconds` (a normal `f64` > 0: `native_buckets`
/// passes nanoseconds from 1 up over 1e9) under [`SCHEMA`]: the `i` with
/// `2^((i-1)/64) < seconds <= 2^(i/64)`. With `seconds = m·2^e`, `m` in
/// `[1, 2)`, it is `64·e + j` for the first `j` whose bound in
/// [`within_octave`] is at least `m`: no `log2` or `exp2` per value, and
/// the same bounds as [`upper_bound`]'s (scaling by `2^e` is exact, and
/// `exp2` of `e + j/64` is `2^e` times that of `j/64`, which a test checks
/// over every index a duration can take).
pub(crate) fn native_index(seconds: f64) -> i32 {
    debug_assert!(seconds.is_normal() && seconds > 0.0, "{seconds}");
    let bits = seconds.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = f64::from_bits(bits & ((1 << 52) - 1) | 1023 << 52);
    let j = within_octave().partition_point(|&bound| bound < mantissa);
    (exponent << SCHEMA) + j as i32
}

/// `2^(j/64)` for `j` in `0..=64`: [`upper_bound`] of the first octave.
fn within_octave() -> &'static [f64; (1 << SCHEMA) + 1] {
    static WITHIN_OCTAVE: std::sync::OnceLock<[f64; (1 << SCHEMA) + 1]> =
        std::sync::OnceLock::new();
    WITHIN_OCTAVE.get_or_init(|| std::array::from_fn(|j| upper_bound(j as i32)))
}

/// The upper bound, seconds, of native bucket `i`.
pub(crate) fn upper_bound(i: i32) -> f64 {
    (f64::from(i) / f64::from(1 << SCHEMA)).exp2()
}

/// `(zero bucket count, [(native index, count)] ascending)` of values given
/// as `(nanoseconds, count)` in any order.
pub(crate) fn native_buckets(values_ns: &[(u64, u64)]) -> (u64, Vec<(i32, u64)>) {
    let mut zero = 0u64;
    let mut out: Vec<(i32, u64)> = Vec::with_capacity(values_ns.len());
    for &(ns, n) in values_ns {
        let s = ns as f64 / 1e9;
        if s <= ZERO_THRESHOLD {
            zero = zero.saturating_add(n);
        } else {
            out.push((native_index(s), n));
        }
    }
    out.sort_unstable_by_key(|b| b.0);
    out.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 = a.1.saturating_add(b.1);
            true
        } else {
            false
        }
    });
    (zero, out)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

fn sint(out: &mut Vec<u8>, field: u32, v: i64) {
    uint(out, field, ((v << 1) ^ (v >> 63)) as u64);
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A nested message: `fill` writes its fields, then it goes in as field
/// `field`, its length in front. Written in place: a byte is kept for the
/// length, and the fields move up only when it takes more (a message of
/// 128 bytes or more), so no message has a buffer of its own.
fn message(out: &mut Vec<u8>, field: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    fill(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        out.splice(at..=at, prefix);
    }
}

/// `Histogram`: count, sum, the classic buckets (`(upper bound, cumulative
/// count)`) and the native ones.
fn histogram(
    out: &mut Vec<u8>,
    count: u64,
    sum: f64,
    classic: impl Iterator<Item = (f64, u64)>,
    series: &DurationSeries,
) {
    uint(out, 1, count);
    double(out, 2, sum);
    for (bound, cumulative) in classic {
        message(out, 3, |m| {
            uint(m, 1, cumulative);
            double(m, 2, bound);
        });
    }
    let (zero, buckets) = native_buckets(&series.values_ns);
    sint(out, 5, i64::from(SCHEMA));
    double(out, 6, ZERO_THRESHOLD);
    uint(out, 7, zero);
    // Spans of consecutive indices (offset: the gap from the last span's
    // end, the first from 0), then each count as the difference from the
    // bucket before it.
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut next = 0i32;
    for (at, &(i, _)) in buckets.iter().enumerate() {
        match spans.last_mut() {
            Some(s) if at > 0 && i == next => s.1 += 1,
            _ => spans.push((i - next, 1)),
        }
        next = i + 1;
    }
    for (offset, length) in spans {
        message(out, 12, |m| {
            sint(m, 1, i64::from(offset));
            uint(m, 2, u64::from(length));
        });
    }
    let mut previous = 0i64;
    for &(_, n) in &buckets {
        let n = n.min(i64::MAX as u64) as i64;
        sint(out, 13, n.wrapping_sub(previous));
        previous = n;
    }
}

/// A label pair's message (field 1 of a metric).
fn label(out: &mut Vec<u8>, name: &str, value: &str) {
    message(out, 1, |p| {
        bytes(p, 1, name.as_bytes());
        bytes(p, 2, value.as_bytes());
    });
}

fn metric(out: &mut Vec<u8>, kind: MetricType, m: &Metric, series: Option<&DurationSeries>) {
    for l in m.get_label() {
        label(out, l.name(), l.value());
    }
    // `families` builds each family's metrics of its own type only.
    match (kind, series) {
        (MetricType::GAUGE, _) => message(out, 2, |b| double(b, 1, m.get_gauge().get_value())),
        (MetricType::COUNTER, _) => message(out, 3, |b| double(b, 1, m.get_counter().get_value())),
        (MetricType::SUMMARY, _) => message(out, 4, |b| {
            let s = m.get_summary();
            uint(b, 1, s.sample_count());
            double(b, 2, s.sample_sum());
            for q in s.get_quantile() {
                message(b, 3, |p| {
                    double(p, 1, q.quantile());
                    double(p, 2, q.value());
                });
            }
        }),
        (MetricType::HISTOGRAM, Some(series)) => message(out, 7, |b| {
            let h = m.get_histogram();
            let classic = h
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()));
            histogram(b, h.get_sample_count(), h.get_sample_sum(), classic, series)
        }),
        _ => {}
    }
}

/// The `MetricFamily` enum's number of `kind`.
fn type_number(kind: MetricType) -> u64 {
    match kind {
        MetricType::COUNTER => 0,
        MetricType::GAUGE => 1,
        MetricType::SUMMARY => 2,
        MetricType::UNTYPED => 3,
        MetricType::HISTOGRAM => 4,
    }
}

/// A family, delimited: its length in front (`fill` writes its fields).
fn delimited(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    fill(out);
    let len = out.len() - at;
    let mut prefix = Vec::with_capacity(10);
    varint(&mut prefix, len as u64);
    out.splice(at..at, prefix);
}

/// Appends the delimited protobuf exposition of `families`: each a
/// `MetricFamily` with its length in front. A histogram family's metrics
/// go with `series`, one per metric in the same order (their native
/// buckets).
pub(crate) fn encode_into(out: &mut Vec<u8>, families: &[(MetricFamily, Vec<&DurationSeries>)]) {
    for (f, series) in families {
        delimited(out, |m| {
            bytes(m, 1, f.name().as_bytes());
            bytes(m, 2, f.help().as_bytes());
            let kind = f.get_field_type();
            uint(m, 3, type_number(kind));
            for (i, metric_) in f.get_metric().iter().enumerate() {
                message(m, 4, |b| metric(b, kind, metric_, series.get(i).copied()));
            }
        });
    }
}

/// The duration histogram families of `snapshot` (phases, then functions;
/// one without series left out), delimited, written straight from the
/// series: the bytes [`encode_into`] writes for the same families.
pub(crate) fn encode_durations(snapshot: &MetricsSnapshot, ns: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8192 + snapshot.durations.len() * 400);
    for family in &DURATION_FAMILIES {
        let mut series = family.series(snapshot).peekable();
        if series.peek().is_none() {
            continue;
        }
        delimited(&mut out, |m| {
            bytes(m, 1, format!("{ns}_{}", family.base).as_bytes());
            bytes(m, 2, family.help.as_bytes());
            uint(m, 3, type_number(MetricType::HISTOGRAM));
            for d in series {
                message(m, 4, |b| {
                    label(b, "module", &d.module);
                    label(b, family.label, &d.name);
                    message(b, 7, |h| {
                        let classic = snapshot
                            .bucket_bounds
                            .iter()
                            .copied()
                            .zip(d.buckets.iter().copied());
                        histogram(h, d.count, d.sum_seconds, classic, d)
                    });
                });
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_falls_in_the_bucket_whose_bounds_hold_it() {
        for s in [1e-9, 3.7e-6, 1e-3, 0.5, 1.0, 2.0, 1234.5] {
            let i = native_index(s);
            assert!(upper_bound(i - 1) < s && s <= upper_bound(i), "{s} in {i}");
        }
        assert_eq!(native_index(1.0), 0);
        assert_eq!(native_index(2.0), 64);
        assert_eq!(native_index(2.000_001), 65);
        assert_eq!(native_index(f64::MIN_POSITIVE), -1022 * 64);
        let width = upper_bound(1) / upper_bound(0) - 1.0;
        assert!((width - 0.010_889_286).abs() < 1e-9, "{width}");
    }

    #[test]
    fn every_bound_a_duration_can_meet_is_its_octave_bound_scaled() {
        // From 1 ns to u64::MAX ns, with octaves to spare.
        for e in -40..=40 {
            for (j, &bound) in within_octave().iter().enumerate() {
                let i = e * 64 + j as i32;
                assert_eq!(upper_bound(i), bound * f64::from(e).exp2(), "{i}");
            }
        }
    }

    #[test]
    fn the_index_is_the_one_found_by_walking_the_bounds() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values: Vec<f64> = (0..2_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Every magnitude of nanoseconds, 1 to 2^64.
                let ns = (x >> (x % 64)).max(1);
                ns as f64 / 1e9
            })
            .collect();
        // Each bound, and the values next to it.
        for i in -64 * 31..64 * 35 {
            let b = upper_bound(i);
            values.extend([
                b,
                f64::from_bits(b.to_bits() - 1),
                f64::from_bits(b.to_bits() + 1),
            ]);
        }
        for s in values {
            let i = native_index(s);
            assert!(upper_bound(i - 1) < s && s <= upper_bound(i), "{s} in {i}");
        }
        for s in [1e-9, 1.5e-6, 0.123, 7.0, 1.8e10] {
            assert_eq!(native_index(s), oracle_index(s), "{s}");
        }
    }

    #[test]
    fn buckets_are_merged_sorted_and_zero_kept_apart() {
        let (zero, b) = native_buckets(&[
            (2_000_000_000, 1),
            (0, 3),
            (1_000_000_000, 2),
            (1_999_999_999, 4),
        ]);
        assert_eq!(zero, 3);
        assert_eq!(b, vec![(0, 2), (64, 5)]);
    }

    #[test]
    fn varints_and_zigzag_match_the_protobuf_examples() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut s = Vec::new();
        sint(&mut s, 1, -1);
        sint(&mut s, 1, 1);
        sint(&mut s, 1, -2);
        assert_eq!(s, [0x08, 0x01, 0x08, 0x02, 0x08, 0x03]);
    }

    /// `metrics.proto`'s messages as `prost` reads them: a decoder that
    /// shares nothing with the encoder above.
    mod dto {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct LabelPair {
            #[prost(string, optional, tag = "1")]
            pub name: Option<String>,
            #[prost(string, optional, tag = "2")]
            pub value: Option<String>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Value {
            #[prost(double, optional, tag = "1")]
            pub value: Option<f64>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Bucket {
            #[prost(uint64, optional, tag = "1")]
            pub cumulative_count: Option<u64>,
            #[prost(double, optional, tag = "2")]
            pub upper_bound: Option<f64>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct BucketSpan {
            #[prost(sint32, optional, tag = "1")]
            pub offset: Option<i32>,
            #[prost(uint32, optional, tag = "2")]
            pub length: Option<u32>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Histogram {
            #[prost(uint64, optional, tag = "1")]
            pub sample_count: Option<u64>,
            #[prost(double, optional, tag = "2")]
            pub sample_sum: Option<f64>,
            #[prost(message, repeated, tag = "3")]
            pub bucket: Vec<Bucket>,
            #[prost(sint32, optional, tag = "5")]
            pub schema: Option<i32>,
            #[prost(double, optional, tag = "6")]
            pub zero_threshold: Option<f64>,
            #[prost(uint64, optional, tag = "7")]
            pub zero_count: Option<u64>,
            #[prost(message, repeated, tag = "12")]
            pub positive_span: Vec<BucketSpan>,
            #[prost(sint64, repeated, packed = "false", tag = "13")]
            pub positive_delta: Vec<i64>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Metric {
            #[prost(message, repeated, tag = "1")]
            pub label: Vec<LabelPair>,
            #[prost(message, optional, tag = "2")]
            pub gauge: Option<Value>,
            #[prost(message, optional, tag = "3")]
            pub counter: Option<Value>,
            #[prost(message, optional, tag = "7")]
            pub histogram: Option<Histogram>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct MetricFamily {
            #[prost(string, optional, tag = "1")]
            pub name: Option<String>,
            #[prost(string, optional, tag = "2")]
            pub help: Option<String>,
            #[prost(int32, optional, tag = "3")]
            pub r#type: Option<i32>,
            #[prost(message, repeated, tag = "4")]
            pub metric: Vec<Metric>,
        }
    }

    /// The native bucket of `s` found by walking the bounds: the first
    /// `i` whose upper bound `2^(i/64)` is at least `s`.
    fn oracle_index(s: f64) -> i32 {
        let mut i = -64 * 40;
        while (f64::from(i) / 64.0).exp2() < s {
            i += 1;
        }
        i
    }

    #[test]
    fn prost_reads_back_every_family_and_the_native_buckets() {
        use crate::prometheus::{encode_protobuf, MetricsSnapshot};
        use prost::Message as _;
        use std::collections::BTreeMap;

        // Durations with gaps between native buckets (several spans), one
        // of 0 ns (the zero bucket), and repeats in one bucket.
        let values_ns: Vec<(u64, u64)> = vec![
            (0, 2),
            (1_000, 3),
            (1_004, 1),
            (1_020, 4),
            (5_000, 7),
            (5_100, 1),
            (2_000_000_000, 9),
            (123_456_789, 1),
        ];
        let count: u64 = values_ns.iter().map(|v| v.1).sum();
        let snapshot = MetricsSnapshot {
            bucket_bounds: vec![1e-6, 1e-3, 1.0],
            durations: vec![DurationSeries {
                function: false,
                module: "m".into(),
                name: "p\"q".into(),
                buckets: vec![3, 16, 17],
                count,
                sum_seconds: 2.5,
                values_ns: values_ns.clone(),
            }],
            counts: vec![("facts".into(), -4)],
            cpu_percent: 12.5,
            runs_completed: 3,
            ..MetricsSnapshot::default()
        };
        let bytes = encode_protobuf(&snapshot, "t");
        let mut buf = &bytes[..];
        let mut families = Vec::new();
        while !buf.is_empty() {
            families.push(dto::MetricFamily::decode_length_delimited(&mut buf).unwrap());
        }
        let by_name = |n: &str| {
            families
                .iter()
                .find(|f| f.name.as_deref() == Some(n))
                .unwrap()
        };
        let phase = by_name("t_phase_duration_seconds");
        assert_eq!(phase.r#type, Some(4));
        let m = &phase.metric[0];
        let labels: Vec<_> = m
            .label
            .iter()
            .map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap()))
            .collect();
        assert_eq!(
            labels,
            [
                ("module".into(), "m".into()),
                ("phase".into(), "p\"q".into())
            ]
        );
        let h = m.histogram.as_ref().unwrap();
        assert_eq!((h.sample_count, h.sample_sum), (Some(count), Some(2.5)));
        let classic: Vec<_> = h
            .bucket
            .iter()
            .map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap()))
            .collect();
        assert_eq!(classic, [(1e-6, 3), (1e-3, 16), (1.0, 17)]);
        assert_eq!(h.schema, Some(6));
        assert!(h.zero_threshold.unwrap() > 0.0);
        assert_eq!(h.zero_count, Some(2));
        // Spans and deltas back to (index, count), against the oracle.
        let mut got = BTreeMap::new();
        let (mut index, mut count_now, mut deltas) = (0i32, 0i64, h.positive_delta.iter());
        for span in &h.positive_span {
            index += span.offset.unwrap();
            for _ in 0..span.length.unwrap() {
                count_now += deltas.next().unwrap();
                got.insert(index, count_now as u64);
                index += 1;
            }
        }
        assert!(deltas.next().is_none());
        let mut want = BTreeMap::new();
        for &(ns, n) in values_ns.iter().filter(|v| v.0 > 0) {
            *want.entry(oracle_index(ns as f64 / 1e9)).or_insert(0u64) += n;
        }
        assert_eq!(got, want);
        assert!(h.positive_span.len() >= 3, "{:?}", h.positive_span);
        let gauge = |n: &str| by_name(n).metric[0].gauge.as_ref().unwrap().value.unwrap();
        assert_eq!(gauge("t_count_value"), -4.0);
        assert_eq!(gauge("t_process_cpu_percent"), 12.5);
        let runs = by_name("t_runs_completed_total");
        assert_eq!(runs.r#type, Some(0));
        assert_eq!(runs.metric[0].counter.as_ref().unwrap().value, Some(3.0));
        assert_eq!(
            by_name("t_run_open").metric[0].label[0].value.as_deref(),
            Some("")
        );
    }

    /// 300 random histograms (values from 0 to about 10^12 ns, spread over
    /// many powers of two, counts up to 10^6) read back by `prost`: the
    /// zero count and every native bucket as the walk of the bounds says.
    #[test]
    fn random_histograms_read_back_exactly() {
        use crate::prometheus::{encode_protobuf, MetricsSnapshot};
        use prost::Message as _;
        use std::collections::BTreeMap;

        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 11
        };
        for _ in 0..300 {
            let n = next() % 40;
            let values_ns: Vec<(u64, u64)> = (0..n)
                .map(|_| {
                    let ns = if next() % 10 == 0 {
                        0
                    } else {
                        next() >> (13 + next() % 40)
                    };
                    (ns, 1 + next() % 1_000_000)
                })
                .collect();
            let snapshot = MetricsSnapshot {
                durations: vec![DurationSeries {
                    function: true,
                    module: "m".into(),
                    name: "f".into(),
                    buckets: vec![],
                    count: values_ns.iter().map(|v| v.1).sum(),
                    sum_seconds: 0.0,
                    values_ns: values_ns.clone(),
                }],
                ..MetricsSnapshot::default()
            };
            let bytes = encode_protobuf(&snapshot, "t");
            let family = dto::MetricFamily::decode_length_delimited(&bytes[..]).unwrap();
            assert_eq!(family.name.as_deref(), Some("t_function_duration_seconds"));
            let h = family.metric[0].histogram.clone().unwrap();
            let mut got = BTreeMap::new();
            let (mut index, mut count, mut deltas) = (0i32, 0i64, h.positive_delta.iter());
            for span in &h.positive_span {
                index += span.offset.unwrap();
                for _ in 0..span.length.unwrap() {
                    count += deltas.next().unwrap();
                    assert!(count > 0, "an empty bucket in a span");
                    got.insert(index, count as u64);
                    index += 1;
                }
            }
            assert!(deltas.next().is_none());
            let mut want = BTreeMap::new();
            let mut zero = 0;
            for &(ns, n) in &values_ns {
                if ns == 0 {
                    zero += n;
                } else {
                    *want.entry(oracle_index(ns as f64 / 1e9)).or_insert(0u64) += n;
                }
            }
            assert_eq!(h.zero_count, Some(zero));
            assert_eq!(got, want, "{values_ns:?}");
        }
    }
}
