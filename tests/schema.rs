//! The published JSON Schema, `docs/run-file.schema.json`: it is what the
//! format crate's types generate (regenerate with
//! `RUNMETRICS_BLESS=1 cargo test --all-features --test schema`), and an
//! independent validator (Python's `jsonschema`, draft 2020-12) accepts
//! real files against it — runs this test writes with the library (ended
//! and a snapshot), the CLI's fixtures (its golden comparisons' inputs)
//! and the seed module's own example (copied from its documentation) —
//! and refuses files spoiled in ways the reader refuses too. (The golden
//! `tests/golden/run_file_shape.json` holds each value's type name, not a
//! value: `run_file.rs` checks the written file's shape against it.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use runmetrics::{Config, Events};
use serde_json::{json, Value};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const SCHEMA: &str = "docs/run-file.schema.json";

#[test]
fn the_committed_schema_is_what_the_types_generate() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&runmetrics_format::schema()).unwrap()
    );
    let path = root().join(SCHEMA);
    if std::env::var_os("RUNMETRICS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{SCHEMA} is not what runmetrics-format's types generate (a type changed?); \
         regenerate it: RUNMETRICS_BLESS=1 cargo test --all-features --test schema"
    );
}

/// A Python with `jsonschema`: the venv scripts/test builds, else the
/// system's; `None` (said loudly, and a failure under scripts/test) when
/// there is none.
fn validator() -> Option<PathBuf> {
    let venv = root().join("target/python-venv/bin/python");
    for python in [venv, PathBuf::from("python3")] {
        let ok = Command::new(&python)
            .args(["-c", "import jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    let msg = "Python's jsonschema is not installed: scripts/test installs it in \
               target/python-venv (pip install jsonschema)";
    if std::env::var_os("RUNMETRICS_REQUIRE_SERVERS").is_some() {
        panic!("{msg}");
    }
    eprintln!("NOT RUN: {msg}");
    None
}

const CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
for f in sys.argv[2:]:
    errors = sorted(v.iter_errors(json.load(open(f))), key=lambda e: list(e.path))
    print(json.dumps({"file": f, "errors": [f"{list(e.path)}: {e.message}" for e in errors]}))
"#;

/// Each file's validation errors, by Python's jsonschema.
fn validate(python: &Path, files: &[PathBuf]) -> Vec<(PathBuf, Vec<String>)> {
    let o = Command::new(python)
        .arg("-c")
        .arg(CHECK)
        .arg(root().join(SCHEMA))
        .args(files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let got: Vec<(PathBuf, Vec<String>)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let errors = v["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned())
                .collect();
            (PathBuf::from(v["file"].as_str().unwrap()), errors)
        })
        .collect();
    assert_eq!(got.len(), files.len(), "{out}");
    got
}

/// A run with every kind of entry and event, ended or snapshotted.
fn written(dir: &Path, ended: bool) -> PathBuf {
    let extra = json!({"facts_final": 150, "nested": {"a": [1, 2]}});
    common::every_kind_run(
        Config::new().events(Events::All),
        dir,
        ended.then_some(extra),
    )
}

#[test]
fn real_files_validate_and_spoiled_ones_do_not() {
    let Some(python) = validator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut good = vec![
        written(&dir.path().join("ended"), true),
        written(&dir.path().join("open"), false),
        root().join("tests/fixtures/seed_module_example.json"),
    ];
    for f in ["base.json", "new.json", "seed.json"] {
        good.push(root().join("cli/tests/fixtures").join(f));
    }
    for (file, errors) in validate(&python, &good) {
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }

    // Each spoiling of a written file, and the error's place.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&good[0]).unwrap()).unwrap();
    type Spoil = fn(&mut Value);
    let spoils: [(&str, Spoil); 6] = [
        ("meta", |f| {
            f["meta"].as_object_mut().unwrap().remove("records_dropped");
        }),
        ("phase_durations_seconds_total", |f| {
            f["meta"]["phase_durations_seconds_total"][0]
                .as_object_mut()
                .unwrap()
                .remove("p99_seconds");
        }),
        ("histogram_ns", |f| {
            f["meta"]["phase_durations_seconds_total"][0]["histogram_ns"][0] = json!([1, 2, 3, 4])
        }),
        ("events", |f| {
            let e = f["events"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|e| e["event"] == "phase_timing")
                .unwrap();
            e["duration_seconds"] = json!("slow");
        }),
        ("started_at", |f| f["meta"]["started_at"] = json!(12)),
        ("events", |f| {
            f.as_object_mut().unwrap().remove("events");
        }),
    ];
    let mut spoiled = Vec::new();
    for (i, (_, spoil)) in spoils.iter().enumerate() {
        let mut f = file.clone();
        spoil(&mut f);
        let path = dir.path().join(format!("spoiled{i}.json"));
        std::fs::write(&path, f.to_string()).unwrap();
        // The reader refuses each too (the events one only when iterated).
        let read = runmetrics_format::RunFile::open(&path)
            .and_then(|r| r.events()?.try_for_each(|e| e.map(drop)));
        assert!(
            read.is_err() || i == 3,
            "spoiled{i} reads: the schema is stricter than the reader"
        );
        spoiled.push(path);
    }
    for ((file, errors), (place, _)) in validate(&python, &spoiled).iter().zip(&spoils) {
        assert!(
            errors.iter().any(|e| e.contains(place)),
            "{}: no error at {place}: {errors:?}",
            file.display()
        );
    }
}
