//! The fleet path of the README: three workers (recorders, each with its
//! own `/metrics`) scraped by a real Prometheus, and the README's PromQL —
//! `histogram_quantile` over `sum by (le)` of the buckets' rate — against
//! every region's duration bracketed by `Instant` inside and outside its
//! guard: the fleet's p50 and p99 fall in a bucket that can hold the true
//! quantile, and the summed count is every region. And the same for batch workers
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

/// One region as the oracle saw it: `Instant` inside the guard (the spin)
/// and outside it, so the recorded duration lies in `[inner, outer]`; and
/// the weight range the query gives it (1 without `rate`).
#[derive(Clone, Copy)]
struct Region {
    inner: f64,
    outer: f64,
    weight: (f64, f64),
}

/// Times one `phase("step", "work")` region of `us` µs of spin on `rec`.
fn region(rec: &Recorder, us: u64) -> Region {
    let t = Instant::now();
    let inner = {
        let _t = rec.phase("step", "work");
        spin(Duration::from_micros(us))
    };
    Region {
        inner: inner.as_secs_f64(),
        outer: t.elapsed().as_secs_f64(),
        weight: (1.0, 1.0),
    }
}

/// The least and the most fraction of the weight that any recording
/// consistent with `regions` puts at or below `x`: a region surely at or
/// below `x` (`outer <= x`) with its lowest weight against the rest with
/// their highest, and the other way round for the most.
fn fraction_at_or_below(regions: &[Region], x: f64) -> (f64, f64) {
    let (mut surely, mut rest_hi, mut maybe, mut above_lo) = (0.0, 0.0, 0.0, 0.0);
    for r in regions {
        if r.outer <= x {
            surely += r.weight.0;
        } else {
            rest_hi += r.weight.1;
        }
        if r.inner <= x {
            maybe += r.weight.1;
        } else {
            above_lo += r.weight.0;
        }
    }
    (surely / (surely + rest_hi), maybe / (maybe + above_lo))
}

/// `query` (written with 0.99) at the p99 and the p50 lies in a default
/// bucket `(lower, upper]` that could hold the quantile: one where a
/// recording consistent with the oracle can have less than q of the weight
/// at or below `lower` and at least q at or below `upper` (which is how
/// `histogram_quantile` picks its bucket).
fn quantiles_agree(query: &str, regions: &[Region], total: impl Fn(&str) -> Option<f64>) {
    for q in [0.99, 0.5] {
        let promql = query.replace("0.99", &q.to_string());
        let got = total(&promql).unwrap();
        let (lower, upper) = bucket_of(got);
        let (least_below, _) = fraction_at_or_below(regions, lower);
        let (_, most_to_upper) = fraction_at_or_below(regions, upper);
        assert!(
            least_below < q && most_to_upper >= q,
            "{promql} = {got}: its bucket ({lower}, {upper}] cannot hold the p{}: at least \
             {least_below} of the regions' weight is at or below {lower} and at most \
             {most_to_upper} at or below {upper} (Instant brackets of {} regions)",
            q * 100.0,
            regions.len()
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
        before.push(region(rec, 300));
    }
    let targets: Vec<String> = workers
        .iter()
        .map(|r| r.metrics_addr().unwrap().to_string())
        .collect();
    let (_server, prom) = common::start_prometheus(&prometheus, dir.path(), "fleet", &targets, &[]);
    // Every query after the work is evaluated at one instant, `at`, so the
    // workers' rates below and the quantiles come from the same samples.
    let at = std::cell::Cell::new(None::<f64>);
    let query = |q: &str| -> Option<Vec<Value>> {
        let time = at.get().map(|t| format!("&time={t}")).unwrap_or_default();
        let path = format!("/api/v1/query?query={}{time}", encode(q));
        let (status, _, body) = http(prom, "GET", &path);
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (status == 200 && !result.is_empty()).then_some(result)
    };
    let value = |v: &Value| -> Option<f64> { v["value"][1].as_str()?.parse().ok() };
    let total = |q: &str| -> Option<f64> { value(&query(q)?[0]) };
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
    let work = [(200, 300), (200, 700), (100, 3_000)];
    let mut regions: Vec<Vec<Region>> = Vec::new();
    for (rec, (n, us)) in workers.iter().zip(work) {
        regions.push((0..n).map(|_| region(rec, us)).collect());
    }
    eventually("every region scraped", Duration::from_secs(30), || {
        (total(count)? == 503.0).then_some(())
    });
    // Two more scrapes, so each series' last sample is after the work.
    std::thread::sleep(Duration::from_secs(2));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    at.set(Some(now.unwrap().as_secs_f64()));

    // `rate` extrapolates each series' increase to the window's end, by a
    // factor set by when its target was last scraped: up to a scrape
    // interval more for one worker than another (a quarter here). Every
    // series of one target shares that factor, so a worker's regions
    // weigh its count's rate over its regions; ±2 % covers the
    // extrapolation towards zero at the window's start, which differs a
    // little per series (at most a series' first value over its increase).
    let rates =
        query("rate(runmetrics_phase_duration_seconds_count{job=\"fleet\", phase=\"step\"}[5m])")
            .expect("each worker's rate");
    assert_eq!(rates.len(), 3, "{rates:?}");
    let mut weighted = Vec::new();
    for (w, (n, _)) in work.iter().enumerate() {
        let rate = rates
            .iter()
            .find(|r| r["metric"]["instance"] == targets[w].as_str())
            .and_then(value)
            .unwrap_or_else(|| panic!("no rate for worker {w} at {}: {rates:?}", targets[w]));
        let weight = rate / f64::from(*n);
        weighted.extend(regions[w].iter().map(|r| Region {
            weight: (weight * 0.98, weight * 1.02),
            ..*r
        }));
    }
    quantiles_agree(QUERY, &weighted, total);
    // The lifetime form (no rate) counts the first regions too, each once.
    let mut lifetime: Vec<Region> = regions.into_iter().flatten().collect();
    lifetime.extend(before);
    quantiles_agree(
        "histogram_quantile(0.99, sum by (le) (runmetrics_phase_duration_seconds_bucket{job=\"fleet\", phase=\"step\"}))",
        &lifetime,
        total,
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
        truth.extend((0..n).map(|_| region(&rec, us)));
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
    quantiles_agree(PUSHED_QUERY, &truth, query);
}
