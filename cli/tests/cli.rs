//! The `runmetrics` binary, run as a user runs it: golden output for `show`
//! and `compare`, compare's exit status on a planted regression and on
//! identical runs, several runs a side, the errors for bad files, and the
//! Chrome trace read back. `RUNMETRICS_BLESS=1` rewrites the golden files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{fixture, runmetrics, scaled, stderr, stdout};

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("RUNMETRICS_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "{name} changed; if on purpose, RUNMETRICS_BLESS=1 cargo test"
    );
}

#[test]
fn show_prints_the_table_sorted_by_total() {
    let o = runmetrics(&["show", "tests/fixtures/base.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    golden("show.txt", &stdout(&o));

    let o = runmetrics(&["show", "--json", "tests/fixtures/base.json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["grounding", "load"], "largest total first");
    assert_eq!(v["phases"][0]["percent_of_run"], 50.0);
    assert_eq!(v["records"]["dropped"], 2);
}

#[test]
fn show_reads_a_file_of_the_seed_module() {
    let o = runmetrics(&["show", "tests/fixtures/seed.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("pipeline/grounding"), "{out}");
    assert!(out.contains("500.0 ms"), "{out}");
}

#[test]
fn compare_marks_each_change_and_fails_on_a_planted_regression() {
    let o = runmetrics(&[
        "compare",
        "tests/fixtures/base.json",
        "tests/fixtures/new.json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "no gate without --fail-on-regression"
    );
    golden("compare.txt", &stdout(&o));

    let o = runmetrics(&[
        "compare",
        "--fail-on-regression",
        "tests/fixtures/base.json",
        "tests/fixtures/new.json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 regressed beyond 5.0 %"),
        "{}",
        stderr(&o)
    );

    // The 20 % regression is under a 25 % threshold.
    let o = runmetrics(&[
        "compare",
        "--fail-on-regression",
        "--threshold",
        "25%",
        "tests/fixtures/base.json",
        "tests/fixtures/new.json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let o = runmetrics(&[
        "compare",
        "--fail-on-regression",
        "--json",
        "tests/fixtures/base.json",
        "tests/fixtures/base.json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["regressed"], 0);
    assert!(v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["verdict"] == "unchanged" && r["change"] == 0.0));
}

/// `n` copies of base.json in `dir`, grounding's durations scaled by each
/// of `scales` in turn.
fn runs(dir: &Path, scales: &[f64]) {
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("base.json")).unwrap()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (i, scale) in scales.iter().enumerate() {
        let run = scaled(&base, *scale);
        std::fs::write(dir.join(format!("run{i}.json")), run.to_string()).unwrap();
    }
}

#[test]
fn several_runs_a_side_merge_and_the_spread_is_the_noise() {
    let dir = tempfile::tempdir().unwrap();
    let (base, slow, noisy) = (
        dir.path().join("base"),
        dir.path().join("slow"),
        dir.path().join("noisy"),
    );
    runs(&base, &[1.0, 1.01, 0.99]);
    runs(&slow, &[1.2, 1.21, 1.19]);
    runs(&noisy, &[1.0, 1.6, 1.1]);
    let verdict = |new: &Path| {
        let o = runmetrics(&[
            "compare",
            "--json",
            base.to_str().unwrap(),
            new.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let row = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "grounding")
            .unwrap()
            .clone();
        assert_eq!(row["base"]["runs"], 3);
        assert_eq!(row["base"]["count"], 150, "counts add up across runs");
        row
    };
    let slow_row = verdict(&slow);
    assert_eq!(slow_row["verdict"], "regressed");
    let change = slow_row["change"].as_f64().unwrap();
    assert!(
        (change - 0.2).abs() < 0.04,
        "p50 of the merged histograms: {change}"
    );
    assert_eq!(verdict(&noisy)["verdict"], "within noise");
    // A glob names a side too.
    let glob = format!("{}/run*.json", slow.display());
    let o = runmetrics(&[
        "compare",
        "--fail-on-regression",
        base.to_str().unwrap(),
        &glob,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("3 runs"), "{}", stdout(&o));
}

#[test]
fn bad_files_get_clear_errors() {
    let cases = [
        (
            "tests/fixtures/missing.json",
            "cannot read tests/fixtures/missing.json",
        ),
        (
            "tests/fixtures/not_a_run.json",
            "is not a runmetrics run file: it has no `meta` object",
        ),
        (
            "tests/fixtures/newer.json",
            "has layout_version 99, newer than this runmetrics reads (2)",
        ),
    ];
    for (file, message) in cases {
        let o = runmetrics(&["show", file]);
        assert_eq!(o.status.code(), Some(2), "{file}");
        assert!(stderr(&o).contains(message), "{file}: {}", stderr(&o));
    }
    let len = std::fs::metadata(fixture("truncated.json")).unwrap().len();
    let o = runmetrics(&["show", "tests/fixtures/truncated.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "truncated: its JSON stops unfinished at byte {len}"
        )),
        "{}",
        stderr(&o)
    );
    let o = runmetrics(&[
        "compare",
        "tests/fixtures/base.json",
        "tests/fixtures/nothing/*.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("names no run file"), "{}", stderr(&o));
    let o = runmetrics(&["compare", "--threshold", "lots", "a", "b"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("write e.g. 5% or 0.05"),
        "{}",
        stderr(&o)
    );
}

/// Checks the Trace Event Format's rules for the events we write; returns
/// the complete events.
fn check_trace(text: &str) -> Vec<Value> {
    let trace: Value = serde_json::from_str(text).expect("the trace is JSON");
    let events = trace["traceEvents"]
        .as_array()
        .expect("traceEvents is a list");
    let mut complete = Vec::new();
    for e in events {
        assert!(e["name"].is_string() && e["pid"].is_u64(), "{e}");
        match e["ph"].as_str().unwrap() {
            "M" => assert!(e["args"]["name"].is_string(), "{e}"),
            "X" => {
                assert!(e["tid"].is_u64(), "{e}");
                assert!(e["ts"].as_f64().unwrap() >= 0.0, "{e}");
                assert!(e["dur"].as_f64().unwrap() >= 0.0, "{e}");
                complete.push(e.clone());
            }
            "C" => {
                assert!(e["ts"].as_f64().unwrap() >= 0.0, "{e}");
                let args = e["args"].as_object().unwrap();
                assert!(
                    !args.is_empty() && args.values().all(Value::is_number),
                    "{e}"
                );
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    complete
}

#[test]
fn the_chrome_trace_has_every_timed_event_on_its_thread() {
    let o = runmetrics(&[
        "export",
        "--format",
        "chrome-trace",
        "tests/fixtures/base.json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let complete = check_trace(&stdout(&o));
    let names: Vec<(&str, u64, f64)> = complete
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["tid"].as_u64().unwrap(),
                e["ts"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("load", 0, 0.0),
            ("grounding", 1, 250_000.0),
            ("infer_step", 0, 270_373.65)
        ]
    );

    // A hand-made file with its events before `meta` reads the same.
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("base.json")).unwrap()).unwrap();
    let reordered = format!(
        r#"{{"events": {}, "meta": {}}}"#,
        base["events"], base["meta"]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reordered.json");
    std::fs::write(&path, reordered).unwrap();
    let o = runmetrics(&["export", "--format", "chrome-trace", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(check_trace(&stdout(&o)).len(), 3);
}

#[test]
fn a_real_run_reads_shows_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let rec = runmetrics::Recorder::new(runmetrics::Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..100 {
                    let _t = rec.phase("step", "real");
                }
            });
        }
    });
    rec.observe_counts(&[("items", 7)]);
    let path = rec.end_run(Value::Null).unwrap();
    let path = path.to_str().unwrap();

    let o = runmetrics(&["show", path]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("real/step"), "{}", stdout(&o));
    let o = runmetrics(&["export", "--format", "chrome-trace", path]);
    let complete = check_trace(&stdout(&o));
    assert_eq!(complete.len(), 200);
    let tids: std::collections::BTreeSet<u64> = complete
        .iter()
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert_eq!(tids.len(), 2, "one track per recording thread");
    let o = runmetrics(&["compare", "--fail-on-regression", path, path]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn each_compares_two_directories_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let (base, new) = (dir.path().join("base"), dir.path().join("new"));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    for (name, b, n) in [
        ("infer.json", "base.json", "new.json"),
        ("parse.json", "base.json", "base.json"),
    ] {
        std::fs::copy(fixture(b), base.join(name)).unwrap();
        std::fs::copy(fixture(n), new.join(name)).unwrap();
    }
    std::fs::copy(fixture("base.json"), base.join("old_only.json")).unwrap();
    let o = runmetrics(&[
        "compare",
        "--each",
        "--fail-on-regression",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("== infer.json") && out.contains("== parse.json"),
        "{out}"
    );
    assert!(out.contains("only in base: old_only.json"), "{out}");
    assert!(
        out.contains("2 files compared, 1 regressed in all"),
        "{out}"
    );

    let o = runmetrics(&[
        "compare",
        "--each",
        "tests/fixtures/base.json",
        new.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("names none"), "{}", stderr(&o));
}

/// A copy of base.json in `dir` with `n` more phases and `n` more events:
/// what `show`, `compare` and `export` print of it fills a pipe many
/// times over.
fn big_run(dir: &Path, n: usize) -> PathBuf {
    let mut run: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("base.json")).unwrap()).unwrap();
    let phase = run["meta"]["phase_durations_seconds_total"][0].clone();
    let event = run["events"][1].clone();
    for i in 0..n {
        let mut p = phase.clone();
        p["phase"] = Value::from(format!("phase_number_{i}"));
        run["meta"]["phase_durations_seconds_total"]
            .as_array_mut()
            .unwrap()
            .push(p);
        let mut e = event.clone();
        e["phase"] = Value::from(format!("phase_number_{i}"));
        run["events"].as_array_mut().unwrap().push(e);
    }
    let path = dir.join("big.json");
    std::fs::write(&path, run.to_string()).unwrap();
    path
}

/// Every command that writes to standard output, on `run` (and base.json
/// as the other side, or directories of both for `--each`), with the exit
/// status it has when its output is read whole.
fn stdout_commands(run: &Path, dir: &Path) -> Vec<(Vec<String>, i32)> {
    let (each_base, each_new) = (dir.join("each_base"), dir.join("each_new"));
    for (d, file) in [(&each_base, fixture("base.json")), (&each_new, run.into())] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(file, d.join("bench.json")).unwrap();
    }
    let base = fixture("base.json");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let report = dir.join("report.html");
    vec![
        (args(&["show", &s(run)]), 0),
        (args(&["show", "--json", &s(run)]), 0),
        (args(&["compare", &s(&base), &s(run)]), 0),
        (args(&["compare", "--json", &s(&base), &s(run)]), 0),
        (
            args(&["compare", "--each", &s(&each_base), &s(&each_new)]),
            0,
        ),
        (
            args(&[
                "compare",
                "--fail-on-regression",
                "tests/fixtures/base.json",
                "tests/fixtures/new.json",
            ]),
            1,
        ),
        (args(&["export", "--format", "chrome-trace", &s(run)]), 0),
        (args(&["report", "-o", &s(&report), &s(run)]), 0),
    ]
}

/// Runs the binary with its standard output a pipe whose reading end is
/// closed at once, or after the first line.
fn with_stdout_closed(args: &[String], after_first_line: bool) -> Output {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_runmetrics"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the runmetrics binary runs");
    let out = child.stdout.take().unwrap();
    if after_first_line {
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{args:?} printed nothing");
    } else {
        drop(out);
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_ends_the_output_quietly_with_the_commands_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let big = big_run(dir.path(), 3_000);
    for (args, status) in stdout_commands(&big, dir.path()) {
        // After the first line the rest (hundreds of KiB) cannot fit in the
        // pipe: the write fails with EPIPE. `report` prints one line only.
        for after_first_line in [false, true] {
            if after_first_line && args[0] == "report" {
                continue;
            }
            let o = with_stdout_closed(&args, after_first_line);
            let err = stderr(&o);
            assert_eq!(
                o.status.code(),
                Some(status),
                "{args:?} (closed after the first line: {after_first_line}): {err}"
            );
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            if status == 0 {
                assert_eq!(err, "", "{args:?}: nothing to say");
            } else {
                assert!(err.contains("1 regressed"), "{args:?}: {err}");
            }
        }
    }
}

#[test]
fn a_full_disk_on_stdout_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for (args, _) in stdout_commands(&fixture("base.json"), dir.path()) {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full (Linux)");
        let o = Command::new(env!("CARGO_BIN_EXE_runmetrics"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(full)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output: No space left on device"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn counts_that_overflow_are_reported_as_corrupt() {
    let cases = [
        (vec!["show", "tests/fixtures/overflow/histogram.json"], "histogram.json is corrupt: the histogram_ns counts of phase pipeline/grounding add up past 18446744073709551615"),
        (vec!["report", "-o", "", "tests/fixtures/overflow/histogram.json"], "histogram.json is corrupt"),
        (vec!["compare", "tests/fixtures/overflow/histogram.json", "tests/fixtures/base.json"], "histogram.json is corrupt"),
        (vec!["compare", "tests/fixtures/base.json", "tests/fixtures/overflow/counts"], "counts/b.json is corrupt: phase pipeline/grounding's count, added to 1 other run's, passes 18446744073709551615 regions"),
        (vec!["compare", "tests/fixtures/overflow/buckets", "tests/fixtures/base.json"], "buckets/b.json is corrupt: phase pipeline/grounding's histogram_ns counts, added to 1 other run's"),
        (vec!["compare", "--json", "tests/fixtures/base.json", "tests/fixtures/overflow/totals"], "totals/b.json is corrupt: phase pipeline/grounding's duration_seconds_total, added to 1 other run's, passes 1.7976931348623157e308 s"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    for (mut args, message) in cases {
        if args[0] == "report" {
            args[2] = report.to_str().unwrap();
        }
        let o = runmetrics(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}{}", stdout(&o));
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(err.contains("leave it out, or write it again"), "{err}");
    }
    // Each file of a side is sound alone.
    for file in [
        "counts/a.json",
        "counts/b.json",
        "buckets/a.json",
        "totals/b.json",
    ] {
        let o = runmetrics(&["show", &format!("tests/fixtures/overflow/{file}")]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
    }
}

/// An object (level 1) whose deepest array is at level `levels`, built
/// without recursion.
fn nested(levels: usize) -> Value {
    let mut v = Value::Array(Vec::new());
    for _ in 2..levels {
        v = Value::Array(vec![v]);
    }
    let mut top = serde_json::Map::new();
    top.insert("deep".to_owned(), v);
    Value::Object(top)
}

#[test]
fn extra_meta_at_the_writers_depth_limit_loads_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let rec = runmetrics::Recorder::new(runmetrics::Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    {
        let _t = rec.phase("step", "deep");
    }
    let limit = match rec.end_run(nested(200)) {
        Err(runmetrics::EndRunError::ExtraMetaTooDeep { limit }) => limit,
        other => panic!("200 levels: expected ExtraMetaTooDeep, got {other:?}"),
    };
    let path = rec.end_run(nested(limit)).unwrap();
    let out = tempfile::tempdir().unwrap();
    for (args, status) in stdout_commands(&path, out.path()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = runmetrics(&args);
        assert_eq!(o.status.code(), Some(status), "{args:?}: {}", stderr(&o));
    }
    let o = runmetrics(&["show", path.to_str().unwrap()]);
    assert!(stdout(&o).contains("deep/step"), "{}", stdout(&o));

    // A file nested deeper than runmetrics writes says so.
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["meta"]["deep"] = nested(200)["deep"].take();
    let deep = out.path().join("deep.json");
    std::fs::write(&deep, file.to_string()).unwrap();
    let o = runmetrics(&["show", deep.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("levels deep") && stderr(&o).contains("deeper than runmetrics writes"),
        "{}",
        stderr(&o)
    );
    // The reader's idea of the deepest written file is the writer's limit
    // plus the file's own object.
    assert!(
        stderr(&o).contains(&format!("({} at most)", limit + 1)),
        "{}",
        stderr(&o)
    );
}
