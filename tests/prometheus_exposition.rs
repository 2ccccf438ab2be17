//! `/metrics`: the text format, the HTTP behaviour, promtool's verdict, and a
//! real Prometheus scraping us.
#![cfg(feature = "prometheus")]

mod common;

use std::time::Duration;

use common::{binary, eventually, http, scrape};
use runmetrics::{Config, NewRecorderError, Recorder};
use serde_json::Value;

fn recorder() -> Recorder {
    Recorder::new(
        Config::new()
            .port(0)
            .job("al_inference")
            .publish_interval(Duration::from_millis(50))
            .sample_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

/// Records a little of everything and waits until a scrape shows it.
fn record_some(rec: &Recorder, dir: &std::path::Path) -> String {
    rec.start_run(dir).unwrap();
    for _ in 0..3 {
        let _t = rec.phase("grounding", "pipeline");
    }
    rec.measure_fn("infer_step", "inference", || ());
    rec.observe_counts(&[("facts_count", 200)]);
    rec.sample_process_gauges();
    let addr = rec.metrics_addr().unwrap();
    eventually("the phase in /metrics", Duration::from_secs(10), || {
        let (_, _, body) = http(addr, "GET", "/metrics");
        body.contains("phase=\"grounding\"").then_some(body)
    })
}

#[test]
fn metrics_are_served_in_the_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let addr = rec.metrics_addr().unwrap();
    assert!(addr.ip().is_loopback(), "binds loopback by default: {addr}");
    let body = record_some(&rec, dir.path());
    let (status, head, _) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    for needle in [
        "# TYPE runmetrics_phase_duration_seconds histogram",
        "runmetrics_phase_duration_seconds_bucket{module=\"pipeline\",phase=\"grounding\",le=\"+Inf\"} 3",
        "runmetrics_phase_duration_seconds_count{module=\"pipeline\",phase=\"grounding\"} 3",
        "runmetrics_function_duration_seconds_count{module=\"inference\",function=\"infer_step\"} 1",
        "runmetrics_count_value{name=\"facts_count\"} 200",
        "# TYPE runmetrics_process_cpu_percent gauge",
        "# TYPE runmetrics_process_resident_memory_bytes gauge",
        "# TYPE runmetrics_records_dropped_total counter",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    let run_id = rec.end_run(Value::Null).unwrap();
    let _ = run_id;
    // After the run: histograms stay (cumulative), the run is closed.
    let body = eventually(
        "the closed run in /metrics",
        Duration::from_secs(10),
        || {
            let (_, _, body) = http(addr, "GET", "/metrics");
            body.contains("runmetrics_runs_completed_total 1")
                .then_some(body)
        },
    );
    assert!(
        body.contains("runmetrics_run_open{run_id=\"\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("phase=\"grounding\",le=\"+Inf\"} 3"),
        "{body}"
    );
}

#[test]
fn histograms_are_cumulative_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let addr = rec.metrics_addr().unwrap();
    for _ in 0..2 {
        record_some(&rec, dir.path());
        rec.end_run(Value::Null).unwrap();
    }
    eventually("6 regions over two runs", Duration::from_secs(10), || {
        let (_, _, body) = http(addr, "GET", "/metrics");
        body.contains(
            "runmetrics_phase_duration_seconds_count{module=\"pipeline\",phase=\"grounding\"} 6",
        )
        .then_some(())
    });
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let rec = recorder();
    let addr = rec.metrics_addr().unwrap();
    assert_eq!(http(addr, "GET", "/").0, 404);
    assert_eq!(http(addr, "GET", "/metricsx").0, 404);
    assert_eq!(http(addr, "POST", "/metrics").0, 405);
    assert_eq!(http(addr, "DELETE", "/metrics").0, 405);
    assert_eq!(http(addr, "GET", "/metrics?x=1").0, 200);
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    match Recorder::new(Config::new().port(port)) {
        Err(e @ NewRecorderError::Serve { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&port.to_string()) && msg.contains("Config::port"),
                "{msg}"
            );
        }
        other => panic!("expected Serve error, got {other:?}"),
    }
}

#[test]
fn ipv6_and_other_addresses_can_be_bound() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("NOT RUN: this machine has no IPv6 loopback");
        return;
    };
    drop(probe);
    let rec = Recorder::new(Config::new().port(0).bind("::1".parse().unwrap())).unwrap();
    let addr = rec.metrics_addr().unwrap();
    assert!(addr.is_ipv6());
    assert_eq!(http(addr, "GET", "/metrics").0, 200);
}

#[test]
fn bad_buckets_and_namespace_rules() {
    assert!(Recorder::new(Config::new().buckets(vec![0.1, 0.01])).is_err());
    assert!(Recorder::new(Config::new().buckets(vec![f64::NAN])).is_err());
    assert_eq!(runmetrics::sanitize_metric_name("my-app"), "my_app");
    let rec = Recorder::new(Config::new().port(0).namespace("my-app")).unwrap();
    let (_, _, body) = http(rec.metrics_addr().unwrap(), "GET", "/metrics");
    assert!(body.contains("my_app_run_open"), "{body}");
}

