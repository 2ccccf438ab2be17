//! The CI recipe of `docs/ci/`, run here as the workflow runs it: a sample
//! crate (a throwaway git repository depending on runmetrics by path) with
//! a base commit, an unchanged commit and one whose `solve` phase does 20 %
//! more work; `docs/ci/bench-compare.sh` builds each side once (one shared
//! target dir), runs them interleaved, five runs a side (the script's
//! default), and compares them with `compare --each --format markdown
//! --fail-on-regression`. The planted regression is caught (and only it),
//! and the unchanged commit is not flagged in 10 of 10 tries. The workflow
//! calls the script with the flags tested here, validates against GitHub's
//! workflow schema (check-jsonschema, offline), and its steps' scripts
//! parse (`bash -n`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn git(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git runs");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// The sample's main: two phases of deterministic work, `solve`'s size
/// `SOLVE`; it writes its run file as `sample.json` in
/// `$RUNMETRICS_BENCH_OUT`.
fn main_rs(solve: u64, comment: &str) -> String {
    format!(
        r#"// {comment}
const PARSE: u64 = 20_000;
const SOLVE: u64 = {solve};

fn work(n: u64) -> u64 {{
    let mut x = 1u64;
    for i in 0..n {{
        x = (x.wrapping_mul(6364136223846793005).wrapping_add(i)) ^ (x >> 17);
    }}
    x
}}

fn main() {{
    let out = std::path::PathBuf::from(std::env::var("RUNMETRICS_BENCH_OUT").expect("RUNMETRICS_BENCH_OUT"));
    let runs = std::env::temp_dir().join(format!("sample-runs-{{}}", std::process::id()));
    let rec = runmetrics::Recorder::new(runmetrics::Config::new()).unwrap();
    rec.start_run(&runs).unwrap();
    let mut acc = 0;
    for _ in 0..150 {{
        let _t = rec.phase("parse", "sample");
        acc ^= work(std::hint::black_box(PARSE));
    }}
    for _ in 0..150 {{
        let _t = rec.phase("solve", "sample");
        acc ^= work(std::hint::black_box(SOLVE));
    }}
    std::hint::black_box(acc);
    let path = rec.end_run(Default::default()).unwrap();
    std::fs::copy(&path, out.join("sample.json")).unwrap();
    std::fs::remove_dir_all(&runs).unwrap();
}}
"#
    )
}

/// Runs the script on `base` and `head` of `repo`; its exit status and the
/// lines it printed.
fn bench_compare(repo: &Path, base: &str, head: &str, out: &Path, tries: u32) -> (i32, String) {
    let o = Command::new(workspace().join("docs/ci/bench-compare.sh"))
        .args([repo.to_str().unwrap(), base, head, out.to_str().unwrap()])
        .env("BIN", "sample")
        .env("RUNS", "5")
        .env("TRIES", tries.to_string())
        .env("PROFILE", "release")
        .env("RUNMETRICS", env!("CARGO_BIN_EXE_runmetrics"))
        // One target dir for every side and every run of this test: only
        // the sample recompiles.
        .env("CARGO_TARGET_DIR", workspace().join("target/bench-compare"))
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap(), stdout)
}

#[test]
fn a_planted_regression_is_caught_and_an_unchanged_commit_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("sample");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("Cargo.toml"),
        format!(
            "[package]\nname = \"sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nrunmetrics = {{ path = {:?}, default-features = false, features = [\"enabled\"] }}\n\n\
             [workspace]\n",
            workspace().display().to_string()
        ),
    )
    .unwrap();
    // The workspace's lock: the same versions, so the shared target dir's
    // dependencies are reused.
    std::fs::copy(workspace().join("Cargo.lock"), repo.join("Cargo.lock")).unwrap();
    std::fs::write(repo.join(".gitignore"), "target/\n").unwrap();
    git(&repo, &["init", "-q"]);
    let commit = |solve: u64, comment: &str| {
        std::fs::write(repo.join("src/main.rs"), main_rs(solve, comment)).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", comment]);
        git(&repo, &["rev-parse", "HEAD"])
    };
    let base = commit(20_000, "base");
    let unchanged = commit(20_000, "a comment changed");
    let slower = commit(24_000, "solve does 20 % more work");

    let out = dir.path().join("out");
    let (status, lines) = bench_compare(&repo, &base, &slower, &out, 1);
    let md = std::fs::read_to_string(out.join("comment.md")).unwrap();
    assert_eq!(status, 1, "{lines}\n{md}");
    let row = |name: &str| {
        md.lines()
            .find(|l| l.contains(&format!("`sample/{name}`")))
            .unwrap_or_else(|| panic!("no row for {name}: {md}"))
            .to_owned()
    };
    assert!(row("solve").contains("**regressed**"), "{md}");
    assert!(!row("parse").contains("regressed"), "{md}");
    assert!(
        md.starts_with("**runmetrics compare**: **1 regressed**"),
        "{md}"
    );

    let (status, lines) = bench_compare(&repo, &base, &unchanged, &out, 10);
    assert_eq!(lines.matches("no regression").count(), 10, "{lines}");
    assert_eq!(status, 0, "{lines}");
    // The script left no worktree behind.
    assert_eq!(git(&repo, &["worktree", "list"]).lines().count(), 1);
}

