//! The Prometheus sink: turns the collector's [`MetricsSnapshot`] into the
//! text exposition format (0.0.4) with the `prometheus` crate's metric
//! families and `TextEncoder`, and serves it (see `server`). Only this module
//! knows the metric names and the text format.
//!
//! Names: every metric is `<namespace>_<name>`; the namespace comes from
//! [`Config::namespace`](crate::Config::namespace) and is sanitised by
//! [`sanitize_metric_name`]. Label values are ours or the user's phase, module,
//! function and count names, escaped by the encoder (`\`, `"`, newline).

pub(crate) mod exposition;
pub(crate) mod native;
pub(crate) mod published;
#[cfg(feature = "push")]
pub(crate) mod push;
pub(crate) mod server;
mod text;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Quantile,
    Summary,
};
use prometheus::{Encoder, TextEncoder};

/// The content type of what [`encode`] makes.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Published text as an HTTP body (a scrape's response, a push's request),
/// read straight from the shared buffer: sending it copies nothing.
pub(crate) struct Body(pub(crate) std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One phase's or function's durations over the life of the process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DurationSeries {
    pub(crate) function: bool,
    /// The registry's strings, shared, not copied per publish.
    pub(crate) module: std::sync::Arc<str>,
    pub(crate) name: std::sync::Arc<str>,
    /// Cumulative count at each configured bucket bound (same order).
    pub(crate) buckets: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
    /// For the native histogram: `(ns, count)` per tally bucket, the ns
    /// being the value the run file gives a quantile in that bucket.
    pub(crate) values_ns: Vec<(u64, u64)>,
}

/// What a scrape shows: plain data the collector hands over.
#[derive(Clone, Debug, Default)]
pub(crate) struct MetricsSnapshot {
    pub(crate) bucket_bounds: Vec<f64>,
    pub(crate) durations: Vec<DurationSeries>,
    /// The last value observed for each count name.
    pub(crate) counts: Vec<(String, i64)>,
    pub(crate) cpu_percent: f64,
    pub(crate) rss_bytes: u64,
    /// The open run, if any.
    pub(crate) run_id: Option<String>,
    pub(crate) runs_completed: u64,
    pub(crate) records_aggregated: u64,
    pub(crate) records_dropped: u64,
    pub(crate) push_failures: u64,
    /// The `metrics` facade's entries, taken when the snapshot is.
    pub(crate) extra: crate::extra::ExtraSnapshot,
}

/// Makes `name` a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
/// Every other character becomes `_`; a leading digit gets a `_` in front;
/// an empty name becomes `_`.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

fn family(name: String, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name);
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels);
    m
}

fn counter(value: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::default();
    m.set_counter(c);
    m
}

/// One family of duration histograms: phases or functions.
pub(crate) struct DurationFamily {
    pub(crate) function: bool,
    /// The metric's name after the namespace.
    pub(crate) base: &'static str,
    /// The label naming the phase or function.
    pub(crate) label: &'static str,
    pub(crate) help: &'static str,
}

impl DurationFamily {
    /// `snapshot`'s series of this family, in the snapshot's order.
    pub(crate) fn series<'a>(
        &self,
        snapshot: &'a MetricsSnapshot,
    ) -> impl Iterator<Item = &'a DurationSeries> + 'a {
        let function = self.function;
        snapshot
            .durations
            .iter()
            .filter(move |d| d.function == function)
    }
}

/// The duration families, in the order they are exposed (first).
pub(crate) const DURATION_FAMILIES: [DurationFamily; 2] = [
    DurationFamily {
        function: false,
        base: "phase_duration_seconds",
        label: "phase",
        help: "Duration of timed phases (PhaseTimer, phase!), over the life of the process.",
    },
    DurationFamily {
        function: true,
        base: "function_duration_seconds",
        label: "function",
        help: "Duration of measured function calls (#[measure], measure_fn), over the life of the process.",
    },
];

/// Encodes `snapshot` in the text format, every name under `namespace`:
/// the duration histograms straight from the series ([`text`]), then the
/// few other families with the `prometheus` crate's encoder.
pub(crate) fn encode(snapshot: &MetricsSnapshot, namespace: &str) -> Vec<u8> {
    let ns = sanitize_metric_name(namespace);
    // About what a series' lines take with the default buckets.
    let mut out = Vec::with_capacity(4096 + snapshot.durations.len() * 2600);
    text::durations(&mut out, snapshot, &ns);
    let families: Vec<MetricFamily> = families(snapshot, namespace, false)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    // Encoding into a Vec only fails on a malformed family, which we never build.
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        out = format!("# runmetrics could not encode its metrics: {e}\n").into_bytes();
    }
    out
}

