//! The fleet path of the README: three workers (recorders, each with its
//! own `/metrics`) scraped by a real Prometheus, and the README's PromQL —
//! `histogram_quantile` over `sum by (le)` of the buckets' rate — against
//! a sorted vector of every region's duration measured with `Instant`: the
//! fleet's p50 and p99 fall in the bucket that holds the true quantile,
//! and the summed count is every region. And the same for batch workers
//! that push to a real Pushgateway at `end_run`, each with its own
//! `instance` grouping label, scraped with `honor_labels`.
#![cfg(feature = "prometheus")]

mod common;

use std::time::{Duration, Instant};

use common::{binary, eventually, http};
use runmetrics::{Config, Recorder};
use serde_json::Value;

/// The README's query (there with 0.99), tested here as written.
const QUERY: &str = "histogram_quantile(0.99, sum by (le) (rate(runmetrics_phase_duration_seconds_bucket{job=\"fleet\", phase=\"step\"}[5m])))";

fn spin(d: Duration) -> Duration {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
    t.elapsed()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The default bucket bounds (`Config`'s) around `x`: (lower, upper].
fn bucket_of(x: f64) -> (f64, f64) {
    const BOUNDS: &[f64] = &[
        1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
        2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
    ];
    let i = BOUNDS.iter().position(|&b| x <= b).unwrap();
    (if i == 0 { 0.0 } else { BOUNDS[i - 1] }, BOUNDS[i])
}

/// Fails unless README.md shows `query` as written.
fn in_readme(query: &str) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(query),
        "README.md must show the query tested here: {query}"
    );
}

/// `query` (written with 0.99) at the p99 and the p50 falls in the default
/// bucket of the true quantile of `truth` (sorted).
fn quantiles_agree(query: &str, truth: &[f64], total: impl Fn(&str) -> Option<f64>) {
    for q in [0.99, 0.5] {
        let promql = query.replace("0.99", &q.to_string());
        let got = total(&promql).unwrap();
        let rank = ((q * truth.len() as f64).ceil() as usize).clamp(1, truth.len());
        let want = truth[rank - 1];
        let (lower, upper) = bucket_of(want);
        assert!(
            got > lower && got <= upper,
            "{promql} = {got}: not in ({lower}, {upper}], the bucket of the true {want}"
        );
    }
}

