//! With thousands of names in turn the collector reads the threads' tallies
//! less often than every poll (their lines stay with the recording core),
//! but what it shows is still exact: a snapshot, and a publish to
//! `/metrics`, count every region ended before them, checked against the
//! test's own count of the regions it made.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::read_run_file;
use runmetrics::{Config, Events, Recorder};

/// Enough names that one pass over the tallies finds more moved sites
/// than a poll's share, so the next comes many polls later.
const NAMES: usize = 3_000;
const MODULE: &str = "many_names";
/// A long poll, so that the stretched pass is far off (12 polls: 600 ms).
const POLL: Duration = Duration::from_millis(50);

fn names() -> Vec<String> {
    (0..NAMES).map(|i| format!("many_{i}")).collect()
}

/// One region of every name whose index `keep` takes, on this thread, and
/// the count of each name after them.
fn round(rec: &Recorder, names: &[String], want: &mut [u64], keep: impl Fn(usize) -> bool) {
    for (i, name) in names.iter().enumerate() {
        if keep(i) {
            let _t = rec.phase_dynamic(name, MODULE);
            want[i] += 1;
        }
    }
}

/// The count of every phase of [`MODULE`] in a run file.
fn file_counts(file: &serde_json::Value) -> HashMap<String, u64> {
    file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .expect("meta.phase_durations_seconds_total is a list")
        .iter()
        .filter(|e| e["module"] == MODULE)
        .map(|e| {
            let name = e["phase"].as_str().expect("a phase name").to_owned();
            (name, e["count"].as_u64().expect("a count"))
        })
        .collect()
}

fn assert_counts(got: &HashMap<String, u64>, names: &[String], want: &[u64], what: &str) {
    let wrong: Vec<_> = names
        .iter()
        .zip(want)
        .filter(|&(name, &n)| got.get(name).copied().unwrap_or(0) != n)
        .map(|(name, &n)| (name, n, got.get(name).copied()))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "{what}: (name, made, shown): {wrong:?}");
}

#[test]
fn a_snapshot_right_after_many_names_regions_counts_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new().events(Events::None).poll_interval(POLL);
    let rec = Recorder::new(config).unwrap();
    rec.start_run(dir.path()).unwrap();
    let names = names();
    let mut want = vec![0; NAMES];
    // A second thread's tally too, made and left parked (its ring stays
    // registered), with every third name.
    let mut other = vec![0; NAMES];
    std::thread::scope(|s| {
        s.spawn(|| round(&rec, &names, &mut other, |i| i % 3 == 0));
    });
    for pass in 0..4 {
        round(&rec, &names, &mut want, |i| (i + pass) % 4 != 0);
        if pass == 1 {
            // A pass over the tallies finds them all moved: the next one
            // is many polls away.
            std::thread::sleep(3 * POLL);
        }
        let file = read_run_file(rec.flush().unwrap());
        let total: Vec<u64> = want.iter().zip(&other).map(|(a, b)| a + b).collect();
        assert_counts(
            &file_counts(&file),
            &names,
            &total,
            &format!("snapshot {pass}"),
        );
    }
    let total: Vec<u64> = want.iter().zip(&other).map(|(a, b)| a + b).collect();
    let file = read_run_file(rec.end_run(serde_json::Value::Null).unwrap());
    assert_counts(&file_counts(&file), &names, &total, "the run's file");
}

/// `runmetrics_phase_duration_seconds_count` of every phase of [`MODULE`].
#[cfg(feature = "prometheus")]
fn scraped_counts(body: &str) -> HashMap<String, u64> {
    let prefix = format!("runmetrics_phase_duration_seconds_count{{module=\"{MODULE}\",phase=\"");
    body.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (name, count) = rest.split_once("\"} ")?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect()
}

#[cfg(feature = "prometheus")]
#[test]
fn a_publish_after_many_names_regions_counts_them_all() {
    let publish = Duration::from_millis(20);
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new()
        .port(0)
        .events(Events::None)
        .poll_interval(POLL)
        .publish_interval(publish);
    let rec = Recorder::new(config).unwrap();
    let addr = rec.metrics_addr().unwrap();
    rec.start_run(dir.path()).unwrap();
    let names = names();
    let mut want = vec![0; NAMES];
    round(&rec, &names, &mut want, |_| true);
    // A pass finds every name moved: the next pass of its own is 600 ms
    // away, past the publishes below.
    std::thread::sleep(3 * POLL);
    round(&rec, &names, &mut want, |i| i % 2 == 0);
    // Two publishes later (and far less than the stretched pass).
    std::thread::sleep(5 * publish);
    let (_, body) = common::scrape(addr, "text/plain");
    let body = String::from_utf8(body).expect("the text format is UTF-8");
    assert_counts(&scraped_counts(&body), &names, &want, "a scrape");
}