/// Encodes `snapshot` as delimited protobuf, the duration histograms with
/// native buckets too ([`native`]), straight from the series.
pub(crate) fn encode_protobuf(snapshot: &MetricsSnapshot, namespace: &str) -> Vec<u8> {
    let mut out = native::encode_durations(snapshot, &sanitize_metric_name(namespace));
    native::encode_into(&mut out, &families(snapshot, namespace, false));
    out
}

/// Every family (the duration histograms only `with_durations`; the
/// encoders write those straight from the series), a histogram family
/// with its series (one per metric).
fn families<'a>(
    snapshot: &'a MetricsSnapshot,
    namespace: &str,
    with_durations: bool,
) -> Vec<(MetricFamily, Vec<&'a DurationSeries>)> {
    let ns = sanitize_metric_name(namespace);
    let mut families = Vec::new();
    for family_ in DURATION_FAMILIES.iter().filter(|_| with_durations) {
        let series: Vec<&DurationSeries> = family_.series(snapshot).collect();
        let metrics: Vec<Metric> = series
            .iter()
            .map(|d| {
                let mut h = Histogram::default();
                h.set_sample_count(d.count);
                h.set_sample_sum(d.sum_seconds);
                h.set_bucket(
                    snapshot
                        .bucket_bounds
                        .iter()
                        .zip(&d.buckets)
                        .map(|(&bound, &count)| {
                            let mut b = Bucket::default();
                            b.set_upper_bound(bound);
                            b.set_cumulative_count(count);
                            b
                        })
                        .collect(),
                );
                let mut m = Metric::from_label(vec![
                    label("module", &d.module),
                    label(family_.label, &d.name),
                ]);
                m.set_histogram(h);
                m
            })
            .collect();
        if !metrics.is_empty() {
            families.push((
                family(
                    format!("{ns}_{}", family_.base),
                    family_.help,
                    MetricType::HISTOGRAM,
                    metrics,
                ),
                series,
            ));
        }
    }
    let mut push = |f: MetricFamily| families.push((f, Vec::new()));
    let extra = &snapshot.extra;
    let extra_counts = crate::extra::counts_beside(
        snapshot.counts.iter().map(|(name, _)| name.as_str()),
        extra.counts.clone(),
    );
    if !snapshot.counts.is_empty() || !extra_counts.is_empty() {
        push(family(
            format!("{ns}_count_value"),
            "Last value given to observe_counts, per name (a metrics counter's total, a gauge's value, as name{k=\"v\"}).",
            MetricType::GAUGE,
            snapshot
                .counts
                .iter()
                .map(|(name, v)| (name.as_str(), *v))
                .chain(extra_counts.iter().map(|c| (c.name.as_str(), c.last)))
                .map(|(name, v)| gauge(vec![label("name", name)], v as f64))
                .collect(),
        ));
    }
    for f in extra_summaries(&ns, &extra.histograms) {
        push(f);
    }
    push(family(
        format!("{ns}_process_cpu_percent"),
        "Process CPU use at the last sample, in percent of one core (200 = two busy cores).",
        MetricType::GAUGE,
        vec![gauge(vec![], snapshot.cpu_percent)],
    ));
    push(family(
        format!("{ns}_process_resident_memory_bytes"),
        "Process resident memory at the last sample.",
        MetricType::GAUGE,
        vec![gauge(vec![], snapshot.rss_bytes as f64)],
    ));
    push(family(
        format!("{ns}_run_open"),
        "1 while a run is open, with its id in the run_id label; 0 otherwise.",
        MetricType::GAUGE,
        vec![match &snapshot.run_id {
            Some(id) => gauge(vec![label("run_id", id)], 1.0),
            None => gauge(vec![label("run_id", "")], 0.0),
        }],
    ));
    for (name, help, value) in [
        (
            "runs_completed_total",
            "Runs ended with end_run.",
            snapshot.runs_completed,
        ),
        (
            "records_aggregated_total",
            "Timed regions and count observations aggregated.",
            snapshot.records_aggregated,
        ),
        (
            "records_dropped_total",
            "Records dropped because a thread's buffer was full (Overflow::Drop).",
            snapshot.records_dropped,
        ),
        (
            "push_failures_total",
            "Pushes to the Pushgateway that failed.",
            snapshot.push_failures,
        ),
    ] {
        push(family(
            format!("{ns}_{name}"),
            help,
            MetricType::COUNTER,
            vec![counter(value as f64)],
        ));
    }
    families
}