#[test]
fn promql_over_the_workers_gives_the_fleets_quantiles() {
    in_readme(QUERY);
    let Some(prometheus) = binary("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let workers: Vec<Recorder> = (0..3)
        .map(|_| {
            Recorder::new(
                Config::new()
                    .port(0)
                    .job("fleet")
                    .publish_interval(Duration::from_millis(50)),
            )
            .unwrap()
        })
        .collect();
    // One region each first, so each series exists before the work: a
    // rate sees only what a scrape saw grow.
    let mut before = Vec::new();
    for (w, rec) in workers.iter().enumerate() {
        rec.start_run(dir.path().join(format!("w{w}"))).unwrap();
        let t = Instant::now();
        {
            let _t = rec.phase("step", "work");
            spin(Duration::from_micros(300));
        }
        before.push(t.elapsed().as_secs_f64());
    }
    let targets: Vec<String> = workers
        .iter()
        .map(|r| r.metrics_addr().unwrap().to_string())
        .collect();
    let (_server, prom) = common::start_prometheus(&prometheus, dir.path(), "fleet", &targets, &[]);
    let query = |q: &str| -> Option<Vec<Value>> {
        let (status, _, body) = http(prom, "GET", &format!("/api/v1/query?query={}", encode(q)));
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (status == 200 && !result.is_empty()).then_some(result)
    };
    let total = |q: &str| -> Option<f64> { query(q)?[0]["value"][1].as_str()?.parse().ok() };
    let count = "sum(runmetrics_phase_duration_seconds_count{job=\"fleet\", phase=\"step\"})";
    eventually(
        "every worker's first region scraped",
        Duration::from_secs(30),
        || {
            (query("runmetrics_phase_duration_seconds_count{job=\"fleet\"}")?.len() == 3)
                .then_some(())
        },
    );

    // The work: 200 regions of 300 µs, 200 of 700 µs, 100 of 3 ms.
    let mut truth = Vec::new();
    for (rec, (n, us)) in workers.iter().zip([(200, 300), (200, 700), (100, 3_000)]) {
        for _ in 0..n {
            let t = Instant::now();
            {
                let _t = rec.phase("step", "work");
                spin(Duration::from_micros(us));
            }
            truth.push(t.elapsed().as_secs_f64());
        }
    }
    eventually("every region scraped", Duration::from_secs(30), || {
        (total(count)? == 503.0).then_some(())
    });
    // Two more scrapes, so each series' last sample is after the work.
    std::thread::sleep(Duration::from_secs(2));
    truth.sort_by(f64::total_cmp);
    quantiles_agree(QUERY, &truth, total);
    // The lifetime form (no rate) counts the first regions too.
    truth.extend(before);
    truth.sort_by(f64::total_cmp);
    let lifetime = "histogram_quantile(0.99, sum by (le) (runmetrics_phase_duration_seconds_bucket{job=\"fleet\", phase=\"step\"}))";
    let (lower, upper) = bucket_of(truth[(0.99 * truth.len() as f64).ceil() as usize - 1]);
    let got = total(lifetime).unwrap();
    assert!(
        got > lower && got <= upper,
        "{got} not in ({lower}, {upper}]"
    );
    for rec in &workers {
        rec.end_run(Value::Null).unwrap();
    }
}

/// The README's query for pushed batch runs (there with 0.99): no `rate`,
/// as each group is one final push.
#[cfg(feature = "push")]
const PUSHED_QUERY: &str = "histogram_quantile(0.99, sum by (le) (runmetrics_phase_duration_seconds_bucket{job=\"batch\", phase=\"step\"}))";

#[cfg(feature = "push")]
#[test]
fn promql_over_pushed_workers_gives_the_fleets_quantiles() {
    in_readme(PUSHED_QUERY);
    let Some(prometheus) = binary("prometheus") else {
        return;
    };
    let Some(gateway) = common::start_pushgateway() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Three batch workers, one after another, each pushing its run's
    // metrics at end_run under its own instance.
    let mut truth = Vec::new();
    for (w, (n, us)) in [(200, 300), (200, 700), (100, 3_000)]
        .into_iter()
        .enumerate()
    {
        let rec = Recorder::new(
            Config::new()
                .job("batch")
                .grouping("instance", format!("w{w}"))
                .pushgateway(format!("http://{}", gateway.addr)),
        )
        .unwrap();
        rec.start_run(dir.path().join(format!("w{w}"))).unwrap();
        for _ in 0..n {
            let t = Instant::now();
            {
                let _t = rec.phase("step", "work");
                spin(Duration::from_micros(us));
            }
            truth.push(t.elapsed().as_secs_f64());
        }
        rec.end_run(Value::Null).unwrap();
    }
    let scrape = common::scrape_job("pushgateway", &[gateway.addr.to_string()], true);
    let (_server, prom) = common::start_prometheus_with(&prometheus, dir.path(), &scrape, &[]);
    let query = |q: &str| -> Option<f64> {
        let (status, _, body) = http(prom, "GET", &format!("/api/v1/query?query={}", encode(q)));
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        (status == 200 && result.len() == 1).then_some(())?;
        result[0]["value"][1].as_str()?.parse().ok()
    };
    let count = "sum(runmetrics_phase_duration_seconds_count{job=\"batch\", phase=\"step\"})";
    let instances = "count(runmetrics_phase_duration_seconds_count{job=\"batch\", phase=\"step\"})";
    eventually(
        "every pushed group scraped",
        Duration::from_secs(30),
        || (query(count)? == 500.0 && query(instances)? == 3.0).then_some(()),
    );
    truth.sort_by(f64::total_cmp);
    quantiles_agree(PUSHED_QUERY, &truth, query);
}
