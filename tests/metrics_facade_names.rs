//! A `metrics` counter or gauge named like an `observe_counts` name (or
//! like each other) is written once each: the facade's gets the label
//! `source="metrics"` (`"metrics.2"` for the next), in the run file and
//! on `/metrics`, and the scrape passes `promtool check metrics` (two
//! series of one name and labels is a scrape Prometheus refuses). Its own
//! process: the facade is process-wide.
#![cfg(all(feature = "metrics", feature = "prometheus"))]

mod common;
use common::{binary, eventually, http, promtool_check, read_run_file};
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;
use std::time::Duration;

#[test]
fn facade_counts_named_like_observed_counts_are_each_written_once() {
    runmetrics::install_metrics().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        Config::new()
            .events(Events::None)
            .port(0)
            .publish_interval(Duration::from_millis(50)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();
    rec.observe_counts(&[("jobs", 7), ("hits{route=\"/a\"}", 11)]);
    metrics::counter!("jobs").increment(3);
    metrics::gauge!("jobs").set(2.0);
    metrics::counter!("hits", "route" => "/a").increment(5);
    metrics::counter!("alone").increment(1);

    let want = [
        ("alone", 1),
        ("hits{route=\"/a\"}", 11),
        ("hits{route=\"/a\",source=\"metrics\"}", 5),
        ("jobs", 7),
        ("jobs{source=\"metrics\"}", 3),
        ("jobs{source=\"metrics.2\"}", 2),
    ];
    let addr = rec.metrics_addr().unwrap();
    let body = eventually("the counts on /metrics", Duration::from_secs(20), || {
        let (_, _, body) = http(addr, "GET", "/metrics");
        body.contains("jobs{source=\\\"metrics.2\\\"}")
            .then_some(body)
    });
    let mut series: Vec<(String, i64)> = body
        .lines()
        .filter(|l| l.starts_with("runmetrics_count_value{"))
        .map(|l| {
            let (labels, value) = l.rsplit_once(' ').unwrap();
            let name = labels
                .strip_prefix("runmetrics_count_value{name=\"")
                .and_then(|n| n.strip_suffix("\"}"))
                .unwrap()
                .replace("\\\"", "\"");
            (name, value.parse().unwrap())
        })
        .collect();
    series.sort();
    let mut want_owned: Vec<(String, i64)> =
        want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    want_owned.sort();
    assert_eq!(series, want_owned, "{body}");
    if let Some(promtool) = binary("promtool") {
        promtool_check(&promtool, &body).unwrap();
    }

    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let mut counts: Vec<(String, i64)> = file["meta"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["last"].as_i64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(counts, want_owned);
}