/// The `metrics` facade's histograms as summaries, `<ns>_<name>` with the
/// key's labels: their quantiles are the run file's (any unit, so not the
/// duration bounds), one family per sanitized name.
fn extra_summaries(
    ns: &str,
    histograms: &[runmetrics_format::MetricHistogram],
) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::new();
    for h in histograms {
        let name = format!("{ns}_{}", sanitize_metric_name(&h.name));
        let mut s = Summary::default();
        s.set_sample_count(h.count);
        s.set_sample_sum(h.sum);
        s.set_quantile(
            [(0.5, h.p50), (0.9, h.p90), (0.99, h.p99), (0.999, h.p999)]
                .into_iter()
                .filter_map(|(q, v)| {
                    let mut p = Quantile::default();
                    p.set_quantile(q);
                    p.set_value(v?);
                    Some(p)
                })
                .collect(),
        );
        let labels = h
            .labels
            .iter()
            .map(|(k, v)| {
                label(
                    &sanitize_metric_name(k).replace(':', "_"),
                    v.as_str().unwrap_or_default(),
                )
            })
            .collect();
        let mut m = Metric::from_label(labels);
        m.set_summary(s);
        match out.last_mut() {
            Some(f) if f.name() == name => f.mut_metric().push(m),
            _ => out.push(family(
                name,
                "Values recorded with the metrics facade's histogram!, over the life of the process.",
                MetricType::SUMMARY,
                vec![m],
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_by_the_documented_rule() {
        assert_eq!(sanitize_metric_name("runmetrics"), "runmetrics");
        assert_eq!(sanitize_metric_name("my-app.v2"), "my_app_v2");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_metric_name(""), "_");
        assert_eq!(sanitize_metric_name("a:b_c"), "a:b_c");
        assert_eq!(sanitize_metric_name("ünï"), "_n_");
    }

    /// Snapshots with every kind of series: hostile names, counts past
    /// 2^53, sums of every magnitude, no series of a kind.
    fn snapshots() -> Vec<MetricsSnapshot> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let names = [
            "plain",
            "",
            "a\\b",
            "new\nline",
            "q\"uote",
            "ünï",
            "\\\"\n",
            "le",
            "x{y}",
        ];
        let mut out = vec![MetricsSnapshot::default()];
        for round in 0..40 {
            let bounds: Vec<f64> = (0..(next() % 30))
                .map(|i| (i as f64 + 1.0) * [1e-7, 0.005, 1.5, 1e9][round % 4])
                .collect();
            let durations = (0..next() % 50)
                .map(|_| {
                    let count = match next() % 4 {
                        0 => next(),
                        _ => next() % 10_000,
                    };
                    DurationSeries {
                        function: next() % 3 == 0,
                        module: names[(next() % 9) as usize].into(),
                        name: names[(next() % 9) as usize].into(),
                        buckets: bounds.iter().map(|_| next() % (count + 1)).collect(),
                        count,
                        sum_seconds: f64::from_bits(next() >> 2),
                        values_ns: (0..next() % 5)
                            .map(|_| (next() % 10_000_000_000, next() % 100))
                            .collect(),
                    }
                })
                .collect();
            out.push(MetricsSnapshot {
                bucket_bounds: bounds,
                durations,
                counts: vec![("c\"1".into(), -3)],
                run_id: (round % 2 == 0).then(|| "r".to_owned()),
                ..MetricsSnapshot::default()
            });
        }
        out
    }

    #[test]
    fn the_text_is_the_prometheus_crates_text() {
        for s in snapshots() {
            let families: Vec<MetricFamily> = families(&s, "t-1", true)
                .into_iter()
                .map(|(f, _)| f)
                .collect();
            let mut want = Vec::new();
            TextEncoder::new().encode(&families, &mut want).unwrap();
            let got = encode(&s, "t-1");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn the_protobuf_is_that_of_the_protobuf_families() {
        for s in snapshots() {
            let mut want = Vec::new();
            native::encode_into(&mut want, &families(&s, "t-1", true));
            assert_eq!(encode_protobuf(&s, "t-1"), want);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let snapshot = MetricsSnapshot {
            bucket_bounds: vec![0.001],
            durations: vec![DurationSeries {
                function: false,
                module: "m\"x".into(),
                name: "a\\b\nc".into(),
                buckets: vec![1],
                count: 2,
                sum_seconds: 0.5,
                values_ns: vec![],
            }],
            ..MetricsSnapshot::default()
        };
        let text = String::from_utf8(encode(&snapshot, "t")).unwrap();
        assert!(
            text.contains(
                r#"t_phase_duration_seconds_bucket{module="m\"x",phase="a\\b\nc",le="0.001"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"le="+Inf"} 2"#), "{text}");
        assert!(text.contains("t_run_open{run_id=\"\"} 0"), "{text}");
    }
}