#[test]
fn the_workflow_calls_the_script_as_tested() {
    let yml = std::fs::read_to_string(workspace().join("docs/ci/bench.yml")).unwrap();
    assert!(
        yml.contains("docs/ci/bench-compare.sh . \"${{ github.event.pull_request.base.sha }}\"")
    );
    assert!(yml.contains("gh pr comment"));
    assert!(yml.contains("--body-file \"$RUNNER_TEMP/bench/comment.md\""));
    let script = std::fs::read_to_string(workspace().join("docs/ci/bench-compare.sh")).unwrap();
    assert!(script.contains("compare --each --format markdown --fail-on-regression"));
}

/// The venv `scripts/test` makes, with `check-jsonschema` (which vendors
/// SchemaStore's GitHub workflow schema, so it works offline) and its YAML
/// parser; `None`, said, when it is missing outside `scripts/test`.
fn workflow_checker() -> Option<PathBuf> {
    let python = workspace().join("target/python-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import check_jsonschema, ruamel.yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let msg = "check-jsonschema is not installed: scripts/test installs it in \
               target/python-venv (pip install check-jsonschema)";
    if std::env::var_os("RUNMETRICS_REQUIRE_SERVERS").is_some() {
        panic!("{msg}");
    }
    eprintln!("NOT RUN: {msg}");
    None
}

/// Each step's `run` script, its `${{ .. }}` expressions replaced by a
/// word, through `bash -n`; and every `steps.<id>` an expression names is a
/// step's id. Prints what is wrong, one line each.
const STEPS: &str = r#"
import re, subprocess, sys
from ruamel.yaml import YAML
wf = YAML(typ="safe").load(open(sys.argv[1]))
for name, job in wf["jobs"].items():
    ids = {s["id"] for s in job["steps"] if "id" in s}
    for i, step in enumerate(job["steps"]):
        text = " ".join(str(v) for v in step.values())
        for used in re.findall(r"steps\.([A-Za-z0-9_-]+)\.", text):
            if used not in ids:
                print(f"{name} step {i}: names step {used!r}, which no step has as id")
        if "run" in step:
            script = re.sub(r"\$\{\{.*?\}\}", "X", step["run"])
            r = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
            if r.returncode != 0:
                print(f"{name} step {i}: bash -n: {r.stderr.strip()}")
"#;

/// Validates `workflow` against the GitHub workflow schema and checks its
/// steps; the problems found, empty when none.
fn workflow_problems(python: &Path, workflow: &Path) -> String {
    let schema = Command::new(python)
        .args(["-m", "check_jsonschema", "--builtin-schema"])
        .args(["vendor.github-workflows", workflow.to_str().unwrap()])
        .output()
        .expect("check-jsonschema runs");
    let steps = Command::new(python)
        .args(["-c", STEPS, workflow.to_str().unwrap()])
        .output()
        .expect("python runs");
    assert!(
        steps.status.success(),
        "{}",
        String::from_utf8_lossy(&steps.stderr)
    );
    let mut problems = String::from_utf8(steps.stdout).unwrap();
    if !schema.status.success() {
        problems.push_str(&String::from_utf8_lossy(&schema.stdout));
    }
    problems
}

#[test]
fn the_workflow_is_a_valid_github_workflow_and_its_scripts_parse() {
    let Some(python) = workflow_checker() else {
        return;
    };
    let workflow = workspace().join("docs/ci/bench.yml");
    assert_eq!(workflow_problems(&python, &workflow), "");
    // The checks can fail: a misspelt key, a step id that is not there, a
    // script that does not parse.
    let yml = std::fs::read_to_string(&workflow).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, says) in [
        ("runs-on:", "runs_on:", "'runs-on' is a required property"),
        ("id: bench", "id: benchmark", "names step 'bench'"),
        ("|| status=$?", "|| status=$?; if", "bash -n"),
    ] {
        assert!(yml.contains(from), "{from}");
        let spoiled = dir.path().join("bench.yml");
        std::fs::write(&spoiled, yml.replacen(from, to, 1)).unwrap();
        let problems = workflow_problems(&python, &spoiled);
        assert!(problems.contains(says), "{from} -> {to}: {problems}");
    }
}