#[test]
fn promtool_finds_no_problem_in_our_exposition() {
    let Some(promtool) = binary("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let body = record_some(&rec, dir.path());
    assert!(body.contains("runmetrics_count_value"));
    assert!(body.contains("runmetrics_function_duration_seconds"));
    if let Err(report) = common::promtool_check(&promtool, &body) {
        panic!("promtool says:\n{report}\nfor:\n{body}");
    }
}

#[test]
fn a_real_prometheus_scrapes_our_histograms_and_gauges() {
    let Some(prometheus) = binary("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder();
    let target = rec.metrics_addr().unwrap();
    record_some(&rec, dir.path());

    let (_server, prom) = common::start_prometheus(
        &prometheus,
        dir.path(),
        "al_inference",
        &[target.to_string()],
        &[],
    );
    let query = |q: &str| -> Option<Vec<Value>> {
        let (status, _, body) = http(prom, "GET", &format!("/api/v1/query?query={q}"));
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (status == 200 && !result.is_empty()).then_some(result)
    };
    let series = eventually(
        "the phase histogram in Prometheus",
        Duration::from_secs(30),
        || query("runmetrics_phase_duration_seconds_count"),
    );
    let metric = &series[0]["metric"];
    assert_eq!(metric["job"], "al_inference");
    assert_eq!(metric["module"], "pipeline");
    assert_eq!(metric["phase"], "grounding");
    assert_eq!(series[0]["value"][1], "3");
    let buckets = query("runmetrics_phase_duration_seconds_bucket").unwrap();
    assert!(buckets.iter().any(|b| b["metric"]["le"] == "+Inf"));
    let cpu = eventually(
        "the CPU gauge in Prometheus",
        Duration::from_secs(30),
        || query("runmetrics_process_cpu_percent"),
    );
    assert_eq!(cpu[0]["metric"]["job"], "al_inference");
    rec.end_run(Value::Null).unwrap();
}

/// What asks for the delimited protobuf exposition.
const PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

/// A protobuf field: a varint, a fixed 64-bit value or a length-delimited
/// slice (the only wire types the exposition uses).
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let (b, rest) = buf.split_first().expect("a varint");
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// The fields of one message, by number, decoded by hand from the wire
/// format (an oracle apart from the library's encoder).
fn fields(mut msg: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = varint(&mut msg);
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut msg)),
            1 => {
                let (v, rest) = msg.split_at(8);
                msg = rest;
                Field::Fixed64(u64::from_le_bytes(v.try_into().unwrap()))
            }
            2 => {
                let len = varint(&mut msg) as usize;
                let (v, rest) = msg.split_at(len);
                msg = rest;
                Field::Bytes(v)
            }
            wire => panic!("wire type {wire} in the exposition"),
        };
        out.push((key >> 3, field));
    }
    out
}

/// The first metric of family `name` in a delimited protobuf exposition:
/// its gauge's or counter's value (`Metric.gauge.value`,
/// `Metric.counter.value`) or its histogram's sample count
/// (`Metric.histogram.sample_count`), whichever it has (a field left out is
/// 0, as proto3 has it).
fn protobuf_value(mut body: &[u8], name: &str) -> Option<f64> {
    while !body.is_empty() {
        let len = varint(&mut body) as usize;
        let (family, rest) = body.split_at(len);
        body = rest;
        let family = fields(family);
        let named = family
            .iter()
            .any(|(n, f)| *n == 1 && matches!(f, Field::Bytes(b) if *b == name.as_bytes()));
        let Some(metric) = family.iter().find_map(|(n, f)| match f {
            Field::Bytes(m) if *n == 4 && named => Some(*m),
            _ => None,
        }) else {
            continue;
        };
        for (n, f) in fields(metric) {
            let (Field::Bytes(inner), 2 | 3 | 7) = (f, n) else {
                continue;
            };
            let value = fields(inner)
                .into_iter()
                .find_map(|(k, v)| match (n, k, v) {
                    (2 | 3, 1, Field::Fixed64(bits)) => Some(f64::from_bits(bits)),
                    (7, 1, Field::Varint(count)) => Some(count as f64),
                    _ => None,
                });
            return Some(value.unwrap_or(0.0));
        }
    }
    None
}

#[test]
fn a_scrape_right_after_end_run_sees_the_closed_run() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic publish: only `end_run`'s can show the closed run.
    let rec = Recorder::new(
        Config::new()
            .port(0)
            .publish_interval(Duration::from_secs(3_600)),
    )
    .unwrap();
    let addr = rec.metrics_addr().unwrap();
    for (run, regions) in [(1, 3), (2, 5)] {
        rec.start_run(dir.path()).unwrap();
        for _ in 0..regions {
            let _t = rec.phase("decode", "pipeline");
        }
        rec.end_run(Value::Null).unwrap();
        // One scrape of each encoding, with no waiting: the publish
        // `end_run` made is what both render.
        let (status, _, text) = http(addr, "GET", "/metrics");
        assert_eq!(status, 200);
        let total: u64 = if run == 1 { 3 } else { 8 };
        for needle in [
            format!("runmetrics_runs_completed_total {run}\n"),
            "runmetrics_run_open{run_id=\"\"} 0\n".to_owned(),
            format!(
                "runmetrics_phase_duration_seconds_count{{module=\"pipeline\",phase=\"decode\"}} {total}\n"
            ),
        ] {
            assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
        }
        let (_, protobuf) = scrape(addr, PROTOBUF);
        assert_eq!(
            protobuf_value(&protobuf, "runmetrics_runs_completed_total"),
            Some(f64::from(run))
        );
        assert_eq!(
            protobuf_value(&protobuf, "runmetrics_phase_duration_seconds"),
            Some(total as f64)
        );
        assert_eq!(protobuf_value(&protobuf, "runmetrics_run_open"), Some(0.0));
    }
}
