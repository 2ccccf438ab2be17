//! The extremes of every `Config` setting (0, 1, the range's ends, MAX;
//! empty, huge and odd strings; odd URLs): each is either refused with a
//! `ConfigError` (or `NewRecorderError`) that names the setting and its
//! allowed range, or makes a recorder that works: it records, ends a run,
//! writes the file and is dropped, all without a panic or a hang.

mod common;

use std::sync::mpsc;
use std::time::Duration;

#[cfg(feature = "push")]
use runmetrics::EndRunError;
use runmetrics::{Config, Events, Recorder};
use serde_json::Value;

#[derive(Debug)]
enum Outcome {
    /// `Recorder::new` refused the config with this message.
    Refused(String),
    /// The recorder recorded, ended a run and was dropped.
    Works,
}

/// Makes a recorder from `config`, records a phase, a count and a sample,
/// ends the run and drops the recorder, on a thread of its own: a panic
/// or a hang anywhere fails the test with the setting named.
fn lifecycle(what: &str, config: Config) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let what_owned = what.to_owned();
    let thread = std::thread::spawn(move || {
        let rec = match Recorder::new(config) {
            Ok(rec) => rec,
            Err(e) => {
                let _ = tx.send(Outcome::Refused(e.to_string()));
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        rec.start_run(dir.path()).unwrap();
        {
            let _t = rec.phase("extreme", "config");
        }
        rec.observe_counts(&[("n", 1)]);
        rec.sample_process_gauges();
        std::thread::sleep(Duration::from_millis(5));
        let path = match rec.end_run(Value::Null) {
            Ok(path) => path,
            // A gateway that is not there: the file is written all the same.
            #[cfg(feature = "push")]
            Err(EndRunError::Push { path, .. }) => path,
            Err(e) => panic!("{what_owned}: end_run failed: {e}"),
        };
        let file = common::read_run_file(&path);
        assert!(file["meta"].is_object(), "{what_owned}: no meta");
        drop(rec);
        let _ = tx.send(Outcome::Works);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(outcome) => {
            thread.join().unwrap();
            outcome
        }
        Err(_) => {
            let panicked = thread.join().is_err();
            panic!("{what}: the recorder panicked ({panicked}) or hung (60 s)")
        }
    }
}

fn works(what: &str, config: Config) {
    match lifecycle(what, config) {
        Outcome::Works => {}
        Outcome::Refused(e) => panic!("{what}: expected a working recorder, got: {e}"),
    }
}

fn refused(what: &str, config: Config, needles: &[&str]) {
    match lifecycle(what, config) {
        Outcome::Refused(e) => {
            for needle in needles {
                assert!(e.contains(needle), "{what}: {needle:?} missing in: {e}");
            }
        }
        Outcome::Works => panic!("{what}: expected a ConfigError, the recorder was made"),
    }
}

/// A gateway URL where nothing listens: pushes fail at once.
#[cfg(feature = "push")]
fn nowhere() -> String {
    format!("http://127.0.0.1:{}", common::free_port())
}

type Setter = fn(Config, Duration) -> Config;

#[test]
fn every_interval_from_zero_to_max() {
    let ns = Duration::from_nanos(1);
    let cases: [(&str, Setter, Duration, Option<Duration>); 5] = [
        (
            "sample_interval",
            Config::sample_interval,
            Duration::from_millis(1),
            None,
        ),
        (
            "poll_interval",
            Config::poll_interval,
            Duration::from_micros(100),
            None,
        ),
        (
            "publish_interval",
            Config::publish_interval,
            Duration::from_millis(1),
            None,
        ),
        (
            "flush_interval",
            Config::flush_interval,
            Duration::from_millis(1),
            None,
        ),
        (
            "rotate_every",
            Config::rotate_every,
            Duration::from_millis(1),
            None,
        ),
    ];
    for (name, set, min, max) in cases {
        // Publishing only happens with a sink: serve /metrics.
        let base = || Config::new().port(0);
        refused(
            &format!("{name}(0)"),
            set(base(), Duration::ZERO),
            &[name, "zero"],
        );
        refused(
            &format!("{name}(1 ns)"),
            set(base(), ns),
            &[name, &format!("{min:?}")],
        );
        refused(
            &format!("{name}(min - 1 ns)"),
            set(base(), min - ns),
            &[name, &format!("{min:?}"), "Duration::MAX"],
        );
        works(&format!("{name}(min)"), set(base(), min));
        match max {
            None => {
                works(&format!("{name}(MAX)"), set(base(), Duration::MAX));
                works(
                    &format!("{name}(1 year)"),
                    set(base(), Duration::from_secs(31_557_600)),
                );
            }
            Some(max) => works(&format!("{name}(max)"), set(base(), max)),
        }
    }
}

#[cfg(feature = "push")]
#[test]
fn push_intervals_and_timeouts_from_zero_to_max() {
    let ns = Duration::from_nanos(1);
    let base = || Config::new().pushgateway(nowhere());
    for (name, set) in [
        ("push_interval", Config::push_interval as Setter),
        ("push_timeout", Config::push_timeout as Setter),
    ] {
        refused(
            &format!("{name}(0)"),
            set(base(), Duration::ZERO),
            &[name, "zero"],
        );
        refused(&format!("{name}(1 ns)"), set(base(), ns), &[name, "1ms"]);
        works(
            &format!("{name}(1 ms)"),
            set(base(), Duration::from_millis(1)),
        );
    }
    works("push_interval(MAX)", base().push_interval(Duration::MAX));
    works(
        "push_timeout(600 s)",
        base().push_timeout(Duration::from_secs(600)),
    );
    for too_long in [Duration::from_secs(600) + ns, Duration::MAX] {
        refused(
            &format!("push_timeout({too_long:?})"),
            base().push_timeout(too_long),
            &["push_timeout", "1ms", "600s"],
        );
    }
}

#[test]
fn buffer_records_from_zero_to_max() {
    for bad in [
        0,
        1,
        63,
        100,
        (1 << 24) + 1,
        1 << 25,
        1 << 40,
        1 << 62,
        usize::MAX,
    ] {
        refused(
            &format!("buffer_records({bad})"),
            Config::new().buffer_records(bad),
            &["buffer_records", "64", "16777216"],
        );
    }
    for good in [64, 1 << 24] {
        works(
            &format!("buffer_records({good})"),
            Config::new().buffer_records(good),
        );
    }
}

#[test]
fn counts_from_zero_to_max() {
    for (what, config) in [
        ("event_cap(0)", Config::new().event_cap(0)),
        ("event_cap(1)", Config::new().event_cap(1)),
        ("event_cap(MAX)", Config::new().event_cap(usize::MAX)),
        ("EveryNth(1)", Config::new().events(Events::EveryNth(1))),
        (
            "EveryNth(MAX)",
            Config::new().events(Events::EveryNth(u64::MAX)),
        ),
        ("keep_runs(1)", Config::new().keep_runs(1)),
        ("keep_runs(MAX)", Config::new().keep_runs(usize::MAX)),
        ("max_log_bytes(0)", Config::new().max_log_bytes(0)),
        ("max_log_bytes(1)", Config::new().max_log_bytes(1)),
        ("max_log_bytes(MAX)", Config::new().max_log_bytes(u64::MAX)),
    ] {
        works(what, config);
    }
    refused(
        "keep_runs(0)",
        Config::new().keep_runs(0),
        &["keep_runs", "at least 1"],
    );
    refused(
        "EveryNth(0)",
        Config::new().events(Events::EveryNth(0)),
        &["EveryNth", "at least 1"],
    );
    // Port 0 picks a free port; any other is served or refused as in use.
    match lifecycle("port(MAX)", Config::new().port(u16::MAX)) {
        Outcome::Works => {}
        Outcome::Refused(e) => assert!(e.contains("65535") && e.contains("Config::port"), "{e}"),
    }
}

#[test]
fn strings_empty_huge_and_odd() {
    let huge = "j".repeat(1 << 20);
    works("job(1 MiB)", Config::new().job(huge.clone()));
    works(
        "job(control chars)",
        Config::new().job("a\nb\t\u{0}\u{7f}\"/"),
    );
    refused("job(\"\")", Config::new().job(""), &["job", "empty"]);
    works("grouping value \"\"", Config::new().grouping("env", ""));
    works(
        "grouping value 1 MiB",
        Config::new().grouping("env", huge.clone()),
    );
    works(
        "grouping key 64 KiB",
        Config::new().grouping("k".repeat(1 << 16), "v"),
    );
    refused(
        "grouping key \"\"",
        Config::new().grouping("", "v"),
        &["grouping", "empty"],
    );
    for bad in ["a b", "1a", "job", "__name", "é", "a-b"] {
        refused(
            &format!("grouping key {bad:?}"),
            Config::new().grouping(bad, "v"),
            &["grouping key", "[a-zA-Z_][a-zA-Z0-9_]*"],
        );
    }
    let e = match lifecycle(
        "grouping key 1 MiB of spaces",
        Config::new().grouping(" ".repeat(1 << 20), "v"),
    ) {
        Outcome::Refused(e) => e,
        Outcome::Works => panic!("a key of spaces was taken"),
    };
    assert!(
        e.len() < 1_000,
        "the message quotes the whole key: {} bytes",
        e.len()
    );
    for ns in ["", "1", "a b-c", "é"] {
        works(
            &format!("namespace({ns:?})"),
            Config::new().port(0).namespace(ns),
        );
    }
    works(
        "namespace(64 KiB)",
        Config::new().port(0).namespace("n".repeat(1 << 16)),
    );
    works(
        "buckets(tiny, huge)",
        Config::new()
            .port(0)
            .buckets(vec![f64::MIN_POSITIVE, 1e-300_f64.max(1e-12), f64::MAX]),
    );
    works(
        "buckets(10 000)",
        Config::new()
            .port(0)
            .buckets((1..=10_000).map(|i| i as f64 * 1e-6).collect::<Vec<_>>()),
    );
    for bad in [
        vec![],
        vec![0.0],
        vec![-1.0],
        vec![f64::NAN],
        vec![f64::INFINITY],
        vec![2.0, 1.0],
    ] {
        refused(
            &format!("buckets({bad:?})"),
            Config::new().buckets(bad),
            &["buckets"],
        );
    }
    let many_bad: Vec<f64> = (0..100_000).map(|i| -(i as f64)).collect();
    let e = match lifecycle("buckets(100 000 bad)", Config::new().buckets(many_bad)) {
        Outcome::Refused(e) => e,
        Outcome::Works => panic!("negative buckets were taken"),
    };
    assert!(
        e.len() < 1_000,
        "the message lists every bucket: {} bytes",
        e.len()
    );
}

#[cfg(feature = "push")]
#[test]
fn odd_gateway_urls_are_refused_or_pushed_to() {
    for bad in [
        "",
        "   ",
        "localhost:9091",
        "127.0.0.1",
        "http://",
        "http://[::1",
        "http://h:99999",
        "ftp://h/",
        "file:///etc/passwd",
        "unix:///run/gw.sock",
        "data:text/plain,hi",
        "http://exa mple.com",
    ] {
        refused(
            &format!("pushgateway({bad:?})"),
            Config::new().pushgateway(bad),
            &["http://"],
        );
    }
    // A huge URL is not echoed whole.
    for huge in [
        "h".repeat(1 << 20),
        format!("ftp://{}", "h".repeat(1 << 20)),
    ] {
        let e = match lifecycle("pushgateway(1 MiB)", Config::new().pushgateway(huge)) {
            Outcome::Refused(e) => e,
            Outcome::Works => panic!("a URL without http:// was taken"),
        };
        assert!(
            e.len() < 1_000,
            "the message quotes the whole URL: {} bytes",
            e.len()
        );
    }
    let port = common::free_port();
    for good in [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{port}/prefix/deeper/?token=x&a=b#frag"),
        format!("http://[::1]:{port}"),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/{}", "p".repeat(1 << 20)),
    ] {
        works(
            &format!("pushgateway({:.60})", good),
            Config::new().pushgateway(good.clone()),
        );
    }
}
