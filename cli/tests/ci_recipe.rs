//! The CI recipe of `docs/ci/`, run here as the workflow runs it: a sample
//! crate (a throwaway git repository depending on runmetrics by path) with
//! a base commit, an unchanged commit and one whose `solve` phase does 20 %
//! more work; `docs/ci/bench-compare.sh` builds each side once (one shared
//! target dir), runs them interleaved, five runs a side (the script's
//! default), and compares them with `compare --each --format markdown
//! --fail-on-regression`. The planted regression is caught (and only it),
//! and the unchanged commit is not flagged in 10 of 10 tries. The workflow calls the script with the
//! flags tested here.

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
