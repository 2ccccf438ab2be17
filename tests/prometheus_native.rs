//! Native histograms out: a real Prometheus 2.42 started with
//! `--enable-feature=native-histograms` scrapes a real `/metrics` (it asks
//! for the protobuf exposition), and `histogram_quantile` over the native
//! series agrees with the run file's quantiles within 2 %; its
//! `histogram_count` is the file's count exactly. The text scrape of the
//! same recorder still passes `promtool check metrics`.
#![cfg(feature = "prometheus")]

mod common;

use std::time::{Duration, Instant};

use common::{binary, eventually, http, scrape, Lcg};
use runmetrics::{Config, Recorder};
use serde_json::Value;

/// What Prometheus 2.42 sends with native histograms on.
const PROMETHEUS_ACCEPT: &str = "application/vnd.google.protobuf;\
    proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,\
    application/openmetrics-text;version=1.0.0;q=0.5,\
    application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

const REGIONS: u64 = 3_000;

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {}
}

#[test]
fn prometheus_reads_native_histograms_that_agree_with_the_run_file() {
    let Some(prometheus) = binary("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .port(0)
            .job("native")
            .publish_interval(Duration::from_millis(50))
            .sample_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    let target = rec.metrics_addr().unwrap();

    // "decode": log-uniform durations from 2 µs to 400 µs, many native
    // buckets, where interpolating inside one is close to right; "steady":
    // one duration (a spin of 60 µs), where the values crowd into a bucket
    // or two and the interpolation can put a quantile anywhere in one: the
    // case the schema's width bounds.
    rec.start_run(dir.path()).unwrap();
    let mut lcg = Lcg(17);
    for _ in 0..REGIONS {
        let d = Duration::from_nanos((2_000.0 * 200f64.powf(lcg.unit())) as u64);
        let _t = rec.phase("decode", "native_test");
        spin(d);
    }
    for _ in 0..REGIONS {
        let _t = rec.phase("steady", "native_test");
        spin(Duration::from_micros(60));
    }
    let file = common::read_run_file(rec.end_run(Value::Null).unwrap());
    let entry = |phase: &str| {
        file["meta"]["phase_durations_seconds_total"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["phase"] == phase)
            .unwrap()
            .clone()
    };

    let count_line = format!("phase=\"steady\"}} {REGIONS}");
    let text = eventually("the run in /metrics", Duration::from_secs(10), || {
        let (_, _, body) = http(target, "GET", "/metrics");
        body.contains(&count_line).then_some(body)
    });
    let (content_type, body) = scrape(target, PROMETHEUS_ACCEPT);
    assert!(
        content_type.starts_with("application/vnd.google.protobuf"),
        "{content_type}"
    );
    assert!(!body.is_empty() && !body.starts_with(b"#"));
    eprintln!("text {} bytes, protobuf {} bytes", text.len(), body.len());
    let (content_type, _) = scrape(target, "text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
    assert!(content_type.starts_with("text/plain"), "{content_type}");

    if let Some(promtool) = binary("promtool") {
        if let Err(report) = common::promtool_check(&promtool, &text) {
            panic!("promtool says:\n{report}\nfor:\n{text}");
        }
    }

    let (_server, prom) = common::start_prometheus(
        &prometheus,
        dir.path(),
        "native",
        &[target.to_string()],
        &["--enable-feature=native-histograms"],
    );
    let query = |q: &str| -> Option<f64> {
        let q = q
            .replace(' ', "%20")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22");
        let (status, _, body) = http(prom, "GET", &format!("/api/v1/query?query={q}"));
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        (status == 200 && result.len() == 1).then_some(())?;
        result[0]["value"][1].as_str()?.parse().ok()
    };
    for phase in ["decode", "steady"] {
        let entry = entry(phase);
        assert_eq!(entry["count"], REGIONS);
        let series = format!(r#"runmetrics_phase_duration_seconds{{phase="{phase}"}}"#);
        let count = eventually(
            "the native histogram in Prometheus",
            Duration::from_secs(30),
            || query(&format!("histogram_count({series})")),
        );
        assert_eq!(count, REGIONS as f64, "{phase}: native count");
        let sum = query(&format!("histogram_sum({series})")).unwrap();
        let total = entry["duration_seconds_total"].as_f64().unwrap();
        assert!(
            (sum - total).abs() <= total * 1e-9,
            "{phase}: sum {sum} against {total}"
        );
        for (q, key) in [
            (0.5, "p50_seconds"),
            (0.9, "p90_seconds"),
            (0.99, "p99_seconds"),
        ] {
            let native = query(&format!("histogram_quantile({q}, {series})")).unwrap();
            let in_file = entry[key].as_f64().unwrap();
            let error = (native - in_file) / in_file;
            eprintln!(
                "{phase} q {q}: native {native:.9} s, run file {in_file:.9} s, {:+.3} %",
                error * 100.0
            );
            assert!(
                error.abs() <= 0.02,
                "{phase} q {q}: Prometheus {native} s against the run file's {in_file} s"
            );
        }
    }
}
